//! Metric handles taken before a recorder is installed, bound to it once it is.
//!
//! The facade hands out no-op handles while no recorder is installed, and a handle keeps the
//! recorder it was registered with: a listener, upstream or lease tracker built before the
//! exporter would count into nothing forever. So the crate takes its handles through
//! [`resolve`]: with a recorder installed (global, or local to the thread), they are the
//! recorder's own, at no extra cost; without one, they are deferred handles that keep what they
//! are told (a counter's increments, a gauge's value, up to [`MAX_SAMPLES`] histogram samples)
//! and register with the recorder once one is installed: at once when the crate's exporter
//! installs itself ([`bind_all`]), else at their next use. Handles bound carry on through the
//! recorder's handle, one indirection more.
//!
//! Whether a recorder is installed is read from the facade: its no-op recorder, the only one in
//! use while none is installed, has no state (a zero-sized type). A recorder of your own that
//! has no state either would be taken for none: its handles are then bound by `bind_all` only.

use std::sync::{Arc, Mutex, OnceLock};

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
/// right after installing itself).
#[cfg(feature = "exporter")]
pub(crate) fn bind_all() {
    let pending = std::mem::take(&mut *PENDING.lock().unwrap_or_else(|e| e.into_inner()));
    for d in &pending {
        d.bind_if_installed();
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

/// What a handle was told before it was bound.
#[derive(Default)]
struct Kept {
    /// Counter: the sum of increments, and the largest absolute value set.
    increments: u64,
    absolute: Option<u64>,
    /// Gauge: its value, once anything was done to it (a gauge never touched stays absent).
    value: Option<f64>,
    samples: Vec<f64>,
}

struct Deferred {
    key: Key,
    kind: Kind,
    bound: OnceLock<Bound>,
    kept: Mutex<Kept>,
}

impl Deferred {
    /// With a recorder installed: registers with it, hands it what was kept, and binds.
    /// Called with `kept` locked by the caller, or not at all while it is locked elsewhere.
    fn bind_locked(&self, kept: &mut Kept) -> Option<&Bound> {
        if let Some(b) = self.bound.get() {
            return Some(b);
        }
        if !recorder_installed() {
            return None;
        }
        let bound = metrics::with_recorder(|r| match self.kind {
            Kind::Counter => {
                let c = r.register_counter(&self.key, &METADATA);
                if let Some(v) = kept.absolute {
                    c.absolute(v);
                }
                if kept.increments > 0 {
                    c.increment(kept.increments);
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
        Some(self.bound.get_or_init(|| bound))
    }

    #[cfg(feature = "exporter")]
    fn bind_if_installed(&self) {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        self.bind_locked(&mut kept);
    }

    /// Every operation: through the recorder's handle once bound (`op`); before, binds if a
    /// recorder is installed now, else keeps the operation (`keep`).
    #[inline]
    fn apply(&self, op: impl Fn(&Bound), keep: impl FnOnce(&mut Kept)) {
        if let Some(b) = self.bound.get() {
            return op(b);
        }
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        match self.bind_locked(&mut kept) {
            Some(b) => op(b),
            None => keep(&mut kept),
        }
    }
}

impl CounterFn for Deferred {
    fn increment(&self, value: u64) {
        self.apply(
            |b| b.counter(|c| c.increment(value)),
            |k| k.increments = k.increments.saturating_add(value),
        );
    }

    fn absolute(&self, value: u64) {
        self.apply(
            |b| b.counter(|c| c.absolute(value)),
            |k| k.absolute = Some(k.absolute.map_or(value, |v| v.max(value))),
        );
    }
}

impl GaugeFn for Deferred {
    fn increment(&self, value: f64) {
        self.apply(
            |b| b.gauge(|g| g.increment(value)),
            |k| k.value = Some(k.value.unwrap_or(0.0) + value),
        );
    }

    fn decrement(&self, value: f64) {
        self.apply(
            |b| b.gauge(|g| g.decrement(value)),
            |k| k.value = Some(k.value.unwrap_or(0.0) - value),
        );
    }

    fn set(&self, value: f64) {
        self.apply(|b| b.gauge(|g| g.set(value)), |k| k.value = Some(value));
    }
}

impl HistogramFn for Deferred {
    fn record(&self, value: f64) {
        self.apply(
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
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    #[test]
    fn handles_taken_before_a_recorder_keep_counting_and_bind_to_it() {
        // No recorder for this thread: the handles are deferred.
        let (counter, gauge, _untouched, histogram) = resolve(|| {
            (
                metrics::counter!("deferred_test_total", "k" => "v"),
                metrics::gauge!("deferred_test_gauge"),
                metrics::gauge!("deferred_test_untouched"),
                metrics::histogram!("deferred_test_seconds"),
            )
        });
        counter.increment(3);
        gauge.set(5.0);
        gauge.decrement(1.0);
        histogram.record(0.25);
        // A recorder arrives (local to this thread, as a global one would be for all).
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || {
            // The next use binds, handing over what was kept.
            counter.increment(2);
            gauge.increment(0.5);
            histogram.record(0.5);
        });
        let values: std::collections::HashMap<String, DebugValue> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(k, _, _, v)| (k.key().name().to_owned(), v))
            .collect();
        assert_eq!(values["deferred_test_total"], DebugValue::Counter(5));
        assert_eq!(values["deferred_test_gauge"], DebugValue::Gauge(4.5.into()));
        assert_eq!(
            values["deferred_test_seconds"],
            DebugValue::Histogram(vec![0.25.into(), 0.5.into()])
        );
        assert!(
            !values.contains_key("deferred_test_untouched"),
            "a gauge never set is not reported as 0"
        );
        // Bound: later uses go straight to the recorder's handle, wherever they run (this
        // recorder's snapshots drain its counters: 2 is what was counted since).
        counter.increment(1);
        metrics::with_local_recorder(&recorder, || counter.increment(1));
        let total = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .find(|(k, ..)| k.key().name() == "deferred_test_total")
            .map(|(.., v)| v);
        assert_eq!(total, Some(DebugValue::Counter(2)));
    }

    #[test]
    fn with_a_recorder_installed_handles_are_the_recorders_own() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let counter = metrics::with_local_recorder(&recorder, || {
            resolve(|| metrics::counter!("direct_test_total"))
        });
        counter.increment(1);
        assert_eq!(snapshotter.snapshot().into_vec().len(), 1);
    }

    #[test]
    fn histogram_samples_kept_before_binding_are_bounded() {
        let histogram = resolve(|| metrics::histogram!("bounded_test_seconds"));
        for _ in 0..MAX_SAMPLES + 10 {
            histogram.record(1.0);
        }
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || histogram.record(2.0));
        let samples = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .find_map(|(.., v)| match v {
                DebugValue::Histogram(s) => Some(s.len()),
                _ => None,
            });
        assert_eq!(samples, Some(MAX_SAMPLES + 1));
    }
}
