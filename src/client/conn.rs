use std::{
    fmt,
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, SystemTime},
};

use futures_util::task::AtomicWaker;
use tokio::time::Instant;

use super::observer::ConnObserver;
use crate::lease::RawLease;

/// The state of an outbound connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConnState {
    /// In the pool, waiting for a request.
    Idle,
    /// Carrying requests: bytes of a request were written and its response has not been read
    /// to its end (HTTP/2: a stream is open). Followed from the bytes on the connection, not
    /// from the lease: a response whose body the HTTP stack read whole leaves the connection
    /// idle, and reusable, even while its lease is still held.
    Leased,
    /// Being closed.
    Closing,
    /// Gone.
    Closed,
}

impl ConnState {
    /// The state's name as used in metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            ConnState::Idle => "idle",
            ConnState::Leased => "leased",
            ConnState::Closing => "closing",
            ConnState::Closed => "closed",
        }
    }

    const fn from_u8(v: u8) -> Self {
        match v {
            0 => ConnState::Idle,
            1 => ConnState::Leased,
            2 => ConnState::Closing,
            _ => ConnState::Closed,
        }
    }
}

/// Why an outbound connection closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseReason {
    /// Idle longer than the effective idle timeout (closed by us, before the server would).
    IdleTimeout,
    /// Retired after reaching the maximum connection age.
    MaxAge,
    /// Retired after serving the maximum number of requests.
    MaxRequests,
    /// Closed because the upstream already had its maximum of idle connections.
    MaxIdle,
    /// The server closed it first.
    ServerClosed,
    /// The server reset it.
    Reset,
    /// Another I/O error ended it.
    Error,
    /// The HTTP stack dropped it (the client was dropped, a request was cancelled mid-message,
    /// or the pool discarded it).
    Discarded,
    /// Its pending output (a request or its body) made no progress within the write timeout:
    /// the upstream stopped reading. Reset, so the send buffer is freed at once.
    WriteTimeout,
}

impl CloseReason {
    /// Every reason, in label order.
    pub const ALL: [CloseReason; 9] = [
        CloseReason::IdleTimeout,
        CloseReason::MaxAge,
        CloseReason::MaxRequests,
        CloseReason::MaxIdle,
        CloseReason::ServerClosed,
        CloseReason::Reset,
        CloseReason::Error,
        CloseReason::Discarded,
        CloseReason::WriteTimeout,
    ];

    /// The closer a reason decides (a reset, an error, a write timeout); `None` for a reason
    /// the FIN order decides, local or peer.
    pub(crate) const fn forced_closer(self) -> Option<crate::close::Closer> {
        match self {
            CloseReason::Reset => Some(crate::close::Closer::Reset),
            CloseReason::Error => Some(crate::close::Closer::Error),
            CloseReason::WriteTimeout => Some(crate::close::Closer::Timeout),
            _ => None,
        }
    }

    /// The reason's name as used in metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::MaxAge => "max_age",
            CloseReason::MaxRequests => "max_requests",
            CloseReason::MaxIdle => "max_idle",
            CloseReason::ServerClosed => "server_closed",
            CloseReason::Reset => "reset",
            CloseReason::Error => "error",
            CloseReason::Discarded => "discarded",
            CloseReason::WriteTimeout => "write_timeout",
        }
    }

    pub(crate) const fn index(self) -> usize {
        self as usize
    }

    fn from_u8(v: u8) -> Option<Self> {
        Self::ALL.get(usize::from(v).checked_sub(1)?).copied()
    }

    fn to_u8(self) -> u8 {
        self as u8 + 1
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A point-in-time view of one outbound connection.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConnectionSnapshot {
    /// Connection id, unique per upstream.
    pub id: u64,
    /// Our address (source ip and ephemeral port).
    pub local_addr: SocketAddr,
    /// The upstream's address.
    pub peer_addr: SocketAddr,
    /// When it was opened.
    pub opened_at: SystemTime,
    /// Time since it was opened.
    pub age: Duration,
    /// Responses received on it (its reuse).
    pub requests: u64,
    /// Its state.
    pub state: ConnState,
    /// It speaks HTTP/2 (prior knowledge, or chosen by ALPN), rather than HTTP/1.1.
    pub http2: bool,
    /// It runs over TLS (an `https://` upstream).
    pub tls: bool,
    /// Where the request it carries was made (the lease's call site), while a response is in
    /// flight; `None` otherwise, and for a lease its tracker does not list (beyond
    /// [`max_tracked`](crate::lease::LeaseTrackerBuilder::max_tracked)).
    pub lease_site: Option<&'static std::panic::Location<'static>>,
}

/// State shared by an outbound stream, its responses and the upstream registry.
pub(crate) struct ClientConn {
    pub(crate) id: u64,
    /// The upstream it belongs to: its settings, and who hears of its states and its close.
    pub(crate) upstream: Arc<dyn ConnObserver>,
    pub(crate) local: SocketAddr,
    pub(crate) peer: SocketAddr,
    pub(crate) opened: Instant,
    opened_system: SystemTime,
    state: AtomicU8,
    pub(crate) requests: AtomicU64,
    /// Requests its stream wrote, as the wire counts them (HTTP/1 heads, HTTP/2 streams),
    /// whichever stack sent them; the stream is the only writer.
    pub(crate) wire_requests: AtomicU64,
    /// Responses on it whose lease has not ended.
    pub(crate) in_flight: AtomicU32,
    retire_reason: AtomicU8,
    close_reason: AtomicU8,
    /// A request was written and no byte of its response has arrived yet.
    pub(crate) awaiting_response: AtomicBool,
    pub(crate) http2: bool,
    pub(crate) tls: bool,
    /// The stream's task, woken when something outside it changes its deadlines (a
    /// retirement, a keep-alive timeout learned from the server).
    pub(crate) io_waker: AtomicWaker,
    /// Wakes through `io_waker` so far, counted before each wake takes the waker.
    pub(crate) io_wakes: AtomicU32,
    /// The lease of the latest response, as its tracker's slot and id: plain stores on the
    /// request path, resolved to a call site only by a snapshot.
    lease_slot: AtomicUsize,
    lease_id: AtomicU64,
}

impl ClientConn {
    pub(crate) fn new(
        id: u64,
        upstream: Arc<dyn ConnObserver>,
        local: SocketAddr,
        peer: SocketAddr,
        http2: bool,
        tls: bool,
    ) -> Self {
        Self {
            id,
            upstream,
            local,
            peer,
            opened: Instant::now(),
            opened_system: SystemTime::now(),
            // Idle until a request is written on it: the pool may open a connection it then
            // does not use (checkout and connect race), and that one must idle out too.
            state: AtomicU8::new(0),
            requests: AtomicU64::new(0),
            wire_requests: AtomicU64::new(0),
            in_flight: AtomicU32::new(0),
            retire_reason: AtomicU8::new(0),
            close_reason: AtomicU8::new(0),
            awaiting_response: AtomicBool::new(false),
            http2,
            tls,
            io_waker: AtomicWaker::new(),
            io_wakes: AtomicU32::new(0),
            lease_slot: AtomicUsize::new(usize::MAX),
            lease_id: AtomicU64::new(0),
        }
    }

    pub(crate) fn state(&self) -> ConnState {
        ConnState::from_u8(self.state.load(Ordering::Acquire))
    }

    /// Moves between idle and leased; returns true when it moved.
    fn set_state(&self, from: ConnState, to: ConnState) -> bool {
        // A load first: on the request path the move has often happened already (a response
        // on a connection the write already marked leased), and a failing CAS is as dear as
        // a successful one.
        if self.state.load(Ordering::Acquire) != from as u8 {
            return false;
        }
        let moved = self
            .state
            .compare_exchange(from as u8, to as u8, Ordering::SeqCst, Ordering::Acquire)
            .is_ok();
        if moved {
            self.upstream.transition(from, to);
        }
        moved
    }

    /// Marks the connection closing; returns the state it left.
    pub(crate) fn closing(&self) -> ConnState {
        let prev = ConnState::from_u8(self.state.swap(ConnState::Closing as u8, Ordering::AcqRel));
        if prev != ConnState::Closing && prev != ConnState::Closed {
            self.upstream.transition(prev, ConnState::Closing);
        }
        prev
    }

    pub(crate) fn closed(&self) {
        let prev = ConnState::from_u8(self.state.swap(ConnState::Closed as u8, Ordering::AcqRel));
        if prev != ConnState::Closed {
            self.upstream.transition(prev, ConnState::Closed);
        }
    }

    /// The stream saw request bytes written on an idle connection: it is leased.
    pub(crate) fn became_busy(&self) {
        self.set_state(ConnState::Idle, ConnState::Leased);
    }

    /// The stream saw the last response end: the connection is idle, or must retire when the
    /// upstream already holds its maximum of idle connections.
    pub(crate) fn became_idle(&self) {
        if self.upstream.idle_count() >= self.upstream.config().max_idle {
            self.retire(CloseReason::MaxIdle);
        }
        self.set_state(ConnState::Leased, ConnState::Idle);
    }

    /// Wakes the stream's task so it computes its deadlines again.
    pub(crate) fn wake_io(&self) {
        self.io_wakes.fetch_add(1, Ordering::AcqRel);
        self.io_waker.wake();
    }

    /// A response arrived on this connection; returns whether the connection must retire (max
    /// requests or max age reached, so it must leave the pool now), and the responses it has
    /// carried, this one included.
    pub(crate) fn response_started(&self, lease: Option<&RawLease>) -> (bool, u64) {
        let (slot, id) = lease.map_or((usize::MAX, 0), |l| (l.slot, l.id));
        // Slot, then id: a snapshot reading a new slot with an old id finds no such lease.
        self.lease_slot.store(slot, Ordering::Release);
        self.lease_id.store(id, Ordering::Release);
        let n = self.requests.fetch_add(1, Ordering::AcqRel) + 1;
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        let cfg = self.upstream.config();
        let retiring = if cfg.max_requests.is_some_and(|max| n >= max) {
            self.retire(CloseReason::MaxRequests);
            true
        } else if cfg.max_age.is_some_and(|age| self.opened.elapsed() >= age) {
            self.retire(CloseReason::MaxAge);
            true
        } else {
            self.retire_reason().is_some()
        };
        (retiring, n)
    }

    /// A response's lease ended (its body ended or was dropped); returns true when the
    /// connection must leave the pool (it is retiring).
    pub(crate) fn response_finished(&self) -> bool {
        // The site stays until the next response replaces it; a snapshot shows it only while
        // a response is in flight.
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.retire_reason().is_some()
    }

    /// Retires the connection: its stream closes it at the next message boundary (at once
    /// when idle).
    pub(crate) fn retire(&self, reason: CloseReason) {
        let set = self
            .retire_reason
            .compare_exchange(0, reason.to_u8(), Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if set {
            self.wake_io();
        }
    }

    pub(crate) fn retire_reason(&self) -> Option<CloseReason> {
        CloseReason::from_u8(self.retire_reason.load(Ordering::Acquire))
    }

    pub(crate) fn set_close_reason(&self, reason: CloseReason) {
        let _ = self.close_reason.compare_exchange(
            0,
            reason.to_u8(),
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    pub(crate) fn close_reason(&self) -> Option<CloseReason> {
        CloseReason::from_u8(self.close_reason.load(Ordering::Acquire))
    }

    pub(crate) fn snapshot(&self) -> ConnectionSnapshot {
        let state = self.state();
        ConnectionSnapshot {
            id: self.id,
            local_addr: self.local,
            peer_addr: self.peer,
            opened_at: self.opened_system,
            age: self.opened.elapsed(),
            // Responses this client's requests got, or, sent through another stack on the
            // client's connector, what the wire saw go out.
            requests: self
                .requests
                .load(Ordering::Acquire)
                .max(self.wire_requests.load(Ordering::Relaxed)),
            state,
            http2: self.http2,
            tls: self.tls,
            lease_site: (self.in_flight.load(Ordering::Acquire) > 0)
                .then(|| {
                    let id = self.lease_id.load(Ordering::Acquire);
                    let slot = self.lease_slot.load(Ordering::Acquire);
                    self.upstream.lease_site(slot, id)
                })
                .flatten(),
        }
    }
}

/// Identifies the outbound connection a response came on; found on its body
/// ([`LeasedBody::connection`](super::LeasedBody::connection)) until the body ends.
#[derive(Clone)]
pub struct ConnectionHandle(pub(crate) Arc<ClientConn>);

impl ConnectionHandle {
    /// Connection id, unique per upstream.
    pub fn id(&self) -> u64 {
        self.0.id
    }

    /// The upstream's name.
    pub fn upstream(&self) -> &str {
        self.0.upstream.name()
    }

    /// Our address (source ip and ephemeral port).
    pub fn local_addr(&self) -> SocketAddr {
        self.0.local
    }

    /// The upstream's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.0.peer
    }

    /// Responses received on this connection so far.
    pub fn requests(&self) -> u64 {
        self.0.requests.load(Ordering::Acquire)
    }
}

impl fmt::Debug for ConnectionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionHandle")
            .field("id", &self.0.id)
            .field("upstream", &self.0.upstream.name())
            .field("local_addr", &self.0.local)
            .finish()
    }
}
