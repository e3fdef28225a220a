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
//! Install it before or after binding listeners and building clients, pools and samplers: the
//! order does not matter. They take their metric handles when created; taken while no recorder
//! is installed, the handles keep what they count and are bound to this recorder when it is
//! installed, counts included (see [`crate::metrics`]).
//!
//! The returned [`PrometheusExporter`] serves the metrics page in the text exposition format
//! ([`CONTENT_TYPE`]) three ways:
//!
//! - [`router`](PrometheusExporter::router) (feature `axum`): an axum `Router` answering
//!   `GET /metrics`, to merge into your app;
//! - [`service`](PrometheusExporter::service): a tower service for any other framework;
//! - [`serve`](PrometheusExporter::serve) / [`listen`](PrometheusExporter::listen): its own
//!   [`HygienicListener`](crate::server::HygienicListener) and
//!   [`Server`](crate::server::Server), on `127.0.0.1` unless told otherwise, so the metrics
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
//!     server::{HygienicListener, MakeTrackConnection},
//! };
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let exporter = PrometheusExporter::install()?;
//! let app = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .merge(exporter.router());
//! let listener = HygienicListener::bind("0.0.0.0:8080").await?;
//! axum::serve(listener, MakeTrackConnection::new(app)).await?;
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

mod builder;
mod error;
#[allow(clippy::module_inception)]
mod exporter;
mod listen;
mod service;

pub use metrics_exporter_prometheus::{Matcher, PrometheusHandle, PrometheusRecorder};

pub use self::{
    builder::{
        ExporterBuilder, DURATION_BUCKETS, REQUESTS_PER_CONNECTION_BUCKETS, SAMPLE_COST_BUCKETS,
    },
    error::ExporterError,
    exporter::PrometheusExporter,
    listen::{ListenBuilder, MetricsServer, DEFAULT_LISTEN_ADDR},
    service::{MetricsService, CONTENT_TYPE, METRICS_PATH},
};
