use std::{
    fmt,
    future::Future,
    io::{self, IoSlice},
    pin::Pin,
    sync::{atomic::Ordering, Arc},
    task::{Context, Poll},
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
use crate::{close::Closer, policy::Linger, sys};

/// An outbound TCP connection, tracked from connect to close.
///
/// Closes itself at a message boundary when its upstream's idle timeout, max age, max requests
/// or max idle says so (the HTTP stack then sees the connection end before it could reuse it),
/// and records at drop who closed first and why.
pub struct UpstreamStream {
    inner: Option<TcpStream>,
    conn: Arc<ClientConn>,
    timer: Option<Pin<Box<Sleep>>>,
    timer_armed: Option<Instant>,
    deadline: Option<(Instant, Option<ClientCloseReason>)>,
    timer_epoch: u32,
    eof_injected: bool,
    shutdown_started: bool,
    peer_fin_first: bool,
    error: Option<ClientCloseReason>,
    abort: bool,
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
        Self {
            inner: Some(stream),
            conn,
            timer: None,
            timer_armed: None,
            deadline: None,
            timer_epoch: u32::MAX,
            eof_injected: false,
            shutdown_started: false,
            peer_fin_first: false,
            error: None,
            abort: false,
            _permit: permit,
        }
    }

    /// The connection's handle.
    pub fn connection(&self) -> UpstreamConnection {
        UpstreamConnection(self.conn.clone())
    }

    /// The next deadline, `None` as reason for a recheck: a response can end in another task
    /// without waking this stream, and the idle period cannot start before `now`, so the
    /// stream never sleeps past `now + idle timeout` without recomputing.
    fn compute_deadline(&self, now: Instant) -> (Instant, Option<ClientCloseReason>) {
        let c = &*self.conn;
        let recheck = (now + c.upstream.effective_idle_timeout(), None);
        if c.state() != ClientConnState::Idle || c.in_flight.load(Ordering::Acquire) > 0 {
            return recheck;
        }
        if let Some(reason) = c.retire_reason() {
            return (now, Some(reason));
        }
        let idle = (
            c.idle_since() + c.upstream.effective_idle_timeout(),
            Some(ClientCloseReason::IdleTimeout),
        );
        match c.upstream.config.max_age {
            Some(age) if c.opened + age < idle.0 => {
                (c.opened + age, Some(ClientCloseReason::MaxAge))
            }
            _ => idle,
        }
    }

    /// Polls the idle/age/retire deadline; `Some` means close now.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Option<ClientCloseReason> {
        for _ in 0..2 {
            let epoch = self.conn.epoch.load(Ordering::Acquire);
            if epoch != self.timer_epoch {
                self.timer_epoch = epoch;
                let now = Instant::now();
                let (at, reason) = self.compute_deadline(now);
                // Keep an earlier timer that has not fired: it becomes a recheck.
                match self.timer_armed {
                    Some(armed) if armed > now && armed <= at => {
                        self.deadline = Some((armed, if armed < at { None } else { reason }));
                    }
                    _ => {
                        match &mut self.timer {
                            Some(t) => t.as_mut().reset(at),
                            None => self.timer = Some(Box::pin(tokio::time::sleep_until(at))),
                        }
                        self.timer_armed = Some(at);
                        self.deadline = Some((at, reason));
                    }
                }
            }
            let (_, reason) = self.deadline?;
            let timer = self.timer.as_mut()?;
            if timer.as_mut().poll(cx).is_pending() {
                return None;
            }
            self.timer_armed = None;
            match reason {
                Some(r) if self.conn.epoch.load(Ordering::Acquire) == self.timer_epoch => {
                    return Some(r)
                }
                // A recheck, or the connection changed: recompute.
                _ => self.timer_epoch = self.timer_epoch.wrapping_sub(1),
            }
        }
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
        (up.config.close_order == CloseOrder::AbortOnIdle || up.policy.linger() == Linger::Abort)
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
        if this.eof_injected {
            return Poll::Ready(Ok(()));
        }
        this.conn.io_waker.register(cx.waker());
        if let Some(reason) = this.poll_deadline(cx) {
            // Closing an idle connection ourselves, before the server does: the stack sees EOF,
            // drops the connection from the pool and closes it.
            this.conn.set_close_reason(reason);
            this.eof_injected = true;
            return Poll::Ready(Ok(()));
        }
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
        };
        let before = buf.filled().len();
        match Pin::new(inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() == before {
                    if !this.shutdown_started {
                        this.peer_fin_first = true;
                    }
                    this.conn.set_close_reason(ClientCloseReason::ServerClosed);
                } else {
                    this.conn.awaiting_response.store(false, Ordering::Release);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => {
                this.record_error(&e);
                Poll::Ready(Err(e))
            }
            Poll::Pending => Poll::Pending,
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

    fn after_write(&mut self, res: &Poll<io::Result<usize>>) {
        if let Poll::Ready(Err(e)) = res {
            self.record_error(e);
        }
    }
}

impl AsyncWrite for UpstreamStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.before_write();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
        };
        let res = Pin::new(inner).poll_write(cx, buf);
        this.after_write(&res);
        res
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.before_write();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
        };
        let res = Pin::new(inner).poll_write_vectored(cx, bufs);
        this.after_write(&res);
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
        c.upstream.on_close(&c, closer, reason, aborted);
    }
}
