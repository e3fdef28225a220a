//! Gauges read from live state when metrics are collected, rather than moved on every change.
//!
//! A connection goes from idle to active and back on every request, and so does a lease;
//! moving a gauge each time would put gauge updates (and, with a Prometheus recorder,
//! compare-and-swap loops on a shared float) on every request. Instead the owner of the state
//! registers a collector here, and the gauges are set from a count of the live state when
//! metrics are collected: before every render of the crate's exporter, at every sampler tick,
//! and when [`collect`](super::collect) is called.
//!
//! Collectors add their values into [`Sums`], keyed by each gauge's metric key: two owners of
//! the same name (two listeners called `api`, two clients of one upstream) make one series,
//! their sum, as gauges moved on every change would. A series whose owners are all gone is set
//! to zero at the next collection, never left at its last value.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, Weak},
};

use metrics::{Gauge, Key, Label, Level, Metadata};

/// Sets its gauges from the state it owns.
pub(crate) trait Collect: Send + Sync {
    fn collect(&self, sums: &mut Sums);
}

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// A gauge set from live state, with the key it is registered under.
pub(crate) struct CollectedGauge {
    key: Key,
    gauge: Gauge,
}

impl CollectedGauge {
    /// Registers the gauge `name{labels}` with the current recorder (run it inside
    /// [`resolve`](super::resolve), as every handle of the crate is taken).
    pub(crate) fn new(name: &'static str, labels: Vec<Label>) -> Self {
        let key = Key::from_parts(name, labels);
        let gauge = metrics::with_recorder(|r| r.register_gauge(&key, &METADATA));
        Self { key, gauge }
    }
}

/// What one collection adds up, per series: the value, and every handle on the series (the
/// same series, or handles taken before a recorder was installed and bound to it since).
#[derive(Default)]
pub(crate) struct Sums {
    series: HashMap<Key, (Vec<Gauge>, f64)>,
}

impl Sums {
    /// Adds `value` into the gauge's series.
    pub(crate) fn add(&mut self, gauge: &CollectedGauge, value: f64) {
        let (handles, sum) = self
            .series
            .entry(gauge.key.clone())
            .or_insert_with(|| (Vec::with_capacity(1), 0.0));
        *sum += value;
        handles.push(gauge.gauge.clone());
    }
}

static COLLECTORS: Mutex<Vec<Weak<dyn Collect>>> = Mutex::new(Vec::new());

/// The series the last collection set, with their handles: a series no live collector adds
/// to any more is set to zero once.
static LAST: Mutex<Vec<(Key, Vec<Gauge>)>> = Mutex::new(Vec::new());

/// Adds a collector, for as long as it lives.
pub(crate) fn register(collector: Weak<dyn Collect>) {
    let mut all = COLLECTORS.lock().unwrap_or_else(|e| e.into_inner());
    all.retain(|c| c.strong_count() > 0);
    all.push(collector);
}

/// Runs every live collector (outside the list's lock, so that a collector may take its own
/// locks or register another), sets each series to its sum, and forgets the dead collectors.
pub(crate) fn collect_all() {
    let live: Vec<Arc<dyn Collect>> = {
        let mut all = COLLECTORS.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|c| c.strong_count() > 0);
        all.iter().filter_map(Weak::upgrade).collect()
    };
    let mut sums = Sums::default();
    for c in &live {
        c.collect(&mut sums);
    }
    drop(live);
    // One collection at a time, so that a series is never zeroed by one after another set it.
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    for (key, handles) in last.iter() {
        if !sums.series.contains_key(key) {
            for g in handles {
                g.set(0.0);
            }
        }
    }
    last.clear();
    for (key, (handles, sum)) in sums.series {
        for g in &handles {
            g.set(sum);
        }
        last.push((key, handles));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Count {
        runs: AtomicUsize,
        value: AtomicUsize,
        gauge: CollectedGauge,
    }

    impl Collect for Count {
        fn collect(&self, sums: &mut Sums) {
            self.runs.fetch_add(1, Ordering::Relaxed);
            sums.add(&self.gauge, self.value.load(Ordering::Relaxed) as f64);
        }
    }

    fn count(recorder: &DebuggingRecorder, name: &str, value: usize) -> Arc<Count> {
        let gauge = metrics::with_local_recorder(recorder, || {
            CollectedGauge::new(
                "conn_hygiene_test_collected",
                vec![Label::new("owner", name.to_owned())],
            )
        });
        let c = Arc::new(Count {
            runs: AtomicUsize::new(0),
            value: AtomicUsize::new(value),
            gauge,
        });
        register(Arc::downgrade(&c) as Weak<dyn Collect>);
        c
    }

    /// The gauges by owner (a snapshot drains what it reads: one per check).
    fn values(snapshotter: &Snapshotter) -> HashMap<String, f64> {
        snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .filter_map(|(k, .., v)| {
                let owner = k.key().labels().next()?.value().to_owned();
                match v {
                    DebugValue::Gauge(g) => Some((owner, g.into_inner())),
                    other => panic!("a gauge, not {other:?}"),
                }
            })
            .collect()
    }

    // Every collector of the process is run: the owners' names are this test's own.
    #[test]
    fn collectors_of_one_series_are_summed_and_a_series_left_without_one_is_zeroed() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let a = count(&recorder, "collect-test-shared", 3);
        let b = count(&recorder, "collect-test-shared", 4);
        let alone = count(&recorder, "collect-test-alone", 5);
        collect_all();
        collect_all();
        assert_eq!(a.runs.load(Ordering::Relaxed), 2);
        let v = values(&snapshotter);
        assert_eq!(v["collect-test-shared"], 7.0);
        assert_eq!(v["collect-test-alone"], 5.0);

        b.value.store(1, Ordering::Relaxed);
        drop(alone);
        collect_all();
        let v = values(&snapshotter);
        assert_eq!(v["collect-test-shared"], 4.0);
        assert_eq!(v["collect-test-alone"], 0.0);
        let all = COLLECTORS.lock().unwrap();
        assert!(
            all.iter().all(|c| c.strong_count() > 0),
            "dead collectors are pruned"
        );
        drop(all);

        drop((a, b));
        collect_all();
        assert_eq!(values(&snapshotter)["collect-test-shared"], 0.0);
    }
}
