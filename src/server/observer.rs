//! What a connection knows of the listener it belongs to: the settings every connection of the
//! listener shares, and an observer it reports to. The registry implements the observer; a
//! connection never reaches into it.

use std::sync::atomic::AtomicBool;

use super::{
    connection::{CloseReason, Closer, ConnShared, ConnState},
    limits::ConnectionLimits,
};
use crate::{conn::lifecycle, policy::SocketPolicy};

/// The settings every connection of one listener shares.
#[derive(Debug)]
pub(crate) struct ConnConfig {
    pub(crate) limits: ConnectionLimits,
    pub(crate) policy: SocketPolicy,
    /// The limits as the connection core takes them.
    pub(crate) core: lifecycle::Limits,
    /// `Keep-Alive: timeout=N`, when advertised.
    pub(crate) keep_alive_value: Option<http::HeaderValue>,
    /// Whether connections report every state change to the observer (someone subscribed to
    /// the listener's events); otherwise only their close. Set once, never cleared.
    pub(crate) report_transitions: AtomicBool,
}

impl ConnConfig {
    pub(crate) fn new(limits: ConnectionLimits, policy: SocketPolicy) -> Self {
        Self {
            core: limits.core(),
            keep_alive_value: limits
                .keep_alive_header()
                .and_then(|v| http::HeaderValue::from_str(&v).ok()),
            limits,
            policy,
            report_transitions: AtomicBool::new(false),
        }
    }
}

/// What a connection reports, and the one thing it asks (whether the listener is shutting
/// down).
pub(crate) trait ConnObserver: Send + Sync {
    /// The connection moved from one state to another; reported only while
    /// [`ConnConfig::report_transitions`] is set.
    fn transition(&self, conn: &ConnShared, from: ConnState, to: ConnState);
    /// The connection closed: who closed first, why, whether with a reset, and how many
    /// requests read were never answered.
    fn closed(
        &self,
        conn: &ConnShared,
        closer: Closer,
        reason: CloseReason,
        aborted: bool,
        unanswered: u64,
    );
    /// The peer half-closed while requests it sent were unanswered.
    fn half_closed_in_flight(&self);
    /// An HTTP/2 connection was closed after the GOAWAY grace.
    fn goaway_grace_expired(&self);
    /// A connection answered a request that never passed through the layer
    /// ([`TrackConnection`](super::TrackConnection)): its limits hold, request-level tracking
    /// does not.
    fn served_without_layer(&self);
    /// The listener is shutting down: every connection retires.
    fn is_shutting_down(&self) -> bool;
}
