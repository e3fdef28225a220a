//! The table of listed leases: taking and returning a lease is O(1) and allocates nothing
//! once the table has grown.

use std::{backtrace::Backtrace, panic::Location, sync::Arc};

use tokio::time::Instant;

use super::LeaseTotals;

/// The table of listed leases: a slab (a vector of slots with a free list), so taking and
/// returning a lease is O(1) and allocates nothing once the vector has grown. It never holds
/// more than `max_tracked` slots.
#[derive(Default)]
pub(super) struct State {
    pub(super) slots: Vec<Slot>,
    /// Head of the free list of vacant slots, `None` when every slot is occupied.
    pub(super) free: Option<usize>,
    /// Occupied slots.
    pub(super) tracked: usize,
    pub(super) totals: LeaseTotals,
    /// Whether reaching `max_tracked` was logged (once per tracker).
    pub(super) bound_reported: bool,
}

pub(super) enum Slot {
    Vacant { next_free: Option<usize> },
    Occupied(Entry),
}

pub(super) struct Entry {
    pub(super) id: u64,
    pub(super) site: &'static Location<'static>,
    pub(super) taken: Instant,
    /// When the application took hold of what the lease covers: at once for a pool's
    /// checkout, at the response head for an HTTP request (`None` while it waits).
    pub(super) held_since: Option<Instant>,
    pub(super) leaked: bool,
    /// A wait longer than the leak threshold was reported.
    pub(super) slow_reported: bool,
    pub(super) backtrace: Option<Arc<Backtrace>>,
}

impl State {
    pub(super) fn insert(&mut self, entry: Entry) -> usize {
        self.tracked += 1;
        match self.free {
            Some(index) => {
                let slot = std::mem::replace(&mut self.slots[index], Slot::Occupied(entry));
                self.free = match slot {
                    Slot::Vacant { next_free } => next_free,
                    // The free list only links vacant slots.
                    Slot::Occupied(_) => None,
                };
                index
            }
            None => {
                self.slots.push(Slot::Occupied(entry));
                self.slots.len() - 1
            }
        }
    }

    /// Empties the slot if it holds lease `id`, returning its entry.
    pub(super) fn remove(&mut self, index: usize, id: u64) -> Option<Entry> {
        let slot = self.slots.get_mut(index)?;
        if !matches!(slot, Slot::Occupied(entry) if entry.id == id) {
            return None;
        }
        let vacant = Slot::Vacant {
            next_free: self.free,
        };
        self.free = Some(index);
        self.tracked -= 1;
        match std::mem::replace(slot, vacant) {
            Slot::Occupied(entry) => Some(entry),
            Slot::Vacant { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::tracker::UNTRACKED;

    fn entry(id: u64) -> Entry {
        Entry {
            id,
            site: Location::caller(),
            taken: Instant::now(),
            held_since: None,
            leaked: false,
            slow_reported: false,
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
}
