use std::{fmt, io, net::SocketAddr, sync::Arc, time::Duration};

use socket2::SockRef;
use tokio::{
    net::{TcpListener, TcpStream, ToSocketAddrs},
    sync::{OwnedSemaphorePermit, Semaphore},
};

use super::{
    connection::ConnShared,
    io::TrackedStream,
    limits::ConnectionLimits,
    registry::{AcceptErrorKind, ConnectionRegistry},
};
use crate::{
    metrics::names,
    policy::{
        ApplyReport, BindError, EffectiveBacklog, ListenerConfigError, SocketPolicy, SocketSide,
    },
};

const BACKOFF_MIN: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Configures and binds a [`HygienicListener`].
#[derive(Debug, Clone)]
pub struct ListenerBuilder {
    name: Arc<str>,
    policy: SocketPolicy,
    limits: ConnectionLimits,
    max_connections: Option<usize>,
}

impl ListenerBuilder {
    /// The listener's name, used as the `listener` label of its metrics. Default: `"http"`.
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// The socket policy for the listening and accepted sockets. Default: the preset of
    /// [`SocketPolicy::default`].
    pub fn policy(mut self, policy: SocketPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The limits enforced on each connection. Default: [`ConnectionLimits::default`].
    pub fn limits(mut self, limits: ConnectionLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Caps concurrent connections: beyond it, new connections wait in the kernel's accept queue
    /// until one closes. Default: no cap. `Some(0)` is refused when binding.
    pub fn max_connections(mut self, max: impl Into<Option<usize>>) -> Self {
        self.max_connections = max.into();
        self
    }

    /// Binds to the first address `addr` resolves to that can be bound.
    pub async fn bind(self, addr: impl ToSocketAddrs) -> Result<HygienicListener, BindError> {
        self.validate()?;
        let addrs = tokio::net::lookup_host(addr)
            .await
            .map_err(BindError::resolve)?;
        let mut last = None;
        for addr in addrs {
            match self.policy.bind_std(addr) {
                Ok((std, report, backlog)) => {
                    let listener = TcpListener::from_std(std).map_err(|e| {
                        BindError::new("register the listener with the runtime", addr, e)
                    })?;
                    return Ok(self.finish(listener, report, backlog));
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            BindError::resolve(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the address resolved to nothing",
            ))
        }))
    }

    /// Adopts an already bound listener (from systemd socket activation, say). Its backlog was
    /// chosen by whoever called `listen()`; the policy still applies to accepted sockets.
    pub fn from_std(self, listener: std::net::TcpListener) -> Result<HygienicListener, BindError> {
        self.validate()?;
        let addr = listener.local_addr().map_err(|e| {
            BindError::new(
                "read the adopted listener's address",
                SocketAddr::from(([0, 0, 0, 0], 0)),
                e,
            )
        })?;
        listener
            .set_nonblocking(true)
            .map_err(|e| BindError::new("make the adopted listener non-blocking", addr, e))?;
        let report = self
            .policy
            .apply(SockRef::from(&listener), SocketSide::Listener);
        let backlog = EffectiveBacklog::new(self.policy.backlog(), crate::policy::read_somaxconn());
        let listener = TcpListener::from_std(listener)
            .map_err(|e| BindError::new("register the listener with the runtime", addr, e))?;
        Ok(self.finish(listener, report, backlog))
    }

    /// A cap of zero connections would never accept anything: refuse it, naming the setting.
    fn validate(&self) -> Result<(), BindError> {
        if let Some(value @ 0) = self.max_connections {
            return Err(BindError::setting(ListenerConfigError::MaxConnections {
                value,
            }));
        }
        Ok(())
    }

    fn finish(
        self,
        listener: TcpListener,
        report: ApplyReport,
        backlog: EffectiveBacklog,
    ) -> HygienicListener {
        let name = self.name.to_string();
        crate::metrics::resolve(|| {
            metrics::gauge!(names::SERVER_LISTEN_BACKLOG, "listener" => name.clone(), "kind" => "requested")
                .set(backlog.requested as f64);
            metrics::gauge!(names::SERVER_LISTEN_BACKLOG, "listener" => name, "kind" => "effective")
                .set(backlog.effective as f64);
        });
        let local_addr = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let registry = ConnectionRegistry::new(self.name, local_addr, self.policy, self.limits);
        registry.set_backlog(backlog);
        HygienicListener {
            inner: listener,
            registry,
            limit: self.max_connections.map(|n| Arc::new(Semaphore::new(n))),
            backlog,
            report,
            local_addr,
            backoff: BACKOFF_MIN,
        }
    }
}

/// A TCP listener that binds with a [`SocketPolicy`], applies it to every accepted socket,
/// survives accept errors with backoff, can cap concurrent connections, and tracks every
/// connection in its [`ConnectionRegistry`].
///
/// It is an `axum::serve::Listener` (feature `axum`), a tonic incoming stream
/// ([`into_incoming`](Self::into_incoming), feature `tonic`), and the listener of the crate's own
/// [`Server`](super::Server).
pub struct HygienicListener {
    inner: TcpListener,
    registry: ConnectionRegistry,
    limit: Option<Arc<Semaphore>>,
    backlog: EffectiveBacklog,
    report: ApplyReport,
    local_addr: SocketAddr,
    backoff: Duration,
}

impl fmt::Debug for HygienicListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HygienicListener")
            .field("local_addr", &self.local_addr)
            .field("name", &self.registry.name())
            .field("backlog", &self.backlog)
            .finish_non_exhaustive()
    }
}

impl HygienicListener {
    /// Binds with the default policy and limits.
    pub async fn bind(addr: impl ToSocketAddrs) -> Result<Self, BindError> {
        Self::builder().bind(addr).await
    }

    /// A builder with the defaults.
    pub fn builder() -> ListenerBuilder {
        ListenerBuilder {
            name: Arc::from("http"),
            policy: SocketPolicy::default(),
            limits: ConnectionLimits::default(),
            max_connections: None,
        }
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The registry of this listener's connections.
    pub fn registry(&self) -> &ConnectionRegistry {
        &self.registry
    }

    /// The accept queue requested and the one the kernel enforces.
    pub fn backlog(&self) -> EffectiveBacklog {
        self.backlog
    }

    /// What the policy did on the listening socket.
    pub fn apply_report(&self) -> ApplyReport {
        self.report
    }

    /// Accepts the next connection, applying the policy and tracking it.
    ///
    /// Never fails: connection errors (`ECONNABORTED`, …) are skipped, and resource errors
    /// (`EMFILE`, `ENFILE`, `ENOMEM`) are counted, logged and retried with exponential backoff
    /// (5 ms up to 1 s, cut short when one of our connections closes and frees a descriptor),
    /// so the listener neither spins nor exits.
    pub async fn accept(&mut self) -> (TrackedStream, SocketAddr) {
        let (stream, conn, permit, peer) = self.accept_socket().await;
        (TrackedStream::new(stream, conn, permit), peer)
    }

    /// Accepts the next socket, applies the policy and registers its connection; the stream
    /// over it is the caller's to make (at once, or after a handshake).
    pub(crate) async fn accept_socket(
        &mut self,
    ) -> (
        TcpStream,
        Arc<ConnShared>,
        Option<OwnedSemaphorePermit>,
        SocketAddr,
    ) {
        loop {
            let permit = match &self.limit {
                Some(sem) => sem.clone().acquire_owned().await.ok(),
                None => None,
            };
            match self.inner.accept().await {
                Ok((stream, peer)) => {
                    self.backoff = BACKOFF_MIN;
                    let local = stream.local_addr().unwrap_or(self.local_addr);
                    self.registry
                        .policy()
                        .apply(SockRef::from(&stream), SocketSide::Accepted);
                    let conn = self.registry.inner.register(local, peer);
                    return (stream, conn, permit, peer);
                }
                Err(e) => {
                    drop(permit);
                    self.on_accept_error(e).await;
                }
            }
        }
    }

    async fn on_accept_error(&mut self, e: io::Error) {
        let kind = AcceptErrorKind::classify(&e);
        let registry = self.registry.inner.clone();
        registry.accept_error(kind);
        if kind == AcceptErrorKind::Connection {
            tracing::debug!(listener = %self.registry.name(), error = %e, "accept: connection failed before accept");
            return;
        }
        let delay = self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        tracing::error!(
            listener = %self.registry.name(),
            error = %e,
            kind = kind.as_str(),
            backoff = ?delay,
            "accept failed; backing off"
        );
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = registry.connection_closed() => {}
        }
    }

    /// The accepted connections as a stream, for servers that take one (tonic's
    /// `serve_with_incoming`). Never yields an error: see [`accept`](Self::accept).
    pub fn into_incoming(
        self,
    ) -> impl futures_util::Stream<Item = io::Result<TrackedStream>> + Send + 'static {
        futures_util::stream::unfold(self, |mut listener| async move {
            let (stream, _) = listener.accept().await;
            Some((Ok(stream), listener))
        })
    }

    /// Live connections (shortcut for `registry().live()`).
    pub fn live_connections(&self) -> usize {
        self.registry.live()
    }
}
