use std::{
    fmt,
    io::{self, IoSlice},
    os::fd::AsRawFd,
    pin::Pin,
    sync::{atomic::Ordering, Arc},
    task::{Context, Poll, Waker},
    time::Duration,
};

use hyper_util::client::legacy::connect::{Connected, Connection};
use socket2::SockRef;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    sync::OwnedSemaphorePermit,
    time::Instant,
};

use super::{
    config::{CloseOrder, UpstreamConfig},
    conn::{ClientConn, CloseReason, ConnectionHandle},
};
use crate::{
    close::Closer,
    conn::{
        lifecycle::{Due, Lifecycle, Limits, GOAWAY_GRACE},
        timer::Timer,
        wire::{Change, Wire},
    },
    policy::Linger,
    sys,
    transport::Transport,
};

use super::stream::UpstreamIo;

/// What the stream now answers in place of the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Injected {
    /// We close first: the stack sees the connection end, drops it from its pool and closes.
    Eof,
    WriteTimeout,
}

impl Injected {
    fn error(self) -> Option<io::Error> {
        match self {
            Injected::Eof => None,
            Injected::WriteTimeout => Some(io::Error::new(
                io::ErrorKind::TimedOut,
                "request bytes made no progress within the write timeout",
            )),
        }
    }

    fn read_result(self) -> io::Result<()> {
        self.error().map_or(Ok(()), Err)
    }
}

/// The limits of an upstream's connections, as the connection core takes them.
fn limits(cfg: &UpstreamConfig, idle: Duration) -> Limits {
    Limits {
        // A client waits for responses: the per-request timeouts bound that, not the stream.
        header: None,
        idle: Some(idle),
        max_age: cfg.max_age,
        max_requests: cfg.max_requests,
        write: cfg.write_timeout,
        // The server closing is never held back on a client.
        finish_half_closed: false,
        goaway_grace: GOAWAY_GRACE,
    }
}

/// An outbound TCP connection, tracked from connect to close.
///
/// Follows the bytes both ways to know where each request and response starts and ends
/// (HTTP/1 framing, HTTP/2 frames): the connection is leased from the first byte of a request
/// until its response has been read to its end, whatever happens to the response's lease. At
/// a message boundary it closes itself when its upstream's idle timeout, max age, max requests
/// or max idle says so (the HTTP stack then sees the connection end before it could reuse it);
/// it cuts request bytes that make no progress within the write timeout, and records at drop
/// who closed first and why.
///
/// Over TLS it sits above the TLS layer ([`Transport`]): it follows the HTTP bytes themselves,
/// while the socket beneath still tells who sent FIN first and carries the socket policy.
pub struct UpstreamStream<T: Transport = UpstreamIo> {
    inner: Option<T>,
    conn: Arc<ClientConn>,
    life: Lifecycle,
    timer: Timer,
    /// Something changed since the deadlines were last computed.
    dirty: bool,
    /// The waker last registered in the connection's `io_waker`.
    waker: Option<Waker>,
    /// The connection's wake count when that waker was registered.
    wakes_seen: u32,
    /// The wake count when the deadlines were last computed.
    wakes_computed: u32,
    injected: Option<Injected>,
    /// The connection was last published as leased rather than idle.
    busy: bool,
    shutdown_started: bool,
    peer_fin_first: bool,
    error: Option<CloseReason>,
    abort: bool,
    _permit: Option<OwnedSemaphorePermit>,
}

impl<T: Transport> fmt::Debug for UpstreamStream<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamStream")
            .field("connection", &ConnectionHandle(self.conn.clone()))
            .finish_non_exhaustive()
    }
}

impl<T: Transport> UpstreamStream<T> {
    pub(crate) fn new(
        stream: T,
        conn: Arc<ClientConn>,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Self {
        let up = &conn.upstream;
        let limits = limits(up.config(), up.idle_timeout());
        let life = Lifecycle::new(Wire::client(conn.http2), limits, conn.opened);
        Self {
            inner: Some(stream),
            conn,
            life,
            timer: Timer::default(),
            dirty: true,
            waker: None,
            wakes_seen: 0,
            wakes_computed: 0,
            injected: None,
            busy: false,
            shutdown_started: false,
            peer_fin_first: false,
            error: None,
            abort: false,
            _permit: permit,
        }
    }

    /// The connection's handle.
    pub fn connection(&self) -> ConnectionHandle {
        ConnectionHandle(self.conn.clone())
    }

    /// The stream beneath: the socket, or TLS over it; [`Transport::socket`] reaches the
    /// socket either way (to read its options back, say).
    pub fn get_ref(&self) -> &T {
        match &self.inner {
            Some(inner) => inner,
            None => unreachable!("the stream beneath is taken only when dropped"),
        }
    }

    fn inject(&mut self, what: Injected) {
        if self.injected.is_none_or(|i| i == Injected::Eof) {
            self.injected = Some(what);
        }
    }

    /// Publishes what a chunk of bytes changed: the state, max requests.
    fn publish(&mut self, change: Change) {
        self.dirty |= self.life.take_moved();
        if change == Change::default() {
            return;
        }
        let c = &*self.conn;
        if change.messages {
            c.wire_requests
                .store(self.life.wire.requests(), Ordering::Relaxed);
            if self.life.max_requests_reached() && c.retire_reason().is_none() {
                c.retire(CloseReason::MaxRequests);
            }
        }
        let busy = !self.life.wire.at_boundary();
        if busy != self.busy {
            self.busy = busy;
            if busy {
                c.became_busy();
            } else {
                c.became_idle();
            }
        }
    }

    /// Registers this task in the connection's `io_waker`, unless the waker registered last
    /// is this task's and no wake has taken it since.
    fn register_io(&mut self, cx: &mut Context<'_>) {
        let c = &*self.conn;
        let wakes = c.io_wakes.load(Ordering::Acquire);
        if wakes == self.wakes_seen && self.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker()))
        {
            return;
        }
        c.io_waker.register(cx.waker());
        self.waker = Some(cx.waker().clone());
        self.wakes_seen = wakes;
    }

    /// The deadlines, on the way to `Pending` (or after bytes when the timer already fired).
    /// `Some` is what the stream answers now in place of the socket.
    fn poll_deadlines(&mut self, cx: &mut Context<'_>) -> Option<Injected> {
        for _ in 0..4 {
            // A wake from outside (a retirement, a keep-alive timeout learned) moves them too.
            let wakes = self.conn.io_wakes.load(Ordering::Acquire);
            if wakes != self.wakes_computed {
                self.wakes_computed = wakes;
                self.dirty = true;
            }
            if self.dirty {
                self.dirty = false;
                let retiring = self.conn.retire_reason().is_some();
                self.life.set_idle(Some(self.conn.upstream.idle_timeout()));
                let now = Instant::now();
                if let Some(due) = self.life.arm(&mut self.timer, now, retiring) {
                    if let Some(injected) = self.act(due, now) {
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
    fn act(&mut self, due: Due, now: Instant) -> Option<Injected> {
        let conn = self.conn.clone();
        let c = &*conn;
        let (reason, injected) = match due {
            // No header timeout on a client; the idle timeout counts from the last byte of
            // bytes that cannot be framed.
            Due::Header | Due::Idle => (CloseReason::IdleTimeout, Injected::Eof),
            Due::MaxAge => {
                c.retire(CloseReason::MaxAge);
                return None;
            }
            Due::Retire | Due::GoawayGrace => (
                c.retire_reason().unwrap_or(CloseReason::Discarded),
                Injected::Eof,
            ),
            Due::WriteCheck => {
                let queue = self
                    .inner
                    .as_ref()
                    .and_then(|s| sys::send_queue(s.socket().as_raw_fd()));
                if !self.life.check_write(now, queue) {
                    return None;
                }
                self.abort = true;
                self.error = Some(CloseReason::WriteTimeout);
                (CloseReason::WriteTimeout, Injected::WriteTimeout)
            }
        };
        c.set_close_reason(reason);
        self.inject(injected);
        Some(injected)
    }

    fn note_fin_order(&mut self) {
        if self.peer_fin_first {
            return;
        }
        self.peer_fin_first = self
            .inner
            .as_ref()
            .is_some_and(|s| sys::peer_sent_fin(s.socket()));
    }

    fn record_error(&mut self, e: &io::Error) {
        self.error.get_or_insert(match e.kind() {
            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => CloseReason::Reset,
            _ => CloseReason::Error,
        });
    }

    fn wants_abort(&self) -> bool {
        let up = &self.conn.upstream;
        (up.config().close_order == CloseOrder::AbortOnIdle
            || up.policy().linger() == Linger::Abort)
            && !self.peer_fin_first
            && self.error.is_none()
            && self.life.wire.at_boundary()
    }

    /// The server sent GOAWAY before we did: on HTTP/2 that is the server closing first,
    /// whichever FIN then goes out first.
    fn peer_goaway_first(&self) -> bool {
        self.life.wire.h2().is_some_and(|h| h.peer_goaway_first)
    }

    /// Who closed first and why.
    fn close_info(&self) -> (Closer, CloseReason) {
        let c = &*self.conn;
        let peer_first = self.peer_fin_first || self.peer_goaway_first();
        let reason = match self.error {
            Some(e) => e,
            None if peer_first => CloseReason::ServerClosed,
            None => c
                .close_reason()
                .filter(|r| *r != CloseReason::ServerClosed)
                .or_else(|| c.retire_reason())
                .unwrap_or(CloseReason::Discarded),
        };
        let closer = reason.forced_closer().unwrap_or(if peer_first {
            Closer::Peer
        } else {
            Closer::Local
        });
        (closer, reason)
    }
}

impl<T: Transport> Connection for UpstreamStream<T> {
    fn connected(&self) -> Connected {
        let connected = Connected::new().extra(ConnectionHandle(self.conn.clone()));
        if self.conn.http2 {
            connected.negotiated_h2()
        } else {
            connected
        }
    }
}

impl<T: Transport> AsyncRead for UpstreamStream<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(injected) = this.injected {
            return Poll::Ready(injected.read_result());
        }
        // Read first: bytes or an end from the server win over our own deadline, and the
        // timer and waker are touched only on the way to `Pending`.
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
        };
        let before = buf.filled().len();
        match Pin::new(inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let read = &buf.filled()[before..];
                if read.is_empty() {
                    return this.read_eof();
                }
                let c = &*this.conn;
                if c.awaiting_response.load(Ordering::Relaxed) {
                    c.awaiting_response.store(false, Ordering::Release);
                }
                let change = this.life.received(read);
                this.publish(change);
                // A server that keeps trickling bytes never lets the read go `Pending`: look
                // at a timer that fired here too (a flag read, no clock). What is due is
                // answered on the next read; these bytes are delivered.
                if this.timer.is_elapsed() && this.poll_deadlines(cx).is_some() {
                    cx.waker().wake_by_ref();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => {
                this.read_error(&e);
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

impl<T: Transport> UpstreamStream<T> {
    #[cold]
    fn read_eof(&mut self) -> Poll<io::Result<()>> {
        if !self.shutdown_started {
            self.peer_fin_first = true;
        }
        let _ = self.life.peer_eof();
        self.conn.set_close_reason(CloseReason::ServerClosed);
        Poll::Ready(Ok(()))
    }

    /// A read failed. Over TLS, a server that closes its socket without a `close_notify`
    /// (many do, on an idle connection) fails the read with `UnexpectedEof`: the server
    /// closed first all the same, as its FIN says.
    #[cold]
    fn read_error(&mut self, e: &io::Error) {
        if e.kind() == io::ErrorKind::UnexpectedEof && !self.shutdown_started {
            self.note_fin_order();
            if self.peer_fin_first {
                let _ = self.life.peer_eof();
                self.conn.set_close_reason(CloseReason::ServerClosed);
                return;
            }
        }
        self.record_error(e);
    }

    fn before_write(&self) {
        if !self.conn.http2 {
            // Request bytes: until a response byte arrives, a failure of this connection is a
            // failure before any response byte (what makes a replayable request safe to retry).
            self.conn.awaiting_response.store(true, Ordering::Release);
        }
    }

    /// Follows `n` written bytes of `bufs`.
    fn sent_vectored(&mut self, bufs: &[IoSlice<'_>], mut n: usize) {
        for b in bufs {
            if n == 0 {
                break;
            }
            let take = n.min(b.len());
            let change = self.life.sent(&b[..take]);
            self.publish(change);
            n -= take;
        }
    }

    fn after_write(&mut self, cx: &mut Context<'_>, res: &Poll<io::Result<usize>>) {
        match res {
            // A request started: the write watch may have started, and the stack may not poll
            // the read side again before it is due, so the timer is armed here.
            Poll::Ready(Ok(_)) => {
                if self.dirty && self.poll_deadlines(cx).is_some() {
                    // The reader answers what was injected.
                    cx.waker().wake_by_ref();
                }
            }
            Poll::Ready(Err(e)) => self.record_error(e),
            Poll::Pending => {
                self.life.write_blocked();
                self.dirty = true;
                if self.poll_deadlines(cx).is_some() {
                    cx.waker().wake_by_ref();
                }
            }
        }
    }

    /// An error the write side answers in place of the socket.
    fn write_refusal(&self) -> Option<io::Error> {
        self.injected.and_then(Injected::error)
    }
}

impl<T: Transport> AsyncWrite for UpstreamStream<T> {
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
        this.before_write();
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
        match self.get_mut().inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.shutdown_started {
            this.shutdown_started = true;
            this.note_fin_order();
            this.conn.closing();
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

impl<T: Transport> Drop for UpstreamStream<T> {
    fn drop(&mut self) {
        if !self.shutdown_started {
            self.note_fin_order();
        }
        let (closer, reason) = self.close_info();
        let abort = self.abort || self.wants_abort();
        let c = self.conn.clone();
        let mut aborted = false;
        if let Some(stream) = self.inner.take() {
            if abort {
                // SO_LINGER zero: close() sends RST at once and never blocks.
                aborted = SockRef::from(stream.socket())
                    .set_linger(Some(Duration::ZERO))
                    .is_ok();
            }
            drop(stream);
        }
        c.closing();
        c.upstream.closed(&c, closer, reason, aborted);
    }
}
