//! The live connections and cumulative counters of one listener.

mod inner;
mod metrics;
mod report;

use std::{
    fmt,
    net::SocketAddr,
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

pub(crate) use self::inner::RegistryInner;
use self::report::REASONS;
pub use self::report::{
    AcceptErrorKind, ConnectionEvent, RegistrySnapshot, RegistryTotals, ShutdownReport,
};
use super::{connection::CloseReason, limits::ConnectionLimits, observer::ConnConfig};
use crate::policy::SocketPolicy;

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
        let config = Arc::new(ConnConfig::new(limits, policy));
        let inner = Arc::new(RegistryInner::new(name, local_addr, config));
        let collector: std::sync::Weak<dyn crate::metrics::Collect> =
            Arc::downgrade(&inner) as std::sync::Weak<RegistryInner>;
        crate::metrics::register_collector(collector);
        Self { inner }
    }

    /// The listener's name (the `listener` metric label).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The address the listener is bound to: TIME_WAIT and queued connections on it are ours.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// The listener's accept queue: the backlog requested and the one the kernel enforces.
    pub fn backlog(&self) -> Option<crate::policy::EffectiveBacklog> {
        self.inner.backlog.get().copied()
    }

    pub(crate) fn set_backlog(&self, backlog: crate::policy::EffectiveBacklog) {
        let _ = self.inner.backlog.set(backlog);
    }

    /// Live connections by state, in [`ConnState::LIVE`] order (the tracked ones: at most the
    /// tracking bound). Counts without copying any connection, as the state gauges do.
    ///
    /// [`ConnState::LIVE`]: super::ConnState::LIVE
    pub fn live_by_state(&self) -> [(super::ConnState, usize); 5] {
        let counts = self.inner.count_by_state();
        std::array::from_fn(|k| (super::ConnState::LIVE[k], counts[k]))
    }

    /// The limits this listener enforces.
    pub fn limits(&self) -> &ConnectionLimits {
        &self.inner.config.limits
    }

    /// The socket policy applied to accepted sockets.
    pub fn policy(&self) -> &SocketPolicy {
        &self.inner.config.policy
    }

    /// Live connections right now (including any beyond the tracking bound).
    pub fn live(&self) -> usize {
        self.inner.live_count.load(Ordering::Acquire)
    }

    /// The counts of successive intervals, as tokio-metrics' `intervals()` gives them: each
    /// item holds what happened since the item before (the first, since the listener was
    /// bound). Take one per reporting period:
    ///
    /// ```no_run
    /// # async fn f(registry: conn_hygiene::server::ConnectionRegistry) {
    /// let mut intervals = registry.intervals();
    /// loop {
    ///     tokio::time::sleep(std::time::Duration::from_secs(10)).await;
    ///     let last_10s = intervals.next().unwrap_or_default();
    ///     println!("opened {} closed {}", last_10s.opened, last_10s.closed);
    /// }
    /// # }
    /// ```
    pub fn intervals(&self) -> impl Iterator<Item = RegistryTotals> + Send + 'static {
        let registry = self.clone();
        let mut previous = RegistryTotals::default();
        std::iter::from_fn(move || {
            let now = registry.totals();
            let interval = now.since(&previous);
            previous = now;
            Some(interval)
        })
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
            served_without_layer: i.served_without_layer.load(Ordering::Relaxed),
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
                .take(self.inner.config.limits.max_tracked)
                .map(|c| c.snapshot())
                .collect(),
            totals: self.totals(),
        }
    }

    /// Calls `hook` on every state change of every connection, including the final close with
    /// its [`CloseInfo`](super::CloseInfo). Hooks run inline on the connection's task: keep them short.
    pub fn on_state_change(&self, hook: impl Fn(&ConnectionEvent) + Send + Sync + 'static) {
        let mut hooks = self.inner.hooks.write().unwrap_or_else(|e| e.into_inner());
        hooks.push(Arc::new(hook));
        self.inner
            .config
            .report_transitions
            .store(true, Ordering::Release);
    }

    /// A handle to a live connection, by id (as listed in [`snapshot`](Self::snapshot)).
    pub fn connection(&self, id: u64) -> Option<super::ConnectionHandle> {
        let live = self.inner.live.lock().unwrap_or_else(|e| e.into_inner());
        live.get(&id).cloned().map(super::ConnectionHandle)
    }

    /// True once [`shutdown`](Self::shutdown) began.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutting_down.load(Ordering::Acquire)
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

    /// Graceful shutdown: idle connections close at once, active ones close after their
    /// response in flight (HTTP/1 `Connection: close`, HTTP/2 GOAWAY), and those still open at
    /// the listener's [shutdown deadline](super::ConnectionLimitsBuilder::shutdown_deadline)
    /// are cut. Returns how many drained and how many were cut.
    ///
    /// The hygienic listener keeps accepting until its owner stops; connections accepted after
    /// this call close after their first response. Every shutdown the crate offers takes its
    /// deadline from the same setting: this one, [`graceful_shutdown`](Self::graceful_shutdown)
    /// for `axum::serve`, [`Server::serve_with_shutdown`](super::Server::serve_with_shutdown)
    /// and the exporter's `MetricsServer::shutdown`.
    pub async fn shutdown(&self) -> ShutdownReport {
        let open_at_start = self.begin_shutdown();
        self.finish_shutdown(open_at_start, self.limits().shutdown_deadline())
            .await
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
    /// [`shutdown`](Self::shutdown) in a background task, and resolves at once so that axum
    /// stops accepting. axum's serve future then resolves when the last connection has drained
    /// or been cut at the shutdown deadline. axum's connection tasks report themselves done
    /// just before they drop their connection, so the last close may be counted a moment after
    /// the serve future resolves: await [`closed`](Self::closed) before reading final totals.
    pub fn graceful_shutdown<F>(
        &self,
        signal: F,
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
                let deadline = registry.limits().shutdown_deadline();
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
