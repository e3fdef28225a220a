//! The exporter's own listener: [`ListenBuilder`] configures it, [`MetricsServer`] runs it.

use std::{
    net::{Ipv4Addr, SocketAddr},
    time::Duration,
};

use tokio::{sync::oneshot, task::JoinHandle};

use super::{MetricsService, PrometheusExporter};
use crate::{
    policy::BindError,
    server::{ConnectionRegistry, HygienicListener, ListenerBuilder, Server, ShutdownReport},
};

/// Where [`listen`](PrometheusExporter::listen) binds unless told otherwise: loopback only,
/// port 9464.
pub const DEFAULT_LISTEN_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 9464);

/// How long the exporter's own listener lets a scrape in flight finish at shutdown, unless
/// the listener given to [`ListenBuilder::listener`] says otherwise.
pub(crate) const DEFAULT_SHUTDOWN_DEADLINE: Duration = Duration::from_secs(1);

/// Configures the exporter's own listener; from [`PrometheusExporter::listen`].
#[derive(Debug, Clone)]
pub struct ListenBuilder {
    pub(crate) exporter: PrometheusExporter,
    pub(crate) addr: SocketAddr,
    pub(crate) listener: ListenerBuilder,
    #[cfg(feature = "page")]
    pub(crate) page: Option<crate::page::ConnectionsPage>,
}

impl ListenBuilder {
    /// The address to bind. Default: [`DEFAULT_LISTEN_ADDR`], loopback only; give a wider
    /// address on purpose to let other hosts scrape.
    pub fn addr(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// The listener's name, policy and limits. Default: `HygienicListener::builder()` named
    /// `metrics`, so the endpoint's own connections show up as `listener="metrics"`, with a
    /// shutdown deadline of 1 s: what [`MetricsServer::shutdown`] (or dropping the server)
    /// lets a scrape in flight take before it is cut. The limits' own shutdown deadline applies
    /// to a listener given here.
    pub fn listener(mut self, listener: ListenerBuilder) -> Self {
        self.listener = listener;
        self
    }

    /// Serves the live connections page too, at
    /// [`CONNECTIONS_PATH`](crate::page::CONNECTIONS_PATH) and
    /// [`CONNECTIONS_JSON_PATH`](crate::page::CONNECTIONS_JSON_PATH): on this listener, loopback
    /// unless told otherwise, it stays off the service's public port. Default: metrics only.
    #[cfg(feature = "page")]
    #[cfg_attr(docsrs, doc(cfg(feature = "page")))]
    pub fn page(mut self, page: crate::page::ConnectionsPage) -> Self {
        self.page = Some(page);
        self
    }

    /// Binds and starts serving [`METRICS_PATH`](super::METRICS_PATH) (and the connections
    /// page, when [given](Self::page); 404 elsewhere) with the crate's [`Server`].
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
            #[cfg(feature = "page")]
            page: self
                .page
                .as_ref()
                .map(crate::page::ConnectionsPage::service),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let signal = async move {
                // Resolves on an explicit stop and when the sender is dropped.
                let _ = stopped.await;
            };
            Server::new()
                .serve_with_shutdown(listener, service, signal)
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
#[must_use = "dropping it shuts the metrics endpoint down: keep it for as long as it should serve"]
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
