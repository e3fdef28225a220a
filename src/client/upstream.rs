//! One upstream: its settings, pool accounting, live connections, lease tracker and metrics.

use std::{
    collections::HashMap,
    fmt,
    net::{IpAddr, SocketAddr},
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use hyper_util::client::legacy::connect::HttpConnector;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{
    config::{ClientConfigError, UpstreamConfig},
    conn::{ClientConn, CloseReason, ConnState, ConnectionSnapshot},
    observer::ConnObserver,
    routing::Route,
    upstream_metrics::UpstreamMetrics,
};
use crate::{
    close::Closer,
    lease::LeaseTracker,
    metrics::{Collect, Sums},
    policy::SocketPolicy,
};

/// Most upstreams a client tracks by name; further destinations share the `other` upstream so
/// metric label sets stay bounded.
pub(crate) const MAX_UPSTREAMS: usize = 256;

/// One idle connection in `Upstream::pool_states`.
/// How many close reasons a client connection can have.
pub(super) const CLIENT_REASONS: usize = CloseReason::ALL.len();

const IDLE_ONE: u64 = 1;
/// One leased connection in `Upstream::pool_states`.
const LEASED_ONE: u64 = 1 << 32;

/// Kinds of failed connection attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConnectErrorKind {
    /// The upstream refused the connection.
    Refused,
    /// The connect timeout passed.
    Timeout,
    /// No slot under `max_connections` freed up within the acquire timeout.
    AcquireTimeout,
    /// The TLS handshake failed (an untrusted certificate, a name mismatch, a server that
    /// does not speak TLS), or an `https://` upstream with no TLS configured.
    Tls,
    /// Anything else (DNS, unreachable, local address unavailable, …).
    Other,
}

impl ConnectErrorKind {
    pub(super) const ALL: [ConnectErrorKind; 5] = [
        ConnectErrorKind::Refused,
        ConnectErrorKind::Timeout,
        ConnectErrorKind::AcquireTimeout,
        ConnectErrorKind::Tls,
        ConnectErrorKind::Other,
    ];

    /// The kind's name as used in metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            ConnectErrorKind::Refused => "refused",
            ConnectErrorKind::Timeout => "timeout",
            ConnectErrorKind::AcquireTimeout => "acquire_timeout",
            ConnectErrorKind::Tls => "tls",
            ConnectErrorKind::Other => "other",
        }
    }
}

/// Cumulative counters of one upstream; [`since`](Self::since) gives the counts of an
/// interval.
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct UpstreamTotals {
    /// Connections opened.
    pub connects: u64,
    /// Failed connection attempts.
    pub connect_errors: u64,
    /// Connections closed.
    pub closed: u64,
    /// Responses received on closed connections.
    pub requests_on_closed: u64,
    /// Replayable requests sent again: a reused connection failed before any byte of the
    /// response, or an HTTP/2 server refused the stream (a graceful GOAWAY, `REFUSED_STREAM`).
    pub retries: u64,
    /// Requests that timed out (response head or total timeout), once per request.
    pub timeouts: u64,
    /// Closed with a reset by abort-on-idle (no TIME_WAIT).
    pub aborted: u64,
    closed_by_reason: [u64; CLIENT_REASONS],
    closed_by_closer: [u64; 5],
}

impl UpstreamTotals {
    /// Connections closed for a reason.
    pub fn closed_for(&self, reason: CloseReason) -> u64 {
        self.closed_by_reason[reason.index()]
    }

    /// Connections closed with this closer first.
    pub fn closed_by(&self, closer: Closer) -> u64 {
        self.closed_by_closer[closer as usize]
    }

    /// What happened between `earlier` (totals taken before) and these.
    pub fn since(&self, earlier: &UpstreamTotals) -> UpstreamTotals {
        let d = |a: u64, b: u64| a.saturating_sub(b);
        UpstreamTotals {
            connects: d(self.connects, earlier.connects),
            connect_errors: d(self.connect_errors, earlier.connect_errors),
            closed: d(self.closed, earlier.closed),
            requests_on_closed: d(self.requests_on_closed, earlier.requests_on_closed),
            retries: d(self.retries, earlier.retries),
            timeouts: d(self.timeouts, earlier.timeouts),
            aborted: d(self.aborted, earlier.aborted),
            closed_by_reason: std::array::from_fn(|k| {
                d(self.closed_by_reason[k], earlier.closed_by_reason[k])
            }),
            closed_by_closer: std::array::from_fn(|k| {
                d(self.closed_by_closer[k], earlier.closed_by_closer[k])
            }),
        }
    }
}

/// Named counts, the close reasons and closers that occurred only.
impl std::fmt::Debug for UpstreamTotals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let reasons =
            crate::close::NonZero(CloseReason::ALL.map(|r| (r.as_str(), self.closed_for(r))));
        let closers = crate::close::NonZero(Closer::ALL.map(|c| (c.as_str(), self.closed_by(c))));
        f.debug_struct("UpstreamTotals")
            .field("connects", &self.connects)
            .field("connect_errors", &self.connect_errors)
            .field("closed", &self.closed)
            .field("closed_for", &reasons)
            .field("closed_by", &closers)
            .field("requests_on_closed", &self.requests_on_closed)
            .field("retries", &self.retries)
            .field("timeouts", &self.timeouts)
            .field("aborted", &self.aborted)
            .finish()
    }
}

/// A point-in-time view of one upstream's pool.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct UpstreamSnapshot {
    /// The upstream's name (the `upstream` metric label).
    pub name: String,
    /// `host:port` as requested.
    pub authority: String,
    /// Open connections.
    pub open: usize,
    /// Idle connections.
    pub idle: usize,
    /// Leased connections.
    pub leased: usize,
    /// Connection attempts waiting for a slot under `max_connections`.
    pub pending: usize,
    /// The server's keep-alive timeout as learned from `Keep-Alive: timeout=N`.
    pub learned_keep_alive: Option<Duration>,
    /// The idle timeout in force.
    pub effective_idle_timeout: Duration,
    /// Destination addresses connected to (at most 64): TIME_WAIT the client leaves toward
    /// them is this upstream's.
    pub remote_addrs: Vec<SocketAddr>,
    /// Live connections.
    pub connections: Vec<ConnectionSnapshot>,
    /// Cumulative counters.
    pub totals: UpstreamTotals,
    /// Outstanding leases (requests whose response body is not yet read or dropped).
    pub leases: crate::lease::LeaseSnapshot,
}

/// One upstream: its settings, pool accounting, live connections and lease tracker.
pub(crate) struct Upstream {
    pub(crate) name: Arc<str>,
    pub(crate) authority: String,
    pub(crate) config: UpstreamConfig,
    pub(crate) policy: SocketPolicy,
    pub(crate) tracker: LeaseTracker,
    /// How requests to this upstream address hyper-util's pool; `None` for the shared `other`
    /// upstream, whose requests keep their own authority.
    pub(crate) route: Option<Route>,
    learned_keep_alive_ms: AtomicU64,
    semaphore: Option<Arc<Semaphore>>,
    pending: AtomicUsize,
    /// Idle connections in the low 32 bits, leased ones in the high 32: a connection moving
    /// between the two is one atomic add.
    pool_states: AtomicU64,
    next_id: AtomicU64,
    next_source: AtomicUsize,
    connectors: Vec<HttpConnector>,
    conns: Mutex<HashMap<u64, Arc<ClientConn>>>,
    remotes: Mutex<Vec<SocketAddr>>,
    connects: AtomicU64,
    connect_errors: AtomicU64,
    retries: AtomicU64,
    timeouts: AtomicU64,
    aborted: AtomicU64,
    requests_on_closed: AtomicU64,
    closed_by_reason: [AtomicU64; CLIENT_REASONS],
    closed_by_closer: [AtomicU64; 5],
    metrics: UpstreamMetrics,
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .field("authority", &self.authority)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    pub(crate) fn new(
        authority: String,
        config: UpstreamConfig,
        policy: SocketPolicy,
    ) -> Result<Self, ClientConfigError> {
        config.validate()?;
        let name: Arc<str> = config
            .name
            .clone()
            .unwrap_or_else(|| Arc::from(authority.as_str()));
        let tracker = crate::lease::LeaseTracker::upstream_builder(name.clone())
            .leak_threshold(config.leak_threshold)
            .backtraces(config.backtraces)
            .build()
            .map_err(|_| ClientConfigError::LeakThreshold {
                value: config.leak_threshold.unwrap_or_default(),
            })?;
        let make = |local: Option<IpAddr>| {
            let mut http = HttpConnector::new();
            // The connector sees `https://` too: TLS goes over the socket it makes.
            http.enforce_http(false);
            http.set_connect_timeout(config.connect_timeout);
            http.set_nodelay(policy.nodelay());
            http.set_reuse_address(policy.reuse_address() && local.is_some());
            http.set_local_address(local);
            http
        };
        let connectors = if config.local_addrs.is_empty() {
            vec![make(None)]
        } else {
            config.local_addrs.iter().map(|a| make(Some(*a))).collect()
        };
        Ok(Self {
            metrics: crate::metrics::resolve(|| UpstreamMetrics::new(&name)),
            semaphore: config.max_connections.map(|n| Arc::new(Semaphore::new(n))),
            name,
            authority,
            policy,
            tracker,
            route: None,
            learned_keep_alive_ms: AtomicU64::new(0),
            pending: AtomicUsize::new(0),
            pool_states: AtomicU64::new(0),
            next_id: AtomicU64::new(0),
            next_source: AtomicUsize::new(0),
            connectors,
            conns: Mutex::new(HashMap::new()),
            remotes: Mutex::new(Vec::new()),
            connects: AtomicU64::new(0),
            connect_errors: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            aborted: AtomicU64::new(0),
            requests_on_closed: AtomicU64::new(0),
            closed_by_reason: Default::default(),
            closed_by_closer: Default::default(),
            config,
        })
    }

    /// The next connector, round-robin over the configured source addresses.
    pub(crate) fn connector(&self) -> HttpConnector {
        let i = self.next_source.fetch_add(1, Ordering::Relaxed) % self.connectors.len();
        self.connectors[i].clone()
    }

    /// Waits for a slot under `max_connections`, counted as pending while it waits.
    pub(crate) async fn acquire(&self) -> Result<Option<OwnedSemaphorePermit>, AcquireTimeout> {
        let Some(sem) = &self.semaphore else {
            return Ok(None);
        };
        if let Ok(p) = sem.clone().try_acquire_owned() {
            return Ok(Some(p));
        }
        self.pending.fetch_add(1, Ordering::AcqRel);
        self.metrics.pending.increment(1.0);
        let res =
            tokio::time::timeout(self.config.acquire_timeout, sem.clone().acquire_owned()).await;
        self.pending.fetch_sub(1, Ordering::AcqRel);
        self.metrics.pending.decrement(1.0);
        match res {
            Ok(Ok(p)) => Ok(Some(p)),
            _ => {
                self.connect_error(ConnectErrorKind::AcquireTimeout);
                Err(AcquireTimeout {
                    upstream: self.name.clone(),
                    waited: self.config.acquire_timeout,
                    max_connections: self.config.max_connections.unwrap_or(0),
                })
            }
        }
    }

    pub(crate) fn register(
        self: &Arc<Self>,
        local: SocketAddr,
        peer: SocketAddr,
        http2: bool,
        tls: bool,
    ) -> Arc<ClientConn> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let observer: Arc<dyn ConnObserver> = self.clone();
        let conn = Arc::new(ClientConn::new(id, observer, local, peer, http2, tls));
        self.connects.fetch_add(1, Ordering::Relaxed);
        self.metrics.connects.increment(1);
        self.pool_states.fetch_add(IDLE_ONE, Ordering::AcqRel);
        {
            let mut remotes = self.remotes.lock().unwrap_or_else(|e| e.into_inner());
            if !remotes.contains(&peer) && remotes.len() < 64 {
                remotes.push(peer);
            }
        }
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        if conns.len() < 65_536 {
            conns.insert(id, conn.clone());
        }
        conn
    }

    pub(crate) fn connect_error(&self, kind: ConnectErrorKind) {
        self.connect_errors.fetch_add(1, Ordering::Relaxed);
        let i = ConnectErrorKind::ALL
            .iter()
            .position(|k| *k == kind)
            .unwrap_or(3);
        self.metrics.connect_errors[i].increment(1);
    }

    fn on_transition(&self, from: ConnState, to: ConnState) {
        let unit = |state| match state {
            ConnState::Idle => IDLE_ONE,
            ConnState::Leased => LEASED_ONE,
            _ => 0,
        };
        // Wrapping: the subtraction of `from` borrows across the halves only transiently,
        // never in the sum, since a connection leaves a state it is counted in.
        let delta = unit(to).wrapping_sub(unit(from));
        if delta != 0 {
            self.pool_states.fetch_add(delta, Ordering::AcqRel);
        }
        // The gauges are set from these counts when metrics are collected.
    }

    /// (idle, leased) connections.
    fn pool_counts(&self) -> (usize, usize) {
        let v = self.pool_states.load(Ordering::Acquire);
        ((v & 0xffff_ffff) as usize, (v >> 32) as usize)
    }

    fn on_close(&self, conn: &ClientConn, closer: Closer, reason: CloseReason, aborted: bool) {
        conn.closed();
        self.conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&conn.id);
        let requests = conn.requests.load(Ordering::Acquire);
        self.requests_on_closed
            .fetch_add(requests, Ordering::Relaxed);
        self.closed_by_reason[reason.index()].fetch_add(1, Ordering::Relaxed);
        self.closed_by_closer[closer as usize].fetch_add(1, Ordering::Relaxed);
        if aborted {
            self.aborted.fetch_add(1, Ordering::Relaxed);
        }
        self.metrics.closed[closer as usize][reason.index()].increment(1);
        self.metrics.requests_per_connection.record(requests as f64);
        tracing::trace!(upstream = %self.name, id = conn.id, closer = closer.as_str(),
            reason = reason.as_str(), requests, "outbound connection closed");
    }

    pub(crate) fn retried(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
        self.metrics.retries.increment(1);
    }

    /// A request of this upstream timed out (counted once per request).
    pub(crate) fn timed_out(&self) {
        self.timeouts.fetch_add(1, Ordering::Relaxed);
        self.metrics.timeouts.increment(1);
    }

    /// Records the server's advertised keep-alive timeout.
    pub(crate) fn learn_keep_alive(&self, header: &http::HeaderValue) {
        let Some(secs) = parse_keep_alive_timeout(header) else {
            return;
        };
        let ms = secs.saturating_mul(1000);
        if self.learned_keep_alive_ms.swap(ms, Ordering::AcqRel) != ms {
            tracing::debug!(upstream = %self.name, timeout_secs = secs,
                "learned the server's keep-alive timeout");
        }
    }

    pub(crate) fn learned_keep_alive(&self) -> Option<Duration> {
        match self.learned_keep_alive_ms.load(Ordering::Acquire) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    pub(crate) fn effective_idle_timeout(&self) -> Duration {
        self.config
            .effective_idle_timeout(self.learned_keep_alive())
    }

    pub(crate) fn totals(&self) -> UpstreamTotals {
        UpstreamTotals {
            connects: self.connects.load(Ordering::Relaxed),
            connect_errors: self.connect_errors.load(Ordering::Relaxed),
            closed: self
                .closed_by_reason
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .sum(),
            requests_on_closed: self.requests_on_closed.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            timeouts: self.timeouts.load(Ordering::Relaxed),
            aborted: self.aborted.load(Ordering::Relaxed),
            closed_by_reason: std::array::from_fn(|i| {
                self.closed_by_reason[i].load(Ordering::Relaxed)
            }),
            closed_by_closer: std::array::from_fn(|i| {
                self.closed_by_closer[i].load(Ordering::Relaxed)
            }),
        }
    }

    pub(crate) fn snapshot(&self) -> UpstreamSnapshot {
        let mut connections: Vec<_> = self
            .conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|c| c.snapshot())
            .collect();
        connections.sort_by_key(|c| c.id);
        UpstreamSnapshot {
            open: connections.len(),
            connections,
            ..self.summary()
        }
    }

    /// The snapshot without its connections (`open` counted, `connections` empty).
    pub(crate) fn summary(&self) -> UpstreamSnapshot {
        let open = self.conns.lock().unwrap_or_else(|e| e.into_inner()).len();
        let (idle, leased) = self.pool_counts();
        UpstreamSnapshot {
            name: self.name.to_string(),
            authority: self.authority.clone(),
            open,
            idle,
            leased,
            pending: self.pending.load(Ordering::Acquire),
            learned_keep_alive: self.learned_keep_alive(),
            effective_idle_timeout: self.effective_idle_timeout(),
            remote_addrs: self
                .remotes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            connections: Vec::new(),
            totals: self.totals(),
            leases: self.tracker.snapshot(),
        }
    }
}

/// Parses the `timeout=N` parameter of a `Keep-Alive` header.
pub(crate) fn parse_keep_alive_timeout(value: &http::HeaderValue) -> Option<u64> {
    value.to_str().ok()?.split(',').find_map(|part| {
        let (k, v) = part.split_once('=')?;
        if k.trim().eq_ignore_ascii_case("timeout") {
            v.trim()
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0 && *n <= 86_400)
        } else {
            None
        }
    })
}

/// No connection slot freed up within the acquire timeout.
#[derive(Debug, Clone)]
pub struct AcquireTimeout {
    upstream: Arc<str>,
    waited: Duration,
    max_connections: usize,
}

impl fmt::Display for AcquireTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no connection to upstream {} within the acquire timeout of {:?} ({} connections open, the maximum)",
            self.upstream, self.waited, self.max_connections
        )
    }
}

impl std::error::Error for AcquireTimeout {}

impl Collect for Upstream {
    /// Its connections by state, into the connection gauges.
    fn collect(&self, sums: &mut Sums) {
        let (idle, leased) = self.pool_counts();
        sums.add(&self.metrics.idle, idle as f64);
        sums.add(&self.metrics.leased, leased as f64);
    }
}

impl ConnObserver for Upstream {
    fn name(&self) -> &str {
        &self.name
    }

    fn config(&self) -> &UpstreamConfig {
        &self.config
    }

    fn policy(&self) -> &SocketPolicy {
        &self.policy
    }

    fn idle_timeout(&self) -> Duration {
        self.effective_idle_timeout()
    }

    fn idle_count(&self) -> usize {
        self.pool_counts().0
    }

    fn lease_site(&self, slot: usize, id: u64) -> Option<&'static std::panic::Location<'static>> {
        self.tracker.site_of(slot, id)
    }

    fn transition(&self, from: ConnState, to: ConnState) {
        self.on_transition(from, to);
    }

    fn closed(&self, conn: &ClientConn, closer: Closer, reason: CloseReason, aborted: bool) {
        self.on_close(conn, closer, reason, aborted);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_alive_header_parsing() {
        let h = |s: &'static str| http::HeaderValue::from_static(s);
        assert_eq!(parse_keep_alive_timeout(&h("timeout=5, max=100")), Some(5));
        assert_eq!(
            parse_keep_alive_timeout(&h("max=100, Timeout = 75")),
            Some(75)
        );
        assert_eq!(parse_keep_alive_timeout(&h("timeout=0")), None);
        assert_eq!(parse_keep_alive_timeout(&h("timeout=abc")), None);
        assert_eq!(parse_keep_alive_timeout(&h("")), None);
    }
}
