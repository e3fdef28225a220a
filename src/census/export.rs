//! The census as metrics: handles resolved once, values set after every sample.

use std::collections::HashMap;

use conn_hygiene_census::findings::Check;
use conn_hygiene_census::{Severity, TcpState};
use metrics::{Counter, Gauge, Histogram};

use super::attribution::Claim;
use super::snapshot::{CensusSnapshot, DegradedPart, Tier};
use super::MAX_UPSTREAMS;
use crate::metrics::names;

/// Severities in label order.
const SEVERITIES: [Severity; 4] = [
    Severity::Ok,
    Severity::Warning,
    Severity::Critical,
    Severity::Unknown,
];

const fn severity_index(s: Severity) -> usize {
    match s {
        Severity::Ok => 0,
        Severity::Warning => 1,
        Severity::Critical => 2,
        Severity::Unknown => 3,
    }
}

#[derive(Debug)]
struct ListenerHandles {
    time_wait: Gauge,
    syn_recv: Gauge,
    close_wait: Gauge,
    queue_len: Gauge,
}

impl ListenerHandles {
    fn new(name: &str) -> Self {
        let sockets = |state: TcpState| {
            metrics::gauge!(names::LISTENER_TCP_SOCKETS,
                "listener" => name.to_owned(), "state" => state.as_str())
        };
        ListenerHandles {
            time_wait: sockets(TcpState::TimeWait),
            syn_recv: sockets(TcpState::SynRecv),
            close_wait: sockets(TcpState::CloseWait),
            // Its maximum is the effective backlog, `conn_hygiene_server_listen_backlog`
            // {kind="effective"}, set when the listener is bound: not exported twice.
            queue_len: metrics::gauge!(names::LISTENER_ACCEPT_QUEUE, "listener" => name.to_owned()),
        }
    }
}

#[derive(Debug)]
struct UpstreamHandles {
    time_wait: Gauge,
    close_wait: Gauge,
    headroom: Gauge,
    exhaustion: Gauge,
}

impl UpstreamHandles {
    fn new(name: &str) -> Self {
        let sockets = |state: TcpState| {
            metrics::gauge!(names::UPSTREAM_TCP_SOCKETS,
                "upstream" => name.to_owned(), "state" => state.as_str())
        };
        UpstreamHandles {
            time_wait: sockets(TcpState::TimeWait),
            close_wait: sockets(TcpState::CloseWait),
            headroom: metrics::gauge!(names::UPSTREAM_PORT_HEADROOM_RATIO,
                "upstream" => name.to_owned()),
            exhaustion: metrics::gauge!(names::UPSTREAM_PORT_EXHAUSTION_SECONDS,
                "upstream" => name.to_owned()),
        }
    }
}

/// Every census metric handle. Labels: state, tier, check, severity, part, and the listener
/// and upstream names; never an address.
#[derive(Debug)]
pub(crate) struct CensusMetrics {
    host: [Gauge; TcpState::COUNT],
    process: [Gauge; TcpState::COUNT],
    listeners: HashMap<String, ListenerHandles>,
    upstreams: HashMap<String, UpstreamHandles>,
    listen_overflows: Counter,
    listen_drops: Counter,
    time_wait_overflows: Counter,
    resets_sent: Counter,
    established_resets: Counter,
    retransmits: Counter,
    fd_ratio: Gauge,
    file_ratio: Gauge,
    conntrack_ratio: Gauge,
    findings: Vec<[Gauge; 4]>,
    duration: [Histogram; 2],
    degraded: [Gauge; DegradedPart::ALL.len()],
    walk_period: Gauge,
}

impl CensusMetrics {
    /// Resolves the handles through the recorder in force now: every fixed one, and those of
    /// the listeners and upstreams claimed now. Upstreams that appear later are resolved when
    /// first seen, through the recorder in force then.
    pub(crate) fn new(claims: &[Claim]) -> Self {
        let mut m = CensusMetrics {
            host: TcpState::ALL
                .map(|s| metrics::gauge!(names::HOST_TCP_SOCKETS, "state" => s.as_str())),
            // No descriptor ever holds a TIME_WAIT or SYN_RECV socket (the kernel keeps those as
            // small sockets of its own, with no file): a process never has one, and those two
            // series would only ever say 0.
            process: TcpState::ALL.map(|s| match s {
                TcpState::TimeWait | TcpState::SynRecv => Gauge::noop(),
                s => metrics::gauge!(names::PROCESS_TCP_SOCKETS, "state" => s.as_str()),
            }),
            listeners: HashMap::new(),
            upstreams: HashMap::new(),
            listen_overflows: metrics::counter!(names::HOST_TCP_LISTEN_OVERFLOWS_TOTAL),
            listen_drops: metrics::counter!(names::HOST_TCP_LISTEN_DROPS_TOTAL),
            time_wait_overflows: metrics::counter!(names::HOST_TCP_TIME_WAIT_OVERFLOWS_TOTAL),
            resets_sent: metrics::counter!(names::HOST_TCP_RESETS_SENT_TOTAL),
            established_resets: metrics::counter!(names::HOST_TCP_ESTABLISHED_RESETS_TOTAL),
            retransmits: metrics::counter!(names::HOST_TCP_RETRANSMITTED_SEGMENTS_TOTAL),
            fd_ratio: metrics::gauge!(names::PROCESS_FD_USAGE_RATIO),
            file_ratio: metrics::gauge!(names::HOST_FILE_USAGE_RATIO),
            conntrack_ratio: metrics::gauge!(names::HOST_CONNTRACK_USAGE_RATIO),
            findings: Check::ALL
                .iter()
                .map(|c| {
                    SEVERITIES.map(|s| {
                        metrics::gauge!(names::CENSUS_FINDINGS,
                            "check" => c.as_str(), "severity" => s.as_str())
                    })
                })
                .collect(),
            duration: Tier::ALL.map(
                |t| metrics::histogram!(names::SAMPLER_DURATION_SECONDS, "tier" => t.as_str()),
            ),
            degraded: DegradedPart::ALL
                .map(|p| metrics::gauge!(names::CENSUS_DEGRADED, "part" => p.as_str())),
            walk_period: metrics::gauge!(names::CENSUS_WALK_PERIOD_TICKS),
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

    fn upstream(&mut self, name: &str) -> Option<&UpstreamHandles> {
        if !self.upstreams.contains_key(name) {
            if self.upstreams.len() >= MAX_UPSTREAMS {
                return None;
            }
            self.upstreams
                .insert(name.to_owned(), UpstreamHandles::new(name));
        }
        self.upstreams.get(name)
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
                (&self.listen_overflows, tcp.listen_overflows),
                (&self.listen_drops, tcp.listen_drops),
                (&self.time_wait_overflows, tcp.time_wait_overflow),
                (&self.resets_sent, tcp.out_rsts),
                (&self.established_resets, tcp.estab_resets),
                (&self.retransmits, tcp.retrans_segs),
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
        for (i, check) in Check::ALL.iter().enumerate() {
            let mut n = [0u32; 4];
            for f in s.report.of(*check) {
                n[severity_index(f.severity)] += 1;
            }
            for (g, v) in self.findings[i].iter().zip(n) {
                g.set(f64::from(v));
            }
        }

        if s.walked_at.is_none() {
            return;
        }
        for (state, n) in s.host.iter() {
            self.host[state.index()].set(n as f64);
        }
        for (state, n) in s.process.iter() {
            self.process[state.index()].set(n as f64);
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
    }
}
