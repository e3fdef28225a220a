//! Gauges read from live state when metrics are collected, rather than moved on every change.
//!
//! A connection goes from idle to active and back on every request; moving a gauge each time
//! would put two gauge updates (and, with a Prometheus recorder, two compare-and-swap loops on
//! a shared float) on every request of every connection. Instead the owner of the state
//! registers a collector here, and the gauges are set from a count of the live state when
//! metrics are collected: before every render of the crate's exporter, at every sampler tick,
//! and when [`collect`](super::collect) is called.

use std::sync::{Arc, Mutex, Weak};

/// Sets its gauges from the state it owns.
pub(crate) trait Collect: Send + Sync {
    fn collect(&self);
}

static COLLECTORS: Mutex<Vec<Weak<dyn Collect>>> = Mutex::new(Vec::new());

/// Adds a collector, for as long as it lives.
#[cfg_attr(
    not(any(
        feature = "server",
        feature = "deadpool",
        feature = "bb8",
        feature = "sqlx"
    )),
    allow(dead_code)
)]
pub(crate) fn register(collector: Weak<dyn Collect>) {
    let mut all = COLLECTORS.lock().unwrap_or_else(|e| e.into_inner());
    all.retain(|c| c.strong_count() > 0);
    all.push(collector);
}

/// Runs every live collector (outside the list's lock, so that a collector may take its own
/// locks or register another), and forgets the dead ones.
pub(crate) fn collect_all() {
    let live: Vec<Arc<dyn Collect>> = {
        let mut all = COLLECTORS.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|c| c.strong_count() > 0);
        all.iter().filter_map(Weak::upgrade).collect()
    };
    for c in live {
        c.collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Count(AtomicUsize);

    impl Collect for Count {
        fn collect(&self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn collectors_run_while_alive_and_are_forgotten_once_dropped() {
        let c = Arc::new(Count(AtomicUsize::new(0)));
        let weak: Weak<dyn Collect> = Arc::downgrade(&c) as Weak<dyn Collect>;
        register(weak);
        collect_all();
        collect_all();
        assert_eq!(c.0.load(Ordering::Relaxed), 2);
        let dead = Arc::downgrade(&c);
        drop(c);
        collect_all();
        assert!(dead.upgrade().is_none());
        let all = COLLECTORS.lock().unwrap();
        assert!(
            all.iter().all(|c| c.strong_count() > 0),
            "dead collectors are pruned"
        );
    }
}
