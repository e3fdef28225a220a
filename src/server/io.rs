use std::{
    fmt,
    future::Future,
    io::{self, IoSlice},
    pin::Pin,
    sync::{atomic::Ordering, Arc},
    task::{Context, Poll, Waker},
    time::Duration,
};

use socket2::SockRef;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
    sync::OwnedSemaphorePermit,
    time::{Instant, Sleep},
};

use super::{
    connection::{flags, CloseReason, Closer, ConnShared, ConnState, Connection},
    limits::HalfClose,
};
use crate::{policy::Linger, sys};

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    Header,
    Idle,
    MaxAge,
    Retire,
    /// No limit is due yet, but one may start before the stream is polled again (a request in
    /// flight may end in another task): wake up by then and recompute.
    Recheck,
}

#[derive(Debug, Clone, Copy)]
enum Injected {
    Eof,
    HeaderTimeout,
    Cut,
}

impl Injected {
    fn result(self) -> io::Result<()> {
        match self {
            Injected::Eof => Ok(()),
            Injected::HeaderTimeout => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "request header not received within the header timeout",
            )),
            Injected::Cut => Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "connection cut at the shutdown deadline",
            )),
        }
    }
}

/// An accepted TCP connection, tracked from accept to close.
///
/// Counts bytes, enforces the listener's header, idle and age limits at message boundaries,
/// closes at once when the peer half-closes an idle connection, and at drop records who closed
/// first and why. Returned by [`HygienicListener::accept`](super::HygienicListener::accept).
pub struct TrackedStream {
    inner: Option<TcpStream>,
    conn: Connection,
    timer: Option<Pin<Box<Sleep>>>,
    timer_armed: Option<Instant>,
    deadline: Option<(Instant, Expiry)>,
    timer_epoch: u32,
    timer_dirty: bool,
    /// The timer was polled (so holds this task's waker) since it was last set, and was
    /// pending: until it fires or is set again, polling it again changes nothing.
    timer_polled: bool,
    /// The waker last registered in the connection's `io_waker`.
    waker: Option<Waker>,
    /// The connection's wake count when that waker was registered.
    wakes_seen: u32,
    /// Epoch at which the first byte of a request arrived, and when (taken lazily).
    header_started: Option<(Option<Instant>, u32)>,
    preface_pos: u8,
    peer_eof: bool,
    driver_told: bool,
    injected: Option<Injected>,
    shutdown_started: bool,
    peer_fin_first: bool,
    abort: bool,
    _permit: Option<OwnedSemaphorePermit>,
}

impl fmt::Debug for TrackedStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrackedStream")
            .field("connection", &self.conn)
            .finish_non_exhaustive()
    }
}

impl TrackedStream {
    pub(crate) fn new(
        stream: TcpStream,
        conn: Arc<ConnShared>,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Self {
        Self {
            inner: Some(stream),
            conn: Connection(conn),
            timer: None,
            timer_armed: None,
            deadline: None,
            timer_epoch: u32::MAX,
            timer_dirty: true,
            timer_polled: false,
            waker: None,
            wakes_seen: 0,
            header_started: None,
            preface_pos: 0,
            peer_eof: false,
            driver_told: false,
            injected: None,
            shutdown_started: false,
            peer_fin_first: false,
            abort: false,
            _permit: permit,
        }
    }

    /// The tracked connection.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The underlying socket.
    pub fn get_ref(&self) -> &TcpStream {
        self.inner
            .as_ref()
            .expect("the socket is only taken when the stream is dropped")
    }

    fn shared(&self) -> &ConnShared {
        &self.conn.0
    }

    fn header_epoch_valid(&self, epoch: u32) -> Option<Instant> {
        self.header_started
            .filter(|(_, e)| *e == epoch)
            .map(|(t, _)| t.unwrap_or_else(Instant::now))
    }

    fn compute_deadline(&self, epoch: u32, now: Instant) -> Option<(Instant, Expiry)> {
        let limit = self.limit_deadline(epoch, now);
        // A whole request can start and end in other code without this stream being polled
        // (no wake-up is sent for it), and its idle period cannot start before now: so never
        // sleep past now + idle timeout without rechecking.
        let recheck = self.shared().registry.limits.idle_timeout.map(|t| now + t);
        match (limit, recheck) {
            (Some((at, kind)), Some(r)) if at <= r || kind == Expiry::Retire => Some((at, kind)),
            (_, Some(r)) => Some((r, Expiry::Recheck)),
            (limit, None) => limit,
        }
    }

    fn limit_deadline(&self, epoch: u32, now: Instant) -> Option<(Instant, Expiry)> {
        let c = self.shared();
        let reg = &c.registry;
        if !(c.has(flags::TRACKED) || reg.layer_seen.load(Ordering::Acquire)) {
            return None;
        }
        let limits = &reg.limits;
        if c.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        if c.is_retiring() {
            return if self.driver_told {
                None
            } else {
                Some((now, Expiry::Retire))
            };
        }
        let header_start = if c.has(flags::H2) {
            None
        } else if c.requests.load(Ordering::Acquire) == 0 {
            Some(c.opened)
        } else {
            self.header_epoch_valid(epoch)
        };
        let mut best = match (header_start, limits.header_timeout, limits.idle_timeout) {
            (Some(start), Some(t), _) => Some((start + t, Expiry::Header)),
            (_, _, Some(t)) => Some((c.idle_since() + t, Expiry::Idle)),
            _ => None,
        };
        if let Some(age) = limits.max_age {
            let at = c.opened + age;
            if best.is_none_or(|(b, _)| at < b) {
                best = Some((at, Expiry::MaxAge));
            }
        }
        best
    }

    /// Recomputes the deadline when the connection changed, and polls its timer.
    fn poll_expiry(&mut self, cx: &mut Context<'_>) -> Option<Expiry> {
        for _ in 0..2 {
            let epoch = self.shared().epoch.load(Ordering::Acquire);
            if self.timer_dirty || epoch != self.timer_epoch {
                self.timer_dirty = false;
                self.timer_epoch = epoch;
                let now = Instant::now();
                // The header timer starts when the first byte of a request was seen; the time
                // is taken here, on the first recompute after it, not on the read itself.
                if let Some((None, e)) = self.header_started {
                    if e == epoch {
                        self.header_started = Some((Some(now), e));
                    }
                }
                self.deadline = self.compute_deadline(epoch, now);
                self.arm(now);
            }
            let (_, kind) = self.deadline?;
            if kind == Expiry::Retire {
                return Some(kind);
            }
            let timer = self.timer.as_mut()?;
            // Registered with this task and not fired: nothing to poll.
            if self.timer_polled && !timer.is_elapsed() {
                return None;
            }
            // Unconstrained: a `Pending` from an exhausted task budget would not register the
            // waker, and the flag above would then skip the poll that does.
            if Pin::new(&mut tokio::task::unconstrained(timer.as_mut()))
                .poll(cx)
                .is_pending()
            {
                self.timer_polled = true;
                return None;
            }
            self.timer_polled = false;
            // Fired: act only if it was a real limit and nothing changed since it was computed;
            // otherwise recompute (an early timer) and poll again.
            self.timer_armed = None;
            if kind != Expiry::Recheck
                && self.shared().epoch.load(Ordering::Acquire) == self.timer_epoch
            {
                return Some(kind);
            }
            self.timer_dirty = true;
        }
        None
    }

    /// Points the timer at the current deadline. A timer already armed for an earlier instant
    /// that has not passed is kept, as a recheck: it fires early and the deadline is recomputed
    /// then. In steady keep-alive traffic this keeps timer-wheel work off the per-request path.
    fn arm(&mut self, now: Instant) {
        let Some((at, kind)) = self.deadline else {
            return;
        };
        if let Some(armed) = self.timer_armed {
            if armed <= at && armed > now {
                if armed < at {
                    self.deadline = Some((armed, Expiry::Recheck));
                } else {
                    self.deadline = Some((at, kind));
                }
                return;
            }
        }
        match &mut self.timer {
            Some(t) => t.as_mut().reset(at),
            None => self.timer = Some(Box::pin(tokio::time::sleep_until(at))),
        }
        self.timer_armed = Some(at);
        self.timer_polled = false;
    }

    /// Acts on an expired deadline; `None` means keep reading.
    fn expire(&mut self, kind: Expiry) -> Option<io::Result<()>> {
        let c = self.shared();
        let reason = match kind {
            Expiry::Header => {
                c.set_close_reason(CloseReason::HeaderTimeout);
                return Some(self.inject(Injected::HeaderTimeout));
            }
            Expiry::Recheck => return None,
            Expiry::Idle => CloseReason::IdleTimeout,
            Expiry::MaxAge => CloseReason::MaxAge,
            Expiry::Retire => c
                .retire_reason()
                .unwrap_or(if c.registry.is_shutting_down() {
                    CloseReason::Shutdown
                } else {
                    CloseReason::Retired
                }),
        };
        if c.has(flags::DRIVER) && c.has(flags::H2) {
            // The serve loop's driver sends GOAWAY; keep reading until the stack closes.
            c.retire(reason);
            self.driver_told = true;
            self.timer_dirty = true;
            return None;
        }
        c.set_close_reason(reason);
        Some(self.inject(Injected::Eof))
    }

    fn inject(&mut self, what: Injected) -> io::Result<()> {
        self.injected = Some(what);
        what.result()
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
        // A new task (or one woken) may not be the one the timer holds.
        self.timer_polled = false;
    }

    fn on_peer_eof(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let conn = self.conn.0.clone();
        let c = &*conn;
        c.set(flags::PEER_FIN);
        if !self.shutdown_started {
            self.peer_fin_first = true;
        }
        c.set_close_reason(CloseReason::PeerClosed);
        if c.in_flight.load(Ordering::Acquire) == 0 {
            return Poll::Ready(Ok(()));
        }
        c.transition(ConnState::HalfClosed);
        c.registry.half_closed_in_flight();
        match c.registry.limits.half_close {
            HalfClose::Cancel => Poll::Ready(Ok(())),
            HalfClose::Finish => {
                // Hide the EOF until the response in flight is done; the in-flight guard wakes us.
                self.peer_eof = true;
                self.register_io(cx);
                if c.in_flight.load(Ordering::Acquire) == 0 {
                    Poll::Ready(Ok(()))
                } else {
                    Poll::Pending
                }
            }
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

    /// True when no request is in flight and no byte of the next one has arrived.
    fn at_message_boundary(&self) -> bool {
        let c = self.shared();
        c.in_flight.load(Ordering::Acquire) == 0
            && self
                .header_epoch_valid(c.epoch.load(Ordering::Acquire))
                .is_none()
            && !matches!(self.injected, Some(Injected::HeaderTimeout))
    }

    /// True when the peer's FIN arrived before ours (read as EOF, or waiting unread: the kernel
    /// then holds the socket in CLOSE_WAIT).
    fn note_fin_order(&mut self) {
        if self.peer_fin_first {
            return;
        }
        self.peer_fin_first = self.inner.as_ref().is_some_and(sys::peer_sent_fin);
    }

    /// Who closed first and why.
    fn close_info(&self) -> (Closer, CloseReason) {
        let c = self.shared();
        let explicit = c.close_reason();
        let reason = match explicit {
            Some(r) if r.forced_closer().is_some() => r,
            Some(r @ (CloseReason::IdleTimeout | CloseReason::MaxAge)) => r,
            _ if c.is_retiring() => c.retire_reason().unwrap_or(CloseReason::Shutdown),
            Some(r) => r,
            None if self.peer_fin_first => CloseReason::PeerClosed,
            None => CloseReason::ServerClosed,
        };
        let closer = reason.forced_closer().unwrap_or(if self.peer_fin_first {
            Closer::Peer
        } else {
            Closer::Local
        });
        (closer, reason)
    }

    fn wants_abort(&self) -> bool {
        self.shared().registry.policy.linger() == Linger::Abort
            && !self.shared().has(flags::PEER_FIN)
            && self.at_message_boundary()
    }
}

impl AsyncRead for TrackedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(injected) = this.injected {
            return Poll::Ready(injected.result());
        }
        if this.conn.0.has(flags::CUT) {
            return Poll::Ready(this.inject(Injected::Cut));
        }
        if this.peer_eof {
            this.register_io(cx);
            return if this.conn.0.in_flight.load(Ordering::Acquire) == 0 {
                Poll::Ready(Ok(()))
            } else {
                Poll::Pending
            };
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
                let c: &ConnShared = &this.conn.0;
                if usize::from(this.preface_pos) < H2_PREFACE.len() {
                    let pos = usize::from(this.preface_pos);
                    let n = read.len().min(H2_PREFACE.len() - pos);
                    if read[..n] == H2_PREFACE[pos..pos + n] {
                        this.preface_pos += n as u8;
                        if usize::from(this.preface_pos) == H2_PREFACE.len() {
                            c.set(flags::H2);
                            this.timer_dirty = true;
                        }
                    } else {
                        this.preface_pos = u8::MAX;
                    }
                }
                c.bytes_in.fetch_add(read.len() as u64, Ordering::Relaxed);
                if c.in_flight.load(Ordering::Acquire) == 0
                    && c.requests.load(Ordering::Acquire) > 0
                    && !c.has(flags::H2)
                {
                    let epoch = c.epoch.load(Ordering::Acquire);
                    if this.header_started.is_none_or(|(_, e)| e != epoch) {
                        this.header_started = Some((None, epoch));
                        this.timer_dirty = true;
                    }
                }
                // A peer that keeps trickling bytes never lets the read go `Pending`: check the
                // timer here too (a flag read, no clock) so a header timeout still cuts it.
                if this.timer.as_ref().is_some_and(|t| t.is_elapsed()) {
                    if let Some(kind) = this.poll_expiry(cx) {
                        if let Some(result) = this.expire(kind) {
                            return Poll::Ready(result);
                        }
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => {
                this.record_io_error(&e);
                Poll::Ready(Err(e))
            }
            Poll::Pending => {
                this.register_io(cx);
                if let Some(kind) = this.poll_expiry(cx) {
                    if let Some(result) = this.expire(kind) {
                        return Poll::Ready(result);
                    }
                }
                Poll::Pending
            }
        }
    }
}

impl AsyncWrite for TrackedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.shared().has(flags::CUT) {
            return Poll::Ready(this.inject(Injected::Cut).map(|_| 0));
        }
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
        if this.shared().has(flags::CUT) {
            return Poll::Ready(this.inject(Injected::Cut).map(|_| 0));
        }
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
        let this = self.get_mut();
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

impl TrackedStream {
    fn after_write(&self, res: &Poll<io::Result<usize>>) {
        match res {
            Poll::Ready(Ok(n)) => {
                self.shared()
                    .bytes_out
                    .fetch_add(*n as u64, Ordering::Relaxed);
            }
            Poll::Ready(Err(e)) => self.record_io_error(e),
            Poll::Pending => {}
        }
    }
}

impl Drop for TrackedStream {
    fn drop(&mut self) {
        if !self.shutdown_started {
            self.note_fin_order();
        }
        let (closer, reason) = self.close_info();
        let abort = self.abort || (self.wants_abort() && reason.forced_closer().is_none());
        let c = self.conn.0.clone();
        let mut aborted = false;
        if let Some(stream) = self.inner.take() {
            if abort {
                // Setting SO_LINGER to zero makes close() send RST at once; it never blocks.
                aborted = SockRef::from(&stream)
                    .set_linger(Some(Duration::ZERO))
                    .is_ok();
                drop(stream);
            } else if let (Linger::Graceful(limit), false) =
                (c.registry.policy.linger(), c.has(flags::PEER_FIN))
            {
                match tokio::runtime::Handle::try_current() {
                    Ok(handle) => {
                        handle.spawn(lingering_close(stream, limit));
                    }
                    Err(_) => drop(stream),
                }
            } else {
                drop(stream);
            }
        }
        c.registry.on_close(&c, closer, reason, aborted);
    }
}

/// Sends FIN, then reads and discards what the peer still sends until it closes or `limit`
/// passes, so that unread input does not turn our close into a reset.
async fn lingering_close(mut stream: TcpStream, limit: Duration) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = tokio::time::timeout(limit, async {
        let _ = stream.shutdown().await;
        let mut buf = [0u8; 512];
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}
