//! The connector layer: each new connection's destination and source address, and failed
//! connects.

use std::{
    collections::HashMap,
    fmt,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    task::{ready, Context, Poll},
};

use http::Extensions;
use hyper_util::client::legacy::connect::{Connection, HttpInfo};
use metrics::Counter;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::client::upstream::MAX_UPSTREAMS;
use crate::metrics::names;

/// Most source addresses remembered per destination.
const MAX_SOURCES: usize = 1024;

/// One destination a reqwest client connected to.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ReqwestUpstream {
    /// The destination `ip:port` (the `upstream` metric label), or `other` past the bound.
    pub name: String,
    /// The destination address.
    pub remote_addr: Option<SocketAddr>,
    /// Connections opened to it.
    pub connects: u64,
    /// Local addresses (source ip and ephemeral port) of the most recent connections, at most
    /// 1024: what TIME_WAIT attribution joins on.
    pub local_addrs: Vec<SocketAddr>,
}

struct Dest {
    remote: Option<SocketAddr>,
    connects: AtomicU64,
    sources: Mutex<Vec<SocketAddr>>,
    counter: Counter,
}

#[derive(Default)]
struct Registry {
    dests: Mutex<HashMap<String, Arc<Dest>>>,
    errors: AtomicU64,
}

impl Registry {
    fn dest(&self, remote: SocketAddr) -> Arc<Dest> {
        let mut dests = self.dests.lock().unwrap_or_else(|e| e.into_inner());
        let mut key = remote.to_string();
        if !dests.contains_key(&key) && dests.len() >= MAX_UPSTREAMS {
            key = "other".to_owned();
        }
        dests
            .entry(key.clone())
            .or_insert_with(|| {
                Arc::new(Dest {
                    remote: (key != "other").then_some(remote),
                    connects: AtomicU64::new(0),
                    sources: Mutex::new(Vec::new()),
                    counter: metrics::counter!(names::CLIENT_CONNECTS_TOTAL, "upstream" => key),
                })
            })
            .clone()
    }

    fn record(&self, remote: SocketAddr, local: SocketAddr) {
        let d = self.dest(remote);
        d.connects.fetch_add(1, Ordering::Relaxed);
        d.counter.increment(1);
        let mut sources = d.sources.lock().unwrap_or_else(|e| e.into_inner());
        if sources.len() >= MAX_SOURCES {
            sources.remove(0);
        }
        sources.push(local);
    }
}

/// The layer: pass a clone to `reqwest::ClientBuilder::connector_layer`, keep one to read.
#[derive(Clone, Default)]
pub struct ReqwestConnectLayer {
    registry: Arc<Registry>,
}

impl fmt::Debug for ReqwestConnectLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReqwestConnectLayer")
            .finish_non_exhaustive()
    }
}

impl ReqwestConnectLayer {
    /// A new layer with an empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every destination seen, most connects first.
    pub fn snapshot(&self) -> Vec<ReqwestUpstream> {
        let dests = self
            .registry
            .dests
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<ReqwestUpstream> = dests
            .iter()
            .map(|(name, d)| ReqwestUpstream {
                name: name.clone(),
                remote_addr: d.remote,
                connects: d.connects.load(Ordering::Relaxed),
                local_addrs: d.sources.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            })
            .collect();
        v.sort_by(|a, b| b.connects.cmp(&a.connects).then(a.name.cmp(&b.name)));
        v
    }

    /// Failed connection attempts.
    pub fn connect_errors(&self) -> u64 {
        self.registry.errors.load(Ordering::Relaxed)
    }
}

impl<S> Layer<S> for ReqwestConnectLayer {
    type Service = ReqwestConnect<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ReqwestConnect {
            inner,
            registry: self.registry.clone(),
        }
    }
}

/// The service of [`ReqwestConnectLayer`].
#[derive(Clone)]
pub struct ReqwestConnect<S> {
    inner: S,
    registry: Arc<Registry>,
}

impl<S> fmt::Debug for ReqwestConnect<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReqwestConnect").finish_non_exhaustive()
    }
}

impl<S, R> Service<R> for ReqwestConnect<S>
where
    S: Service<R>,
    S::Response: Connection,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ReqwestConnectFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        ReqwestConnectFuture {
            inner: self.inner.call(req),
            registry: self.registry.clone(),
        }
    }
}

pin_project! {
    /// Future of [`ReqwestConnect`].
    pub struct ReqwestConnectFuture<F> {
        #[pin]
        inner: F,
        registry: Arc<Registry>,
    }
}

impl<F> fmt::Debug for ReqwestConnectFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReqwestConnectFuture")
            .finish_non_exhaustive()
    }
}

impl<F, C, E> Future for ReqwestConnectFuture<F>
where
    F: Future<Output = Result<C, E>>,
    C: Connection,
{
    type Output = Result<C, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let res = ready!(this.inner.poll(cx));
        match &res {
            Ok(conn) => {
                let mut ext = Extensions::new();
                conn.connected().get_extras(&mut ext);
                if let Some(info) = ext.get::<HttpInfo>() {
                    this.registry.record(info.remote_addr(), info.local_addr());
                }
            }
            Err(_) => {
                this.registry.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        Poll::Ready(res)
    }
}
