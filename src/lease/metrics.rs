//! A tracker's metric handles, and the kind of pool they are labelled with.

use metrics::{Counter, Histogram, Label};

use super::tracker::Core;
use crate::metrics::{names, Collect, CollectedGauge, Sums};

/// What a tracker's leases are taken from: the `kind` label of its metrics, so that an HTTP
/// client's upstream and a pool of the same name never share a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PoolKind {
    /// A pool of the application's (a database or Redis pool, any checkout).
    Pool,
    /// An HTTP client's upstream: its requests' leases.
    Upstream,
}

impl PoolKind {
    pub(super) const fn as_str(self) -> &'static str {
        match self {
            PoolKind::Pool => "pool",
            PoolKind::Upstream => "upstream",
        }
    }
}

pub(super) struct LeaseMetrics {
    /// Set from the tracker's totals when metrics are collected.
    pub(super) outstanding: CollectedGauge,
    pub(super) acquired: Counter,
    pub(super) duration: Histogram,
    pub(super) leaks: Counter,
    pub(super) leaks_returned: Counter,
    pub(super) slow_waits: Counter,
    pub(super) untracked: Counter,
}

impl LeaseMetrics {
    pub(super) fn new(pool: &str, kind: PoolKind) -> Self {
        let p = pool.to_owned();
        let k = kind.as_str();
        Self {
            outstanding: CollectedGauge::new(
                names::LEASES_OUTSTANDING,
                vec![Label::new("pool", p.clone()), Label::new("kind", k)],
            ),
            acquired: metrics::counter!(names::LEASES_ACQUIRED_TOTAL, "pool" => p.clone(), "kind" => k),
            duration: metrics::histogram!(names::LEASE_DURATION_SECONDS, "pool" => p.clone(), "kind" => k),
            leaks: metrics::counter!(names::LEASE_LEAKS_TOTAL, "pool" => p.clone(), "kind" => k),
            leaks_returned: metrics::counter!(
                names::LEASE_LEAKS_RETURNED_TOTAL, "pool" => p.clone(), "kind" => k),
            slow_waits: metrics::counter!(names::LEASE_SLOW_WAITS_TOTAL, "pool" => p.clone(), "kind" => k),
            untracked: metrics::counter!(names::LEASES_UNTRACKED_TOTAL, "pool" => p, "kind" => k),
        }
    }
}

impl Collect for Core {
    /// Its leases outstanding, into the outstanding gauge.
    fn collect(&self, sums: &mut Sums) {
        let outstanding = self.lock().totals.outstanding();
        sums.add(&self.metrics.outstanding, outstanding as f64);
    }
}
