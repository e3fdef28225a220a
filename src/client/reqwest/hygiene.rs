//! [`ReqwestHygiene`]: the policy as reqwest's settings, leases on responses, attribution.

use std::{
    collections::HashMap,
    fmt,
    net::SocketAddr,
    panic::Location,
    sync::{Arc, Mutex},
    time::Duration,
};

use super::{
    connect::{ReqwestConnectLayer, ReqwestUpstream},
    response::{ReqwestLease, TrackedResponse},
};
use crate::{lease::LeaseTracker, policy::SocketPolicy};

/// A held response's connection, as the census joins it.
#[cfg_attr(not(feature = "census"), allow(dead_code))]
#[derive(Debug, Clone, Copy)]
pub(super) struct Held {
    pub(super) local: SocketAddr,
    pub(super) remote: SocketAddr,
    pub(super) site: &'static Location<'static>,
}

/// Most held responses remembered with their connection: memory stays bounded whatever the
/// application holds (further ones are leased and reported all the same).
const MAX_HELD: usize = 65_536;

pub(super) struct Shared {
    pub(super) tracker: LeaseTracker,
    pub(super) layer: ReqwestConnectLayer,
    held: Mutex<HashMap<u64, Held>>,
}

impl Shared {
    pub(super) fn hold(&self, id: u64, held: Held) {
        let mut map = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() < MAX_HELD {
            map.insert(id, held);
        }
    }

    pub(super) fn unhold(&self, id: u64) {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }
}

/// The crate's hygiene for one reqwest client: hand [`configure`](Self::configure) the
/// client's builder, send through [`send`](Self::send) (or
/// [`SendTracked::send_tracked`](super::SendTracked::send_tracked)), and give a clone to a
/// census [`Sampler`](crate::census::Sampler) with `.source(..)`. Cheap to clone.
///
/// reqwest makes its sockets itself: the policy goes through its settings (linger and buffer
/// sizes have none). Its connector layer ([`ReqwestConnectLayer`]) sees each new connection's
/// destination and source address, and each response says which connection it came on, so a
/// lease knows its socket while the response is held: the census joins a `CLOSE_WAIT` socket
/// to the line holding it, and attributes `TIME_WAIT` toward reqwest's destinations to the
/// client. Who closed a connection first, and reuse per connection, stay inside reqwest: for
/// those use [`HygienicClient`](crate::client::HygienicClient).
///
/// ```no_run
/// use std::time::Duration;
/// use conn_hygiene::{client::ReqwestHygiene, lease::LeaseTracker, policy::SocketPolicy};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let hygiene = ReqwestHygiene::new(LeaseTracker::new("payments"));
/// let client = hygiene
///     .configure(
///         reqwest::Client::builder(),
///         &SocketPolicy::default(),
///         Some(Duration::from_secs(60)), // the server's keep-alive timeout
///     )
///     .build()?;
/// // The lease starts here, with this line, and ends when the body is read or dropped.
/// let res = hygiene.send(client.get("http://payments.internal/v1/status")).await?;
/// let body = res.bytes().await?;
/// # drop(body);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct ReqwestHygiene {
    pub(super) shared: Arc<Shared>,
}

impl fmt::Debug for ReqwestHygiene {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReqwestHygiene")
            .field("name", &self.shared.tracker.pool())
            .finish_non_exhaustive()
    }
}

impl ReqwestHygiene {
    /// Hygiene whose leases go to `tracker`; its pool name names the client (the `upstream`
    /// of its census attribution, the `pool` of its lease metrics).
    pub fn new(tracker: LeaseTracker) -> Self {
        Self {
            shared: Arc::new(Shared {
                tracker,
                layer: ReqwestConnectLayer::new(),
                held: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// `builder` with the socket policy as reqwest's settings (keepalive idle, interval and
    /// retries, `TCP_USER_TIMEOUT` on Linux, nodelay), the connector layer that sees each
    /// connection, and, when the server's keep-alive timeout is known, a pool idle timeout
    /// that closes idle connections before the server does, so the client closes first
    /// instead of racing the server's close: reqwest's pool (hyper-util's) looks for expired
    /// connections once per idle timeout, so one is closed between one and two timeouts after
    /// it went idle; the timeout is half of the keep-alive less a quarter of it (at most 1 s).
    pub fn configure(
        &self,
        builder: reqwest::ClientBuilder,
        policy: &SocketPolicy,
        server_keep_alive: Option<Duration>,
    ) -> reqwest::ClientBuilder {
        let mut b = builder
            .connector_layer(self.shared.layer.clone())
            .tcp_nodelay(policy.nodelay());
        b = match policy.keepalive() {
            Some(k) => b
                .tcp_keepalive(k.idle)
                .tcp_keepalive_interval(k.interval)
                .tcp_keepalive_retries(k.probes),
            None => b.tcp_keepalive(None),
        };
        #[cfg(any(target_os = "android", target_os = "fuchsia", target_os = "linux"))]
        {
            b = b.tcp_user_timeout(policy.user_timeout());
        }
        if let Some(ka) = server_keep_alive {
            let margin = (ka / 4).min(Duration::from_secs(1));
            b = b.pool_idle_timeout(ka.saturating_sub(margin) / 2);
        }
        b
    }

    /// Sends `request`; the lease it takes records this call's location and lasts until the
    /// response's body is read to its end or the response is dropped. Waiting for the
    /// response is not a leak; holding it past the tracker's threshold is.
    #[track_caller]
    pub fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> impl std::future::Future<Output = reqwest::Result<TrackedResponse>> + Send + 'static {
        let lease = ReqwestLease::take(self.shared.clone(), Location::caller());
        let sending = request.send();
        async move {
            let res = sending.await?;
            Ok(TrackedResponse::new(res, lease))
        }
    }

    /// The lease tracker: outstanding leases with their sites, leak reports, and the
    /// [`testing`](crate::testing) assertions.
    pub fn tracker(&self) -> &LeaseTracker {
        &self.shared.tracker
    }

    /// The connector layer [`configure`](Self::configure) installs (to install it yourself).
    pub fn layer(&self) -> ReqwestConnectLayer {
        self.shared.layer.clone()
    }

    /// Each destination connected to, with its connects and recent source addresses.
    pub fn destinations(&self) -> Vec<ReqwestUpstream> {
        self.shared.layer.snapshot()
    }
}

/// The client's destinations are one upstream, named by its tracker; a held response's
/// connection is listed with its lease site.
#[cfg(feature = "census")]
impl crate::census::AttributionSource for ReqwestHygiene {
    fn claims(&self) -> Vec<crate::census::Claim> {
        let name = self.shared.tracker.pool();
        self.shared
            .layer
            .snapshot()
            .into_iter()
            .filter_map(|d| {
                let remote = d.remote_addr?;
                Some(crate::census::Claim::upstream(name, d.name, [remote]))
            })
            .collect()
    }

    fn connections(&self, name: &str) -> Vec<crate::census::TrackedConnection> {
        if name != self.shared.tracker.pool() {
            return Vec::new();
        }
        let held = self.shared.held.lock().unwrap_or_else(|e| e.into_inner());
        held.iter()
            .map(|(id, h)| {
                crate::census::TrackedConnection::new(*id, h.local, h.remote).leased_at(h.site)
            })
            .collect()
    }
}
