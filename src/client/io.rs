use std::{
    fmt,
    future::Future,
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
    net::TcpStream,
    sync::OwnedSemaphorePermit,
    time::{Instant, Sleep},
};

use super::{
    config::CloseOrder,
    conn::{ClientCloseReason, ClientConn, ClientConnState, UpstreamConnection},
};
use crate::{close::Closer, conn::write_watch::WriteWatch, policy::Linger, sys};

/// An outbound TCP connection, tracked from connect to close.
///
/// Closes itself at a message boundary when its upstream's idle timeout, max age, max requests
/// or max idle says so (the HTTP stack then sees the connection end before it could reuse it),
/// and records at drop who closed first and why.
pub struct UpstreamStream {
    inner: Option<TcpStream>,
    conn: Arc<ClientConn>,
    timer: Option<Pin<Box<Sleep>>>,
    /// The timer is armed and not seen fired.
    timer_armed: bool,
    /// The timer was polled (so holds this task's waker) since it was armed, and was pending.
    timer_polled: bool,
    /// The waker last registered in the connection's `io_waker`.
    waker: Option<Waker>,
    /// The connection's wake count when the stream last looked.
    wakes_seen: u32,
    eof_injected: bool,
    shutdown_started: bool,
    peer_fin_first: bool,
    error: Option<ClientCloseReason>,
    abort: bool,
    /// Pending request bytes and their progress (the write timeout).
    watch: WriteWatch,
    /// The write timeout cut the connection: writes fail from then on.
    write_timed_out: bool,
    _permit: Option<OwnedSemaphorePermit>,
}

impl fmt::Debug for UpstreamStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamStream")
            .field("connection", &UpstreamConnection(self.conn.clone()))
            .finish_non_exhaustive()
    }
}

impl UpstreamStream {
    pub(crate) fn new(
        stream: TcpStream,
        conn: Arc<ClientConn>,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Self {
        let watch = WriteWatch::new(conn.upstream.config().write_timeout);
        Self {
            inner: Some(stream),
            conn,
            timer: None,
            timer_armed: false,
            timer_polled: false,
            waker: None,
            wakes_seen: 0,
            eof_injected: false,
            shutdown_started: false,
            peer_fin_first: false,
            error: None,
            abort: false,
            watch,
            write_timed_out: false,
            _permit: permit,
        }
    }

    /// The connection's handle.
    pub fn connection(&self) -> UpstreamConnection {
        UpstreamConnection(self.conn.clone())
    }

    /// Arms the timer at `at` and publishes the time for the response-end check
    /// ([`ClientConn::response_finished`]).
    fn arm(&mut self, at: Instant) {
        match &mut self.timer {
            Some(t) => t.as_mut().reset(at),
            None => self.timer = Some(Box::pin(tokio::time::sleep_until(at))),
        }
        self.timer_armed = true;
        self.timer_polled = false;
        self.conn.publish_timer(at);
    }

    /// Looks at the connection now: `Some` means close it now (a retirement, or its idle or
    /// age deadline passed); otherwise the timer is armed for the next look.
    ///
    /// A busy (leased) connection has no deadline of its own: its timer is a recheck at
    /// `now + idle timeout`. A response's end does not wake the stream when the armed timer
    /// fires no later than the connection's new deadline (the common case: the stream is
    /// left alone on the request path), and wakes it otherwise.
    fn decide(&mut self) -> Option<ClientCloseReason> {
        let conn = self.conn.clone();
        let c = &*conn;
        for _ in 0..2 {
            let now = Instant::now();
            let busy = c.busy();
            let (at, reason) = if busy {
                (now + c.upstream.idle_timeout(), None)
            } else if let Some(reason) = c.retire_reason() {
                return Some(reason);
            } else {
                let (at, reason) = c.next_idle_deadline();
                (at, Some(reason))
            };
            if reason.is_some() && at <= now {
                return reason;
            }
            // The write timeout's watch: its looks at the send queue share the timer.
            self.watch.start(now, 0);
            if self.watch.next_check().is_some_and(|c| c <= now) {
                let queue = self
                    .inner
                    .as_ref()
                    .and_then(|s| sys::send_queue(s.as_raw_fd()));
                if self.watch.check(now, queue, None) {
                    self.abort = true;
                    self.write_timed_out = true;
                    return Some(ClientCloseReason::WriteTimeout);
                }
            }
            let at = self.watch.next_check().map_or(at, |c| c.min(at));
            self.arm(at);
            // Paired with `response_finished` (state, then the published timer, both SeqCst):
            // a response that ended after `busy` was read is seen here, or it saw the timer
            // just published and woke the stream if that timer is too late.
            if c.busy() == busy {
                return None;
            }
        }
        None
    }

    /// The timer, the waker and the connection's state, on the way to `Pending`; `Some` means
    /// close now.
    fn poll_deadline(&mut self, cx: &mut Context<'_>, wakes: u32) -> Option<ClientCloseReason> {
        let mut woken = wakes != self.wakes_seen;
        if woken || !self.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            self.conn.io_waker.register(cx.waker());
            self.waker = Some(cx.waker().clone());
            // The timer holds the previous task's waker, if any.
            self.timer_polled = false;
        }
        // A wake counts itself before it takes the waker: one counted between the load above
        // and the registration may have found no waker, so look again.
        let wakes_now = self.conn.io_wakes.load(Ordering::Acquire);
        woken |= wakes_now != wakes;
        self.wakes_seen = wakes_now;
        let mut look = woken || !self.timer_armed;
        for _ in 0..2 {
            if look {
                if let Some(reason) = self.decide() {
                    return Some(reason);
                }
            }
            let timer = self.timer.as_mut()?;
            // Registered with this task and not fired: nothing to poll.
            if self.timer_polled && !timer.is_elapsed() {
                return None;
            }
            // Unconstrained: a `Pending` from an exhausted task budget would not register the
            // waker, and the flag above would then skip the poll that does.
            let polled = Pin::new(&mut tokio::task::unconstrained(timer.as_mut())).poll(cx);
            if polled.is_pending() {
                self.timer_polled = true;
                return None;
            }
            // Fired: look at the connection again.
            self.timer_armed = false;
            self.timer_polled = false;
            look = true;
        }
        // Fired twice in one poll: come back rather than stall without a timer.
        cx.waker().wake_by_ref();
        None
    }

    fn note_fin_order(&mut self) {
        if self.peer_fin_first {
            return;
        }
        self.peer_fin_first = self.inner.as_ref().is_some_and(sys::peer_sent_fin);
    }

    fn record_error(&mut self, e: &io::Error) {
        self.error.get_or_insert(match e.kind() {
            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => ClientCloseReason::Reset,
            _ => ClientCloseReason::Error,
        });
    }

    fn at_boundary(&self) -> bool {
        let c = &*self.conn;
        c.state() != ClientConnState::Leased
            && c.in_flight.load(Ordering::Acquire) == 0
            && !c.awaiting_response.load(Ordering::Acquire)
    }

    fn wants_abort(&self) -> bool {
        let up = &self.conn.upstream;
        (up.config().close_order == CloseOrder::AbortOnIdle
            || up.policy().linger() == Linger::Abort)
            && !self.peer_fin_first
            && self.error.is_none()
            && self.at_boundary()
    }
}

impl Connection for UpstreamStream {
    fn connected(&self) -> Connected {
        let connected = Connected::new().extra(UpstreamConnection(self.conn.clone()));
        if self.conn.http2 {
            connected.negotiated_h2()
        } else {
            connected
        }
    }
}

impl AsyncRead for UpstreamStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut().filter(|_| !this.eof_injected) else {
            return this.read_closed();
        };
        // Read first: bytes or an end from the server win over our own deadline, and the
        // timer and waker are touched only on the way to `Pending` (kept out of line, like
        // every other path but bytes read).
        let before = buf.filled().len();
        match Pin::new(inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                if this.conn.awaiting_response.load(Ordering::Relaxed) {
                    this.conn.awaiting_response.store(false, Ordering::Release);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Ok(())) => this.read_eof(),
            Poll::Ready(Err(e)) => this.read_error(e),
            Poll::Pending => this.read_pending(cx),
        }
    }
}

impl UpstreamStream {
    #[cold]
    fn read_closed(&mut self) -> Poll<io::Result<()>> {
        if self.eof_injected {
            Poll::Ready(Ok(()))
        } else {
            Poll::Ready(Err(io::ErrorKind::NotConnected.into()))
        }
    }

    #[cold]
    fn read_eof(&mut self) -> Poll<io::Result<()>> {
        if !self.shutdown_started {
            self.peer_fin_first = true;
        }
        self.conn.set_close_reason(ClientCloseReason::ServerClosed);
        Poll::Ready(Ok(()))
    }

    #[cold]
    fn read_error(&mut self, e: io::Error) -> Poll<io::Result<()>> {
        self.record_error(&e);
        Poll::Ready(Err(e))
    }

    fn read_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Nothing happened since the last `Pending` (the same task, no wake from a response's
        // end, the timer registered and not fired): nothing to do. The request path ends here.
        let wakes = self.conn.io_wakes.load(Ordering::Acquire);
        if self.timer_polled
            && wakes == self.wakes_seen
            && self.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker()))
            && self.timer.as_ref().is_some_and(|t| !t.is_elapsed())
        {
            return Poll::Pending;
        }
        self.read_pending_slow(cx, wakes)
    }

    #[inline(never)]
    fn read_pending_slow(&mut self, cx: &mut Context<'_>, wakes: u32) -> Poll<io::Result<()>> {
        match self.poll_deadline(cx, wakes) {
            // Closing an idle connection ourselves, before the server does: the stack sees
            // EOF, drops the connection from the pool and closes it.
            Some(reason) => {
                self.conn.set_close_reason(reason);
                self.eof_injected = true;
                Poll::Ready(Ok(()))
            }
            None => Poll::Pending,
        }
    }
}

impl UpstreamStream {
    fn before_write(&mut self) {
        let c = &*self.conn;
        if !c.http2 {
            // Request bytes: until a response byte arrives, a failure of this connection is a
            // failure before any response byte (what makes a replayable request safe to retry).
            // Set on every write, not only on a connection seen idle: the pool can hand a
            // connection out again before its previous response's body is marked done.
            c.awaiting_response.store(true, Ordering::Release);
            if c.state() == ClientConnState::Idle {
                // A request on an idle HTTP/1 connection (new or pooled): it is leased.
                c.request_written();
            }
        }
    }

    fn after_write(&mut self, cx: &mut Context<'_>, res: &Poll<io::Result<usize>>) {
        let start_watch = match res {
            Poll::Ready(Ok(n)) => self.watch.wrote(*n),
            Poll::Ready(Err(e)) => {
                self.record_error(e);
                false
            }
            Poll::Pending => self.watch.blocked(),
        };
        if start_watch {
            self.look_from_write(cx);
        }
    }

    /// The write timeout's watch starts: the timer must include it now, since the stack may
    /// not poll the read side again before it is due.
    #[cold]
    fn look_from_write(&mut self, cx: &mut Context<'_>) {
        self.timer_armed = false;
        let wakes = self.conn.io_wakes.load(Ordering::Acquire);
        if let Some(reason) = self.poll_deadline(cx, wakes) {
            self.conn.set_close_reason(reason);
            self.eof_injected = true;
            // The reader answers the end.
            cx.waker().wake_by_ref();
        }
    }

    fn write_refused(&self) -> Option<io::Error> {
        self.write_timed_out.then(|| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                "request bytes made no progress within the write timeout",
            )
        })
    }
}

impl AsyncWrite for UpstreamStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(e) = this.write_refused() {
            return Poll::Ready(Err(e));
        }
        this.before_write();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
        };
        let res = Pin::new(inner).poll_write(cx, buf);
        this.after_write(cx, &res);
        res
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(e) = this.write_refused() {
            return Poll::Ready(Err(e));
        }
        this.before_write();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
        };
        let res = Pin::new(inner).poll_write_vectored(cx, bufs);
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

impl Drop for UpstreamStream {
    fn drop(&mut self) {
        if !self.shutdown_started {
            self.note_fin_order();
        }
        let c = self.conn.clone();
        let reason = match self.error {
            Some(e) => e,
            None if self.peer_fin_first => ClientCloseReason::ServerClosed,
            None => c
                .close_reason()
                .filter(|r| *r != ClientCloseReason::ServerClosed)
                .or_else(|| c.retire_reason())
                .unwrap_or(ClientCloseReason::Discarded),
        };
        let closer = match reason {
            ClientCloseReason::Reset => Closer::Reset,
            ClientCloseReason::Error => Closer::Error,
            ClientCloseReason::WriteTimeout => Closer::Timeout,
            _ if self.peer_fin_first => Closer::Peer,
            _ => Closer::Local,
        };
        let abort = self.abort || self.wants_abort();
        let mut aborted = false;
        if let Some(stream) = self.inner.take() {
            if abort {
                aborted = SockRef::from(&stream)
                    .set_linger(Some(Duration::ZERO))
                    .is_ok();
            }
            drop(stream);
        }
        c.closing();
        c.upstream.closed(&c, closer, reason, aborted);
    }
}
