//! A pool's own statistics, exported beside the lease metrics: read from the pool when metrics
//! are collected (each render of the crate's exporter, each sampler tick,
//! [`crate::metrics::collect`]), labelled with the pool's name only.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use metrics::{Counter, Label};

pub(crate) use super::view::{PoolStats, ReadStats};
use crate::metrics::{names, Collect, CollectedGauge, Sums};

fn gauge(name: &'static str, pool: &str) -> CollectedGauge {
    CollectedGauge::new(name, vec![Label::new("pool", pool.to_owned())])
}

struct PoolGauges {
    size: CollectedGauge,
    idle: CollectedGauge,
    max_size: CollectedGauge,
    waiters: CollectedGauge,
    timeouts: Counter,
}

/// A pool's statistics exporter: registered as a collector for as long as it lives (the
/// adapter holds it), it sets the gauges from the pool when metrics are collected.
///
/// A pool that counts its timed-out checkouts itself (bb8) has the counter moved by what its
/// count grew since the last collection, never set to the count: two pools of one name add
/// up, and a pool dropped keeps what it counted (its last growth is added when it goes), so
/// the series never goes back, which a Prometheus `rate` would read as a counter reset.
pub(crate) struct StatsExport<R> {
    reader: R,
    gauges: PoolGauges,
    /// The pool's own count of timed-out checkouts, as far as the counter has it.
    timeouts_counted: AtomicU64,
    /// Reads that count, for the drop (whose impl cannot ask `R` to read).
    own_count: fn(&R) -> Option<u64>,
}

impl<R: ReadStats> StatsExport<R> {
    /// Resolves the pool's metric handles (bound later if no recorder is installed yet) and
    /// registers the exporter.
    pub(crate) fn register(pool: &str, reader: R) -> Arc<Self> {
        let gauges = crate::metrics::resolve(|| {
            let p = pool.to_owned();
            PoolGauges {
                size: gauge(names::POOL_CONNECTIONS, &p),
                idle: gauge(names::POOL_IDLE_CONNECTIONS, &p),
                max_size: gauge(names::POOL_MAX_CONNECTIONS, &p),
                waiters: gauge(names::POOL_WAITERS, &p),
                timeouts: metrics::counter!(names::POOL_GET_TIMEOUTS_TOTAL, "pool" => p),
            }
        });
        let export = Arc::new(StatsExport {
            reader,
            gauges,
            timeouts_counted: AtomicU64::new(0),
            own_count: |r: &R| r.read().timeouts,
        });
        let weak = Arc::downgrade(&export);
        crate::metrics::register_collector(weak as std::sync::Weak<dyn Collect>);
        export
    }

    /// The pool's statistics now.
    pub(crate) fn read(&self) -> PoolStats {
        self.reader.read()
    }

    /// One more checkout timed out, for a pool that does not count them itself.
    #[cfg_attr(not(any(feature = "deadpool", feature = "sqlx")), allow(dead_code))]
    pub(crate) fn timed_out(&self) {
        self.gauges.timeouts.increment(1);
    }
}

impl<R> StatsExport<R> {
    /// Moves the counter by what the pool's own count `t` grew since it was last looked at
    /// (collections may run at once: each growth is added once).
    fn own_timeouts(&self, t: u64) {
        let before = self.timeouts_counted.fetch_max(t, Ordering::AcqRel);
        if t > before {
            self.gauges.timeouts.increment(t - before);
        }
    }
}

impl<R> Drop for StatsExport<R> {
    fn drop(&mut self) {
        // What the pool counted since the last collection.
        if let Some(t) = (self.own_count)(&self.reader) {
            self.own_timeouts(t);
        }
    }
}

impl<R: ReadStats> Collect for StatsExport<R> {
    fn collect(&self, sums: &mut Sums) {
        let s = self.reader.read();
        sums.add(&self.gauges.size, s.size as f64);
        sums.add(&self.gauges.idle, s.idle as f64);
        sums.add(&self.gauges.max_size, s.max_size as f64);
        sums.add(&self.gauges.waiters, s.waiters as f64);
        if let Some(t) = s.timeouts {
            self.own_timeouts(t);
        }
    }
}

/// Checkouts in progress through an adapter, for a pool that does not count its waiters: each
/// [`Waiting`] guard counts one until dropped (done or cancelled).
#[derive(Debug, Default, Clone)]
#[cfg_attr(not(feature = "sqlx"), allow(dead_code))]
pub(crate) struct WaitCount(Arc<AtomicU64>);

#[cfg_attr(not(feature = "sqlx"), allow(dead_code))]
impl WaitCount {
    pub(crate) fn enter(&self) -> Waiting {
        self.0.fetch_add(1, Ordering::Relaxed);
        Waiting(self.0.clone())
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// One checkout waiting; see [`WaitCount`].
#[derive(Debug)]
pub(crate) struct Waiting(Arc<AtomicU64>);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<R: ReadStats> ReadStats for StatsExport<R> {
    fn read(&self) -> PoolStats {
        self.reader.read()
    }
}

/// `export` as the source of a [`PoolView`](super::PoolView)'s statistics, not kept alive by it.
pub(crate) fn stats_source<R: ReadStats>(
    export: &Arc<StatsExport<R>>,
) -> std::sync::Weak<dyn ReadStats> {
    let weak: std::sync::Weak<StatsExport<R>> = Arc::downgrade(export);
    weak
}
