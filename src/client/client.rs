use std::{
    collections::HashMap,
    fmt,
    future::Future,
    pin::Pin,
    sync::{Arc, RwLock},
    task::{ready, Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::{Extensions, Method, Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::{
    client::legacy::{
        connect::{capture_connection, CaptureConnection},
        Client,
    },
    rt::{TokioExecutor, TokioTimer},
};
use pin_project_lite::pin_project;

use super::{
    config::{ClientConfigError, UpstreamConfig},
    conn::UpstreamConnection,
    connector::HygienicConnector,
    upstream::{authority_of, AcquireTimeout, Upstream, UpstreamSnapshot, Upstreams},
};
use crate::{lease::Lease, policy::SocketPolicy};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Builds a [`HygienicClient`].
#[derive(Debug, Clone, Default)]
pub struct ClientBuilder {
    policy: SocketPolicy,
    default: UpstreamConfig,
    overrides: HashMap<String, UpstreamConfig>,
    http2_only: bool,
}

impl ClientBuilder {
    /// The socket policy for every outbound socket (linger included). Default:
    /// [`SocketPolicy::default`].
    pub fn policy(mut self, policy: SocketPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Settings for upstreams without their own. Default: [`UpstreamConfig::default`].
    pub fn default_upstream(mut self, config: UpstreamConfig) -> Self {
        self.default = config;
        self
    }

    /// Settings for one upstream, keyed by `host:port` as requests address it.
    pub fn upstream(mut self, authority: impl Into<String>, config: UpstreamConfig) -> Self {
        self.overrides.insert(authority.into(), config);
        self
    }

    /// Speak HTTP/2 with prior knowledge to every upstream. Default: HTTP/1.1.
    pub fn http2_only(mut self, on: bool) -> Self {
        self.http2_only = on;
        self
    }

    /// Validates the settings and builds the client.
    pub fn build<B>(self) -> Result<HygienicClient<B>, ClientConfigError>
    where
        B: Body + Send + Unpin + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        self.default.validate()?;
        for (authority, cfg) in &self.overrides {
            cfg.validate()?;
            if !authority.contains(':') {
                return Err(ClientConfigError::Upstream {
                    value: authority.clone(),
                });
            }
        }
        let max_idle = std::iter::once(&self.default)
            .chain(self.overrides.values())
            .map(|c| c.max_idle)
            .max()
            .unwrap_or(32);
        // The pool's own idle timer is a backstop behind each upstream's idle timeout, which the
        // connection enforces itself; without a timer hyper-util would ignore it.
        let backstop = std::iter::once(&self.default)
            .chain(self.overrides.values())
            .map(|c| c.idle_timeout)
            .max()
            .unwrap_or(Duration::from_secs(90))
            + Duration::from_secs(5);
        let upstreams = Arc::new(Upstreams {
            pool_max_idle: max_idle,
            policy: self.policy,
            default: self.default,
            overrides: self.overrides,
            map: RwLock::new(HashMap::new()),
            http2_only: self.http2_only,
        });
        // Upstreams configured by name exist from the start, so their metrics do too.
        for authority in upstreams.overrides.keys() {
            upstreams.get(authority)?;
        }
        let inner = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(backstop)
            .pool_max_idle_per_host(max_idle)
            .retry_canceled_requests(true)
            .http2_only(self.http2_only)
            .build(HygienicConnector {
                upstreams: upstreams.clone(),
            });
        Ok(HygienicClient { inner, upstreams })
    }
}

/// A pooled HTTP client over hyper-util's `Client` with explicit close ordering, per-upstream
/// pool settings, connection tracking and lease tracking.
///
/// Every request is a lease on its upstream's [`LeaseTracker`](crate::lease::LeaseTracker)
/// from the call until its response body is fully read or dropped, recorded with the call's
/// file and line: an unread body holds its connection, and is reported as a leak after the
/// upstream's leak threshold.
pub struct HygienicClient<B = http_body_util::Full<Bytes>> {
    inner: Client<HygienicConnector, B>,
    upstreams: Arc<Upstreams>,
}

impl<B> Clone for HygienicClient<B> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            upstreams: self.upstreams.clone(),
        }
    }
}

impl<B> fmt::Debug for HygienicClient<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HygienicClient")
            .field("upstreams", &self.upstreams.all().len())
            .finish_non_exhaustive()
    }
}

impl HygienicClient {
    /// A builder with the defaults.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }
}

/// A view of a [`HygienicClient`]'s upstreams that does not depend on its body type.
#[derive(Clone)]
pub struct ClientView {
    upstreams: Arc<Upstreams>,
}

impl ClientView {
    /// A snapshot of every upstream's pool, connections and leases.
    pub fn snapshot(&self) -> Vec<UpstreamSnapshot> {
        self.upstreams.all().iter().map(|u| u.snapshot()).collect()
    }
}

impl fmt::Debug for ClientView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientView").finish_non_exhaustive()
    }
}

/// Whether a request may be sent twice: idempotent methods, or an `Idempotency-Key` header.
pub fn is_replayable<B>(req: &Request<B>) -> bool {
    matches!(
        *req.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    ) || req.headers().contains_key("idempotency-key")
}

impl<B> HygienicClient<B>
where
    B: Body + Clone + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    /// Sends a request. The lease it takes records this call's location.
    #[track_caller]
    pub fn request(&self, req: Request<B>) -> ResponseFuture {
        // A URI with an explicit port names its upstream as is: no allocation on the hot path.
        let explicit = req
            .uri()
            .authority()
            .filter(|a| a.port().is_some() && !a.as_str().contains('@'))
            .map(|a| a.as_str());
        let found = match explicit {
            Some(a) => Some(self.upstreams.get(a)),
            None => authority_of(req.uri()).map(|a| self.upstreams.get(&a)),
        };
        let upstream = match found {
            Some(Ok(u)) => u,
            Some(Err(e)) => return ResponseFuture::failed(Error::config(e)),
            None => {
                return ResponseFuture::failed(Error::new(
                    Kind::InvalidUri,
                    Arc::from("-"),
                    Some(format!("no host in request URI {}", req.uri()).into()),
                ))
            }
        };
        let lease = upstream.tracker.lease();
        let mut req = req;
        // Retirement must take the connection out of the pool before the pool can hand it out
        // again: capture it, so it can be poisoned when its response says so.
        let cfg = &upstream.config;
        let capture = (cfg.max_requests.is_some()
            || cfg.max_age.is_some()
            || cfg.max_idle < self.upstreams.pool_max_idle)
            .then(|| capture_connection(&mut req));
        // Whatever the close order: closing first only avoids the keep-alive race with a
        // server that keeps its advertised timeout, and an upstream may close an idle
        // connection at any time (a restart, a load balancer's idle reset).
        let replay = is_replayable(&req).then(|| clone_request(&req));
        let client = self.inner.clone();
        ResponseFuture {
            inner: Box::pin(send(client, upstream, req, replay, lease, capture)),
        }
    }

    /// `GET uri`.
    #[track_caller]
    pub fn get(&self, uri: http::Uri) -> ResponseFuture
    where
        B: Default,
    {
        let mut req = Request::new(B::default());
        *req.uri_mut() = uri;
        self.request(req)
    }

    /// A snapshot of every upstream's pool, connections and leases.
    pub fn snapshot(&self) -> Vec<UpstreamSnapshot> {
        self.upstreams.all().iter().map(|u| u.snapshot()).collect()
    }

    /// A cheap, type-erased view of this client's upstreams, for observers such as a census
    /// sampler that attributes TIME_WAIT and CLOSE_WAIT to upstreams and lease sites.
    pub fn view(&self) -> ClientView {
        ClientView {
            upstreams: self.upstreams.clone(),
        }
    }

    /// The lease trackers, one per upstream, for test assertions
    /// ([`testing`](crate::testing)).
    pub fn lease_trackers(&self) -> Vec<crate::lease::LeaseTracker> {
        self.upstreams
            .all()
            .iter()
            .map(|u| u.tracker.clone())
            .collect()
    }
}

fn clone_request<B: Clone>(req: &Request<B>) -> Request<B> {
    let mut copy = Request::new(req.body().clone());
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    copy
}

fn connection_of(err: &hyper_util::client::legacy::Error) -> Option<UpstreamConnection> {
    let info = err.connect_info()?;
    let mut ext = Extensions::new();
    info.get_extras(&mut ext);
    ext.remove::<UpstreamConnection>()
}

async fn send<B>(
    client: Client<HygienicConnector, B>,
    upstream: Arc<Upstream>,
    req: Request<B>,
    replay: Option<Request<B>>,
    lease: Lease,
    capture: Option<CaptureConnection>,
) -> Result<Response<LeasedBody>, Error>
where
    B: Body + Clone + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let mut req = req;
    // Each stale failure discards one pooled connection, and a fresh connection never counts
    // as stale, so the retries are bounded by the idle connections the pool can hold; the
    // bound below only guards against a pool refilled by other requests meanwhile.
    let mut retries_left = upstream.config.max_idle + 1;
    loop {
        match client.request(req).await {
            Ok(res) => {
                let conn = res.extensions().get::<UpstreamConnection>().cloned();
                if let Some(c) = &conn {
                    if c.0.response_started(lease.site()) {
                        poison(capture.as_ref());
                    }
                }
                if let Some(ka) = res.headers().get("keep-alive") {
                    upstream.learn_keep_alive(ka);
                }
                return Ok(res.map(|body| LeasedBody {
                    inner: body,
                    lease: Some(lease),
                    conn,
                    capture,
                }));
            }
            Err(e) => {
                // Retry once, and only a replayable request, when a reused connection failed
                // before any byte of the response arrived: the server closed it under us.
                let stale = connection_of(&e).is_some_and(|c| {
                    c.0.requests.load(std::sync::atomic::Ordering::Acquire) > 0
                        && c.0
                            .awaiting_response
                            .load(std::sync::atomic::Ordering::Acquire)
                });
                match replay.as_ref() {
                    Some(again) if stale && retries_left > 0 => {
                        retries_left -= 1;
                        upstream.retried();
                        tracing::debug!(upstream = %upstream.name, error = %e,
                            "reused connection closed by the server; retrying the replayable request");
                        req = clone_request(again);
                    }
                    _ => return Err(Error::from_client(e, upstream.name.clone())),
                }
            }
        }
    }
}

/// Takes a retiring connection out of the pool.
fn poison(capture: Option<&CaptureConnection>) {
    if let Some(c) = capture {
        if let Some(connected) = c.connection_metadata().as_ref() {
            connected.poison();
        }
    }
}

/// Future of [`HygienicClient::request`].
pub struct ResponseFuture {
    inner: Pin<Box<dyn Future<Output = Result<Response<LeasedBody>, Error>> + Send>>,
}

impl ResponseFuture {
    fn failed(e: Error) -> Self {
        Self {
            inner: Box::pin(std::future::ready(Err(e))),
        }
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<LeasedBody>, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

pin_project! {
    /// A response body that holds its lease (and its connection) until it is fully read or
    /// dropped.
    pub struct LeasedBody {
        #[pin]
        inner: Incoming,
        lease: Option<Lease>,
        conn: Option<UpstreamConnection>,
        capture: Option<CaptureConnection>,
    }

    impl PinnedDrop for LeasedBody {
        fn drop(this: Pin<&mut Self>) {
            this.release();
        }
    }
}

impl LeasedBody {
    /// The connection this response came on.
    pub fn connection(&self) -> Option<&UpstreamConnection> {
        self.conn.as_ref()
    }

    fn release(self: Pin<&mut Self>) {
        let this = self.project();
        if this.lease.take().is_some() {
            if let Some(c) = this.conn.take() {
                if c.0.response_finished() {
                    poison(this.capture.as_ref());
                }
            }
        }
    }
}

impl fmt::Debug for LeasedBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeasedBody")
            .field("leased", &self.lease.is_some())
            .field("connection", &self.conn)
            .finish_non_exhaustive()
    }
}

impl Body for LeasedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let frame = ready!(self.as_mut().project().inner.poll_frame(cx));
        if !matches!(frame, Some(Ok(_))) || self.inner.is_end_stream() {
            self.release();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    InvalidUri,
    Config,
    AcquireTimeout,
    Connect,
    Request,
}

/// A failed request: opaque, with predicates for what went wrong.
pub struct Error {
    kind: Kind,
    upstream: Arc<str>,
    source: Option<BoxError>,
}

impl Error {
    fn new(kind: Kind, upstream: Arc<str>, source: Option<BoxError>) -> Self {
        Self {
            kind,
            upstream,
            source,
        }
    }

    fn config(e: ClientConfigError) -> Self {
        Self::new(Kind::Config, Arc::from("-"), Some(Box::new(e)))
    }

    fn from_client(e: hyper_util::client::legacy::Error, upstream: Arc<str>) -> Self {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        let mut acquire = false;
        while let Some(s) = source {
            if s.is::<AcquireTimeout>() {
                acquire = true;
                break;
            }
            source = s.source();
        }
        let kind = if acquire {
            Kind::AcquireTimeout
        } else if e.is_connect() {
            Kind::Connect
        } else {
            Kind::Request
        };
        Self::new(kind, upstream, Some(Box::new(e)))
    }

    /// True when no connection slot freed up within the upstream's acquire timeout.
    pub fn is_acquire_timeout(&self) -> bool {
        self.kind == Kind::AcquireTimeout
    }

    /// True when connecting to the upstream failed.
    pub fn is_connect(&self) -> bool {
        matches!(self.kind, Kind::Connect | Kind::AcquireTimeout)
    }

    /// True when the client's configuration or the request's URI is invalid.
    pub fn is_invalid(&self) -> bool {
        matches!(self.kind, Kind::Config | Kind::InvalidUri)
    }

    /// The upstream's name.
    pub fn upstream(&self) -> &str {
        &self.upstream
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("upstream", &self.upstream)
            .field("source", &self.source)
            .finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            Kind::InvalidUri => "invalid request URI",
            Kind::Config => "invalid client configuration",
            Kind::AcquireTimeout => "no connection slot within the acquire timeout",
            Kind::Connect => "connect failed",
            Kind::Request => "request failed",
        };
        write!(f, "upstream {}: {what}", self.upstream)?;
        // Walk the chain so the root cause is visible in one line.
        let mut source = self
            .source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static));
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|s| s as _)
    }
}
