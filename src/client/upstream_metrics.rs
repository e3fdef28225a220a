//! An upstream's metric handles: resolved once, when the upstream is made.

use metrics::{Counter, Gauge, Histogram, Label};

use super::{
    conn::CloseReason,
    upstream::{ConnectErrorKind, CLIENT_REASONS},
};
use crate::{
    close::Closer,
    metrics::{names, CollectedGauge},
};

pub(super) struct UpstreamMetrics {
    /// Set from `Upstream::pool_states` when metrics are collected.
    pub(super) idle: CollectedGauge,
    pub(super) leased: CollectedGauge,
    pub(super) pending: Gauge,
    pub(super) connects: Counter,
    pub(super) connect_errors: [Counter; 5],
    pub(super) closed: [[Counter; CLIENT_REASONS]; 5],
    pub(super) requests_per_connection: Histogram,
    pub(super) retries: Counter,
    pub(super) timeouts: Counter,
}

impl UpstreamMetrics {
    pub(super) fn new(name: &str) -> Self {
        let n = name.to_owned();
        Self {
            idle: connections(&n, "idle"),
            leased: connections(&n, "leased"),
            pending: metrics::gauge!(names::CLIENT_PENDING_ACQUISITIONS, "upstream" => n.clone()),
            connects: metrics::counter!(names::CLIENT_CONNECTS_TOTAL, "upstream" => n.clone()),
            connect_errors: ConnectErrorKind::ALL.map(|k| {
                metrics::counter!(names::CLIENT_CONNECT_ERRORS_TOTAL,
                    "upstream" => n.clone(), "kind" => k.as_str())
            }),
            // Only the pairs a close can have (see `close::possible`).
            closed: Closer::ALL.map(|c| {
                CloseReason::ALL.map(|r| {
                    if crate::close::possible(c, r.forced_closer()) {
                        metrics::counter!(names::CLIENT_CONNECTIONS_CLOSED_TOTAL,
                            "upstream" => n.clone(), "closer" => c.as_str(), "reason" => r.as_str())
                    } else {
                        Counter::noop()
                    }
                })
            }),
            requests_per_connection: metrics::histogram!(
                names::CLIENT_REQUESTS_PER_CONNECTION, "upstream" => n.clone()),
            retries: metrics::counter!(names::CLIENT_RETRIES_TOTAL, "upstream" => n.clone()),
            timeouts: metrics::counter!(names::CLIENT_TIMEOUTS_TOTAL, "upstream" => n),
        }
    }
}

fn connections(upstream: &str, state: &'static str) -> CollectedGauge {
    CollectedGauge::new(
        names::CLIENT_CONNECTIONS,
        vec![
            Label::new("upstream", upstream.to_owned()),
            Label::new("state", state),
        ],
    )
}
