//! The registry's metric handles, resolved once per listener.

use metrics::{Counter, Histogram, Label};

use super::report::{AcceptErrorKind, REASONS};
use crate::{
    metrics::{names, CollectedGauge},
    server::connection::{CloseReason, Closer, ConnState},
};

pub(super) struct ServerMetrics {
    pub(super) opened: Counter,
    pub(super) closed: [[Counter; REASONS]; 5],
    /// Set from the live connections when metrics are collected.
    pub(super) state: [CollectedGauge; 5],
    pub(super) requests_per_connection: Histogram,
    pub(super) duration: Histogram,
    pub(super) accept_errors: [Counter; 5],
    pub(super) cut: Counter,
    pub(super) half_closed: Counter,
}

impl ServerMetrics {
    pub(super) fn new(listener: &str) -> Self {
        let l = listener.to_owned();
        Self {
            opened: metrics::counter!(names::SERVER_CONNECTIONS_OPENED_TOTAL, "listener" => l.clone()),
            // Only the pairs a close can have: a reason that decides the closer has that
            // closer alone, any other is local or peer by the FIN order.
            closed: Closer::ALL.map(|c| {
                CloseReason::ALL.map(|r| {
                    if crate::close::possible(c, r.forced_closer()) {
                        metrics::counter!(names::SERVER_CONNECTIONS_CLOSED_TOTAL,
                            "listener" => l.clone(), "closer" => c.as_str(), "reason" => r.as_str())
                    } else {
                        Counter::noop()
                    }
                })
            }),
            state: ConnState::LIVE.map(|s| {
                CollectedGauge::new(
                    names::SERVER_CONNECTIONS,
                    vec![
                        Label::new("listener", l.clone()),
                        Label::new("state", s.as_str()),
                    ],
                )
            }),
            requests_per_connection: metrics::histogram!(
                names::SERVER_REQUESTS_PER_CONNECTION, "listener" => l.clone()),
            duration: metrics::histogram!(
                names::SERVER_CONNECTION_DURATION_SECONDS, "listener" => l.clone()),
            accept_errors: AcceptErrorKind::ALL.map(|k| {
                metrics::counter!(names::SERVER_ACCEPT_ERRORS_TOTAL,
                    "listener" => l.clone(), "kind" => k.as_str())
            }),
            cut: metrics::counter!(names::SERVER_SHUTDOWN_CUT_TOTAL, "listener" => l.clone()),
            half_closed: metrics::counter!(
                names::SERVER_HALF_CLOSED_IN_FLIGHT_TOTAL, "listener" => l),
        }
    }
}
