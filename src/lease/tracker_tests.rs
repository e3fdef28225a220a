//! The tracker's slot table.

use super::*;

fn entry(id: u64) -> Entry {
    Entry {
        id,
        site: Location::caller(),
        taken: Instant::now(),
        leaked: false,
        backtrace: None,
    }
}

#[test]
fn slab_reuses_freed_slots_last_freed_first() {
    let mut state = State::default();
    let slots: Vec<usize> = (1..=4).map(|id| state.insert(entry(id))).collect();
    assert_eq!(slots, [0, 1, 2, 3]);
    assert_eq!(state.remove(1, 2).map(|e| e.id), Some(2));
    assert_eq!(state.remove(3, 4).map(|e| e.id), Some(4));
    assert_eq!(state.tracked, 2);
    assert_eq!(state.insert(entry(5)), 3);
    assert_eq!(state.insert(entry(6)), 1);
    assert_eq!(
        state.insert(entry(7)),
        4,
        "grows once the free list is empty"
    );
    assert_eq!(state.slots.len(), 5);
    assert_eq!(state.tracked, 5);
}

#[test]
fn slab_remove_checks_the_id() {
    let mut state = State::default();
    let slot = state.insert(entry(1));
    assert!(state.remove(slot, 2).is_none(), "another lease's id");
    assert!(state.remove(UNTRACKED, 1).is_none());
    assert!(state.remove(slot, 1).is_some());
    assert!(state.remove(slot, 1).is_none(), "already vacant");
    assert_eq!(state.tracked, 0);
}

#[test]
fn secs_display_millisecond_precision() {
    assert_eq!(Secs(Duration::from_millis(1234)).to_string(), "1.234s");
    assert_eq!(Secs(Duration::ZERO).to_string(), "0.000s");
}
