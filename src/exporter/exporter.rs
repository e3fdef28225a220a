//! [`PrometheusExporter`]: renders the recorder's page and hands it out as a service, a
//! router or a listener of its own; keeps histograms drained in the background.

use std::{fmt, sync::Arc, time::Duration};

use tokio::net::ToSocketAddrs;

use super::{
    listen::DEFAULT_SHUTDOWN_DEADLINE, ExporterBuilder, ExporterError, ListenBuilder,
    MetricsServer, MetricsService, PrometheusHandle, DEFAULT_LISTEN_ADDR,
};
use crate::{policy::BindError, server::HygienicListener};

pub(crate) struct Shared {
    pub(crate) handle: PrometheusHandle,
}

/// Renders and serves the metrics page of a Prometheus recorder; see the
/// [module docs](super). Cheap to clone.
#[derive(Clone)]
pub struct PrometheusExporter {
    pub(crate) shared: Arc<Shared>,
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

    pub(crate) fn new(handle: PrometheusHandle, upkeep: Option<Duration>) -> Self {
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
    /// Gauges read from live state are collected first ([`metrics::collect`](crate::metrics::collect)).
    pub fn render(&self) -> String {
        crate::metrics::collect();
        self.shared.handle.render()
    }

    /// A tower service answering `GET` (and `HEAD`) on any path with the metrics page, and 405
    /// to other methods. Route it at the path you want.
    pub fn service(&self) -> MetricsService {
        MetricsService {
            shared: self.shared.clone(),
            only_metrics_path: false,
            #[cfg(feature = "page")]
            page: None,
        }
    }

    /// An axum router serving the metrics page at [`METRICS_PATH`](super::METRICS_PATH), to
    /// [`merge`](axum::Router::merge) into your app (or nest elsewhere).
    #[cfg(feature = "axum")]
    #[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
    pub fn router<S>(&self) -> axum::Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        axum::Router::new().route_service(super::METRICS_PATH, self.service())
    }

    /// Configures the exporter's own listener: [`DEFAULT_LISTEN_ADDR`] (loopback) and a
    /// hygienic listener named `metrics` unless told otherwise.
    pub fn listen(&self) -> ListenBuilder {
        ListenBuilder {
            exporter: self.clone(),
            addr: DEFAULT_LISTEN_ADDR,
            #[cfg(feature = "page")]
            page: None,
            listener: HygienicListener::builder().name("metrics").limits(
                crate::server::ConnectionLimits {
                    shutdown_deadline: DEFAULT_SHUTDOWN_DEADLINE,
                    ..Default::default()
                },
            ),
        }
    }

    /// Serves [`METRICS_PATH`](super::METRICS_PATH) on its own hygienic listener bound to `addr` (named `metrics`):
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
