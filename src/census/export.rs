//! The census as metrics: each series registered when first measured (a scrape in the first
//! milliseconds shows no series rather than a 0 nobody measured), values set after every
//! sample.

use std::collections::HashMap;

use conn_hygiene_census::findings::Check;
use conn_hygiene_census::{Severity, TcpState};
use metrics::{Counter, Gauge, Histogram, Label};

use super::attribution::Claim;
use super::peers::{PeerCensus, PeerKind};
use super::snapshot::{CensusSnapshot, DegradedPart, Tier};
use super::MAX_UPSTREAMS;
use crate::metrics::names;

/// A series registered with the recorder when it first gets a value.
#[derive(Debug)]
struct Lazy<H> {
    name: &'static str,
    labels: Vec<Label>,
    handle: Option<H>,
}

impl<H> Lazy<H> {
    fn new(name: &'static str, labels: &[(&'static str, &str)]) -> Self {
        Lazy {
            name,
            labels: labels
                .iter()
                .map(|(k, v)| Label::new(*k, v.to_string()))
                .collect(),
            handle: None,
        }
    }

    fn get(&mut self, register: fn(&'static str, Vec<Label>) -> H) -> &H {
        let Lazy {
            name,
            labels,
            handle,
        } = self;
        handle.get_or_insert_with(|| crate::metrics::resolve(|| register(name, labels.clone())))
    }
}

type LazyGauge = Lazy<Gauge>;
type LazyCounter = Lazy<Counter>;

impl LazyGauge {
    fn set(&mut self, v: f64) {
        self.get(|n, l| metrics::gauge!(n, l)).set(v);
    }
}

impl LazyCounter {
    fn absolute(&mut self, v: u64) {
        self.get(|n, l| metrics::counter!(n, l)).absolute(v);
    }
}

impl Lazy<Histogram> {
    fn record(&mut self, v: f64) {
        self.get(|n, l| metrics::histogram!(n, l)).record(v);
    }
}

/// A check's worst severity as the value of its one series: the known ones in rising order,
/// and -1 when nothing it looked at could be measured.
const fn severity_value(s: Severity) -> f64 {
    match s {
        Severity::Unknown => -1.0,
        Severity::Ok => 0.0,
        Severity::Warning => 1.0,
        Severity::Critical => 2.0,
    }
}

#[derive(Debug)]
struct ListenerHandles {
    time_wait: LazyGauge,
    syn_recv: LazyGauge,
    close_wait: LazyGauge,
    queue_len: LazyGauge,
}

impl ListenerHandles {
    fn new(name: &str) -> Self {
        let sockets = |state: TcpState| {
            Lazy::new(
                names::LISTENER_TCP_SOCKETS,
                &[("listener", name), ("state", state.as_str())],
            )
        };
        ListenerHandles {
            time_wait: sockets(TcpState::TimeWait),
            syn_recv: sockets(TcpState::SynRecv),
            close_wait: sockets(TcpState::CloseWait),
            // Its maximum is the effective backlog, `conn_hygiene_server_listen_backlog`
            // {kind="effective"}, set when the listener is bound: not exported twice.
            queue_len: Lazy::new(names::LISTENER_ACCEPT_QUEUE, &[("listener", name)]),
        }
    }
}

#[derive(Debug)]
struct UpstreamHandles {
    time_wait: LazyGauge,
    close_wait: LazyGauge,
    headroom: LazyGauge,
    exhaustion: LazyGauge,
}

impl UpstreamHandles {
    fn new(name: &str) -> Self {
        let sockets = |state: TcpState| {
            Lazy::new(
                names::UPSTREAM_TCP_SOCKETS,
                &[("upstream", name), ("state", state.as_str())],
            )
        };
        UpstreamHandles {
            time_wait: sockets(TcpState::TimeWait),
            close_wait: sockets(TcpState::CloseWait),
            headroom: Lazy::new(names::UPSTREAM_PORT_HEADROOM_RATIO, &[("upstream", name)]),
            exhaustion: Lazy::new(
                names::UPSTREAM_PORT_EXHAUSTION_SECONDS,
                &[("upstream", name)],
            ),
        }
    }
}

/// A group of our connections' series.
#[derive(Debug)]
struct PeerHandles {
    connections: LazyGauge,
    close_wait: LazyGauge,
    without_keepalive: LazyGauge,
    idle_max: LazyGauge,
    retransmits: LazyGauge,
}

impl PeerHandles {
    fn new(kind: PeerKind, endpoint: &str) -> Self {
        let labels = [("kind", kind.as_str()), ("endpoint", endpoint)];
        PeerHandles {
            connections: Lazy::new(names::PEER_CONNECTIONS, &labels),
            close_wait: Lazy::new(names::PEER_CLOSE_WAIT, &labels),
            without_keepalive: Lazy::new(names::PEER_WITHOUT_KEEPALIVE, &labels),
            idle_max: Lazy::new(names::PEER_IDLE_MAX_SECONDS, &labels),
            retransmits: Lazy::new(names::PEER_RETRANSMITTED_SEGMENTS, &labels),
        }
    }

    fn set(&mut self, p: Option<&PeerCensus>) {
        let count = |f: fn(&PeerCensus) -> u64| p.map_or(0.0, |p| f(p) as f64);
        self.connections.set(count(PeerCensus::sockets));
        self.close_wait
            .set(count(|p| p.states[TcpState::CloseWait]));
        self.without_keepalive.set(count(|p| p.without_keepalive));
        self.retransmits.set(count(|p| p.retransmits));
        self.idle_max
            .set(p.and_then(|p| p.idle_max).map_or(0.0, |d| d.as_secs_f64()));
    }
}

/// Every census metric handle. Labels: state, tier, check, part, the listener and upstream
/// names, and, for our connections by endpoint, at most
/// [`MAX_NAMED_REMOTES`](super::MAX_NAMED_REMOTES) remote addresses ever.
#[derive(Debug)]
pub(crate) struct CensusMetrics {
    host: [LazyGauge; TcpState::COUNT],
    process: [Option<LazyGauge>; TcpState::COUNT],
    listeners: HashMap<String, ListenerHandles>,
    upstreams: HashMap<String, UpstreamHandles>,
    peers: HashMap<(PeerKind, String), PeerHandles>,
    listen_overflows: LazyCounter,
    listen_drops: LazyCounter,
    time_wait_overflows: LazyCounter,
    resets_sent: LazyCounter,
    established_resets: LazyCounter,
    retransmits: LazyCounter,
    fd_ratio: LazyGauge,
    file_ratio: LazyGauge,
    conntrack_ratio: LazyGauge,
    checks: Vec<LazyGauge>,
    duration: [Lazy<Histogram>; 2],
    degraded: [LazyGauge; DegradedPart::ALL.len()],
    walk_period: LazyGauge,
}

impl CensusMetrics {
    /// The handles of every series, each registered with the recorder in force when it first
    /// gets a value (the listeners and upstreams claimed now included; upstreams that appear
    /// later are added when first seen).
    pub(crate) fn new(claims: &[Claim]) -> Self {
        let mut m = CensusMetrics {
            host: TcpState::ALL
                .map(|s| Lazy::new(names::HOST_TCP_SOCKETS, &[("state", s.as_str())])),
            // No descriptor ever holds a TIME_WAIT or SYN_RECV socket (the kernel keeps those as
            // small sockets of its own, with no file): a process never has one, and those two
            // series would only ever say 0.
            process: TcpState::ALL.map(|s| match s {
                TcpState::TimeWait | TcpState::SynRecv => None,
                s => Some(Lazy::new(
                    names::PROCESS_TCP_SOCKETS,
                    &[("state", s.as_str())],
                )),
            }),
            listeners: HashMap::new(),
            upstreams: HashMap::new(),
            peers: HashMap::new(),
            listen_overflows: Lazy::new(names::HOST_TCP_LISTEN_OVERFLOWS_TOTAL, &[]),
            listen_drops: Lazy::new(names::HOST_TCP_LISTEN_DROPS_TOTAL, &[]),
            time_wait_overflows: Lazy::new(names::HOST_TCP_TIME_WAIT_OVERFLOWS_TOTAL, &[]),
            resets_sent: Lazy::new(names::HOST_TCP_RESETS_SENT_TOTAL, &[]),
            established_resets: Lazy::new(names::HOST_TCP_ESTABLISHED_RESETS_TOTAL, &[]),
            retransmits: Lazy::new(names::HOST_TCP_RETRANSMITTED_SEGMENTS_TOTAL, &[]),
            fd_ratio: Lazy::new(names::PROCESS_FD_USAGE_RATIO, &[]),
            file_ratio: Lazy::new(names::HOST_FILE_USAGE_RATIO, &[]),
            conntrack_ratio: Lazy::new(names::HOST_CONNTRACK_USAGE_RATIO, &[]),
            checks: Check::ALL
                .iter()
                .map(|c| Lazy::new(names::CENSUS_CHECK_SEVERITY, &[("check", c.as_str())]))
                .collect(),
            duration: Tier::ALL
                .map(|t| Lazy::new(names::SAMPLER_DURATION_SECONDS, &[("tier", t.as_str())])),
            degraded: DegradedPart::ALL
                .map(|p| Lazy::new(names::CENSUS_DEGRADED, &[("part", p.as_str())])),
            walk_period: Lazy::new(names::CENSUS_WALK_PERIOD_TICKS, &[]),
        };
        for claim in claims {
            match claim {
                Claim::Listener { name, .. } => {
                    m.listeners
                        .entry(name.clone())
                        .or_insert_with(|| ListenerHandles::new(name));
                }
                Claim::Upstream { name, .. } => {
                    m.upstream(name);
                }
            }
        }
        m
    }

    fn upstream(&mut self, name: &str) -> Option<&mut UpstreamHandles> {
        if !self.upstreams.contains_key(name) {
            if self.upstreams.len() >= MAX_UPSTREAMS {
                return None;
            }
            self.upstreams
                .insert(name.to_owned(), UpstreamHandles::new(name));
        }
        self.upstreams.get_mut(name)
    }

    /// Sets every metric from a sample.
    pub(crate) fn record(&mut self, s: &CensusSnapshot) {
        let cost = s.cost.counters + s.cost.walk.unwrap_or_default();
        self.duration[s.tier.index()].record(cost.as_secs_f64());
        self.walk_period.set(f64::from(s.cost.walk_every));
        for part in DegradedPart::ALL {
            let on = s.degraded.as_ref().is_some_and(|d| d.has(part));
            self.degraded[part.index()].set(if on { 1.0 } else { 0.0 });
        }

        if let Some(tcp) = &s.counters.tcp {
            let pairs = [
                (&mut self.listen_overflows, tcp.listen_overflows),
                (&mut self.listen_drops, tcp.listen_drops),
                (&mut self.time_wait_overflows, tcp.time_wait_overflow),
                (&mut self.resets_sent, tcp.out_rsts),
                (&mut self.established_resets, tcp.estab_resets),
                (&mut self.retransmits, tcp.retrans_segs),
            ];
            for (counter, value) in pairs {
                if let Some(v) = value {
                    counter.absolute(v);
                }
            }
        }
        if let Some(r) = s.counters.fd_usage_ratio() {
            self.fd_ratio.set(r);
        }
        if let Some(f) = s.counters.file_nr.filter(|f| f.max > 0) {
            self.file_ratio.set(f.allocated as f64 / f.max as f64);
        }
        if let Some(r) = s.counters.conntrack_ratio() {
            self.conntrack_ratio.set(r);
        }
        for (gauge, check) in self.checks.iter_mut().zip(Check::ALL) {
            // A check that found nothing to look at this time keeps no value.
            let worst = s
                .report
                .of(check)
                .map(|f| severity_value(f.severity))
                .reduce(f64::max);
            if let Some(v) = worst {
                gauge.set(v);
            }
        }

        if s.walked_at.is_none() {
            return;
        }
        for (state, n) in s.host.iter() {
            self.host[state.index()].set(n as f64);
        }
        for (state, n) in s.process.iter() {
            if let Some(g) = &mut self.process[state.index()] {
                g.set(n as f64);
            }
        }
        for l in &s.listeners {
            let h = self
                .listeners
                .entry(l.name.clone())
                .or_insert_with(|| ListenerHandles::new(&l.name));
            h.time_wait.set(l.time_wait as f64);
            h.syn_recv.set(l.syn_recv as f64);
            h.close_wait.set(l.close_wait as f64);
            if let Some(len) = l.accept_queue_len {
                h.queue_len.set(f64::from(len));
            }
        }
        for u in &s.upstreams {
            let Some(h) = self.upstream(&u.name) else {
                continue;
            };
            h.time_wait.set(u.time_wait as f64);
            h.close_wait.set(u.close_wait as f64);
            h.headroom.set(u.headroom_ratio().unwrap_or(1.0));
            h.exhaustion.set(
                u.time_to_exhaustion()
                    .map_or(f64::INFINITY, |d| d.as_secs_f64()),
            );
        }
        // Groups bounded by the sampler (names, ten addresses ever, `other`); a group with no
        // connection now reads 0.
        for p in &s.peers {
            let key = (p.kind, p.endpoint.clone());
            if !self.peers.contains_key(&key)
                && self.peers.len() < 2 * MAX_UPSTREAMS + super::MAX_NAMED_REMOTES + 1
            {
                self.peers
                    .insert(key.clone(), PeerHandles::new(p.kind, &p.endpoint));
            }
        }
        for ((kind, endpoint), h) in &mut self.peers {
            h.set(
                s.peers
                    .iter()
                    .find(|p| p.kind == *kind && p.endpoint == *endpoint),
            );
        }
    }
}
