//! Taking and returning a lease allocates nothing once the tracker's table has grown: the hot
//! path of every pooled request stays off the heap.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
};

use conn_hygiene::lease::LeaseTracker;

/// Counts allocations made by the current thread.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: defers every call to the system allocator unchanged; only counts.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

thread_local! {
    /// The workload's own vector of guards, kept between runs so that it allocates only once.
    static OUT: Cell<Vec<conn_hygiene::lease::Leased<i32>>> = const { Cell::new(Vec::new()) };
}

fn allocations_of(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

/// Up to 16 leases out at once, 10 000 taken and returned, in an order that reuses slots.
fn workload(tracker: &LeaseTracker) {
    let mut out = OUT.take();
    out.reserve(16);
    for i in 0..10_000 {
        out.push(tracker.wrap(i));
        if out.len() == 16 {
            // Return every other one, then the rest: slots are freed out of order.
            let mut k = 0;
            out.retain(|_| {
                k += 1;
                k % 2 == 0
            });
            out.clear();
        }
    }
    out.clear();
    OUT.set(out);
}

#[test]
fn leases_allocate_nothing_once_warm() {
    let tracker = LeaseTracker::new("alloc");
    workload(&tracker); // grows the table to 16 slots
    assert_eq!(allocations_of(|| workload(&tracker)), 0);
    assert_eq!(tracker.totals().acquired, 20_000);
    assert_eq!(tracker.outstanding(), 0);
}

#[test]
fn leases_allocate_nothing_once_warm_inside_a_runtime() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async {
        let tracker = LeaseTracker::new("alloc-rt");
        workload(&tracker); // also starts the detector task
        assert_eq!(allocations_of(|| workload(&tracker)), 0);
        assert_eq!(tracker.outstanding(), 0);
    });
}

#[test]
fn beyond_max_tracked_nothing_is_allocated_either() {
    let tracker = LeaseTracker::builder("alloc-bounded")
        .max_tracked(4)
        .build()
        .unwrap();
    workload(&tracker);
    assert_eq!(allocations_of(|| workload(&tracker)), 0);
    assert!(tracker.totals().untracked > 0);
    assert_eq!(tracker.outstanding(), 0);
}

#[test]
fn the_counter_sees_allocations_backtraces_make() {
    let tracker = LeaseTracker::builder("alloc-bt")
        .backtraces(true)
        .build()
        .unwrap();
    workload(&tracker);
    assert!(allocations_of(|| drop(tracker.lease())) > 0);
}
