//! A walk allocates the same whatever the number of sockets: nothing per socket.
#![cfg(target_os = "linux")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::{TcpListener, TcpStream};

use conn_hygiene_census::{count_states, Backend, TcpState, WalkOptions};
use conn_hygiene_test_support::{in_netns, run_in_netns, wait_until};

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

fn allocations_of(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

#[test]
fn walk_allocations_do_not_grow_with_sockets() {
    run_in_netns("inner_walk_allocations", &[]);
}

#[test]
#[ignore = "runs inside a private network namespace, started by walk_allocations_do_not_grow_with_sockets"]
fn inner_walk_allocations() {
    if !in_netns() {
        return walk_allocations_do_not_grow_with_sockets();
    }
    let backends = [Backend::Netlink, Backend::Proc];
    let measure = || {
        backends.map(|b| {
            let opts = WalkOptions::new().backend(b);
            count_states(&opts).unwrap(); // warm-up: lazily initialised std state
            allocations_of(|| {
                count_states(&opts).unwrap();
            })
        })
    };
    let empty = measure();

    // 2000 TIME_WAIT and 100 open connections: several netlink datagrams, a /proc table
    // larger than the buffer.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    for _ in 0..2000 {
        let client = TcpStream::connect(addr).unwrap();
        let (server, _) = listener.accept().unwrap();
        drop(client);
        drop(server);
    }
    let open: Vec<_> = (0..100)
        .map(|_| {
            (
                TcpStream::connect(addr).unwrap(),
                listener.accept().unwrap(),
            )
        })
        .collect();
    let opts = WalkOptions::new();
    wait_until(
        "sockets to settle",
        std::time::Duration::from_secs(10),
        || {
            let c = count_states(&opts).unwrap();
            c[TcpState::TimeWait] == 2000 && c[TcpState::LastAck] == 0
        },
    );
    let busy = measure();
    eprintln!("allocations per walk (netlink, /proc): empty {empty:?}, busy {busy:?}");
    assert_eq!(busy, empty, "allocations per walk (netlink, /proc)");
    drop(open);
}
