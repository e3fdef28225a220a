use std::{error::Error as StdError, fmt, future::Future, sync::Arc};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto::{self, Http1Builder, Http2Builder},
    service::TowerToHyperService,
};
use tower_service::Service;

use super::{
    connection::{flags, ConnectionHandle},
    handshake::TrackedListener,
    io::{TrackedStream, Transport},
    layer::TrackConnection,
    registry::ShutdownReport,
};

type BoxError = Box<dyn StdError + Send + Sync>;

/// The crate's own accept loop over hyper-util's HTTP/1 + HTTP/2 connection builder.
///
/// Use it for plain hyper services, and for what `axum::serve` cannot reach: HTTP/1 and HTTP/2
/// settings of the connection builder, HTTP/2 GOAWAY when a connection retires, and a graceful
/// shutdown whose deadline cuts what is still active and reports it. Every connection is
/// tracked and every request goes through [`TrackConnection`], whether or not the service
/// already has the layer.
///
/// An axum `Router` is served as it is, but pass it as `router.with_state(())`: its handlers
/// then become routes once, not again on every request (as `axum::serve` does through its
/// make-service).
///
/// ```no_run
/// use std::{convert::Infallible, time::Duration};
/// use conn_hygiene::server::{ConnectionLimits, HygienicListener, Server};
/// use http_body_util::Full;
/// use bytes::Bytes;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let limits = ConnectionLimits::builder()
///     .shutdown_deadline(Duration::from_secs(10)) // then cut what is still active, and count it
///     .build()?;
/// let listener = HygienicListener::builder().limits(limits).bind("127.0.0.1:8080").await?;
/// let service = tower::service_fn(|_req: http::Request<hyper::body::Incoming>| async {
///     Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(b"hello"))))
/// });
/// let report = Server::new()
///     .serve_with_shutdown(listener, service, async { let _ = tokio::signal::ctrl_c().await; })
///     .await;
/// println!("drained {}, cut {}", report.drained, report.cut);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Server {
    builder: auto::Builder<TokioExecutor>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server").finish_non_exhaustive()
    }
}

impl Default for Server {
    fn default() -> Self {
        Self::new()
    }
}

impl Server {
    /// A server speaking HTTP/1 and HTTP/2 (detected per connection), with hyper's timers on.
    ///
    /// The header timeout is enforced by the tracked stream (it also covers the first bytes and
    /// protocol detection), so hyper's own header timer is turned off; hyper's HTTP/1
    /// half-close support stays off, since [`HalfClose`](super::HalfClose) decides that.
    pub fn new() -> Self {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(None)
            .half_close(false);
        builder.http2().timer(TokioTimer::new());
        Self { builder }
    }

    /// HTTP/1 settings of the connection builder.
    pub fn http1(&mut self) -> Http1Builder<'_, TokioExecutor> {
        self.builder.http1()
    }

    /// HTTP/2 settings of the connection builder.
    pub fn http2(&mut self) -> Http2Builder<'_, TokioExecutor> {
        self.builder.http2()
    }

    /// Serves until the process ends.
    pub async fn serve<L, S, B>(&self, listener: L, service: S)
    where
        L: TrackedListener,
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        self.serve_with_shutdown(listener, service, std::future::pending())
            .await;
    }

    /// Serves until `signal` resolves, then shuts down gracefully: stops accepting, closes idle
    /// connections at once, lets active ones finish (HTTP/1 `Connection: close`, HTTP/2
    /// GOAWAY), and cuts those still open at the listener's
    /// [shutdown deadline](super::ConnectionLimitsBuilder::shutdown_deadline). Returns how many
    /// drained and how many were cut.
    pub async fn serve_with_shutdown<L, S, B, F>(
        &self,
        mut listener: L,
        service: S,
        signal: F,
    ) -> ShutdownReport
    where
        L: TrackedListener,
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
        F: Future<Output = ()>,
    {
        let registry = listener.registry().clone();
        let builder = Arc::new(self.builder.clone());
        tokio::pin!(signal);
        loop {
            tokio::select! {
                biased;
                _ = &mut signal => break,
                (stream, _) = listener.accept() => {
                    let conn = stream.connection().clone();
                    conn.0.set(flags::DRIVER);
                    let svc = TrackConnection::bound(service.clone(), conn.clone());
                    tokio::spawn(drive(builder.clone(), stream, svc, conn));
                }
            }
        }
        drop(listener);
        let report = registry.shutdown().await;
        tracing::info!(
            listener = registry.name(),
            drained = report.drained,
            cut = report.cut,
            "server shut down"
        );
        report
    }
}

async fn drive<IO, S, B>(
    builder: Arc<auto::Builder<TokioExecutor>>,
    stream: TrackedStream<IO>,
    service: TrackConnection<S>,
    conn: ConnectionHandle,
) where
    IO: Transport,
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let shared = conn.0;
    let connection = builder
        .serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service));
    tokio::pin!(connection);
    let mut graceful = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(id = shared.id, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = shared.driver.notified() => {
                if shared.has(flags::CUT) {
                    // Dropping the connection future drops the handlers and the socket.
                    return;
                }
                // HTTP/1: the stack closes after the response in progress. HTTP/2 at shutdown:
                // the stack's GOAWAY, whose final one refuses streams opened later. A retiring
                // HTTP/2 connection is left to its stream, whose GOAWAY refuses nothing.
                let h2 = shared.has(flags::H2);
                if !graceful
                    && shared.is_retiring()
                    && (!h2 || shared.observer.is_shutting_down())
                {
                    graceful = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}
