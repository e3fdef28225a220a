//! A live connections page for this process (feature `page`): what an engineer looks at first
//! during an incident, as HTML and as JSON.
//!
//! [`ConnectionsPage`] gathers, at each request:
//!
//! - each listener: its backlog requested and effective, its accept queue, its connections by
//!   state, what the kernel holds on its address (`TIME_WAIT`, `SYN_RECV`, not yet accepted,
//!   `CLOSE_WAIT`), and its closes by who closed first and why;
//! - each upstream of a client and each tracked pool: open, idle, leased and pending
//!   connections (or the pool's own size, idle and waiters), closes by reason, leases and
//!   leaks, and the local ports left toward its worst destination with the time to exhaust them;
//! - the leases held longer than a threshold, with the `file:line` that took each and its age;
//! - our `CLOSE_WAIT` sockets, with the listener or upstream that holds each and, for a leased
//!   connection, the line that made the request;
//! - the census's findings, worst first, with what to do;
//! - charts of the last samples: host `TIME_WAIT` and `CLOSE_WAIT`, local ports in use per
//!   upstream, leases outstanding.
//!
//! The figures of listeners, upstreams, pools and leases are read live at each request; the
//! kernel's come from the [`Sampler`]'s latest sample (the page never walks the socket table
//! itself, so serving it stays cheap whatever the load).
//!
//! The HTML page is one self-contained document: inline style, charts drawn on the server as
//! inline SVG, no script, no font, nothing fetched from anywhere (it is served with a
//! `Content-Security-Policy` of `default-src 'none'`), so it works on an air-gapped host. It
//! reloads itself every few seconds ([`refresh`](ConnectionsPageBuilder::refresh)). Its JSON twin
//! carries the same figures for scripts.
//!
//! # What it shows, and where to serve it
//!
//! The page shows what the `/metrics` page and the census already show: names you chose,
//! counts, your own listening addresses, call sites in your code, and the local and peer
//! addresses of your own `CLOSE_WAIT` sockets (at most
//! [`MAX_CLOSE_WAIT_ENTRIES`](crate::census::MAX_CLOSE_WAIT_ENTRIES)). It shows no request, no
//! header, and no other peer address. Even so, serve it where only operators reach it: on the
//! exporter's own listener, which binds loopback by default
//! ([`ListenBuilder::page`](crate::exporter::ListenBuilder::page)), and reach it through an SSH
//! tunnel or `kubectl port-forward`, rather than merging it into a public router. Merging
//! [`router`](ConnectionsPage::router) into your app is for services whose port is private.
//!
//! # Example
//!
//! ```no_run
//! use conn_hygiene::{census::Sampler, exporter::PrometheusExporter, page::ConnectionsPage,
//!     server::HygienicListener};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let exporter = PrometheusExporter::install()?;
//! let listener = HygienicListener::bind("0.0.0.0:8080").await?;
//! let sampler = Sampler::builder().listener(listener.registry()).spawn()?;
//! let page = ConnectionsPage::builder(sampler.clone())
//!     .listener(listener.registry())
//!     .build();
//! // /metrics and /connections on 127.0.0.1:9464 only.
//! let admin = exporter.listen().page(page).bind().await?;
//! println!("connections at http://{}/connections", admin.local_addr());
//! # Ok(()) }
//! ```

mod history;
mod html;
mod model;
mod service;

use std::{
    fmt,
    sync::{Arc, Mutex, Weak},
    time::Duration,
};

use crate::census::{CensusSnapshot, Sampler};
use crate::server::ConnectionRegistry;

pub use self::service::{
    ConnectionsService, CONNECTIONS_JSON_PATH, CONNECTIONS_PATH, HTML_CONTENT_TYPE,
    JSON_CONTENT_TYPE,
};

/// What the page reads.
pub(crate) struct Sources {
    pub(crate) listeners: Vec<ConnectionRegistry>,
    #[cfg(feature = "client")]
    pub(crate) clients: Vec<crate::client::ClientView>,
    #[cfg(any(
        feature = "deadpool",
        feature = "bb8",
        feature = "sqlx",
        feature = "redis"
    ))]
    pub(crate) pools: Vec<crate::pools::PoolView>,
    #[cfg(feature = "lease")]
    pub(crate) trackers: Vec<crate::lease::LeaseTracker>,
    pub(crate) old_lease_after: Duration,
}

pub(crate) struct Shared {
    sampler: Sampler,
    sources: Sources,
    refresh: Duration,
    history: Mutex<history::History>,
}

impl Shared {
    fn record(&self, snap: &CensusSnapshot) {
        let leases = model::leases_outstanding(&self.sources);
        self.history
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(snap, leases);
    }

    fn data(&self) -> model::PageData {
        let latest = self.sampler.latest();
        if let Some(snap) = &latest {
            // A sample the recording task has not seen yet (or no task: no runtime).
            self.record(snap);
        }
        let history = self
            .history
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .data();
        model::gather(&self.sources, latest.as_deref(), history, self.refresh)
    }
}

/// Configures a [`ConnectionsPage`]; from [`ConnectionsPage::builder`]. Every setter names its
/// default.
pub struct ConnectionsPageBuilder {
    sampler: Sampler,
    sources: Sources,
    refresh: Duration,
    history: usize,
}

impl fmt::Debug for ConnectionsPageBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionsPageBuilder")
            .field("listeners", &self.sources.listeners.len())
            .field("old_lease_after", &self.sources.old_lease_after)
            .field("refresh", &self.refresh)
            .field("history", &self.history)
            .finish_non_exhaustive()
    }
}

/// Default threshold past which a lease is listed: 5 s.
pub const DEFAULT_OLD_LEASE_AFTER: Duration = Duration::from_secs(5);

/// Default number of samples the charts keep: 120 (ten minutes at the sampler's default 5 s).
pub const DEFAULT_HISTORY: usize = 120;

impl ConnectionsPageBuilder {
    /// A listener to show: its registry (the same you give the [`Sampler`], so its kernel
    /// figures join by name). May be called several times. Default: none.
    pub fn listener(mut self, registry: &ConnectionRegistry) -> Self {
        self.sources.listeners.push(registry.clone());
        self
    }

    /// A client whose upstreams to show, with their leases. May be called several times.
    /// Default: none.
    #[cfg(feature = "client")]
    #[cfg_attr(docsrs, doc(cfg(feature = "client")))]
    pub fn client(mut self, view: crate::client::ClientView) -> Self {
        self.sources.clients.push(view);
        self
    }

    /// A tracked pool to show, with its checkouts and leases. May be called several times.
    /// Default: none.
    #[cfg(any(
        feature = "deadpool",
        feature = "bb8",
        feature = "sqlx",
        feature = "redis"
    ))]
    #[cfg_attr(
        docsrs,
        doc(cfg(any(
            feature = "deadpool",
            feature = "bb8",
            feature = "sqlx",
            feature = "redis"
        )))
    )]
    pub fn pool(mut self, view: crate::pools::PoolView) -> Self {
        self.sources.pools.push(view);
        self
    }

    /// A lease tracker of your own (a pool the crate has no adapter for) whose old leases to
    /// list. May be called several times. Default: none.
    #[cfg(feature = "lease")]
    #[cfg_attr(docsrs, doc(cfg(feature = "lease")))]
    pub fn leases(mut self, tracker: crate::lease::LeaseTracker) -> Self {
        self.sources.trackers.push(tracker);
        self
    }

    /// Leases held longer than this are listed with their line and age. Default:
    /// [`DEFAULT_OLD_LEASE_AFTER`].
    pub fn old_lease_after(mut self, age: Duration) -> Self {
        self.sources.old_lease_after = age;
        self
    }

    /// How often the HTML page reloads itself, in whole seconds (at least 1). Default: 5 s,
    /// the sampler's default interval.
    pub fn refresh(mut self, every: Duration) -> Self {
        self.refresh = every;
        self
    }

    /// Samples the charts keep (at least 1). Default: [`DEFAULT_HISTORY`].
    pub fn history(mut self, samples: usize) -> Self {
        self.history = samples;
        self
    }

    /// Builds the page. Within a Tokio runtime it starts recording each new sample for the
    /// charts, until the page and every service made from it are dropped; without one, the
    /// samples are recorded as the page is served.
    pub fn build(self) -> ConnectionsPage {
        let shared = Arc::new(Shared {
            sampler: self.sampler,
            sources: self.sources,
            refresh: self.refresh.max(Duration::from_secs(1)),
            history: Mutex::new(history::History::new(self.history)),
        });
        if let Some(snap) = shared.sampler.latest() {
            shared.record(&snap);
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(record_samples(Arc::downgrade(&shared)));
        }
        ConnectionsPage { shared }
    }
}

/// Records each sample the sampler publishes, while the page lives.
async fn record_samples(page: Weak<Shared>) {
    loop {
        let Some(sampler) = page.upgrade().map(|p| p.sampler.clone()) else {
            return;
        };
        let Some(snap) = sampler.changed().await else {
            return;
        };
        drop(sampler);
        let Some(page) = page.upgrade() else { return };
        page.record(&snap);
    }
}

/// The live connections page; see the [module docs](self). Cheap to clone.
#[derive(Clone)]
pub struct ConnectionsPage {
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for ConnectionsPage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionsPage")
            .field("listeners", &self.shared.sources.listeners.len())
            .finish_non_exhaustive()
    }
}

impl ConnectionsPage {
    /// A builder for a page over `sampler`'s samples. Give it the same listeners, clients and
    /// pools as the sampler.
    pub fn builder(sampler: Sampler) -> ConnectionsPageBuilder {
        ConnectionsPageBuilder {
            sampler,
            sources: Sources {
                listeners: Vec::new(),
                #[cfg(feature = "client")]
                clients: Vec::new(),
                #[cfg(any(
                    feature = "deadpool",
                    feature = "bb8",
                    feature = "sqlx",
                    feature = "redis"
                ))]
                pools: Vec::new(),
                #[cfg(feature = "lease")]
                trackers: Vec::new(),
                old_lease_after: DEFAULT_OLD_LEASE_AFTER,
            },
            refresh: Duration::from_secs(5),
            history: DEFAULT_HISTORY,
        }
    }

    /// The page as HTML, now.
    pub fn render_html(&self) -> String {
        html::render(&self.shared.data())
    }

    /// The page's figures as JSON, now.
    pub fn render_json(&self) -> String {
        serde_json::to_string(&self.shared.data()).unwrap_or_else(|e| {
            // Only plain numbers and strings: cannot fail; say so if it ever does.
            format!("{{\"error\":\"{e}\"}}")
        })
    }

    /// A tower service answering `GET` (and `HEAD`) with the page: JSON at a path ending in
    /// `.json`, HTML elsewhere. Route it at the paths you want.
    pub fn service(&self) -> ConnectionsService {
        ConnectionsService { page: self.clone() }
    }

    /// An axum router serving the page at [`CONNECTIONS_PATH`] and its JSON twin at
    /// [`CONNECTIONS_JSON_PATH`], to [`merge`](axum::Router::merge) into a router that only
    /// operators reach (see the [module docs](self)).
    #[cfg(feature = "axum")]
    #[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
    pub fn router<S>(&self) -> axum::Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        axum::Router::new()
            .route_service(CONNECTIONS_PATH, self.service())
            .route_service(CONNECTIONS_JSON_PATH, self.service())
    }
}
