//! [`ResponseFuture`]: a request on its way, sent once more when a reused connection turns out
//! closed, and the lease it takes, which its response body carries on.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::{Extensions, HeaderName, Request, Response};
use hyper_util::client::legacy::connect::CaptureConnection;

use super::{
    body::LeasedBody,
    client::{clone_request, is_routed, set_host, Shared},
    conn::ConnectionHandle,
    error::{BoxError, Error},
    upstream::Upstream,
};
use crate::lease::RawLease;

/// The `Keep-Alive` response header, from which a server's keep-alive timeout is learned.
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");

fn connection_of(err: &hyper_util::client::legacy::Error) -> Option<ConnectionHandle> {
    let info = err.connect_info()?;
    let mut ext = Extensions::new();
    info.get_extras(&mut ext);
    ext.remove::<ConnectionHandle>()
}

/// Whether an HTTP/2 server said it did not process the request's stream (RFC 9113 §8.7): it
/// was above the last stream a graceful GOAWAY (`NO_ERROR`) let through, or reset with
/// `REFUSED_STREAM`. Either way the request is safe to send again.
fn refused_by_http2(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(err);
    while let Some(e) = source {
        if let Some(h2) = e.downcast_ref::<h2::Error>() {
            return h2.is_remote()
                && match h2.reason() {
                    Some(h2::Reason::NO_ERROR) => h2.is_go_away(),
                    Some(h2::Reason::REFUSED_STREAM) => h2.is_reset(),
                    _ => false,
                };
        }
        source = e.source();
    }
    false
}

/// Takes a retiring connection out of the pool.
pub(crate) fn poison(capture: Option<&CaptureConnection>) {
    if let Some(c) = capture {
        if let Some(connected) = c.connection_metadata().as_ref() {
            connected.poison();
        }
    }
}

/// A request's lease on its upstream's tracker, from the call until its response body ends;
/// it holds the upstream, so a response reaches its pool's settings through it.
pub(crate) struct ClientLease {
    pub(crate) upstream: Arc<Upstream>,
    /// `None` once ended.
    raw: Option<RawLease>,
}

impl ClientLease {
    /// Takes the lease at `now`.
    pub(crate) fn take(
        upstream: Arc<Upstream>,
        site: &'static std::panic::Location<'static>,
        now: tokio::time::Instant,
    ) -> Self {
        let raw = upstream.tracker.lease_raw(site, now);
        Self {
            upstream,
            raw: Some(raw),
        }
    }

    /// The response head arrived: from here the caller holds the lease (until then it waited,
    /// which is never a leak).
    pub(crate) fn holding(&self) {
        if let Some(raw) = &self.raw {
            self.upstream
                .tracker
                .holding(raw, tokio::time::Instant::now());
        }
    }

    /// Ends the lease now; returns the time it ended, on tokio's clock (one clock read shared
    /// with the connection's bookkeeping).
    pub(crate) fn end(mut self) -> tokio::time::Instant {
        let now = tokio::time::Instant::now();
        if let Some(raw) = self.raw.take() {
            self.upstream.tracker.release(raw, now);
        }
        now
    }
}

impl Drop for ClientLease {
    fn drop(&mut self) {
        if let Some(raw) = self.raw.take() {
            self.upstream
                .tracker
                .release(raw, tokio::time::Instant::now());
        }
    }
}

/// Future of [`HygienicClient::request`](super::HygienicClient::request): the response, its
/// body holding the request's lease.
#[must_use = "futures do nothing unless polled"]
pub struct ResponseFuture<B = http_body_util::Full<Bytes>> {
    pub(crate) state: State<B>,
}

pub(crate) enum State<B> {
    /// Failed before anything was sent; the error is taken by the first poll.
    Failed(Option<Error>),
    Sending {
        sending: hyper_util::client::legacy::ResponseFuture,
        /// The client, for a retry.
        shared: Arc<Shared<B>>,
        /// A copy of a replayable request, to send again when a reused connection turns out
        /// closed by the server before any byte of the response.
        replay: Option<Box<Request<B>>>,
        /// The request's lease, which also holds its upstream.
        lease: Option<ClientLease>,
        capture: Option<CaptureConnection>,
        retries_left: usize,
        deadlines: Deadlines,
        /// Armed at the first wait, for the response head's deadline.
        timer: Option<Pin<Box<tokio::time::Sleep>>>,
    },
}

/// A request's timeouts, from the call: for its response head, and for the whole exchange.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadlines {
    started: Option<tokio::time::Instant>,
    head: Option<Duration>,
    total: Option<Duration>,
}

impl Deadlines {
    /// From `now`, the call; no start is kept when there is no timeout.
    pub(crate) fn new(
        head: Option<Duration>,
        total: Option<Duration>,
        now: tokio::time::Instant,
    ) -> Self {
        let started = (head.is_some() || total.is_some()).then_some(now);
        Self {
            started,
            head,
            total,
        }
    }

    /// When the response head is due, and the timeout that puts it there.
    fn head(&self) -> Option<(tokio::time::Instant, Duration)> {
        let started = self.started?;
        let after = match (self.head, self.total) {
            (Some(h), Some(t)) => h.min(t),
            (h, t) => h.or(t)?,
        };
        Some((started + after, after))
    }

    /// When the whole exchange is due, body included.
    pub(crate) fn total(&self) -> Option<(tokio::time::Instant, Duration)> {
        Some((self.started? + self.total?, self.total?))
    }
}

impl<B> ResponseFuture<B> {
    pub(crate) fn failed(e: Error) -> Self {
        Self {
            state: State::Failed(Some(e)),
        }
    }
}

impl<B> fmt::Debug for ResponseFuture<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<B> Future for ResponseFuture<B>
where
    B: super::ReplayBody + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response<LeasedBody>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let out = match &mut this.state {
            State::Failed(e) => Err(e.take().unwrap_or_else(Error::polled_after_completion)),
            State::Sending {
                sending,
                shared,
                replay,
                lease,
                capture,
                retries_left,
                deadlines,
                timer,
            } => loop {
                let polled = Pin::new(&mut *sending).poll(cx);
                let Poll::Ready(polled) = polled else {
                    if let Some((at, after)) = deadlines.head() {
                        let timer =
                            timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
                        if timer.as_mut().poll(cx).is_ready() {
                            let Some(lease) = lease.as_ref() else {
                                break Err(Error::polled_after_completion());
                            };
                            lease.upstream.timed_out();
                            // The request is dropped with this future: its lease ends, and its
                            // connection, left mid-exchange, is closed rather than reused.
                            break Err(Error::timeout(lease.upstream.name.clone(), after));
                        }
                    }
                    return Poll::Pending;
                };
                match polled {
                    Ok(res) => {
                        let Some(lease) = lease.take() else {
                            break Err(Error::polled_after_completion());
                        };
                        lease.holding();
                        // Taken, not cloned: the body carries it from here on.
                        let mut res = res;
                        let conn = res.extensions_mut().remove::<ConnectionHandle>();
                        // The server's keep-alive is learned from each connection's first
                        // response (a server changes it on restart or reload, which new
                        // connections see), not looked up in every response.
                        let mut first = true;
                        if let Some(c) = &conn {
                            let (retiring, n) = c.0.response_started(lease.raw.as_ref());
                            if retiring {
                                poison(capture.as_ref());
                            }
                            first = n == 1;
                        }
                        if first {
                            if let Some(ka) = res.headers().get(&KEEP_ALIVE) {
                                lease.upstream.learn_keep_alive(ka);
                                // The connection may be idle already (its stream read the
                                // whole response), its idle timer armed for a longer timeout.
                                if let Some(c) = &conn {
                                    c.0.wake_io();
                                }
                            }
                        }
                        let capture = capture.take();
                        let deadline = deadlines.total();
                        break Ok(res.map(|body| LeasedBody {
                            inner: body,
                            lease: Some(lease),
                            conn,
                            capture,
                            deadline,
                            timer: None,
                        }));
                    }
                    Err(e) => {
                        // Retry once, and only a replayable request, when a reused connection
                        // failed before any byte of the response arrived: the server closed
                        // it under us.
                        // Or an HTTP/2 server refused the stream: a graceful GOAWAY (its
                        // max requests, a restart) or REFUSED_STREAM, which say the request
                        // was not processed.
                        let stale = refused_by_http2(&e)
                            || connection_of(&e).is_some_and(|c| {
                                c.0.requests.load(std::sync::atomic::Ordering::Acquire) > 0
                                    && c.0
                                        .awaiting_response
                                        .load(std::sync::atomic::Ordering::Acquire)
                            });
                        let Some(upstream) = lease.as_ref().map(|l| &l.upstream) else {
                            break Err(Error::polled_after_completion());
                        };
                        match replay.as_ref().and_then(|again| clone_request(again)) {
                            Some(again) if stale && *retries_left > 0 => {
                                *retries_left -= 1;
                                upstream.retried();
                                tracing::debug!(upstream = %upstream.name, error = %e,
                                    "reused connection closed by the server; retrying the replayable request");
                                let mut again = again;
                                if let Some(route) = &upstream.route {
                                    if is_routed(&again, route) {
                                        set_host(&mut again, route);
                                    }
                                }
                                *sending = shared.inner.request(again);
                            }
                            _ => break Err(Error::from_client(e, upstream.name.clone())),
                        }
                    }
                }
            },
        };
        // Done: what the future held (the lease of a failed request included) goes now.
        this.state = State::Failed(None);
        Poll::Ready(out)
    }
}
