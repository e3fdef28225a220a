//! [`HygienicClient`] and its builder: settings per upstream, and how a request is addressed
//! to its upstream's pool before it goes to hyper-util.

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, OnceLock, RwLock},
    time::Duration,
};

use bytes::Bytes;
use http::{header::HOST, uri::Scheme, HeaderName, Method, Request, Uri, Version};
use http_body::Body;
use hyper_util::{
    client::legacy::{connect::capture_connection, Client},
    rt::{TokioExecutor, TokioTimer},
};

use super::{
    config::{ClientConfigError, Timeouts, UpstreamConfig},
    connector::{CustomConnector, HygienicConnector},
    error::{BoxError, Error, Kind},
    future::{ClientLease, Deadlines, ResponseFuture, State},
    replay::ReplayBody,
    routing::{authority_of, Route, Upstreams},
    upstream::UpstreamSnapshot,
};
use crate::policy::SocketPolicy;

/// Builds a [`HygienicClient`].
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    policy: SocketPolicy,
    default: UpstreamConfig,
    overrides: HashMap<String, UpstreamConfig>,
    http2_only: bool,
    upstream_pool_keys: bool,
    custom: Option<CustomConnector>,
    #[cfg(feature = "rustls")]
    tls: Option<super::tls::ClientTls>,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        Self {
            policy: SocketPolicy::default(),
            default: UpstreamConfig::default(),
            overrides: HashMap::new(),
            http2_only: false,
            upstream_pool_keys: true,
            custom: None,
            #[cfg(feature = "rustls")]
            tls: None,
        }
    }
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

    /// TLS for `https://` upstreams (feature `rustls`). Default: Mozilla's roots with the
    /// `webpki-roots` feature, else the system's with `native-roots`; HTTP/2 and HTTP/1.1
    /// offered by ALPN. Without either, an `https://` request fails to connect unless TLS is
    /// given here.
    #[cfg(feature = "rustls")]
    pub fn tls(mut self, tls: super::tls::ClientTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Connects with a connector of your own in place of the crate's TCP and TLS connect: any
    /// `tower::Service<Uri>` (as hyper-util's and tonic's connectors are) whose stream is a
    /// [`Transport`](crate::Transport), its TCP socket reachable: a `TcpStream`, a
    /// `tokio_rustls` client stream, or another TLS library's stream wrapped to name its
    /// socket. TLS, if any, is then the connector's.
    ///
    /// The hygiene stays: `max_connections` with its wait queue, the socket policy (applied
    /// to the socket it returns), tracking, close order, abort-on-idle, timeouts, leases and
    /// census attribution. HTTP/2 is spoken when the client is
    /// [`http2_only`](Self::http2_only) or the stream says ALPN chose it
    /// ([`Transport::negotiated_h2`](crate::Transport::negotiated_h2)). Source addresses
    /// ([`UpstreamConfig::local_addrs`]) and the connect timeout are the connector's to
    /// honour: the crate no longer makes the socket.
    pub fn connector<C>(mut self, connector: C) -> Self
    where
        C: tower_service::Service<Uri> + Clone + Send + Sync + 'static,
        C::Response: crate::Transport,
        C::Error: Into<BoxError>,
        C::Future: Send + 'static,
    {
        self.custom = Some(CustomConnector::new(connector));
        self
    }

    /// Whether hyper-util's pool is keyed by a four-byte key per upstream (`true`) or by each
    /// request's authority, as hyper-util does on its own (`false`). Default: `true`.
    ///
    /// The requests on the wire are the same either way; the short key saves hyper-util
    /// hashing and comparing the authority byte by byte several times per request (see
    /// [the module docs](super#how-requests-address-hyper-utils-pool)). Turn it off to see
    /// real authorities in hyper-util's own trace logs. HTTP/2 ([`http2_only`](Self::http2_only))
    /// always keys by authority.
    pub fn upstream_pool_keys(mut self, on: bool) -> Self {
        self.upstream_pool_keys = on;
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
            map: RwLock::new(Default::default()),
            primary: OnceLock::new(),
            routed: RwLock::new(Vec::new()),
            route_requests: self.upstream_pool_keys && !self.http2_only,
            http2_only: self.http2_only,
            custom: self.custom,
            #[cfg(feature = "rustls")]
            tls: self.tls.or_else(super::tls::ClientTls::default_roots),
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
        Ok(HygienicClient {
            shared: Arc::new(Shared { inner, upstreams }),
        })
    }
}

/// A pooled HTTP client over hyper-util's `Client` with explicit close ordering, per-upstream
/// pool settings, connection tracking and lease tracking.
///
/// Every request is a lease on its upstream's [`LeaseTracker`](crate::lease::LeaseTracker)
/// from the call until its response body is fully read or dropped, recorded with the call's
/// file and line: an unread body holds its connection, and is reported as a leak after the
/// upstream's leak threshold.
///
/// Cheap to clone: the clones share one pool (an `Arc` inside).
pub struct HygienicClient<B = http_body_util::Full<Bytes>> {
    shared: Arc<Shared<B>>,
}

/// What the clones of a client share, and what each request's future holds for a retry.
pub(crate) struct Shared<B> {
    pub(crate) inner: Client<HygienicConnector, B>,
    upstreams: Arc<Upstreams>,
}

impl<B> Clone for HygienicClient<B> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<B> fmt::Debug for HygienicClient<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HygienicClient")
            .field("upstreams", &self.shared.upstreams.all().len())
            .finish_non_exhaustive()
    }
}

impl HygienicClient {
    /// A builder with the defaults.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }
}

/// What a [`HygienicClient`] holds, seen from outside: its upstreams' pools, connections and
/// leases. Cheap to clone, and independent of the client's body type, so it can be handed to
/// observers (a census [`Sampler`](crate::census::Sampler), a monitoring endpoint).
#[derive(Clone)]
pub struct ClientView {
    upstreams: Arc<Upstreams>,
}

impl ClientView {
    /// A snapshot of every upstream's pool, connections and leases.
    pub fn snapshot(&self) -> Vec<UpstreamSnapshot> {
        self.upstreams.all().iter().map(|u| u.snapshot()).collect()
    }

    /// Every upstream's counts, totals and leases, without copying its connections.
    #[cfg_attr(not(feature = "page"), allow(dead_code))]
    pub(crate) fn summaries(&self) -> Vec<UpstreamSnapshot> {
        self.upstreams.all().iter().map(|u| u.summary()).collect()
    }

    /// The client's connector, for an HTTP stack of your own: hyper-util's legacy `Client`
    /// (`Client::builder(..).build(view.connector())`), or a tonic channel
    /// (`Endpoint::connect_with_connector(view.connector())`).
    ///
    /// Every connection it makes belongs to the client's upstream for the URI's authority (a
    /// configured one, or one made with the default settings): the upstream's socket policy,
    /// `max_connections` with its wait queue, source addresses, tracking, close order and
    /// census attribution apply, and its connections show in [`snapshot`](Self::snapshot).
    /// Leases are taken by [`HygienicClient::request`], so requests sent through another stack
    /// have none. The connection's bytes are read as HTTP/1 unless the client was built
    /// [`http2_only`](ClientBuilder::http2_only), as a gRPC client's must be.
    pub fn connector(&self) -> HygienicConnector {
        HygienicConnector {
            upstreams: self.upstreams.clone(),
        }
    }

    /// The lease tracker of each upstream used so far (its [`pool`](crate::lease::LeaseTracker::pool)
    /// is the upstream's name): the outstanding leases with their sites, leak checks, and
    /// [`testing`](crate::testing) assertions.
    pub fn lease_trackers(&self) -> Vec<crate::lease::LeaseTracker> {
        self.upstreams
            .all()
            .iter()
            .map(|u| u.tracker.clone())
            .collect()
    }
}

impl fmt::Debug for ClientView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientView").finish_non_exhaustive()
    }
}

/// The `Idempotency-Key` request header, which makes any method replayable.
static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// Whether a request may be sent twice: idempotent methods, or an `Idempotency-Key` header.
pub fn is_replayable<B>(req: &Request<B>) -> bool {
    matches!(
        *req.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    ) || req.headers().contains_key(&IDEMPOTENCY_KEY)
}

impl<B> HygienicClient<B> {
    /// A cheap, type-erased view of this client's upstreams, for observers such as a census
    /// sampler that attributes TIME_WAIT and CLOSE_WAIT to upstreams and lease sites.
    pub fn view(&self) -> ClientView {
        ClientView {
            upstreams: self.shared.upstreams.clone(),
        }
    }
}

impl<B> HygienicClient<B>
where
    B: ReplayBody + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    /// Sends a request. The lease it takes records this call's location.
    #[track_caller]
    pub fn request(&self, req: Request<B>) -> ResponseFuture<B> {
        let upstreams = &self.shared.upstreams;
        // The authority as written is looked up first: an upstream's key is its `host:port`,
        // so a URI with an explicit port and no user info finds its upstream without
        // normalising (or allocating) anything.
        let found = match req
            .uri()
            .authority()
            .and_then(|a| upstreams.find(a.as_str()))
        {
            Some(u) => Some(Ok(u)),
            None => authority_of(req.uri()).map(|a| upstreams.get(&a)),
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
        let mut req = req;
        let routed = match &upstream.route {
            Some(route) if upstreams.route_requests => match route_request(&mut req, route) {
                Ok(routed) => routed,
                Err(e) => {
                    return ResponseFuture::failed(Error::new(
                        Kind::InvalidUri,
                        upstream.name.clone(),
                        Some(e.into()),
                    ))
                }
            },
            _ => false,
        };
        if !routed && upstreams.route_requests && req.uri().port_u16() == Some(0) {
            // Port 0 marks the pool keys of routed upstreams, and no server listens on it.
            return ResponseFuture::failed(Error::new(
                Kind::InvalidUri,
                upstream.name.clone(),
                Some(format!("port 0 in request URI {}", req.uri()).into()),
            ));
        }
        // One clock reading for the lease and the request's deadlines.
        let now = tokio::time::Instant::now();
        let lease = ClientLease::take(upstream, std::panic::Location::caller(), now);
        // Retirement must take the connection out of the pool before the pool can hand it out
        // again: capture it, so it can be poisoned when its response says so.
        let cfg = &lease.upstream.config;
        let capture = (cfg.max_requests.is_some()
            || cfg.max_age.is_some()
            || cfg.max_idle < upstreams.pool_max_idle)
            .then(|| capture_connection(&mut req));
        // Whatever the close order: closing first only avoids the keep-alive race with a
        // server that keeps its advertised timeout, and an upstream may close an idle
        // connection at any time (a restart, a load balancer's idle reset).
        // Boxed: the future stays small, and moving it does not copy a whole request around.
        // Taken before the `Host` header goes in, so it copies no header map when the request
        // has no headers of its own; a retry puts the header back.
        // A streaming body cannot be copied: such a request is sent once.
        let replay = is_replayable(&req)
            .then(|| clone_request(&req))
            .flatten()
            .map(Box::new);
        if let Some(route) = lease.upstream.route.as_ref().filter(|_| routed) {
            set_host(&mut req, route);
        }
        // Each stale failure discards one pooled connection, and a fresh connection never
        // counts as stale, so the retries are bounded by the idle connections the pool can
        // hold; the bound only guards against a pool refilled by other requests meanwhile.
        let retries_left = cfg.max_idle + 1;
        let overrides = req.extensions().get::<Timeouts>();
        let deadlines = Deadlines::new(
            overrides
                .and_then(|t| t.response_head)
                .or(cfg.response_head_timeout),
            overrides.and_then(|t| t.total).or(cfg.timeout),
            now,
        );
        ResponseFuture {
            state: State::Sending {
                sending: self.shared.inner.request(req),
                shared: self.shared.clone(),
                replay,
                lease: Some(lease),
                capture,
                retries_left,
                deadlines,
                timer: None,
            },
        }
    }

    /// `GET uri`.
    #[track_caller]
    pub fn get(&self, uri: http::Uri) -> ResponseFuture<B>
    where
        B: Default,
    {
        let mut req = Request::new(B::default());
        *req.uri_mut() = uri;
        self.request(req)
    }
}

/// The client as a tower service, so that it composes with tower middleware
/// (`ServiceBuilder::new().layer(..).service(client)`). `call` is [`request`](HygienicClient::request):
/// its lease records the location of the `call`, which under middleware is the middleware's;
/// call `request` directly where the lease should name your own line.
impl<B> tower_service::Service<Request<B>> for HygienicClient<B>
where
    B: ReplayBody + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = http::Response<crate::client::LeasedBody>;
    type Error = Error;
    type Future = ResponseFuture<B>;

    /// Always ready: the wait for a connection slot under `max_connections` is part of the
    /// request, bounded by the upstream's acquire timeout.
    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    #[track_caller]
    fn call(&mut self, req: Request<B>) -> ResponseFuture<B> {
        self.request(req)
    }
}

/// The same through a shared reference (as reqwest's and hyper-util's clients offer): a
/// handler holding `&HygienicClient` can still compose it.
impl<B> tower_service::Service<Request<B>> for &HygienicClient<B>
where
    B: ReplayBody + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = http::Response<crate::client::LeasedBody>;
    type Error = Error;
    type Future = ResponseFuture<B>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    #[track_caller]
    fn call(&mut self, req: Request<B>) -> ResponseFuture<B> {
        self.request(req)
    }
}

/// Addresses an `http` request to its upstream's pool key (see [`Route`]); returns whether it
/// did. The `Host` header is the caller's to add.
fn route_request<B>(req: &mut Request<B>, route: &Route) -> Result<bool, http::Error> {
    if req.uri().scheme() != Some(&Scheme::HTTP)
        || req.method() == Method::CONNECT
        || req.version() == Version::HTTP_2
    {
        return Ok(false);
    }
    let mut parts = std::mem::take(req.uri_mut()).into_parts();
    parts.authority = Some(route.key.clone());
    // Cannot fail (an absolute URI's parts with another authority), but a failure would be
    // an error, not a request sent elsewhere.
    *req.uri_mut() = Uri::from_parts(parts)?;
    Ok(true)
}

/// Sets the `Host` header hyper-util would have written for a routed request, unless the
/// caller set one.
pub(crate) fn set_host<B>(req: &mut Request<B>, route: &Route) {
    if !req.headers().contains_key(HOST) {
        req.headers_mut().insert(HOST, route.host.clone());
    }
}

/// Whether a request was addressed to `route`'s pool key.
pub(crate) fn is_routed<B>(req: &Request<B>, route: &Route) -> bool {
    req.uri().authority() == Some(&route.key)
}

pub(crate) fn clone_request<B: ReplayBody>(req: &Request<B>) -> Option<Request<B>> {
    let mut copy = Request::new(req.body().try_clone()?);
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    if !req.headers().is_empty() {
        *copy.headers_mut() = req.headers().clone();
    }
    Some(copy)
}
