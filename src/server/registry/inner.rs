//! The registry's state, and what it does when its connections report.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex, RwLock,
    },
};

use tokio::sync::Notify;

use super::{
    metrics::ServerMetrics,
    report::{AcceptErrorKind, ConnectionEvent, REASONS},
};
use crate::{
    metrics::{Collect, Sums},
    server::{
        connection::{CloseInfo, CloseReason, Closer, ConnShared, ConnState},
        observer::{ConnConfig, ConnObserver},
    },
};

pub(super) type Hook = Arc<dyn Fn(&ConnectionEvent) + Send + Sync>;

pub(crate) struct RegistryInner {
    pub(super) name: Arc<str>,
    pub(super) local_addr: SocketAddr,
    /// The accept queue of the listener, when the registry belongs to one.
    pub(super) backlog: std::sync::OnceLock<crate::policy::EffectiveBacklog>,
    pub(super) config: Arc<ConnConfig>,
    pub(super) next_id: AtomicU64,
    pub(super) live: Mutex<HashMap<u64, Arc<ConnShared>>>,
    pub(super) live_count: AtomicUsize,
    pub(super) closed_notify: Notify,
    pub(super) shutting_down: AtomicBool,
    pub(super) hooks: RwLock<Vec<Hook>>,
    pub(super) opened: AtomicU64,
    pub(super) closed_by_reason: [AtomicU64; REASONS],
    pub(super) closed_by_closer: [AtomicU64; 5],
    pub(super) aborted: AtomicU64,
    pub(super) requests_on_closed: AtomicU64,
    pub(super) accept_errors: AtomicU64,
    pub(super) half_closed_in_flight: AtomicU64,
    pub(super) shutdown_cut: AtomicU64,
    pub(super) untracked: AtomicU64,
    pub(super) requests_unanswered: AtomicU64,
    pub(super) goaway_grace_expired: AtomicU64,
    pub(super) served_without_layer: AtomicU64,
    warned_without_layer: std::sync::atomic::AtomicBool,
    pub(super) metrics: ServerMetrics,
}

impl RegistryInner {
    pub(super) fn new(name: Arc<str>, local_addr: SocketAddr, config: Arc<ConnConfig>) -> Self {
        Self {
            metrics: crate::metrics::resolve(|| ServerMetrics::new(&name)),
            name,
            local_addr,
            backlog: std::sync::OnceLock::new(),
            config,
            next_id: AtomicU64::new(0),
            live: Mutex::new(HashMap::new()),
            live_count: AtomicUsize::new(0),
            closed_notify: Notify::new(),
            shutting_down: AtomicBool::new(false),
            hooks: RwLock::new(Vec::new()),
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
            served_without_layer: AtomicU64::new(0),
            warned_without_layer: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn on_transition(
        &self,
        conn: &ConnShared,
        from: ConnState,
        to: ConnState,
        close: Option<CloseInfo>,
    ) {
        if self.config.report_transitions.load(Ordering::Acquire) {
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
        let observer: Arc<dyn ConnObserver> = self.clone();
        let conn = Arc::new(ConnShared::new(
            id,
            local,
            peer,
            self.config.clone(),
            observer,
        ));
        self.opened.fetch_add(1, Ordering::Relaxed);
        self.live_count.fetch_add(1, Ordering::AcqRel);
        {
            // Every live connection stays reachable, so that shutdown can retire it and cut it
            // at the deadline; the bound caps what snapshots list (and copy), and connections
            // opened beyond it are counted as untracked.
            let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
            if live.len() >= self.config.limits.max_tracked {
                self.untracked.fetch_add(1, Ordering::Relaxed);
            }
            live.insert(id, conn.clone());
        }
        self.metrics.opened.increment(1);
        if self.shutting_down.load(Ordering::Acquire) {
            conn.retire(CloseReason::Shutdown);
        }
        conn
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

    pub(crate) async fn connection_closed(&self) {
        self.closed_notify.notified().await;
    }

    pub(super) async fn wait_all_closed(&self) {
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

    pub(super) fn live_conns(&self) -> Vec<Arc<ConnShared>> {
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = live.values().cloned().collect();
        v.sort_by_key(|c| c.id);
        v
    }
}

impl RegistryInner {
    /// The listed live connections by state, in [`ConnState::LIVE`] order.
    pub(super) fn count_by_state(&self) -> [usize; ConnState::LIVE.len()] {
        let mut counts = [0; ConnState::LIVE.len()];
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        for conn in live.values() {
            if let Some(n) = counts.get_mut(conn.state().index()) {
                *n += 1;
            }
        }
        counts
    }
}

impl Collect for RegistryInner {
    /// Counts the live connections by state into the state gauges.
    fn collect(&self, sums: &mut Sums) {
        for (n, gauge) in self.count_by_state().iter().zip(&self.metrics.state) {
            sums.add(gauge, *n as f64);
        }
    }
}

impl ConnObserver for RegistryInner {
    fn transition(&self, conn: &ConnShared, from: ConnState, to: ConnState) {
        self.on_transition(conn, from, to, None);
    }

    fn closed(
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

    fn served_without_layer(&self) {
        self.served_without_layer.fetch_add(1, Ordering::Relaxed);
        if !self.warned_without_layer.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                listener = %self.name,
                "requests are served without the connection layer (`axum::serve(listener, app)` \
                 rather than `MakeTrackConnection::new(app)`): every connection limit holds, but \
                 requests carry no `ConnectionInfo`, a retiring connection's last response gets \
                 no `Connection: close`, and handlers are not counted"
            );
        }
    }

    fn goaway_grace_expired(&self) {
        self.goaway_grace_expired.fetch_add(1, Ordering::Relaxed);
    }

    fn half_closed_in_flight(&self) {
        self.half_closed_in_flight.fetch_add(1, Ordering::Relaxed);
        self.metrics.half_closed.increment(1);
    }

    fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }
}
