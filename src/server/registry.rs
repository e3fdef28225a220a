use std::{
    collections::HashMap,
    fmt,
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex, RwLock,
    },
    time::Duration,
};

use metrics::{Counter, Gauge, Histogram};
use tokio::sync::Notify;

use super::{
    connection::{CloseInfo, CloseReason, Closer, ConnShared, ConnState, ConnectionSnapshot},
    limits::ConnectionLimits,
};
use crate::{metrics::names, policy::SocketPolicy};

/// Kinds of accept errors, as counted in `conn_hygiene_server_accept_errors_total{kind}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AcceptErrorKind {
    /// The process is out of file descriptors (`EMFILE`).
    Emfile,
    /// The system is out of file descriptors (`ENFILE`).
    Enfile,
    /// The kernel is out of memory or buffers (`ENOMEM`, `ENOBUFS`).
    NoMem,
    /// A connection failed before it was accepted (`ECONNABORTED`, `EPROTO`, …); harmless.
    Connection,
    /// Anything else.
    Other,
}

impl AcceptErrorKind {
    /// Every kind, in label order.
    pub const ALL: [AcceptErrorKind; 5] = [
        AcceptErrorKind::Emfile,
        AcceptErrorKind::Enfile,
        AcceptErrorKind::NoMem,
        AcceptErrorKind::Connection,
        AcceptErrorKind::Other,
    ];

    /// The kind's name as used in metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            AcceptErrorKind::Emfile => "emfile",
            AcceptErrorKind::Enfile => "enfile",
            AcceptErrorKind::NoMem => "nomem",
            AcceptErrorKind::Connection => "connection",
            AcceptErrorKind::Other => "other",
        }
    }

    pub(crate) fn classify(err: &std::io::Error) -> Self {
        match err.raw_os_error() {
            Some(libc::EMFILE) => Self::Emfile,
            Some(libc::ENFILE) => Self::Enfile,
            Some(libc::ENOMEM) | Some(libc::ENOBUFS) => Self::NoMem,
            Some(
                libc::ECONNABORTED
                | libc::ECONNRESET
                | libc::EPROTO
                | libc::EPERM
                | libc::EINTR
                | libc::ETIMEDOUT
                | libc::EHOSTUNREACH
                | libc::ENETUNREACH
                | libc::ENETDOWN
                | libc::ENOPROTOOPT
                | libc::EOPNOTSUPP,
            ) => Self::Connection,
            _ => Self::Other,
        }
    }
}

/// A state change of one connection, passed to hooks registered with
/// [`ConnectionRegistry::on_state_change`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConnectionEvent {
    /// The connection id.
    pub id: u64,
    /// The peer's address.
    pub peer_addr: SocketAddr,
    /// Our address.
    pub local_addr: SocketAddr,
    /// The state it left.
    pub from: ConnState,
    /// The state it entered.
    pub to: ConnState,
    /// How it ended, when `to` is [`ConnState::Closed`].
    pub close: Option<CloseInfo>,
}

type Hook = Arc<dyn Fn(&ConnectionEvent) + Send + Sync>;

const REASONS: usize = CloseReason::ALL.len();

/// Cumulative counters of a listener since it was bound.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RegistryTotals {
    /// Connections accepted.
    pub opened: u64,
    /// Connections closed.
    pub closed: u64,
    /// Connections closed with a reset by abort-close (no TIME_WAIT).
    pub aborted: u64,
    /// Requests started on closed connections.
    pub requests_on_closed: u64,
    /// Accept errors (the listener backed off and kept serving).
    pub accept_errors: u64,
    /// Peers that half-closed while a request was in flight.
    pub half_closed_in_flight: u64,
    /// Connections cut at the shutdown deadline.
    pub shutdown_cut: u64,
    /// Connections opened while the tracking bound was reached: served, and reached by
    /// shutdown, but not listed in snapshots.
    pub untracked: u64,
    /// Requests read on closed connections whose response never ended: cut at the shutdown
    /// deadline, cancelled by the peer's close (HTTP/2, or [`HalfClose::Cancel`]), or cut by an
    /// error or a timeout. Every request read is either answered or counted here.
    ///
    /// [`HalfClose::Cancel`]: super::HalfClose::Cancel
    pub requests_unanswered: u64,
    /// HTTP/2 connections closed because the peer left them open after GOAWAY, with no stream
    /// open, for longer than the grace (see
    /// [`ConnectionLimitsBuilder::goaway_grace`](super::ConnectionLimitsBuilder::goaway_grace)).
    pub goaway_grace_expired: u64,
    closed_by_reason: [u64; REASONS],
    closed_by_closer: [u64; 5],
}

impl RegistryTotals {
    /// Connections closed for a reason.
    pub fn closed_for(&self, reason: CloseReason) -> u64 {
        self.closed_by_reason[reason.index()]
    }

    /// Connections closed with this closer first.
    pub fn closed_by(&self, closer: Closer) -> u64 {
        self.closed_by_closer[closer as usize]
    }
}

/// A listener's live connections and totals at one moment.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RegistrySnapshot {
    /// The listener's name.
    pub listener: String,
    /// Live connections, in accept order (at most the tracking bound, the oldest first).
    pub connections: Vec<ConnectionSnapshot>,
    /// Cumulative counters.
    pub totals: RegistryTotals,
}

impl RegistrySnapshot {
    /// Live connections in a state.
    pub fn count_in(&self, state: ConnState) -> usize {
        self.connections.iter().filter(|c| c.state == state).count()
    }
}

/// How a graceful shutdown went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Connections open when shutdown began.
    pub open_at_start: usize,
    /// Connections that closed on their own before the deadline.
    pub drained: usize,
    /// Connections still active at the deadline, and cut.
    pub cut: usize,
}

struct ServerMetrics {
    opened: Counter,
    closed: [[Counter; REASONS]; 5],
    state: [Gauge; 5],
    requests_per_connection: Histogram,
    duration: Histogram,
    accept_errors: [Counter; 5],
    cut: Counter,
    half_closed: Counter,
}

impl ServerMetrics {
    fn new(listener: &str) -> Self {
        let l = listener.to_owned();
        Self {
            opened: metrics::counter!(names::SERVER_CONNECTIONS_OPENED_TOTAL, "listener" => l.clone()),
            closed: Closer::ALL.map(|c| {
                CloseReason::ALL.map(|r| {
                    metrics::counter!(names::SERVER_CONNECTIONS_CLOSED_TOTAL,
                        "listener" => l.clone(), "closer" => c.as_str(), "reason" => r.as_str())
                })
            }),
            state: ConnState::LIVE.map(|s| {
                metrics::gauge!(names::SERVER_CONNECTIONS, "listener" => l.clone(), "state" => s.as_str())
            }),
            requests_per_connection: metrics::histogram!(
                names::SERVER_REQUESTS_PER_CONNECTION, "listener" => l.clone()),
            duration: metrics::histogram!(
                names::SERVER_CONNECTION_DURATION_SECONDS, "listener" => l.clone()),
            accept_errors: AcceptErrorKind::ALL.map(|k| {
                metrics::counter!(names::SERVER_ACCEPT_ERRORS_TOTAL,
                    "listener" => l.clone(), "kind" => k.as_str())
            }),
            cut: metrics::counter!(names::SERVER_SHUTDOWN_CUT_TOTAL, "listener" => l.clone()),
            half_closed: metrics::counter!(
                names::SERVER_HALF_CLOSED_IN_FLIGHT_TOTAL, "listener" => l),
        }
    }

    fn state(&self, s: ConnState) -> Option<&Gauge> {
        self.state.get(s.index())
    }
}

pub(crate) struct RegistryInner {
    name: Arc<str>,
    local_addr: SocketAddr,
    pub(crate) limits: ConnectionLimits,
    pub(crate) policy: SocketPolicy,
    #[cfg(feature = "server")]
    pub(crate) keep_alive_value: Option<http::HeaderValue>,
    next_id: AtomicU64,
    live: Mutex<HashMap<u64, Arc<ConnShared>>>,
    live_count: AtomicUsize,
    closed_notify: Notify,
    shutting_down: AtomicBool,
    pub(crate) layer_seen: AtomicBool,
    hooks: RwLock<Vec<Hook>>,
    has_hooks: AtomicBool,
    opened: AtomicU64,
    closed_by_reason: [AtomicU64; REASONS],
    closed_by_closer: [AtomicU64; 5],
    aborted: AtomicU64,
    requests_on_closed: AtomicU64,
    accept_errors: AtomicU64,
    half_closed_in_flight: AtomicU64,
    shutdown_cut: AtomicU64,
    untracked: AtomicU64,
    requests_unanswered: AtomicU64,
    goaway_grace_expired: AtomicU64,
    metrics: ServerMetrics,
}

impl RegistryInner {
    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    pub(crate) fn on_transition(
        &self,
        conn: &ConnShared,
        from: ConnState,
        to: ConnState,
        close: Option<CloseInfo>,
    ) {
        if let Some(g) = self.metrics.state(from) {
            g.decrement(1.0);
        }
        if let Some(g) = self.metrics.state(to) {
            g.increment(1.0);
        }
        if self.has_hooks.load(Ordering::Acquire) {
            let event = ConnectionEvent {
                id: conn.id,
                peer_addr: conn.peer,
                local_addr: conn.local,
                from,
                to,
                close,
            };
            let hooks = self.hooks.read().unwrap_or_else(|e| e.into_inner());
            for hook in hooks.iter() {
                hook(&event);
            }
        }
    }

    pub(crate) fn register(
        self: &Arc<Self>,
        local: SocketAddr,
        peer: SocketAddr,
    ) -> Arc<ConnShared> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let conn = Arc::new(ConnShared::new(id, local, peer, self.clone()));
        self.opened.fetch_add(1, Ordering::Relaxed);
        self.live_count.fetch_add(1, Ordering::AcqRel);
        {
            // Every live connection stays reachable, so that shutdown can retire it and cut it
            // at the deadline; the bound caps what snapshots list (and copy), and connections
            // opened beyond it are counted as untracked.
            let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
            if live.len() >= self.limits.max_tracked {
                self.untracked.fetch_add(1, Ordering::Relaxed);
            }
            live.insert(id, conn.clone());
        }
        self.metrics.opened.increment(1);
        if let Some(g) = self.metrics.state(ConnState::New) {
            g.increment(1.0);
        }
        if self.is_shutting_down() {
            conn.retire(CloseReason::Shutdown);
        }
        conn
    }

    pub(crate) fn on_close(
        &self,
        conn: &ConnShared,
        closer: Closer,
        reason: CloseReason,
        aborted: bool,
        unanswered: u64,
    ) {
        let requests = conn.requests.load(Ordering::Acquire);
        let lifetime = conn.opened.elapsed();
        let info = CloseInfo {
            closer,
            reason,
            aborted,
            lifetime,
            requests,
            unanswered,
        };
        let prev = self.swap_closed(conn);
        self.on_transition(conn, prev, ConnState::Closed, Some(info));
        self.live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&conn.id);
        self.closed_by_reason[reason.index()].fetch_add(1, Ordering::Relaxed);
        self.closed_by_closer[closer as usize].fetch_add(1, Ordering::Relaxed);
        self.requests_on_closed
            .fetch_add(requests, Ordering::Relaxed);
        if unanswered > 0 {
            self.requests_unanswered
                .fetch_add(unanswered, Ordering::Relaxed);
        }
        if aborted {
            self.aborted.fetch_add(1, Ordering::Relaxed);
        }
        if reason == CloseReason::ShutdownDeadline {
            self.shutdown_cut.fetch_add(1, Ordering::Relaxed);
            self.metrics.cut.increment(1);
        }
        self.metrics.closed[closer as usize][reason.index()].increment(1);
        self.metrics.requests_per_connection.record(requests as f64);
        self.metrics.duration.record(lifetime.as_secs_f64());
        tracing::trace!(
            listener = %self.name,
            id = conn.id,
            closer = closer.as_str(),
            reason = reason.as_str(),
            requests,
            "connection closed"
        );
        self.live_count.fetch_sub(1, Ordering::AcqRel);
        self.closed_notify.notify_waiters();
    }

    fn swap_closed(&self, conn: &ConnShared) -> ConnState {
        let from = conn.state();
        // Closed is terminal and only ever set here, once per connection.
        conn.force_closed();
        from
    }

    pub(crate) fn accept_error(&self, kind: AcceptErrorKind) {
        self.accept_errors.fetch_add(1, Ordering::Relaxed);
        if let Some(c) = self.metrics.accept_errors.get(
            AcceptErrorKind::ALL
                .iter()
                .position(|k| *k == kind)
                .unwrap_or(4),
        ) {
            c.increment(1);
        }
    }

    pub(crate) fn goaway_grace_expired(&self) {
        self.goaway_grace_expired.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn half_closed_in_flight(&self) {
        self.half_closed_in_flight.fetch_add(1, Ordering::Relaxed);
        self.metrics.half_closed.increment(1);
    }

    pub(crate) async fn connection_closed(&self) {
        self.closed_notify.notified().await;
    }

    async fn wait_all_closed(&self) {
        loop {
            let notified = self.closed_notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.live_count.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }

    fn live_conns(&self) -> Vec<Arc<ConnShared>> {
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = live.values().cloned().collect();
        v.sort_by_key(|c| c.id);
        v
    }
}

/// The live connections and cumulative counters of one listener.
///
/// Cheap to clone; every clone sees the same connections. Obtained from
/// [`HygienicListener::registry`](super::HygienicListener::registry).
#[derive(Clone)]
pub struct ConnectionRegistry {
    pub(crate) inner: Arc<RegistryInner>,
}

impl fmt::Debug for ConnectionRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionRegistry")
            .field("listener", &self.inner.name)
            .field("live", &self.live())
            .finish()
    }
}

impl ConnectionRegistry {
    pub(crate) fn new(
        name: Arc<str>,
        local_addr: SocketAddr,
        policy: SocketPolicy,
        limits: ConnectionLimits,
    ) -> Self {
        #[cfg(feature = "server")]
        let keep_alive_value = limits
            .keep_alive_header()
            .and_then(|v| http::HeaderValue::from_str(&v).ok());
        Self {
            inner: Arc::new(RegistryInner {
                metrics: ServerMetrics::new(&name),
                name,
                local_addr,
                limits,
                policy,
                #[cfg(feature = "server")]
                keep_alive_value,
                next_id: AtomicU64::new(0),
                live: Mutex::new(HashMap::new()),
                live_count: AtomicUsize::new(0),
                closed_notify: Notify::new(),
                shutting_down: AtomicBool::new(false),
                layer_seen: AtomicBool::new(false),
                hooks: RwLock::new(Vec::new()),
                has_hooks: AtomicBool::new(false),
                opened: AtomicU64::new(0),
                closed_by_reason: Default::default(),
                closed_by_closer: Default::default(),
                aborted: AtomicU64::new(0),
                requests_on_closed: AtomicU64::new(0),
                accept_errors: AtomicU64::new(0),
                half_closed_in_flight: AtomicU64::new(0),
                shutdown_cut: AtomicU64::new(0),
                untracked: AtomicU64::new(0),
                requests_unanswered: AtomicU64::new(0),
                goaway_grace_expired: AtomicU64::new(0),
            }),
        }
    }

    /// The listener's name (the `listener` metric label).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The address the listener is bound to: TIME_WAIT and queued connections on it are ours.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// The limits this listener enforces.
    pub fn limits(&self) -> &ConnectionLimits {
        &self.inner.limits
    }

    /// The socket policy applied to accepted sockets.
    pub fn policy(&self) -> &SocketPolicy {
        &self.inner.policy
    }

    /// Live connections right now (including any beyond the tracking bound).
    pub fn live(&self) -> usize {
        self.inner.live_count.load(Ordering::Acquire)
    }

    /// Cumulative counters.
    pub fn totals(&self) -> RegistryTotals {
        let i = &self.inner;
        let closed_by_reason: [u64; REASONS] =
            std::array::from_fn(|k| i.closed_by_reason[k].load(Ordering::Relaxed));
        let closed_by_closer: [u64; 5] =
            std::array::from_fn(|k| i.closed_by_closer[k].load(Ordering::Relaxed));
        RegistryTotals {
            opened: i.opened.load(Ordering::Relaxed),
            closed: closed_by_reason.iter().sum(),
            aborted: i.aborted.load(Ordering::Relaxed),
            requests_on_closed: i.requests_on_closed.load(Ordering::Relaxed),
            accept_errors: i.accept_errors.load(Ordering::Relaxed),
            half_closed_in_flight: i.half_closed_in_flight.load(Ordering::Relaxed),
            shutdown_cut: i.shutdown_cut.load(Ordering::Relaxed),
            untracked: i.untracked.load(Ordering::Relaxed),
            requests_unanswered: i.requests_unanswered.load(Ordering::Relaxed),
            goaway_grace_expired: i.goaway_grace_expired.load(Ordering::Relaxed),
            closed_by_reason,
            closed_by_closer,
        }
    }

    /// Live connections and totals.
    pub fn snapshot(&self) -> RegistrySnapshot {
        RegistrySnapshot {
            listener: self.inner.name.to_string(),
            connections: self
                .inner
                .live_conns()
                .iter()
                .take(self.inner.limits.max_tracked)
                .map(|c| c.snapshot())
                .collect(),
            totals: self.totals(),
        }
    }

    /// Calls `hook` on every state change of every connection, including the final close with
    /// its [`CloseInfo`]. Hooks run inline on the connection's task: keep them short.
    pub fn on_state_change(&self, hook: impl Fn(&ConnectionEvent) + Send + Sync + 'static) {
        let mut hooks = self.inner.hooks.write().unwrap_or_else(|e| e.into_inner());
        hooks.push(Arc::new(hook));
        self.inner.has_hooks.store(true, Ordering::Release);
    }

    /// A handle to a live connection, by id (as listed in [`snapshot`](Self::snapshot)).
    pub fn connection(&self, id: u64) -> Option<super::Connection> {
        let live = self.inner.live.lock().unwrap_or_else(|e| e.into_inner());
        live.get(&id).cloned().map(super::Connection)
    }

    /// True once [`shutdown`](Self::shutdown) began.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.is_shutting_down()
    }

    /// Waits until no connection is open.
    pub async fn closed(&self) {
        self.inner.wait_all_closed().await
    }

    /// Waits until the next connection closes (and is counted in [`totals`](Self::totals)).
    pub async fn next_close(&self) {
        self.inner.connection_closed().await
    }

    /// Waits until `cond` holds for the totals, looking again after every close. Tests and
    /// tools use it to wait for an outcome without polling.
    pub async fn wait_for(&self, mut cond: impl FnMut(&RegistryTotals) -> bool) {
        loop {
            let notified = self.inner.closed_notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if cond(&self.totals()) {
                return;
            }
            notified.await;
        }
    }

    /// Graceful shutdown with a deadline: idle connections close at once, active ones close
    /// after their response in flight (HTTP/1 `Connection: close`, HTTP/2 GOAWAY), and those
    /// still open at the deadline are cut. Returns how many drained and how many were cut.
    ///
    /// The hygienic listener keeps accepting until its owner stops; connections accepted after
    /// this call close after their first response.
    pub async fn shutdown(&self, deadline: Duration) -> ShutdownReport {
        let open_at_start = self.begin_shutdown();
        self.finish_shutdown(open_at_start, deadline).await
    }

    /// Marks every connection for retirement; returns how many were open.
    fn begin_shutdown(&self) -> usize {
        self.inner.shutting_down.store(true, Ordering::Release);
        let open_at_start = self.live();
        for c in &self.inner.live_conns() {
            c.retire(CloseReason::Shutdown);
        }
        open_at_start
    }

    async fn finish_shutdown(&self, open_at_start: usize, deadline: Duration) -> ShutdownReport {
        let cut_before = self.inner.shutdown_cut.load(Ordering::Relaxed);
        if tokio::time::timeout(deadline, self.closed()).await.is_err() {
            let remaining = self.inner.live_conns();
            tracing::warn!(
                listener = %self.inner.name,
                remaining = remaining.len(),
                ?deadline,
                "shutdown deadline reached; cutting connections still active"
            );
            for c in &remaining {
                c.cut();
            }
            self.closed().await;
        }
        let cut = (self.inner.shutdown_cut.load(Ordering::Relaxed) - cut_before) as usize;
        ShutdownReport {
            open_at_start,
            drained: open_at_start.saturating_sub(cut),
            cut,
        }
    }

    /// A future for `axum::serve(..).with_graceful_shutdown(..)`: it waits for `signal`, starts
    /// [`shutdown`](Self::shutdown) with `deadline` in a background task, and resolves at once so
    /// that axum stops accepting. axum's serve future then resolves when the last connection has
    /// drained or been cut.
    pub fn graceful_shutdown<F>(
        &self,
        signal: F,
        deadline: Duration,
    ) -> impl std::future::Future<Output = ()> + Send + 'static
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let registry = self.clone();
        async move {
            signal.await;
            // Retire everything before axum starts its own graceful shutdown, so every close is
            // attributed to the shutdown.
            let open_at_start = registry.begin_shutdown();
            tokio::spawn(async move {
                let report = registry.finish_shutdown(open_at_start, deadline).await;
                tracing::info!(
                    listener = %registry.inner.name,
                    drained = report.drained,
                    cut = report.cut,
                    "graceful shutdown finished"
                );
            });
        }
    }
}
