//! What a registry reports: totals, snapshots, events, accept errors, shutdown.

use std::net::SocketAddr;

use crate::server::connection::{CloseInfo, CloseReason, Closer, ConnState, ConnectionSnapshot};

pub(super) const REASONS: usize = CloseReason::ALL.len();

/// Kinds of accept errors, as counted in `conn_hygiene_server_accept_errors_total{kind}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AcceptErrorKind {
    /// The process is out of file descriptors (`EMFILE`).
    Emfile,
    /// The system is out of file descriptors (`ENFILE`).
    Enfile,
    /// The kernel is out of memory or buffers (`ENOMEM`, `ENOBUFS`).
    NoMem,
    /// A connection failed before it was accepted (`ECONNABORTED`, `EPROTO`, …); harmless.
    Connection,
    /// Anything else.
    Other,
}

impl AcceptErrorKind {
    /// Every kind, in label order.
    pub const ALL: [AcceptErrorKind; 5] = [
        AcceptErrorKind::Emfile,
        AcceptErrorKind::Enfile,
        AcceptErrorKind::NoMem,
        AcceptErrorKind::Connection,
        AcceptErrorKind::Other,
    ];

    /// The kind's name as used in metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            AcceptErrorKind::Emfile => "emfile",
            AcceptErrorKind::Enfile => "enfile",
            AcceptErrorKind::NoMem => "nomem",
            AcceptErrorKind::Connection => "connection",
            AcceptErrorKind::Other => "other",
        }
    }

    pub(crate) fn classify(err: &std::io::Error) -> Self {
        match err.raw_os_error() {
            Some(libc::EMFILE) => Self::Emfile,
            Some(libc::ENFILE) => Self::Enfile,
            Some(libc::ENOMEM) | Some(libc::ENOBUFS) => Self::NoMem,
            Some(
                libc::ECONNABORTED
                | libc::ECONNRESET
                | libc::EPROTO
                | libc::EPERM
                | libc::EINTR
                | libc::ETIMEDOUT
                | libc::EHOSTUNREACH
                | libc::ENETUNREACH
                | libc::ENETDOWN
                | libc::ENOPROTOOPT
                | libc::EOPNOTSUPP,
            ) => Self::Connection,
            _ => Self::Other,
        }
    }
}

/// A state change of one connection, passed to hooks registered with
/// [`ConnectionRegistry::on_state_change`](crate::server::ConnectionRegistry::on_state_change).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConnectionEvent {
    /// The connection id.
    pub id: u64,
    /// The peer's address.
    pub peer_addr: SocketAddr,
    /// Our address.
    pub local_addr: SocketAddr,
    /// The state it left.
    pub from: ConnState,
    /// The state it entered.
    pub to: ConnState,
    /// How it ended, when `to` is [`ConnState::Closed`].
    pub close: Option<CloseInfo>,
}

/// Cumulative counters of a listener since it was bound; [`since`](Self::since) and
/// [`ConnectionRegistry::intervals`](super::ConnectionRegistry::intervals) give the counts of an
/// interval.
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RegistryTotals {
    /// Connections accepted.
    pub opened: u64,
    /// Connections closed.
    pub closed: u64,
    /// Connections closed with a reset by abort-close (no TIME_WAIT).
    pub aborted: u64,
    /// Requests started on closed connections.
    pub requests_on_closed: u64,
    /// Accept errors (the listener backed off and kept serving).
    pub accept_errors: u64,
    /// Peers that half-closed while a request was in flight.
    pub half_closed_in_flight: u64,
    /// Connections cut at the shutdown deadline.
    pub shutdown_cut: u64,
    /// Connections opened while the tracking bound was reached: served, and reached by
    /// shutdown, but not listed in snapshots.
    pub untracked: u64,
    /// Requests read on closed connections whose response never ended: cut at the shutdown
    /// deadline, cancelled by the peer's close (HTTP/2, or [`HalfClose::Cancel`]), or cut by an
    /// error or a timeout. Every request read is either answered or counted here.
    ///
    /// [`HalfClose::Cancel`]: crate::server::HalfClose::Cancel
    pub requests_unanswered: u64,
    /// HTTP/2 connections closed because the peer left them open after GOAWAY, with no stream
    /// open, for longer than the grace (see
    /// [`ConnectionLimitsBuilder::goaway_grace`](crate::server::ConnectionLimitsBuilder::goaway_grace)).
    pub goaway_grace_expired: u64,
    /// Connections whose first answered request never passed through the layer
    /// ([`TrackConnection`](crate::server::TrackConnection) /
    /// [`TrackConnectionLayer`](crate::server::TrackConnectionLayer)):
    /// served by `axum::serve(listener, app)` without it. Their limits hold; request-level
    /// tracking does not. The first one logs a warning.
    pub served_without_layer: u64,
    pub(super) closed_by_reason: [u64; REASONS],
    pub(super) closed_by_closer: [u64; 5],
}

impl RegistryTotals {
    /// Connections closed for a reason.
    pub fn closed_for(&self, reason: CloseReason) -> u64 {
        self.closed_by_reason[reason.index()]
    }

    /// Connections closed with this closer first.
    pub fn closed_by(&self, closer: Closer) -> u64 {
        self.closed_by_closer[closer as usize]
    }

    /// What happened between `earlier` (totals taken before) and these.
    pub fn since(&self, earlier: &RegistryTotals) -> RegistryTotals {
        let d = |a: u64, b: u64| a.saturating_sub(b);
        RegistryTotals {
            opened: d(self.opened, earlier.opened),
            closed: d(self.closed, earlier.closed),
            aborted: d(self.aborted, earlier.aborted),
            requests_on_closed: d(self.requests_on_closed, earlier.requests_on_closed),
            accept_errors: d(self.accept_errors, earlier.accept_errors),
            half_closed_in_flight: d(self.half_closed_in_flight, earlier.half_closed_in_flight),
            shutdown_cut: d(self.shutdown_cut, earlier.shutdown_cut),
            untracked: d(self.untracked, earlier.untracked),
            requests_unanswered: d(self.requests_unanswered, earlier.requests_unanswered),
            goaway_grace_expired: d(self.goaway_grace_expired, earlier.goaway_grace_expired),
            served_without_layer: d(self.served_without_layer, earlier.served_without_layer),
            closed_by_reason: std::array::from_fn(|k| {
                d(self.closed_by_reason[k], earlier.closed_by_reason[k])
            }),
            closed_by_closer: std::array::from_fn(|k| {
                d(self.closed_by_closer[k], earlier.closed_by_closer[k])
            }),
        }
    }
}

/// Named counts, the close reasons and closers that occurred only.
impl std::fmt::Debug for RegistryTotals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let reasons =
            crate::close::NonZero(CloseReason::ALL.map(|r| (r.as_str(), self.closed_for(r))));
        let closers = crate::close::NonZero(Closer::ALL.map(|c| (c.as_str(), self.closed_by(c))));
        f.debug_struct("RegistryTotals")
            .field("opened", &self.opened)
            .field("closed", &self.closed)
            .field("closed_for", &reasons)
            .field("closed_by", &closers)
            .field("aborted", &self.aborted)
            .field("requests_on_closed", &self.requests_on_closed)
            .field("requests_unanswered", &self.requests_unanswered)
            .field("accept_errors", &self.accept_errors)
            .field("half_closed_in_flight", &self.half_closed_in_flight)
            .field("shutdown_cut", &self.shutdown_cut)
            .field("untracked", &self.untracked)
            .field("goaway_grace_expired", &self.goaway_grace_expired)
            .field("served_without_layer", &self.served_without_layer)
            .finish()
    }
}

/// A listener's live connections and totals at one moment.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RegistrySnapshot {
    /// The listener's name.
    pub listener: String,
    /// Live connections, in accept order (at most the tracking bound, the oldest first).
    pub connections: Vec<ConnectionSnapshot>,
    /// Cumulative counters.
    pub totals: RegistryTotals,
}

impl RegistrySnapshot {
    /// Live connections in a state.
    pub fn count_in(&self, state: ConnState) -> usize {
        self.connections.iter().filter(|c| c.state == state).count()
    }
}

/// How a graceful shutdown went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Connections open when shutdown began.
    pub open_at_start: usize,
    /// Connections that closed on their own before the deadline.
    pub drained: usize,
    /// Connections still active at the deadline, and cut.
    pub cut: usize,
}
