//! A Prometheus exporter over `metrics-exporter-prometheus` (feature `exporter`).
//!
//! The rest of the crate only emits through the [`metrics`] facade. This module is the one place
//! that installs a recorder, and only when you call [`PrometheusExporter::install`] (or
//! [`ExporterBuilder::install`]) from your executable. Installing:
//!
//! - builds a Prometheus recorder with histogram buckets chosen for the crate's histograms
//!   ([`DURATION_BUCKETS`] for connection and lease durations, [`SAMPLE_COST_BUCKETS`] for the
//!   census sample cost, [`REQUESTS_PER_CONNECTION_BUCKETS`] for requests per connection), so
//!   they render as real, aggregatable Prometheus histograms;
//! - publishes every help text and unit ([`crate::metrics::describe`]);
//! - sets the recorder as the global one, or returns
//!   [`ExporterError::RecorderAlreadyInstalled`] if the process already has one.
//!
//! Install first, before binding listeners or building clients and pools: they take their
//! metric handles when created, from the recorder installed at that moment (with none, the
//! facade's no-op one, whose numbers are lost).
//!
//! The returned [`PrometheusExporter`] serves the metrics page in the text exposition format
//! ([`CONTENT_TYPE`]) three ways:
//!
//! - [`router`](PrometheusExporter::router) (feature `axum`): an axum `Router` answering
//!   `GET /metrics`, to merge into your app;
//! - [`service`](PrometheusExporter::service): a tower service for any other framework;
//! - [`serve`](PrometheusExporter::serve) / [`listen`](PrometheusExporter::listen): its own
//!   [`HygienicListener`] and [`Server`], on `127.0.0.1` unless told otherwise, so the metrics
//!   endpoint is itself tracked, timed out and drained like any other.
//!
//! The page carries metric names, the listener, upstream and pool names you chose, and closed
//! label sets (state, closer, reason, kind). It never carries a peer address, a path or anything
//! else a request controls.
//!
//! # Example
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use conn_hygiene::{
//!     exporter::PrometheusExporter,
//!     server::{HygienicListener, TrackConnection},
//! };
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let exporter = PrometheusExporter::install()?;
//! let app = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .merge(exporter.router());
//! let listener = HygienicListener::bind("0.0.0.0:8080").await?;
//! axum::serve(listener, TrackConnection::new(app)).await?;
//! # Ok(()) }
//! ```
//!
//! Or on a separate, loopback-only port:
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let exporter = conn_hygiene::exporter::PrometheusExporter::install()?;
//! let metrics = exporter.listen().bind().await?; // 127.0.0.1:9464
//! println!("metrics at http://{}/metrics", metrics.local_addr());
//! # Ok(()) }
//! ```
//!
//! Rendering without installing anything globally (tests, or combining recorders):
//!
//! ```
//! use conn_hygiene::exporter::PrometheusExporter;
//!
//! let (recorder, exporter) = PrometheusExporter::builder().build().unwrap();
//! metrics::with_local_recorder(&recorder, || {
//!     metrics::counter!("conn_hygiene_server_connections_opened_total", "listener" => "api")
//!         .increment(3);
//! });
//! let page = exporter.render();
//! assert!(page.contains("# TYPE conn_hygiene_server_connections_opened_total counter"));
//! assert!(page.contains("conn_hygiene_server_connections_opened_total{listener=\"api\"} 3"));
//! ```

use std::{
    convert::Infallible,
    error::Error as StdError,
    fmt,
    future::{ready, Ready},
    net::{Ipv4Addr, SocketAddr},
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use tokio::{net::ToSocketAddrs, sync::oneshot, task::JoinHandle};
use tower_service::Service;

pub use metrics_exporter_prometheus::{Matcher, PrometheusHandle, PrometheusRecorder};

use crate::{
    metrics::names,
    policy::BindError,
    server::{ConnectionRegistry, HygienicListener, ListenerBuilder, Server, ShutdownReport},
};

/// Content type of the metrics page: the Prometheus text exposition format, version 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The path the metrics page is served at by [`router`](PrometheusExporter::router) and by the
/// exporter's own listener.
pub const METRICS_PATH: &str = "/metrics";

/// Where [`listen`](PrometheusExporter::listen) binds unless told otherwise: loopback only,
/// port 9464.
pub const DEFAULT_LISTEN_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 9464);

/// Bucket bounds, in seconds, for the crate's duration histograms (`conn_hygiene_*_seconds`):
/// from a millisecond (a lease returned at once, a refused connection) to an hour (a long-lived
/// keep-alive connection), dense around the usual idle timeouts and leak thresholds.
pub const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
    600.0, 1800.0, 3600.0,
];

/// Bucket bounds for requests served per connection: `1` alone is its own bucket, since a
/// mass of one-request connections is the signature of a client that does not reuse them.
pub const REQUESTS_PER_CONNECTION_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 10000.0,
];

/// Bucket bounds, in seconds, for what one census sample costs
/// (`conn_hygiene_sampler_duration_seconds`): 100 µs (the counters tier) to 5 s (a full walk of
/// a very large socket table).
pub const SAMPLE_COST_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// How often histogram upkeep runs unless told otherwise.
const DEFAULT_UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// How long the exporter's own listener lets a scrape in flight finish at shutdown.
const DEFAULT_SHUTDOWN_DEADLINE: Duration = Duration::from_secs(1);

/// A setting of the [`ExporterBuilder`] that cannot work, or a recorder already installed.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ExporterError {
    /// A bucket override has no bounds.
    EmptyBuckets {
        /// The matcher the buckets were given for.
        matcher: Matcher,
    },
    /// A bucket override has a bound that is not finite, or bounds not strictly increasing.
    InvalidBuckets {
        /// The matcher the buckets were given for.
        matcher: Matcher,
        /// The rejected bounds.
        bounds: Vec<f64>,
    },
    /// `upkeep_interval` is `Some(Duration::ZERO)`.
    ZeroUpkeepInterval,
    /// The process already has a global `metrics` recorder; there can be only one.
    RecorderAlreadyInstalled,
}

impl fmt::Display for ExporterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EmptyBuckets { matcher } => write!(
                f,
                "invalid exporter setting: buckets for {matcher:?} are empty; give at least one bound"
            ),
            Self::InvalidBuckets { matcher, bounds } => write!(
                f,
                "invalid exporter setting: buckets for {matcher:?} = {bounds:?}; expected finite, \
                 strictly increasing bounds"
            ),
            Self::ZeroUpkeepInterval => f.write_str(
                "invalid exporter setting: upkeep_interval = 0s; use None to turn upkeep off",
            ),
            Self::RecorderAlreadyInstalled => f.write_str(
                "cannot install the Prometheus recorder: a global metrics recorder is already \
                 installed in this process",
            ),
        }
    }
}

impl StdError for ExporterError {}

/// Configures a [`PrometheusExporter`]; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct ExporterBuilder {
    buckets: Vec<(Matcher, Vec<f64>)>,
    global_labels: Vec<(String, String)>,
    upkeep_interval: Option<Duration>,
}

impl Default for ExporterBuilder {
    fn default() -> Self {
        Self {
            buckets: Vec::new(),
            global_labels: Vec::new(),
            upkeep_interval: Some(DEFAULT_UPKEEP_INTERVAL),
        }
    }
}

impl ExporterBuilder {
    /// Histogram buckets for the metrics `matcher` selects, added to (and, for the same matcher,
    /// replacing) the crate's defaults. Checked when built: at least one bound, all finite and
    /// strictly increasing. Histograms that no matcher selects render as summaries.
    ///
    /// Default: [`DURATION_BUCKETS`] for connection and lease durations (and, as a fallback,
    /// any other `conn_hygiene_` histogram), [`REQUESTS_PER_CONNECTION_BUCKETS`] for the
    /// requests-per-connection histograms, [`SAMPLE_COST_BUCKETS`] for the census sample cost.
    pub fn buckets(mut self, matcher: Matcher, bounds: &[f64]) -> Self {
        self.buckets.push((matcher, bounds.to_vec()));
        self
    }

    /// A label added to every series (`instance`-like labels are better set by Prometheus; this
    /// is for values only the process knows, such as a build version). Default: none.
    pub fn global_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.global_labels.push((key.into(), value.into()));
        self
    }

    /// How often histogram samples are drained into their buckets in the background, so memory
    /// stays bounded between scrapes. The task runs on the Tokio runtime current at build time
    /// (none outside a runtime; every render drains as well) and ends once the exporter and
    /// every service cloned from it are dropped. `None` turns it off. Default: 5 s.
    pub fn upkeep_interval(mut self, interval: Option<Duration>) -> Self {
        self.upkeep_interval = interval;
        self
    }

    /// Builds the recorder without installing it, and an exporter rendering it. The crate's
    /// descriptions are already recorded. Use the recorder with `metrics::with_local_recorder`,
    /// or install it yourself.
    pub fn build(self) -> Result<(PrometheusRecorder, PrometheusExporter), ExporterError> {
        let upkeep = self.upkeep_interval;
        let recorder = self.build_recorder()?;
        let exporter = PrometheusExporter::new(recorder.handle(), upkeep);
        Ok((recorder, exporter))
    }

    /// Builds the recorder, publishes the crate's descriptions, and installs it as the global
    /// `metrics` recorder. Fails with [`ExporterError::RecorderAlreadyInstalled`] when the process
    /// already has one.
    pub fn install(self) -> Result<PrometheusExporter, ExporterError> {
        let upkeep = self.upkeep_interval;
        let recorder = self.build_recorder()?;
        let handle = recorder.handle();
        metrics::set_global_recorder(recorder)
            .map_err(|_| ExporterError::RecorderAlreadyInstalled)?;
        Ok(PrometheusExporter::new(handle, upkeep))
    }

    fn build_recorder(self) -> Result<PrometheusRecorder, ExporterError> {
        if self.upkeep_interval == Some(Duration::ZERO) {
            return Err(ExporterError::ZeroUpkeepInterval);
        }
        let mut buckets = default_buckets();
        buckets.extend(self.buckets);
        let mut builder = metrics_exporter_prometheus::PrometheusBuilder::new();
        for (matcher, bounds) in buckets {
            if bounds.is_empty() {
                return Err(ExporterError::EmptyBuckets { matcher });
            }
            let increasing = bounds.windows(2).all(|w| w[0] < w[1]);
            if !increasing || bounds.iter().any(|b| !b.is_finite()) {
                return Err(ExporterError::InvalidBuckets { matcher, bounds });
            }
            // Cannot fail: the only error is empty bounds, checked above.
            builder = builder
                .set_buckets_for_metric(matcher.clone(), &bounds)
                .map_err(|_| ExporterError::EmptyBuckets { matcher })?;
        }
        for (key, value) in self.global_labels {
            builder = builder.add_global_label(key, value);
        }
        let recorder = builder.build_recorder();
        metrics::with_local_recorder(&recorder, crate::metrics::describe);
        Ok(recorder)
    }
}

/// The crate's defaults. Matchers apply full first, then prefix, then suffix, so the explicit
/// names win over the `conn_hygiene_` fallback.
fn default_buckets() -> Vec<(Matcher, Vec<f64>)> {
    let full = |name: &str, bounds: &[f64]| (Matcher::Full(name.to_owned()), bounds.to_vec());
    vec![
        full(names::SERVER_CONNECTION_DURATION_SECONDS, DURATION_BUCKETS),
        full(names::LEASE_DURATION_SECONDS, DURATION_BUCKETS),
        full(names::SAMPLER_DURATION_SECONDS, SAMPLE_COST_BUCKETS),
        full(
            names::SERVER_REQUESTS_PER_CONNECTION,
            REQUESTS_PER_CONNECTION_BUCKETS,
        ),
        full(
            names::CLIENT_REQUESTS_PER_CONNECTION,
            REQUESTS_PER_CONNECTION_BUCKETS,
        ),
        // Any other histogram of the crate is a duration in seconds.
        (
            Matcher::Prefix("conn_hygiene_".to_owned()),
            DURATION_BUCKETS.to_vec(),
        ),
    ]
}

struct Shared {
    handle: PrometheusHandle,
}

/// Renders and serves the metrics page of a Prometheus recorder; see the
/// [module docs](self). Cheap to clone.
#[derive(Clone)]
pub struct PrometheusExporter {
    shared: Arc<Shared>,
}

impl fmt::Debug for PrometheusExporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrometheusExporter").finish_non_exhaustive()
    }
}

impl PrometheusExporter {
    /// A builder with the defaults.
    pub fn builder() -> ExporterBuilder {
        ExporterBuilder::default()
    }

    /// Installs the recorder with the defaults: shortcut for `builder().install()`.
    pub fn install() -> Result<Self, ExporterError> {
        Self::builder().install()
    }

    fn new(handle: PrometheusHandle, upkeep: Option<Duration>) -> Self {
        let shared = Arc::new(Shared { handle });
        if let Some(every) = upkeep {
            spawn_upkeep(&shared, every);
        }
        Self { shared }
    }

    /// The handle of the underlying recorder.
    pub fn handle(&self) -> &PrometheusHandle {
        &self.shared.handle
    }

    /// The metrics page in the text exposition format.
    pub fn render(&self) -> String {
        self.shared.handle.render()
    }

    /// A tower service answering `GET` (and `HEAD`) on any path with the metrics page, and 405
    /// to other methods. Route it at the path you want.
    pub fn service(&self) -> MetricsService {
        MetricsService {
            shared: self.shared.clone(),
            only_metrics_path: false,
        }
    }

    /// An axum router serving the metrics page at [`METRICS_PATH`], to
    /// [`merge`](axum::Router::merge) into your app (or nest elsewhere).
    #[cfg(feature = "axum")]
    #[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
    pub fn router<S>(&self) -> axum::Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        axum::Router::new().route_service(METRICS_PATH, self.service())
    }

    /// Configures the exporter's own listener: [`DEFAULT_LISTEN_ADDR`] (loopback) and a
    /// hygienic listener named `metrics` unless told otherwise.
    pub fn listen(&self) -> ListenBuilder {
        ListenBuilder {
            exporter: self.clone(),
            addr: DEFAULT_LISTEN_ADDR,
            listener: HygienicListener::builder().name("metrics"),
            shutdown_deadline: DEFAULT_SHUTDOWN_DEADLINE,
        }
    }

    /// Serves [`METRICS_PATH`] on its own hygienic listener bound to `addr` (named `metrics`):
    /// shortcut for `listen().addr(addr).bind()` taking anything that resolves.
    pub async fn serve(&self, addr: impl ToSocketAddrs) -> Result<MetricsServer, BindError> {
        let builder = self.listen();
        let listener = builder.listener.clone().bind(addr).await?;
        Ok(builder.serve_on(listener))
    }
}

fn spawn_upkeep(shared: &Arc<Shared>, every: Duration) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::debug!("no Tokio runtime: histogram upkeep runs at each render only");
        return;
    };
    let weak = Arc::downgrade(shared);
    runtime.spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        // Ends once the exporter and every service cloned from it are gone.
        loop {
            tick.tick().await;
            let Some(shared) = weak.upgrade() else { break };
            shared.handle.run_upkeep();
        }
    });
}

/// Tower service answering with the metrics page; see [`PrometheusExporter::service`].
#[derive(Clone)]
pub struct MetricsService {
    shared: Arc<Shared>,
    only_metrics_path: bool,
}

impl fmt::Debug for MetricsService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsService")
            .field("only_metrics_path", &self.only_metrics_path)
            .finish_non_exhaustive()
    }
}

impl MetricsService {
    fn respond(&self, method: &Method, path: &str) -> Response<String> {
        if self.only_metrics_path && path != METRICS_PATH {
            return plain(
                StatusCode::NOT_FOUND,
                format!("not found; metrics are at {METRICS_PATH}\n"),
            );
        }
        let body = match *method {
            Method::GET => self.shared.handle.render(),
            Method::HEAD => String::new(),
            _ => {
                let mut res = plain(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method not allowed\n".into(),
                );
                res.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
                return res;
            }
        };
        let mut res = Response::new(body);
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        res
    }
}

fn plain(status: StatusCode, body: String) -> Response<String> {
    let mut res = Response::new(body);
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}

impl<B> Service<Request<B>> for MetricsService {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = Ready<Result<Response<String>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        ready(Ok(self.respond(req.method(), req.uri().path())))
    }
}

/// Configures the exporter's own listener; from [`PrometheusExporter::listen`].
#[derive(Debug, Clone)]
pub struct ListenBuilder {
    exporter: PrometheusExporter,
    addr: SocketAddr,
    listener: ListenerBuilder,
    shutdown_deadline: Duration,
}

impl ListenBuilder {
    /// The address to bind. Default: [`DEFAULT_LISTEN_ADDR`], loopback only; give a wider
    /// address on purpose to let other hosts scrape.
    pub fn addr(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// The listener's name, policy and limits. Default: `HygienicListener::builder()` named
    /// `metrics`, so the endpoint's own connections show up as `listener="metrics"`.
    pub fn listener(mut self, listener: ListenerBuilder) -> Self {
        self.listener = listener;
        self
    }

    /// How long a scrape in flight may finish once [`MetricsServer::shutdown`] is called (or the
    /// server dropped) before it is cut. Default: 1 s.
    pub fn shutdown_deadline(mut self, deadline: Duration) -> Self {
        self.shutdown_deadline = deadline;
        self
    }

    /// Binds and starts serving [`METRICS_PATH`] (404 elsewhere) with the crate's [`Server`].
    pub async fn bind(self) -> Result<MetricsServer, BindError> {
        let listener = self.listener.clone().bind(self.addr).await?;
        Ok(self.serve_on(listener))
    }

    /// Starts serving on a listener you bound yourself; the builder's address and listener
    /// settings are ignored. Must be called within a Tokio runtime.
    pub fn serve_on(self, listener: HygienicListener) -> MetricsServer {
        let local_addr = listener.local_addr();
        let registry = listener.registry().clone();
        let service = MetricsService {
            shared: self.exporter.shared.clone(),
            only_metrics_path: true,
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let deadline = self.shutdown_deadline;
        let task = tokio::spawn(async move {
            let signal = async move {
                // Resolves on an explicit stop and when the sender is dropped.
                let _ = stopped.await;
            };
            Server::new()
                .serve_with_shutdown(listener, service, signal, deadline)
                .await
        });
        MetricsServer {
            local_addr,
            registry,
            stop: Some(stop),
            task: Some(task),
        }
    }
}

/// The exporter's own metrics endpoint, running; from [`ListenBuilder::bind`] or
/// [`PrometheusExporter::serve`]. Dropping it starts a graceful shutdown in the background;
/// [`shutdown`](Self::shutdown) waits for it.
#[derive(Debug)]
pub struct MetricsServer {
    local_addr: SocketAddr,
    registry: ConnectionRegistry,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<ShutdownReport>>,
}

impl MetricsServer {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The registry of the endpoint's own connections.
    pub fn registry(&self) -> &ConnectionRegistry {
        &self.registry
    }

    /// Stops accepting, lets scrapes in flight finish within the shutdown deadline, and reports.
    pub async fn shutdown(mut self) -> ShutdownReport {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let Some(task) = self.task.take() else {
            return ShutdownReport::default();
        };
        match task.await {
            Ok(report) => report,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => ShutdownReport::default(),
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_settings_are_checked() {
        let err = PrometheusExporter::builder()
            .buckets(Matcher::Full("x_seconds".into()), &[])
            .build()
            .unwrap_err();
        assert_eq!(
            err,
            ExporterError::EmptyBuckets {
                matcher: Matcher::Full("x_seconds".into())
            }
        );
        assert!(err.to_string().contains("x_seconds"), "{err}");

        let err = PrometheusExporter::builder()
            .buckets(Matcher::Suffix("_bytes".into()), &[1.0, 1.0, 2.0])
            .build()
            .unwrap_err();
        assert!(
            matches!(err, ExporterError::InvalidBuckets { ref bounds, .. } if bounds == &[1.0, 1.0, 2.0])
        );
        assert!(err.to_string().contains("[1.0, 1.0, 2.0]"), "{err}");

        let err = PrometheusExporter::builder()
            .buckets(Matcher::Suffix("_bytes".into()), &[1.0, f64::NAN])
            .build()
            .unwrap_err();
        assert!(matches!(err, ExporterError::InvalidBuckets { .. }));

        let err = PrometheusExporter::builder()
            .upkeep_interval(Some(Duration::ZERO))
            .build()
            .unwrap_err();
        assert_eq!(err, ExporterError::ZeroUpkeepInterval);
        assert!(err.to_string().contains("upkeep_interval"), "{err}");
    }

    #[test]
    fn default_buckets_are_valid_and_increasing() {
        for (matcher, bounds) in default_buckets() {
            assert!(!bounds.is_empty(), "{matcher:?}");
            assert!(bounds.windows(2).all(|w| w[0] < w[1]), "{matcher:?}");
        }
    }

    #[test]
    fn service_answers_methods_and_paths() {
        let (_recorder, exporter) = PrometheusExporter::builder()
            .upkeep_interval(None)
            .build()
            .unwrap();
        let svc = exporter.service();
        let res = svc.respond(&Method::GET, "/anything");
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()[header::CONTENT_TYPE], CONTENT_TYPE);
        let res = svc.respond(&Method::HEAD, "/metrics");
        assert_eq!(res.status(), StatusCode::OK);
        assert!(res.body().is_empty());
        let res = svc.respond(&Method::POST, "/metrics");
        assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(res.headers()[header::ALLOW], "GET, HEAD");

        let own = MetricsService {
            shared: exporter.shared.clone(),
            only_metrics_path: true,
        };
        assert_eq!(
            own.respond(&Method::GET, "/other").status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            own.respond(&Method::GET, METRICS_PATH).status(),
            StatusCode::OK
        );
    }
}
