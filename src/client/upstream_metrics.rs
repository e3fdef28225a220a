//! An upstream's metric handles: resolved once, when the upstream is made.

use metrics::{Counter, Gauge, Histogram};

use super::{
    conn::CloseReason,
    upstream::{ConnectErrorKind, CLIENT_REASONS},
};
use crate::{close::Closer, metrics::names};

pub(super) struct UpstreamMetrics {
    pub(super) idle: Gauge,
    pub(super) leased: Gauge,
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
            idle: metrics::gauge!(names::CLIENT_CONNECTIONS, "upstream" => n.clone(), "state" => "idle"),
            leased: metrics::gauge!(names::CLIENT_CONNECTIONS, "upstream" => n.clone(), "state" => "leased"),
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
