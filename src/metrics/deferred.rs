//! Metric handles taken before a recorder is installed, bound to it once it is.
//!
//! The facade hands out no-op handles while no recorder is installed, and a handle keeps the
//! recorder it was registered with: a listener, upstream or lease tracker built before the
//! exporter would count into nothing forever. So the crate takes its handles through
//! [`resolve`]: with a recorder installed (global, or local to the thread), they are the
//! recorder's own, at no extra cost; without one, they are deferred handles that keep what they
//! are told (a counter's increments, a gauge's value, up to [`MAX_SAMPLES`] histogram samples)
//! and register with the recorder once one is installed and [`bind_all`] runs: the crate's
//! exporter runs it when it installs itself, and `conn_hygiene::metrics::bind_deferred` is
//! there for a recorder of one's own. Handles bound carry on through the recorder's handle, one
//! indirection more. Before that, the operations the request path makes (a counter's increment,
//! a gauge's increment or decrement) are one atomic operation each, with no lock.
//!
//! Whether a recorder is installed is read from the facade: its no-op recorder, the only one in
//! use while none is installed, has no state (a zero-sized type). A recorder of your own that
//! has no state either would be taken for none.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc, Mutex, OnceLock,
};

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Level, Metadata,
    Recorder, SharedString, Unit,
};

/// The histogram samples a deferred histogram keeps before it is bound; later ones are dropped.
pub(crate) const MAX_SAMPLES: usize = 1024;

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// The most deferred handles kept while no recorder is installed: handles are taken when a
/// component is built, so this bounds a program that keeps building components and never
/// installs one. Past it, handles are the facade's no-op ones, as without deferral.
pub(crate) const MAX_PENDING: usize = 4096;

/// Every deferred handle not yet bound, held here so that a value set once (a listener's
/// backlog) is kept even when the handle that set it is gone.
static PENDING: Mutex<Vec<Arc<Deferred>>> = Mutex::new(Vec::new());

/// Runs `register` (which takes metric handles through the facade's macros) so that the
/// handles it takes work whichever of it and the recorder's installation comes first.
pub(crate) fn resolve<T>(register: impl FnOnce() -> T) -> T {
    if recorder_installed() {
        register()
    } else {
        metrics::with_local_recorder(&Deferring, register)
    }
}

/// Binds every deferred handle to the recorder now installed (the crate's exporter calls it
/// right after installing itself); nothing when none is.
pub(crate) fn bind_all() {
    let pending = std::mem::take(&mut *PENDING.lock().unwrap_or_else(|e| e.into_inner()));
    for d in &pending {
        d.bind();
    }
    let unbound = pending.into_iter().filter(|d| d.bound.get().is_none());
    PENDING
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .extend(unbound);
}

/// A recorder is installed for this thread: the facade's current recorder has state.
fn recorder_installed() -> bool {
    metrics::with_recorder(|r| std::mem::size_of_val(r) != 0)
}

/// The recorder `resolve` runs the registrations under when none is installed.
struct Deferring;

impl Deferring {
    /// A deferred handle for `key`, or `None` past [`MAX_PENDING`].
    fn defer(key: &Key, kind: Kind) -> Option<Arc<Deferred>> {
        let mut pending = PENDING.lock().unwrap_or_else(|e| e.into_inner());
        if pending.len() >= MAX_PENDING {
            // Those bound at their own use since need not be kept.
            pending.retain(|d| d.bound.get().is_none());
            if pending.len() >= MAX_PENDING {
                return None;
            }
        }
        let d = Arc::new(Deferred {
            key: key.clone(),
            kind,
            bound: OnceLock::new(),
            kept: Mutex::new(Kept::default()),
            increments: AtomicU64::new(0),
            delta: AtomicU64::new(0f64.to_bits()),
        });
        pending.push(d.clone());
        Some(d)
    }
}

impl Recorder for Deferring {
    // Descriptions are published by `describe`, which the exporter runs when installed.
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Self::defer(key, Kind::Counter).map_or_else(Counter::noop, Counter::from_arc)
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Self::defer(key, Kind::Gauge).map_or_else(Gauge::noop, Gauge::from_arc)
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Self::defer(key, Kind::Histogram).map_or_else(Histogram::noop, Histogram::from_arc)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// The recorder's handle, once bound.
enum Bound {
    Counter(Counter),
    Gauge(Gauge),
    Histogram(Histogram),
}

/// What a handle was told before it was bound, beside the lock-free sums.
#[derive(Default)]
struct Kept {
    /// Counter: the largest absolute value set.
    absolute: Option<u64>,
    /// Gauge: the last value set (increments and decrements since are in `delta`).
    value: Option<f64>,
    samples: Vec<f64>,
}

struct Deferred {
    key: Key,
    kind: Kind,
    bound: OnceLock<Bound>,
    kept: Mutex<Kept>,
    /// Counter: increments not yet handed to the recorder's handle.
    increments: AtomicU64,
    /// Gauge: the sum of increments and decrements (as `f64` bits) not yet handed over.
    delta: AtomicU64,
}

impl Deferred {
    /// With a recorder installed: registers with it, hands it what was kept, and binds.
    fn bind(&self) {
        {
            let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
            if self.bound.get().is_some() || !recorder_installed() {
                return;
            }
            let bound = metrics::with_recorder(|r| match self.kind {
                Kind::Counter => {
                    let c = r.register_counter(&self.key, &METADATA);
                    if let Some(v) = kept.absolute {
                        c.absolute(v);
                    }
                    Bound::Counter(c)
                }
                Kind::Gauge => {
                    let g = r.register_gauge(&self.key, &METADATA);
                    if let Some(v) = kept.value {
                        g.set(v);
                    }
                    Bound::Gauge(g)
                }
                Kind::Histogram => {
                    let h = r.register_histogram(&self.key, &METADATA);
                    for &v in &kept.samples {
                        h.record(v);
                    }
                    Bound::Histogram(h)
                }
            });
            *kept = Kept::default();
            let _ = self.bound.set(bound);
        }
        self.drain();
    }

    /// Hands the lock-free sums to the recorder's handle. Every amount added is taken by one
    /// swap exactly once: an operation that added after `bind` swapped sees the handle bound
    /// (its add and this load are ordered after the bind's store) and drains it itself.
    fn drain(&self) {
        match self.bound.get() {
            Some(Bound::Counter(c)) => {
                let n = self.increments.swap(0, Ordering::SeqCst);
                if n > 0 {
                    c.increment(n);
                }
            }
            Some(Bound::Gauge(g)) => {
                let d = f64::from_bits(self.delta.swap(0f64.to_bits(), Ordering::SeqCst));
                if d != 0.0 {
                    g.increment(d);
                }
            }
            _ => {}
        }
    }

    /// An operation that is not a sum: through the recorder's handle once bound, else kept
    /// under the lock.
    fn locked(&self, op: impl FnOnce(&Bound), keep: impl FnOnce(&mut Kept)) {
        if let Some(b) = self.bound.get() {
            return op(b);
        }
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        match self.bound.get() {
            Some(b) => op(b),
            None => keep(&mut kept),
        }
    }

    /// Adds `v` to the gauge's lock-free delta.
    fn add_delta(&self, v: f64) {
        let _ = self
            .delta
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |bits| {
                Some((f64::from_bits(bits) + v).to_bits())
            });
        if self.bound.get().is_some() {
            self.drain();
        }
    }
}

impl CounterFn for Deferred {
    fn increment(&self, value: u64) {
        if let Some(Bound::Counter(c)) = self.bound.get() {
            return c.increment(value);
        }
        self.increments.fetch_add(value, Ordering::SeqCst);
        if self.bound.get().is_some() {
            self.drain();
        }
    }

    fn absolute(&self, value: u64) {
        self.locked(
            |b| b.counter(|c| c.absolute(value)),
            |k| k.absolute = Some(k.absolute.map_or(value, |v| v.max(value))),
        );
    }
}

impl GaugeFn for Deferred {
    fn increment(&self, value: f64) {
        if let Some(Bound::Gauge(g)) = self.bound.get() {
            return g.increment(value);
        }
        self.add_delta(value);
    }

    fn decrement(&self, value: f64) {
        if let Some(Bound::Gauge(g)) = self.bound.get() {
            return g.decrement(value);
        }
        self.add_delta(-value);
    }

    fn set(&self, value: f64) {
        self.locked(
            |b| b.gauge(|g| g.set(value)),
            |k| {
                // A value set replaces what the sums said before it.
                k.value = Some(value);
                self.delta.store(0f64.to_bits(), Ordering::SeqCst);
            },
        );
    }
}

impl HistogramFn for Deferred {
    fn record(&self, value: f64) {
        self.locked(
            |b| {
                if let Bound::Histogram(h) = b {
                    h.record(value);
                }
            },
            |k| {
                if k.samples.len() < MAX_SAMPLES {
                    k.samples.push(value);
                }
            },
        );
    }
}

impl Bound {
    fn counter(&self, op: impl FnOnce(&Counter)) {
        if let Bound::Counter(c) = self {
            op(c);
        }
    }

    fn gauge(&self, op: impl FnOnce(&Gauge)) {
        if let Bound::Gauge(g) = self {
            op(g);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

    /// Binding takes every deferred handle of the process: the tests that bind run one at a
    /// time, each with series names of its own.
    static SERIAL: Mutex<()> = Mutex::new(());

    /// Every series' value, from one snapshot (this recorder's snapshots drain its counters
    /// and histograms).
    fn values(snapshotter: &Snapshotter) -> std::collections::HashMap<String, DebugValue> {
        snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(k, .., v)| (k.key().name().to_owned(), v))
            .collect()
    }

    #[test]
    fn handles_taken_before_a_recorder_keep_counting_and_bind_to_it() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        // No recorder for this thread: the handles are deferred.
        let (counter, gauge, histogram) = resolve(|| {
            (
                metrics::counter!("deferred_test_total", "k" => "v"),
                metrics::gauge!("deferred_test_gauge"),
                metrics::histogram!("deferred_test_seconds"),
            )
        });
        counter.increment(3);
        gauge.set(5.0);
        gauge.decrement(1.0);
        gauge.increment(0.5);
        histogram.record(0.25);
        // A recorder arrives (local to this thread here, global in a program) and the crate
        // binds the handles to it, handing over what they kept.
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, bind_all);
        // Bound: later uses go straight to the recorder's handle, wherever they run.
        counter.increment(2);
        histogram.record(0.5);
        let v = values(&snapshotter);
        assert_eq!(v["deferred_test_gauge"], DebugValue::Gauge(4.5.into()));
        assert_eq!(v["deferred_test_total"], DebugValue::Counter(5));
        assert_eq!(
            v["deferred_test_seconds"],
            DebugValue::Histogram(vec![0.25.into(), 0.5.into()])
        );
    }

    #[test]
    fn increments_racing_the_binding_are_counted_once() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let counter = resolve(|| metrics::counter!("deferred_race_total"));
        let gauge = resolve(|| metrics::gauge!("deferred_race_gauge"));
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..10_000 {
                        counter.increment(1);
                        gauge.increment(1.0);
                        gauge.decrement(1.0);
                        gauge.increment(1.0);
                    }
                });
            }
            metrics::with_local_recorder(&recorder, bind_all);
        });
        let v = values(&snapshotter);
        assert_eq!(v["deferred_race_total"], DebugValue::Counter(40_000));
        assert_eq!(v["deferred_race_gauge"], DebugValue::Gauge(40_000.0.into()));
    }

    #[test]
    fn with_a_recorder_installed_handles_are_the_recorders_own() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let counter = metrics::with_local_recorder(&recorder, || {
            resolve(|| metrics::counter!("direct_test_total"))
        });
        counter.increment(1);
        assert_eq!(
            values(&snapshotter)["direct_test_total"],
            DebugValue::Counter(1)
        );
    }

    #[test]
    fn histogram_samples_kept_before_binding_are_bounded() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let histogram = resolve(|| metrics::histogram!("bounded_test_seconds"));
        for _ in 0..MAX_SAMPLES + 10 {
            histogram.record(1.0);
        }
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, bind_all);
        histogram.record(2.0);
        let samples = match &values(&snapshotter)["bounded_test_seconds"] {
            DebugValue::Histogram(s) => s.len(),
            other => panic!("{other:?}"),
        };
        assert_eq!(samples, MAX_SAMPLES + 1);
    }
}
