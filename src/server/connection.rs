use std::{
    fmt,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering},
        Arc,
    },
    time::{Duration, SystemTime},
};

use futures_util::task::AtomicWaker;
use tokio::{sync::Notify, time::Instant};

pub use crate::close::Closer;

use super::observer::{ConnConfig, ConnObserver};

/// Where a connection is in its life, like Go's `http.Server.ConnState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConnState {
    /// Accepted; no request has started yet.
    New,
    /// At least one request is in flight (until its response body ends).
    Active,
    /// Keep-alive: between requests.
    Idle,
    /// The peer sent FIN while a request was in flight; the response is being finished.
    HalfClosed,
    /// We started closing it.
    Closing,
    /// Gone.
    Closed,
}

impl ConnState {
    /// The live states, as reported by the `conn_hygiene_server_connections` gauge.
    pub const LIVE: [ConnState; 5] = [
        ConnState::New,
        ConnState::Active,
        ConnState::Idle,
        ConnState::HalfClosed,
        ConnState::Closing,
    ];

    /// The state's name as used in metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            ConnState::New => "new",
            ConnState::Active => "active",
            ConnState::Idle => "idle",
            ConnState::HalfClosed => "half_closed",
            ConnState::Closing => "closing",
            ConnState::Closed => "closed",
        }
    }

    const fn from_u8(v: u8) -> Self {
        match v {
            0 => ConnState::New,
            1 => ConnState::Active,
            2 => ConnState::Idle,
            3 => ConnState::HalfClosed,
            4 => ConnState::Closing,
            _ => ConnState::Closed,
        }
    }

    pub(crate) const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for ConnState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a connection closed: our intent (a limit, a retirement, shutdown) or what the peer or
/// the network did. Independent of [`Closer`]: a connection retired with HTTP/2 GOAWAY for
/// `MaxRequests` may still see the client send the first FIN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseReason {
    /// Idle longer than the keep-alive idle timeout.
    IdleTimeout,
    /// A request header (or the first bytes) did not arrive within the header timeout.
    HeaderTimeout,
    /// Output pending for the peer made no progress within the write timeout (a peer that
    /// stopped reading, or an HTTP/2 response stalled on its flow control); closed with a reset
    /// so the send buffer is freed at once.
    WriteTimeout,
    /// The kernel gave up on the peer (keepalive probes or user timeout expired): a dead peer.
    PeerTimeout,
    /// Retired after reaching the maximum connection age.
    MaxAge,
    /// Retired after serving the maximum number of requests.
    MaxRequests,
    /// Retired on request through [`ConnectionHandle::retire`].
    Retired,
    /// Closed by graceful shutdown.
    Shutdown,
    /// Still active at the shutdown deadline, and cut.
    ShutdownDeadline,
    /// Closed by the HTTP stack or the application (`Connection: close`, HTTP/1.0, an error
    /// response).
    ServerClosed,
    /// The peer closed its side first.
    PeerClosed,
    /// The peer reset the connection.
    PeerReset,
    /// Another I/O error.
    IoError,
    /// The handshake beneath the tracking (TLS) failed: a client that does not speak TLS or
    /// trust the certificate, or a scanner.
    HandshakeFailed,
}

impl CloseReason {
    /// Every reason, in label order.
    pub const ALL: [CloseReason; 14] = [
        CloseReason::IdleTimeout,
        CloseReason::HeaderTimeout,
        CloseReason::WriteTimeout,
        CloseReason::PeerTimeout,
        CloseReason::MaxAge,
        CloseReason::MaxRequests,
        CloseReason::Retired,
        CloseReason::Shutdown,
        CloseReason::ShutdownDeadline,
        CloseReason::ServerClosed,
        CloseReason::PeerClosed,
        CloseReason::PeerReset,
        CloseReason::IoError,
        CloseReason::HandshakeFailed,
    ];

    /// The closer this reason implies regardless of FIN order, if any: timeouts cut the
    /// connection mid-message, errors end it without an orderly close.
    pub(crate) const fn forced_closer(self) -> Option<Closer> {
        match self {
            CloseReason::HeaderTimeout | CloseReason::WriteTimeout | CloseReason::PeerTimeout => {
                Some(Closer::Timeout)
            }
            CloseReason::PeerReset => Some(Closer::Reset),
            CloseReason::IoError | CloseReason::HandshakeFailed => Some(Closer::Error),
            CloseReason::ShutdownDeadline => Some(Closer::Local),
            _ => None,
        }
    }

    /// The reason's name as used in metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::HeaderTimeout => "header_timeout",
            CloseReason::WriteTimeout => "write_timeout",
            CloseReason::PeerTimeout => "peer_timeout",
            CloseReason::MaxAge => "max_age",
            CloseReason::MaxRequests => "max_requests",
            CloseReason::Retired => "retired",
            CloseReason::Shutdown => "shutdown",
            CloseReason::ShutdownDeadline => "shutdown_deadline",
            CloseReason::ServerClosed => "server_closed",
            CloseReason::PeerClosed => "peer_closed",
            CloseReason::PeerReset => "peer_reset",
            CloseReason::IoError => "io_error",
            CloseReason::HandshakeFailed => "handshake_failed",
        }
    }

    pub(crate) const fn index(self) -> usize {
        self as usize
    }

    fn to_u8(self) -> u8 {
        self as u8 + 1
    }

    fn from_u8(v: u8) -> Option<Self> {
        Self::ALL.get(usize::from(v).checked_sub(1)?).copied()
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CloseInfo {
    /// Who closed first.
    pub closer: Closer,
    /// Why.
    pub reason: CloseReason,
    /// Closed with a reset (abort-close of an idle connection): no TIME_WAIT on either side.
    pub aborted: bool,
    /// From accept to close.
    pub lifetime: Duration,
    /// Requests read on it.
    pub requests: u64,
    /// Requests read on it whose response never ended: cut at the shutdown deadline, cancelled
    /// by the peer's close, or cut by an error or a timeout.
    pub unanswered: u64,
}

/// A point-in-time view of one live connection.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConnectionSnapshot {
    /// Unique (per listener) connection id, in accept order.
    pub id: u64,
    /// Our address.
    pub local_addr: SocketAddr,
    /// The peer's address.
    pub peer_addr: SocketAddr,
    /// When it was accepted.
    pub opened_at: SystemTime,
    /// Time since accept.
    pub age: Duration,
    /// Requests read on it (complete heads; HTTP/2: streams opened).
    pub requests: u64,
    /// Requests read whose response has not ended.
    pub in_flight: u32,
    /// Requests in a handler or a response body, as [`TrackConnection`](super::TrackConnection)
    /// counts them (0 without the layer).
    pub handlers: u32,
    /// Bytes read from the peer.
    pub bytes_in: u64,
    /// Bytes written to the peer.
    pub bytes_out: u64,
    /// Its state.
    pub state: ConnState,
    /// True when it will close at the next message boundary.
    pub retiring: bool,
}

pub(crate) mod flags {
    pub(crate) const H2: u8 = 1;
    pub(crate) const RETIRING: u8 = 1 << 2;
    pub(crate) const PEER_FIN: u8 = 1 << 3;
    pub(crate) const DRIVER: u8 = 1 << 4;
    pub(crate) const CUT: u8 = 1 << 5;
}

/// State shared by the stream, the layer and the registry for one connection.
pub(crate) struct ConnShared {
    pub(crate) id: u64,
    pub(crate) local: SocketAddr,
    pub(crate) peer: SocketAddr,
    pub(crate) opened: Instant,
    pub(crate) opened_system: SystemTime,
    state: AtomicU8,
    flags: AtomicU8,
    close_reason: AtomicU8,
    retire_reason: AtomicU8,
    /// Request heads read, as the stream's wire counts them.
    pub(crate) requests: AtomicU64,
    /// Responses ended, likewise.
    pub(crate) answered: AtomicU64,
    /// Requests the layer saw, numbering [`ConnectionInfo::request_number`].
    pub(crate) layer_requests: AtomicU64,
    /// Requests in a handler or a response body, as the layer counts them.
    pub(crate) handlers: AtomicU32,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    /// Wakes the task that reads the stream; only through [`wake_io`](Self::wake_io).
    pub(crate) io_waker: AtomicWaker,
    /// Wakes through `io_waker` so far, counted before each wake takes the waker: a stream
    /// that sees the count unchanged knows its registered waker is still in place.
    pub(crate) io_wakes: AtomicU32,
    /// Wakes the connection driver of [`Server`](super::Server) (GOAWAY, cut).
    pub(crate) driver: Notify,
    /// The settings of the listener it came from.
    pub(crate) config: Arc<ConnConfig>,
    /// Who hears of its state changes and its close (its listener's registry).
    pub(crate) observer: Arc<dyn ConnObserver>,
}

impl ConnShared {
    pub(crate) fn new(
        id: u64,
        local: SocketAddr,
        peer: SocketAddr,
        config: Arc<ConnConfig>,
        observer: Arc<dyn ConnObserver>,
    ) -> Self {
        Self {
            id,
            local,
            peer,
            opened: Instant::now(),
            opened_system: SystemTime::now(),
            state: AtomicU8::new(ConnState::New as u8),
            flags: AtomicU8::new(0),
            close_reason: AtomicU8::new(0),
            retire_reason: AtomicU8::new(0),
            requests: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            layer_requests: AtomicU64::new(0),
            handlers: AtomicU32::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            io_waker: AtomicWaker::new(),
            io_wakes: AtomicU32::new(0),
            driver: Notify::new(),
            config,
            observer,
        }
    }

    pub(crate) fn state(&self) -> ConnState {
        ConnState::from_u8(self.state.load(Ordering::Acquire))
    }

    /// Wakes the task reading the stream, counting the wake first (see `io_wakes`).
    pub(crate) fn wake_io(&self) {
        self.io_wakes.fetch_add(1, Ordering::AcqRel);
        self.io_waker.wake();
    }

    /// Moves to `to` unless the connection is already closing or closed (or, for `Idle`, unless
    /// it is no longer `Active`). Returns the previous state when it moved.
    ///
    /// Only the connection's own stream moves its state (from its reads, writes and drop), so a
    /// load and a store suffice: no other writer can come between them.
    #[inline]
    pub(crate) fn transition(&self, to: ConnState) -> Option<ConnState> {
        let from = ConnState::from_u8(self.state.load(Ordering::Acquire));
        let allowed = match to {
            ConnState::Active => matches!(from, ConnState::New | ConnState::Idle),
            ConnState::Idle => from == ConnState::Active,
            ConnState::HalfClosed => {
                matches!(from, ConnState::New | ConnState::Active | ConnState::Idle)
            }
            ConnState::Closing => from != ConnState::Closed && from != ConnState::Closing,
            ConnState::Closed => from != ConnState::Closed,
            ConnState::New => false,
        };
        if !allowed {
            return None;
        }
        self.state.store(to as u8, Ordering::Release);
        // State gauges are counted from the live connections when metrics are collected; the
        // observer hears of each change only when someone subscribed to them.
        if self.config.report_transitions.load(Ordering::Relaxed) {
            self.observer.transition(self, from, to);
        }
        Some(from)
    }

    pub(crate) fn force_closed(&self) {
        self.state.store(ConnState::Closed as u8, Ordering::Release);
    }

    #[inline]
    pub(crate) fn has(&self, flag: u8) -> bool {
        self.flags.load(Ordering::Acquire) & flag != 0
    }

    /// Sets a flag; true when this call set it.
    pub(crate) fn set(&self, flag: u8) -> bool {
        self.flags.fetch_or(flag, Ordering::AcqRel) & flag == 0
    }

    /// Records why the connection is closing; the first reason wins.
    pub(crate) fn set_close_reason(&self, reason: CloseReason) {
        let _ = self.close_reason.compare_exchange(
            0,
            reason.to_u8(),
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    /// Overrides the close reason (a cut at the shutdown deadline is always reported as such).
    pub(crate) fn force_close_reason(&self, reason: CloseReason) {
        self.close_reason.store(reason.to_u8(), Ordering::Release);
    }

    pub(crate) fn close_reason(&self) -> Option<CloseReason> {
        CloseReason::from_u8(self.close_reason.load(Ordering::Acquire))
    }

    pub(crate) fn retire_reason(&self) -> Option<CloseReason> {
        CloseReason::from_u8(self.retire_reason.load(Ordering::Acquire))
    }

    /// Asks the connection to close at its next message boundary.
    pub(crate) fn retire(&self, reason: CloseReason) {
        let _ = self.retire_reason.compare_exchange(
            0,
            reason.to_u8(),
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        if self.set(flags::RETIRING) {
            self.wake_io();
            self.driver.notify_one();
        }
    }

    /// Cuts the connection now (shutdown deadline).
    pub(crate) fn cut(&self) {
        if self.set(flags::CUT) {
            self.force_close_reason(CloseReason::ShutdownDeadline);
            self.wake_io();
            self.driver.notify_one();
        }
    }

    #[inline]
    pub(crate) fn is_retiring(&self) -> bool {
        // A shutdown retires every connection: those open when it starts, and those registered
        // after (the registry looks at its flag once a connection is listed).
        self.has(flags::RETIRING)
    }

    /// A request reached the layer; returns its number on this connection.
    pub(crate) fn layer_request(&self, h2: bool) -> u64 {
        if h2 {
            self.set(flags::H2);
        }
        self.layer_requests.fetch_add(1, Ordering::AcqRel) + 1
    }

    pub(crate) fn snapshot(&self) -> ConnectionSnapshot {
        ConnectionSnapshot {
            id: self.id,
            local_addr: self.local,
            peer_addr: self.peer,
            opened_at: self.opened_system,
            age: self.opened.elapsed(),
            requests: self.requests.load(Ordering::Acquire),
            in_flight: self
                .requests
                .load(Ordering::Acquire)
                .saturating_sub(self.answered.load(Ordering::Acquire))
                .try_into()
                .unwrap_or(u32::MAX),
            handlers: self.handlers.load(Ordering::Acquire),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            state: self.state(),
            retiring: self.is_retiring(),
        }
    }
}

/// A handle to one tracked connection: read its numbers, or ask it to retire.
///
/// Cheap to clone. Found in every request's [`ConnectionInfo`], and on every
/// [`TrackedStream`](super::TrackedStream).
#[derive(Clone)]
pub struct ConnectionHandle(pub(crate) Arc<ConnShared>);

impl ConnectionHandle {
    /// The connection id, unique per listener, in accept order.
    pub fn id(&self) -> u64 {
        self.0.id
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.0.peer
    }

    /// Our address.
    pub fn local_addr(&self) -> SocketAddr {
        self.0.local
    }

    /// Time since accept.
    pub fn age(&self) -> Duration {
        self.0.opened.elapsed()
    }

    /// Requests read on this connection so far.
    pub fn requests(&self) -> u64 {
        self.0.requests.load(Ordering::Acquire)
    }

    /// The current state.
    pub fn state(&self) -> ConnState {
        self.0.state()
    }

    /// True when the connection will close at its next message boundary.
    pub fn is_retiring(&self) -> bool {
        self.0.is_retiring()
    }

    /// Closes the connection at its next message boundary: after the response in flight
    /// (HTTP/1 `Connection: close`, HTTP/2 GOAWAY), or at once when idle.
    pub fn retire(&self) {
        self.0.retire(CloseReason::Retired);
    }

    /// A snapshot of its numbers.
    pub fn snapshot(&self) -> ConnectionSnapshot {
        self.0.snapshot()
    }
}

impl fmt::Debug for ConnectionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionHandle")
            .field("id", &self.0.id)
            .field("peer_addr", &self.0.peer)
            .field("state", &self.0.state())
            .finish()
    }
}

/// Request extension added by [`TrackConnection`](super::TrackConnection): which connection
/// the request arrived on, and how far along that connection is.
#[derive(Clone, Debug)]
pub struct ConnectionInfo {
    pub(crate) connection: ConnectionHandle,
    pub(crate) request: u64,
}

impl ConnectionInfo {
    /// The connection id.
    pub fn id(&self) -> u64 {
        self.connection.id()
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.connection.peer_addr()
    }

    /// Our address.
    pub fn local_addr(&self) -> SocketAddr {
        self.connection.local_addr()
    }

    /// This request's number on the connection (1 for the first): the requests served on it,
    /// this one included.
    pub fn request_number(&self) -> u64 {
        self.request
    }

    /// The connection's age: the time since it was accepted, read when called (the request
    /// path itself reads no clock for it).
    pub fn age(&self) -> Duration {
        self.connection.0.opened.elapsed()
    }

    /// The connection itself.
    pub fn connection(&self) -> &ConnectionHandle {
        &self.connection
    }
}
