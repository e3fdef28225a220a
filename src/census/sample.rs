//! Taking one sample: the counters tier, the full walk with its join, the findings.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use conn_hygiene_census::findings::{
    evaluate, read_host_counters, Check, HostSample, HostSockets, HostWalk, PortCount, ProcessFd,
    Thresholds,
};
use conn_hygiene_census::process::SocketInodes;
use conn_hygiene_census::{
    canonical_addr as canon, Backend, CensusError, ProcRoot, Severity, SocketFilter, WalkItem,
    WalkOptions, Walker,
};

use super::attribution::AttributionSource;
use super::join::Join;
use super::peers::{NamedRemotes, PeerCensus, PeerWalk};
use super::snapshot::{
    CensusSnapshot, CloseWaitEntry, Counters, Degraded, DegradedPart, ListenerCensus, PortHeadroom,
    SampleCost, Tier, UpstreamCensus,
};
use super::targets::Targets;
use super::{MAX_HOST_LISTENERS, MAX_PORT_KEYS, MAX_SOURCES_PER_UPSTREAM};

/// A full walk may cost this fraction of the tick interval, on average.
const WALK_BUDGET: f64 = 0.05;
/// A stretched walk period is at most this many times the configured one.
const MAX_STRETCH: u32 = 64;

/// Checks judged on the socket walk; `UNKNOWN` while no walk succeeded.
const WALK_CHECKS: [Check; 8] = [
    Check::TimeWait,
    Check::CloseWait,
    Check::CloseWaitGrowing,
    Check::SynRecv,
    Check::FinWait2,
    Check::LocalPortHeadroom,
    Check::ListenerBacklog,
    Check::AcceptQueueFull,
];

/// Everything a sampler needs, and what it carries from one sample to the next: bounded by
/// the number of listeners, upstreams and their sources, never by the number of sockets.
#[derive(Debug)]
pub(crate) struct Core {
    pub(crate) root: ProcRoot,
    pub(crate) pid: u32,
    walker: Walker,
    pub(crate) thresholds: Thresholds,
    pub(crate) sources: Vec<Arc<dyn AttributionSource>>,
    pub(crate) interval: Duration,
    pub(crate) walk_every: u32,
    /// The walk period in force, in ticks.
    pub(crate) effective_every: u32,
    seq: u64,
    /// Ticks since the last full walk; `None` before the first.
    since_walk: Option<u32>,
    last: Option<WalkData>,
    prev_host: Option<HostSample>,
    prev_ports: HashMap<(String, SocketAddr, IpAddr), u64>,
    prev_walk: Option<Instant>,
    /// Remote endpoints named in the peer metrics so far.
    named_remotes: NamedRemotes,
    /// Parts already warned about, so an outage is logged once.
    warned: [bool; DegradedPart::ALL.len()],
    /// Parts degraded in the last walk (kept between walks).
    walk_degraded: Vec<(DegradedPart, String)>,
}

/// The socket-derived part of a sample, kept until the next walk.
#[derive(Debug, Clone)]
struct WalkData {
    walked_at: SystemTime,
    /// The host's part: every socket and ours by state, the listeners, port use.
    found: HostSockets,
    listeners: Vec<ListenerCensus>,
    upstreams: Vec<UpstreamCensus>,
    close_wait: Vec<CloseWaitEntry>,
    close_wait_unlisted: u64,
    sockets: u64,
    /// Our connections by endpoint group, for the metrics.
    peers: Vec<PeerCensus>,
    /// Our connections by remote endpoint, for the findings; `None` when our descriptors
    /// could not be read.
    by_remote: Option<Vec<conn_hygiene_census::peers::Peer>>,
}

/// Settings of a [`Core`].
#[derive(Debug)]
pub(crate) struct CoreConfig {
    pub(crate) root: Option<ProcRoot>,
    pub(crate) pid: Option<u32>,
    pub(crate) thresholds: Thresholds,
    pub(crate) sources: Vec<Arc<dyn AttributionSource>>,
    pub(crate) interval: Duration,
    pub(crate) walk_every: u32,
}

impl Core {
    pub(crate) fn new(cfg: CoreConfig) -> Self {
        // A proc root other than the live one is a fixture or another namespace's /proc:
        // read its socket tables too, never this namespace's netlink.
        let (root, backend) = match cfg.root {
            Some(root) if root != ProcRoot::default() => (root, Backend::Proc),
            _ => (ProcRoot::default(), Backend::Auto),
        };
        // Each socket's timers and tcp_info come with the walk: what our own connections'
        // detail (keepalive, idle, retransmits) costs is what the kernel adds to their
        // answers, not a second walk.
        let opts = WalkOptions::new()
            .proc_root(root.clone())
            .backend(backend)
            .tcp_info(true);
        let walk_every = cfg.walk_every.max(1);
        Core {
            root,
            pid: cfg.pid.unwrap_or_else(std::process::id),
            walker: Walker::new(opts),
            thresholds: cfg.thresholds,
            sources: cfg.sources,
            interval: cfg.interval,
            walk_every,
            effective_every: walk_every,
            seq: 0,
            since_walk: None,
            last: None,
            prev_host: None,
            prev_ports: HashMap::new(),
            prev_walk: None,
            named_remotes: NamedRemotes::default(),
            warned: [false; DegradedPart::ALL.len()],
            walk_degraded: Vec::new(),
        }
    }

    /// Takes the sample of one tick: a full one when `force`, before any walk, or when the
    /// walk period has passed; the counters tier otherwise.
    pub(crate) fn tick(&mut self, force: bool) -> CensusSnapshot {
        let full = match self.since_walk {
            None => true,
            Some(n) => force || n.saturating_add(1) >= self.effective_every,
        };
        self.since_walk = Some(match (full, self.since_walk) {
            (true, _) | (_, None) => 0,
            (false, Some(n)) => n.saturating_add(1),
        });
        self.sample(full)
    }

    /// Takes one sample, with a full walk when `full`.
    pub(crate) fn sample(&mut self, full: bool) -> CensusSnapshot {
        let started = Instant::now();
        let mut degraded: Vec<(DegradedPart, String)> = Vec::new();
        // The findings' view of this sample: our process only.
        let mut host = HostSample::default();
        host.pid = Some(self.pid);
        let counters = self.read_counters(&mut host, &mut degraded);
        let counters_cost = started.elapsed();

        let mut walk_cost = None;
        if full {
            let walk_started = Instant::now();
            let mut notes = Vec::new();
            match self.walk(&counters, &mut notes) {
                Ok(data) => self.last = Some(data),
                Err(e) => {
                    notes.push((DegradedPart::Walk, format!("socket table walk failed: {e}")))
                }
            }
            self.walk_degraded = notes;
            let cost = walk_started.elapsed();
            walk_cost = Some(cost);
            self.stretch(cost);
        }
        degraded.extend(self.walk_degraded.iter().cloned());

        if let Some(w) = &self.last {
            w.found.fill(&mut host);
            host.peers = w.by_remote.clone();
        }
        if let Some(usage) = counters.fd_usage {
            host.process_fds = vec![ProcessFd::new(self.pid, "", usage)];
        }
        let mut report = evaluate(&host, self.prev_host.as_ref(), &self.thresholds);
        if self.last.is_none() {
            let why = self
                .walk_degraded
                .iter()
                .find(|(p, _)| *p == DegradedPart::Walk)
                .map_or("no socket walk yet", |(_, r)| r.as_str());
            for f in report
                .findings
                .iter_mut()
                .filter(|f| WALK_CHECKS.contains(&f.check))
            {
                f.severity = Severity::Unknown;
                f.message = format!("{}: {why}", f.check);
            }
        }
        self.prev_host = Some(host);
        self.warn_once(&degraded);

        let seq = self.seq;
        self.seq += 1;
        let walk = self.last.as_ref();
        let total_cost = started.elapsed();
        CensusSnapshot {
            seq,
            tier: if full { Tier::Full } else { Tier::Counters },
            taken_at: Some(SystemTime::now()),
            walked_at: walk.map(|w| w.walked_at),
            pid: self.pid,
            host: walk.map(|w| w.found.states).unwrap_or_default(),
            process: walk.map(|w| w.found.held).unwrap_or_default(),
            listeners: walk.map(|w| w.listeners.clone()).unwrap_or_default(),
            upstreams: walk.map(|w| w.upstreams.clone()).unwrap_or_default(),
            close_wait: walk.map(|w| w.close_wait.clone()).unwrap_or_default(),
            close_wait_unlisted: walk.map_or(0, |w| w.close_wait_unlisted),
            peers: walk.map(|w| w.peers.clone()).unwrap_or_default(),
            counters,
            report,
            cost: SampleCost {
                counters: counters_cost,
                walk: walk_cost.map(|_| total_cost.saturating_sub(counters_cost)),
                sockets_walked: if full {
                    walk.map_or(0, |w| w.sockets)
                } else {
                    0
                },
                walk_every: self.effective_every,
            },
            degraded: (!degraded.is_empty()).then(|| Degraded {
                parts: degraded.iter().map(|(p, _)| *p).collect(),
                reason: degraded
                    .iter()
                    .map(|(_, r)| r.as_str())
                    .collect::<Vec<_>>()
                    .join("; "),
            }),
        }
    }

    /// The walk period rule: a walk should cost at most [`WALK_BUDGET`] of the interval on
    /// average, so after each walk the period becomes `max(walk_every, ⌈cost ÷ (5 % of the
    /// interval)⌉)` ticks, capped at `64 × walk_every`. It shrinks back as walks get cheaper.
    fn stretch(&mut self, cost: Duration) {
        let budget = self.interval.as_secs_f64() * WALK_BUDGET;
        let needed = if budget > 0.0 {
            (cost.as_secs_f64() / budget)
                .ceil()
                .min(f64::from(u32::MAX)) as u32
        } else {
            self.walk_every
        };
        self.effective_every = needed
            .max(self.walk_every)
            .min(self.walk_every.saturating_mul(MAX_STRETCH));
    }

    /// The counters tier: the census crate's counter part of `host`, with `sockstat` and our
    /// descriptors besides.
    fn read_counters(
        &self,
        host: &mut HostSample,
        degraded: &mut Vec<(DegradedPart, String)>,
    ) -> Counters {
        // Unreadable sysctls stay unknown, and the findings say so.
        let _ = read_host_counters(&self.root, host);
        let sockstat = self.root.sockstat();
        if let (Err(e), None) = (&sockstat, &host.counters) {
            degraded.push((
                DegradedPart::Counters,
                format!("kernel counters unavailable: {e}"),
            ));
        }
        Counters {
            sockstat: sockstat.ok(),
            tcp: host.counters.clone(),
            file_nr: host.file_nr,
            fd_usage: self.root.fd_usage(self.pid).ok(),
            conntrack: host.conntrack,
            sysctls: host.sysctls.clone(),
        }
    }

    fn walk(
        &mut self,
        counters: &Counters,
        notes: &mut Vec<(DegradedPart, String)>,
    ) -> Result<WalkData, CensusError> {
        let mut targets = Targets::gather(&self.sources);
        let own = match self.root.socket_inodes(self.pid) {
            Ok(own) => Some(own),
            Err(e) => {
                notes.push((
                    DegradedPart::Process,
                    format!(
                        "descriptors of process {} unreadable, no socket can be called ours: {e}",
                        self.pid
                    ),
                ));
                None
            }
        };
        let dests = targets.upstream_dests();
        // The host's part, counted as the census crate counts it for any host sample; the
        // join attributes the same sockets to our listeners and upstreams.
        let nobody = SocketInodes::default();
        let mut host = HostWalk::new(counters.sysctls.ip_local_port_range)
            .process(self.pid, "", own.as_ref().unwrap_or(&nobody))
            .toward(dests.iter().flatten().copied())
            .max_listeners(MAX_HOST_LISTENERS)
            .max_ports(MAX_PORT_KEYS);
        let listener_addrs = targets.listener_addrs();
        let mut join = Join::new(&listener_addrs, &dests);
        // Of the TIME_WAIT sockets, often most of the host's, the join and the port counts
        // need only those on our listeners' ports and toward our upstreams: the kernel picks
        // them out, and counts the rest.
        let keep = listener_addrs
            .iter()
            .fold(SocketFilter::new(), |f, l| f.local_port(l.port()));
        let keep = dests.iter().flatten().fold(keep, |f, d| f.remote(*d));
        let mut peers = PeerWalk::new();
        let named = &mut self.named_remotes;
        let mut undetailed = 0u64;
        // TIME_WAIT sockets toward one destination from one source come as runs, each
        // looked up once: a service's own toward its upstream, often most of a busy host's.
        let stats = self
            .walker
            .walk_runs_keeping_time_wait(&keep, |item| match item {
                WalkItem::Socket(s, raw) => {
                    let ours = host.visit(s);
                    // The kernel's detail is read for our own sockets only: most of a walk's
                    // rows (other processes' sockets) need none.
                    if ours {
                        let detail = raw.parse();
                        undetailed += u64::from(detail.is_none());
                        let upstream = join.upstream_of(canon(s.remote));
                        let listener = join.listener_of(s.local);
                        peers.visit(s, detail.as_ref(), upstream, listener, named);
                    }
                    join.visit(s, ours);
                }
                // No process holds them: none is ours.
                WalkItem::TimeWaitRun { like, local_ports } => {
                    host.visit_run(like, local_ports);
                    join.visit_run(like, local_ports);
                }
            })?;
        let upstream_names: Vec<String> =
            targets.upstreams.iter().map(|u| u.name.clone()).collect();
        let listener_names: Vec<String> =
            targets.listeners.iter().map(|l| l.name.clone()).collect();
        let (peers, by_remote) = peers.finish(&upstream_names, &listener_names);
        // Without our descriptors nothing is ours, and from the /proc tables nothing has a
        // timer: the findings then say they could not look.
        let by_remote = (own.is_some() && undetailed == 0).then_some(by_remote);
        let found = host.finish(&stats);
        if let Some(reason) = &stats.fallback {
            notes.push((DegradedPart::Netlink, reason.to_string()));
        }
        let now = Instant::now();
        let walked_at = SystemTime::now();

        let listeners: Vec<ListenerCensus> = targets
            .listeners
            .iter()
            .zip(&join.listeners)
            .map(|(t, c)| {
                let l = found
                    .listeners
                    .iter()
                    .find(|l| canon(l.local) == canon(t.addr));
                ListenerCensus {
                    name: t.name.clone(),
                    addr: t.addr,
                    time_wait: c.time_wait,
                    syn_recv: c.syn_recv,
                    not_accepted: c.not_accepted,
                    accept_queue_len: l.map(|l| l.queue_len),
                    accept_queue_max: l.and_then(|l| l.queue_max),
                    close_wait: c.close_wait,
                }
            })
            .collect();

        let range_size = counters.port_range_size();
        let dt = self.prev_walk.map(|p| now.duration_since(p).as_secs_f64());
        let mut next_ports = HashMap::new();
        let upstreams = &targets.upstreams;
        let mut by_upstream: Vec<Vec<&PortCount>> = vec![Vec::new(); upstreams.len()];
        for pc in &found.ports {
            if let Some(u) = join.upstream_of(pc.destination) {
                by_upstream[u].push(pc);
            }
        }
        let mut out_upstreams: Vec<UpstreamCensus> = Vec::with_capacity(upstreams.len());
        for ((u, c), counted) in upstreams.iter().zip(&join.upstreams).zip(&by_upstream) {
            let mut ports: Vec<PortHeadroom> = Vec::new();
            if let Some(size) = range_size {
                for pc in counted {
                    let key = (u.name.clone(), pc.destination, pc.source);
                    let rate = match (self.prev_ports.get(&key), dt) {
                        (Some(prev), Some(dt)) if pc.used > *prev && dt > 0.0 => {
                            Some((pc.used - prev) as f64 / dt)
                        }
                        _ => None,
                    };
                    let headroom = size.saturating_sub(pc.used);
                    next_ports.insert(key, pc.used);
                    ports.push(PortHeadroom {
                        destination: pc.destination,
                        source: pc.source,
                        used: pc.used,
                        time_wait: pc.time_wait,
                        headroom,
                        range_size: size,
                        rate_per_second: rate,
                        time_to_exhaustion: rate
                            .map(|r| Duration::from_secs_f64((headroom as f64 / r).min(1e12))),
                    });
                }
            }
            ports.sort_by(|a, b| {
                a.headroom
                    .cmp(&b.headroom)
                    .then(a.destination.cmp(&b.destination))
                    .then(a.source.cmp(&b.source))
            });
            ports.truncate(MAX_SOURCES_PER_UPSTREAM);
            out_upstreams.push(UpstreamCensus {
                name: u.name.clone(),
                authority: u.authority.clone(),
                destinations: u.dests.clone(),
                time_wait: c.time_wait,
                close_wait: c.close_wait,
                ports,
            });
        }
        self.prev_ports = next_ports;
        self.prev_walk = Some(now);

        // CLOSE_WAIT entries: owner names, and the connection's id and lease site as its
        // source tracks it.
        let close_wait = join
            .close_wait
            .iter()
            .map(|&(local, remote, owner)| {
                let conn = targets.connection(owner, local, remote);
                CloseWaitEntry {
                    local,
                    remote,
                    owner: targets.owner(owner),
                    lease_site: conn.and_then(|c| c.lease_site),
                    connection_id: conn.map(|c| c.id),
                }
            })
            .collect();

        Ok(WalkData {
            walked_at,
            found,
            listeners,
            upstreams: out_upstreams,
            close_wait,
            close_wait_unlisted: join.close_wait_unlisted,
            sockets: stats.sockets,
            peers,
            by_remote,
        })
    }

    /// Logs one warning when parts become unavailable (naming them all, with the reasons),
    /// nothing while they stay so, and one notice when they come back.
    fn warn_once(&mut self, degraded: &[(DegradedPart, String)]) {
        let mut newly = Vec::new();
        let mut recovered = Vec::new();
        for part in DegradedPart::ALL {
            let now = degraded.iter().find(|(p, _)| *p == part);
            let warned = &mut self.warned[part.index()];
            match now {
                Some(d) if !*warned => {
                    *warned = true;
                    newly.push(d);
                }
                None if *warned => {
                    *warned = false;
                    recovered.push(part.as_str());
                }
                _ => {}
            }
        }
        if !newly.is_empty() {
            let parts: Vec<&str> = newly.iter().map(|(p, _)| p.as_str()).collect();
            let reasons: Vec<&str> = newly.iter().map(|(_, r)| r.as_str()).collect();
            tracing::warn!(
                parts = %parts.join(","),
                "connection census degraded ({}), the rest keeps working: {}",
                parts.join(", "),
                reasons.join("; ")
            );
        }
        if !recovered.is_empty() {
            tracing::info!("connection census recovered: {}", recovered.join(", "));
        }
    }
}
