use std::{
    fmt,
    io::{self, IoSlice},
    os::fd::AsRawFd,
    pin::Pin,
    sync::{atomic::Ordering, Arc},
    task::{Context, Poll, Waker},
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
    sync::OwnedSemaphorePermit,
    time::Instant,
};

use self::goaway::{OwnFrame, GOAWAY};
use super::connection::{flags, CloseReason, ConnShared, ConnState, ConnectionHandle};
use crate::{
    conn::{
        lifecycle::{Due, Lifecycle, PeerEof},
        timer::Timer,
        wire::{Change, Wire},
    },
    sys,
};

mod close;
mod goaway;

pub use crate::transport::Transport;

/// What the stream now answers in place of the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Injected {
    Eof,
    HeaderTimeout,
    WriteTimeout,
    Cut,
}

impl Injected {
    fn error(self) -> Option<io::Error> {
        match self {
            Injected::Eof => None,
            Injected::HeaderTimeout => Some(io::Error::new(
                io::ErrorKind::TimedOut,
                "request header not received within the header timeout",
            )),
            Injected::WriteTimeout => Some(io::Error::new(
                io::ErrorKind::TimedOut,
                "pending output made no progress within the write timeout",
            )),
            Injected::Cut => Some(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "connection cut at the shutdown deadline",
            )),
        }
    }

    fn read_result(self) -> io::Result<()> {
        self.error().map_or(Ok(()), Err)
    }
}

/// An accepted TCP connection, tracked from accept to close.
///
/// Follows the bytes both ways to know where each request and response starts and ends
/// (HTTP/1 framing, HTTP/2 frames), and enforces the listener's limits from that: the header
/// timeout until a request head is complete, the idle timeout at a message boundary, max age,
/// max requests and retirement only at a message boundary, and the write timeout on output that
/// makes no progress. A peer's FIN after complete requests is held back until they are answered
/// ([`HalfClose::Finish`](super::HalfClose::Finish)); at drop it records who closed first and
/// why. Returned by [`HygienicListener::accept`](super::HygienicListener::accept).
pub struct TrackedStream<IO: Transport = TcpStream> {
    inner: Option<IO>,
    conn: ConnectionHandle,
    life: Lifecycle,
    timer: Timer,
    /// Something changed since the deadlines were last computed.
    dirty: bool,
    /// The connection was retiring when the deadlines were last computed.
    retiring_seen: bool,
    /// The waker last registered in the connection's `io_waker`.
    waker: Option<Waker>,
    /// The connection's wake count when that waker was registered.
    wakes_seen: u32,
    injected: Option<Injected>,
    driver_told: bool,
    /// What is left of a GOAWAY the stream wrote itself.
    own: OwnFrame,
    /// The connection was last published as busy (a request in progress) rather than idle.
    busy: bool,
    /// Bytes read and written: this stream is the only writer of the connection's counters.
    bytes_in: u64,
    bytes_out: u64,
    /// Whether the first response went through the layer was looked at.
    layer_checked: bool,
    shutdown_started: bool,
    peer_fin_first: bool,
    abort: bool,
    _permit: Option<OwnedSemaphorePermit>,
}

impl<IO: Transport> fmt::Debug for TrackedStream<IO> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrackedStream")
            .field("connection", &self.conn)
            .finish_non_exhaustive()
    }
}

impl<IO: Transport> TrackedStream<IO> {
    pub(crate) fn new(
        stream: IO,
        conn: Arc<ConnShared>,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Self {
        let life = Lifecycle::new(Wire::server(), conn.config.core, conn.opened);
        Self {
            inner: Some(stream),
            conn: ConnectionHandle(conn),
            life,
            timer: Timer::default(),
            dirty: true,
            retiring_seen: false,
            waker: None,
            wakes_seen: 0,
            injected: None,
            driver_told: false,
            own: OwnFrame::default(),
            busy: false,
            bytes_in: 0,
            bytes_out: 0,
            layer_checked: false,
            shutdown_started: false,
            peer_fin_first: false,
            abort: false,
            _permit: permit,
        }
    }

    /// The tracked connection.
    pub fn connection(&self) -> &ConnectionHandle {
        &self.conn
    }

    /// The stream beneath the tracking: the socket, or the layer over it (TLS).
    pub fn get_ref(&self) -> &IO {
        self.inner
            .as_ref()
            .expect("the stream is only taken when the tracked stream is dropped")
    }

    /// The TCP socket beneath.
    pub fn socket(&self) -> &TcpStream {
        self.get_ref().socket()
    }

    fn shared(&self) -> &ConnShared {
        &self.conn.0
    }

    fn inject(&mut self, what: Injected) {
        if self.injected.is_none_or(|i| i == Injected::Eof) {
            self.injected = Some(what);
        }
    }

    /// Publishes what a chunk of bytes changed: counts, state, max requests.
    fn publish(&mut self, change: Change) {
        self.dirty |= self.life.take_moved();
        if change == Change::default() {
            return;
        }
        let c = &self.conn.0;
        if change.messages {
            let wire = &self.life.wire;
            c.requests.store(wire.requests(), Ordering::Release);
            c.answered.store(wire.answered(), Ordering::Release);
            if wire.is_h2() && !c.has(flags::H2) {
                c.set(flags::H2);
            }
            if self.life.max_requests_reached() && !c.has(flags::RETIRING) {
                c.retire(CloseReason::MaxRequests);
            }
            // The layer counts a request before its response exists. Looked at once, on the
            // first HTTP/1 response that is not an error the stack may answer alone (a
            // malformed request); HTTP/2 streams can end by a reset before any service.
            if !self.layer_checked
                && wire.answered() > 0
                && wire.h1_response_status().is_some_and(|s| s < 400)
            {
                self.layer_checked = true;
                if c.layer_requests.load(Ordering::Relaxed) == 0 {
                    c.observer.served_without_layer();
                }
            }
        }
        let busy = !self.life.wire.at_boundary();
        if busy != self.busy {
            self.busy = busy;
            c.transition(if busy {
                ConnState::Active
            } else {
                ConnState::Idle
            });
        }
    }

    /// Registers this task in the connection's `io_waker`, unless the waker registered last
    /// is this task's and no wake has taken it since (the wake count is unchanged).
    fn register_io(&mut self, cx: &mut Context<'_>) {
        let c = &self.conn.0;
        let wakes = c.io_wakes.load(Ordering::Acquire);
        if wakes == self.wakes_seen && self.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker()))
        {
            return;
        }
        c.io_waker.register(cx.waker());
        self.waker = Some(cx.waker().clone());
        // The count read before registering: a wake counted since finds this waker, or took
        // the previous one; either way the next look registers again.
        self.wakes_seen = wakes;
    }

    /// The deadlines, on the way to `Pending` (or after a read when the timer already fired).
    /// `Some` is what the stream answers now in place of the socket.
    fn poll_deadlines(&mut self, cx: &mut Context<'_>) -> Option<Injected> {
        for _ in 0..4 {
            let retiring = self.shared().is_retiring();
            if retiring != self.retiring_seen {
                self.retiring_seen = retiring;
                self.dirty = true;
            }
            if self.dirty {
                self.dirty = false;
                let now = Instant::now();
                if let Some(due) =
                    self.life
                        .arm(&mut self.timer, now, retiring && !self.driver_told)
                {
                    if let Some(injected) = self.act(due, now, cx) {
                        return Some(injected);
                    }
                    self.dirty = true;
                    continue;
                }
            }
            match self.timer.poll(cx) {
                Poll::Pending => return None,
                Poll::Ready(()) => self.dirty = true,
            }
        }
        // Bounded: an instant that keeps being due is looked at again on the next poll.
        cx.waker().wake_by_ref();
        None
    }

    /// Acts on what is due; `Some` ends the connection.
    fn act(&mut self, due: Due, now: Instant, cx: &mut Context<'_>) -> Option<Injected> {
        let conn = self.conn.0.clone();
        let c = &*conn;
        let (reason, injected) = match due {
            Due::Header => (CloseReason::HeaderTimeout, Injected::HeaderTimeout),
            Due::Idle => (CloseReason::IdleTimeout, Injected::Eof),
            Due::MaxAge => {
                c.retire(CloseReason::MaxAge);
                return None;
            }
            Due::Retire => {
                // HTTP/2 announces the close with GOAWAY, then the grace bounds the wait. At
                // shutdown the serve loop's driver has the stack send it (its final GOAWAY
                // refuses streams opened later, which a peer may retry elsewhere). A retiring
                // connection gets ours: every stream the peer opens meanwhile is served.
                if self.life.wire.is_h2() && c.has(flags::DRIVER) && c.observer.is_shutting_down() {
                    self.driver_told = true;
                    c.driver.notify_one();
                    return None;
                }
                if self.goaway(cx) {
                    return None;
                }
                (self.retire_reason(), Injected::Eof)
            }
            Due::GoawayGrace => {
                c.observer.goaway_grace_expired();
                (self.retire_reason(), Injected::Eof)
            }
            Due::WriteCheck => {
                let queue = self
                    .inner
                    .as_ref()
                    .and_then(|s| sys::send_queue(s.socket().as_raw_fd()));
                if !self.life.check_write(now, queue) {
                    return None;
                }
                self.abort = true;
                (CloseReason::WriteTimeout, Injected::WriteTimeout)
            }
        };
        c.set_close_reason(reason);
        self.inject(injected);
        Some(injected)
    }

    /// HTTP/2 with no driver to send GOAWAY: the stream writes it, between the stack's frames,
    /// and the grace then bounds the wait. False when it cannot (HTTP/1, a frame half
    /// written, the send buffer full): the stream ends the connection instead.
    fn goaway(&mut self, cx: &mut Context<'_>) -> bool {
        let can = self
            .life
            .wire
            .h2()
            .is_some_and(|h| !h.goaway_sent && h.can_send_frame());
        let Some(inner) = self.inner.as_mut().filter(|_| can && self.own.is_empty()) else {
            return false;
        };
        if !self.own.write_goaway(inner, cx) {
            return false;
        }
        let change = self.life.sent(&GOAWAY);
        self.publish(change);
        true
    }

    /// Writes what is left of our own frame before any byte of the stack's.
    fn flush_own(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.inner.as_mut() {
            Some(inner) if !self.own.is_empty() => self.own.poll_flush(inner, cx),
            _ => Poll::Ready(Ok(())),
        }
    }

    fn retire_reason(&self) -> CloseReason {
        let c = self.shared();
        c.retire_reason()
            .unwrap_or(if c.observer.is_shutting_down() {
                CloseReason::Shutdown
            } else {
                CloseReason::Retired
            })
    }

    fn on_peer_eof(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let conn = self.conn.0.clone();
        let c = &*conn;
        c.set(flags::PEER_FIN);
        if !self.shutdown_started {
            self.peer_fin_first = true;
        }
        c.set_close_reason(CloseReason::PeerClosed);
        match self.life.peer_eof() {
            PeerEof::Deliver | PeerEof::Truncated => Poll::Ready(Ok(())),
            PeerEof::Cancel(_) => {
                c.observer.half_closed_in_flight();
                Poll::Ready(Ok(()))
            }
            PeerEof::Hold => {
                c.transition(ConnState::HalfClosed);
                c.observer.half_closed_in_flight();
                self.dirty = true;
                self.held(cx)
            }
        }
    }

    /// The peer's FIN is held back: wait for the responses (a write wakes this task), with the
    /// deadlines still running.
    fn held(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.life.eof_held() {
            return Poll::Ready(Ok(()));
        }
        self.register_io(cx);
        match self.poll_deadlines(cx) {
            Some(injected) => Poll::Ready(injected.read_result()),
            None => Poll::Pending,
        }
    }

    fn record_io_error(&self, err: &io::Error) {
        let reason = match err.kind() {
            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => CloseReason::PeerReset,
            io::ErrorKind::TimedOut => CloseReason::PeerTimeout,
            _ => CloseReason::IoError,
        };
        self.shared().set_close_reason(reason);
    }

    /// Follows `n` written bytes of `bufs`.
    fn sent_vectored(&mut self, bufs: &[IoSlice<'_>], n: usize) {
        let change = self.life.sent_vectored(bufs, n);
        self.publish(change);
    }

    fn after_write(&mut self, cx: &mut Context<'_>, res: &Poll<io::Result<usize>>) {
        match res {
            Poll::Ready(Ok(n)) => {
                self.bytes_out += *n as u64;
                self.conn
                    .0
                    .bytes_out
                    .store(self.bytes_out, Ordering::Relaxed);
                // A response ended: the deadlines moved, and the reader may not poll again
                // before they are due, so the timer is armed here. When the responses a held
                // FIN waited for are done, or something is due now, the reader (this task, in
                // hyper's HTTP/1 dispatcher) must look again.
                if self.dirty && (self.poll_deadlines(cx).is_some() || self.life.held_eof_due()) {
                    cx.waker().wake_by_ref();
                    self.shared().wake_io();
                }
            }
            Poll::Ready(Err(e)) => self.record_io_error(e),
            Poll::Pending => {
                self.life.write_blocked();
                self.dirty = true;
                if self.poll_deadlines(cx).is_some() {
                    // The reader answers what was injected.
                    cx.waker().wake_by_ref();
                }
            }
        }
    }

    /// An error the write side answers in place of the socket.
    fn write_refusal(&mut self) -> Option<io::Error> {
        if self.shared().has(flags::CUT) {
            self.inject(Injected::Cut);
        }
        self.injected.and_then(Injected::error)
    }
}

impl<IO: Transport> AsyncRead for TrackedStream<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(injected) = this.injected {
            return Poll::Ready(injected.read_result());
        }
        if this.conn.0.has(flags::CUT) {
            this.inject(Injected::Cut);
            return Poll::Ready(Injected::Cut.read_result());
        }
        if this.life.peer_closed() {
            return this.held(cx);
        }
        // Read first: timers and wake-ups only matter on the way to `Pending`.
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
        };
        let before = buf.filled().len();
        match Pin::new(inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let read = &buf.filled()[before..];
                if read.is_empty() {
                    return this.on_peer_eof(cx);
                }
                this.bytes_in += read.len() as u64;
                this.conn.0.bytes_in.store(this.bytes_in, Ordering::Relaxed);
                let change = this.life.received(read);
                this.publish(change);
                // A peer that keeps trickling bytes never lets the read go `Pending`: look at a
                // timer that fired here too (a flag read, no clock) so a header timeout cuts it.
                if this.timer.is_elapsed() {
                    if let Some(injected) = this.poll_deadlines(cx) {
                        return Poll::Ready(injected.read_result());
                    }
                }
                Poll::Ready(Ok(()))
            }
            // A TLS peer that closes without close_notify: its FIN, as over plain TCP (the
            // framing says whether a request was cut short).
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => this.on_peer_eof(cx),
            Poll::Ready(Err(e)) => {
                this.record_io_error(&e);
                Poll::Ready(Err(e))
            }
            Poll::Pending => {
                this.register_io(cx);
                match this.poll_deadlines(cx) {
                    Some(injected) => Poll::Ready(injected.read_result()),
                    None => Poll::Pending,
                }
            }
        }
    }
}

impl<IO: Transport> AsyncWrite for TrackedStream<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        // One path for every write: the bytes are followed the same way.
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(e) = this.write_refusal() {
            return Poll::Ready(Err(e));
        }
        std::task::ready!(this.flush_own(cx))?;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
        };
        let res = Pin::new(inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = res {
            this.sent_vectored(bufs, n);
        }
        this.after_write(cx, &res);
        res
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.flush_own(cx))?;
        match this.inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.shutdown_started {
            this.shutdown_started = true;
            this.shared().transition(ConnState::Closing);
            this.note_fin_order();
            // An abort-close sends RST instead of FIN: skip the FIN.
            this.abort = this.wants_abort();
        }
        if this.abort {
            return Poll::Ready(Ok(()));
        }
        match this.inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}
