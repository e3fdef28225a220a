//! The plain data a census sample produces.

use std::net::{IpAddr, SocketAddr};
use std::panic::Location;
use std::time::{Duration, SystemTime};

use conn_hygiene_census::findings::Report;
use conn_hygiene_census::{
    Conntrack, FdUsage, FileNr, Sockstat, StateCounts, Sysctls, TcpCounters,
};

/// Which parts of a sample were read fresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Tier {
    /// Only the cheap counters (`sockstat`, `snmp`, `netstat`, `file-nr`, descriptors,
    /// conntrack, sysctls); the socket data is the last full walk's.
    #[default]
    Counters,
    /// The counters and a full walk of the socket table.
    Full,
}

impl Tier {
    /// Both tiers, in label order.
    pub const ALL: [Tier; 2] = [Tier::Counters, Tier::Full];

    /// `counters` or `full`: the `tier` metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Tier::Counters => "counters",
            Tier::Full => "full",
        }
    }

    pub(crate) const fn index(self) -> usize {
        match self {
            Tier::Counters => 0,
            Tier::Full => 1,
        }
    }
}

/// One of our listeners as the kernel sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListenerCensus {
    /// The listener's name (its registry's, the `listener` metric label).
    pub name: String,
    /// The address it listens on.
    pub addr: SocketAddr,
    /// `TIME_WAIT` sockets on its address: connections our server closed first.
    pub time_wait: u64,
    /// Half-open connections (`SYN_RECV`) toward it.
    pub syn_recv: u64,
    /// Connections completed by the kernel and not yet accepted (on its address, held by
    /// no process yet).
    pub not_accepted: u64,
    /// The accept queue's length as the kernel reports it on the listening socket; `None`
    /// when the listening socket was not found in the walk.
    pub accept_queue_len: Option<u32>,
    /// The accept queue's maximum, `min(backlog, somaxconn)`; `None` when unknown (the walk
    /// read `/proc`, which does not show it).
    pub accept_queue_max: Option<u32>,
    /// `CLOSE_WAIT` sockets we hold on its address: peers closed, we did not.
    pub close_wait: u64,
}

impl ListenerCensus {
    /// Accept queue length over its maximum, when both are known and the maximum is not 0.
    pub fn accept_queue_ratio(&self) -> Option<f64> {
        match (self.accept_queue_len, self.accept_queue_max) {
            (Some(len), Some(max)) if max > 0 => Some(f64::from(len) / f64::from(max)),
            _ => None,
        }
    }
}

/// Local ports used toward one destination from one source address.
///
/// Connections to one destination `ip:port` from one source address must differ by local
/// port, so each pair has the whole `ip_local_port_range` to itself and no more: every
/// socket toward it (any state, `TIME_WAIT` included, whoever holds it) uses one port.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct PortHeadroom {
    /// The destination.
    pub destination: SocketAddr,
    /// The source address.
    pub source: IpAddr,
    /// Sockets toward the destination from the source whose local port lies in the range.
    pub used: u64,
    /// Of those, in `TIME_WAIT`.
    pub time_wait: u64,
    /// Ports left: the size of the range minus `used`.
    pub headroom: u64,
    /// Size of `ip_local_port_range`.
    pub range_size: u64,
    /// Ports taken per second since the previous walk; `None` on the first walk, or when the
    /// count did not grow.
    pub rate_per_second: Option<f64>,
    /// At that rate, time until no port is left; `None` when the count is not growing.
    pub time_to_exhaustion: Option<Duration>,
}

impl PortHeadroom {
    /// Ports left over the size of the range (1.0 when nothing is used, 0.0 when exhausted).
    pub fn ratio(&self) -> f64 {
        if self.range_size == 0 {
            0.0
        } else {
            self.headroom as f64 / self.range_size as f64
        }
    }
}

/// One upstream of a client we were given, as the kernel sees it.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct UpstreamCensus {
    /// The upstream's name (the `upstream` metric label).
    pub name: String,
    /// `host:port` as requested.
    pub authority: String,
    /// Destinations the client connected to.
    pub destinations: Vec<SocketAddr>,
    /// `TIME_WAIT` sockets toward its destinations: connections our client closed first.
    pub time_wait: u64,
    /// `CLOSE_WAIT` sockets we hold toward its destinations: the upstream closed, we did not.
    pub close_wait: u64,
    /// Port use per destination and source address (at most
    /// [`MAX_SOURCES_PER_UPSTREAM`](super::MAX_SOURCES_PER_UPSTREAM)), worst headroom first.
    pub ports: Vec<PortHeadroom>,
}

impl UpstreamCensus {
    /// The smallest headroom ratio over destinations and sources; `None` when no socket
    /// toward it was seen or the port range is unknown.
    pub fn headroom_ratio(&self) -> Option<f64> {
        self.ports.iter().map(PortHeadroom::ratio).reduce(f64::min)
    }

    /// The shortest time to exhaustion over destinations and sources.
    pub fn time_to_exhaustion(&self) -> Option<Duration> {
        self.ports.iter().filter_map(|p| p.time_to_exhaustion).min()
    }

    /// `TIME_WAIT` sockets toward its destinations from `source`.
    pub fn time_wait_from(&self, source: IpAddr) -> u64 {
        self.ports
            .iter()
            .filter(|p| p.source == source)
            .map(|p| p.time_wait)
            .sum()
    }
}

/// Who a `CLOSE_WAIT` socket of ours belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Owner {
    /// A connection accepted by this listener (by name).
    Listener(String),
    /// A connection our client opened to this upstream (by name).
    Upstream(String),
    /// A socket we hold that no listener or upstream we were given accounts for.
    #[default]
    Untracked,
}

/// One `CLOSE_WAIT` socket we hold: the peer closed and we have not.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CloseWaitEntry {
    /// Our address.
    pub local: SocketAddr,
    /// The peer's address.
    pub remote: SocketAddr,
    /// The listener or upstream it belongs to.
    pub owner: Owner,
    /// For an upstream connection still leased (its response body not read or dropped),
    /// where the request was made.
    pub lease_site: Option<&'static Location<'static>>,
    /// The connection's id in its registry or upstream, when it is tracked there.
    pub connection_id: Option<u64>,
}

/// The cheap counters, read every tick. A `None` field could not be read.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Counters {
    /// `net/sockstat` and `sockstat6`.
    pub sockstat: Option<Sockstat>,
    /// The TCP MIB counters of `net/snmp` and `net/netstat`.
    pub tcp: Option<TcpCounters>,
    /// `sys/fs/file-nr`.
    pub file_nr: Option<FileNr>,
    /// This process's descriptors against its limit.
    pub fd_usage: Option<FdUsage>,
    /// Connection tracking, when loaded.
    pub conntrack: Option<Conntrack>,
    /// The TCP sysctls.
    pub sysctls: Sysctls,
}

impl Counters {
    /// Open descriptors over the soft limit.
    pub fn fd_usage_ratio(&self) -> Option<f64> {
        self.fd_usage.and_then(|u| u.ratio())
    }

    /// Tracked connections over `nf_conntrack_max`.
    pub fn conntrack_ratio(&self) -> Option<f64> {
        self.conntrack
            .filter(|c| c.max > 0)
            .map(|c| c.count as f64 / c.max as f64)
    }

    /// Size of `ip_local_port_range`, when known and well formed.
    pub fn port_range_size(&self) -> Option<u64> {
        self.sysctls
            .ip_local_port_range
            .filter(|(lo, hi)| lo <= hi)
            .map(|(lo, hi)| u64::from(hi - lo) + 1)
    }
}

/// What a sample cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SampleCost {
    /// Wall time of the counters tier.
    pub counters: Duration,
    /// Wall time of the full walk and join, when this sample walked.
    pub walk: Option<Duration>,
    /// Sockets the walk visited.
    pub sockets_walked: u64,
    /// The walk period in force after this sample, in ticks: the configured
    /// `walk_every`, stretched when walks are expensive.
    pub walk_every: u32,
}

/// Which part of the census is unavailable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DegradedPart {
    /// The counters (`sockstat`, `snmp`, sysctls…) could not be read at all.
    Counters,
    /// The socket table could not be walked (neither netlink nor `/proc/net/tcp`).
    Walk,
    /// This process's descriptors could not be listed, so no socket can be called ours.
    Process,
    /// Netlink `sock_diag` was refused and the walk read `/proc/net/tcp` instead: slower, and
    /// accept queue maxima are unknown.
    Netlink,
}

impl DegradedPart {
    /// Every part, in label order.
    pub const ALL: [DegradedPart; 4] = [
        DegradedPart::Counters,
        DegradedPart::Walk,
        DegradedPart::Process,
        DegradedPart::Netlink,
    ];

    /// `counters`, `walk`, `process` or `netlink`: the `part` metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            DegradedPart::Counters => "counters",
            DegradedPart::Walk => "walk",
            DegradedPart::Process => "process",
            DegradedPart::Netlink => "netlink",
        }
    }

    pub(crate) const fn index(self) -> usize {
        self as usize
    }
}

/// Why a sample is incomplete.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Degraded {
    /// The parts unavailable.
    pub parts: Vec<DegradedPart>,
    /// What failed, in one line per part.
    pub reason: String,
}

impl Degraded {
    /// Whether `part` is unavailable.
    pub fn has(&self, part: DegradedPart) -> bool {
        self.parts.contains(&part)
    }
}

/// One census sample: what the kernel holds, what of it is ours, and what it means.
///
/// Plain data. A [`Tier::Counters`] sample carries fresh counters and the socket data of the
/// last full walk ([`walked_at`](Self::walked_at)). See the [module docs](super).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct CensusSnapshot {
    /// Sample number, from 0.
    pub seq: u64,
    /// What was read fresh.
    pub tier: Tier,
    /// When the sample was taken.
    pub taken_at: Option<SystemTime>,
    /// When the socket data below was walked; `None` before the first successful walk.
    pub walked_at: Option<SystemTime>,
    /// The process whose sockets are "ours".
    pub pid: u32,
    /// Every TCP socket of the network namespace by state.
    pub host: StateCounts,
    /// The TCP sockets this process holds a descriptor for, by state.
    pub process: StateCounts,
    /// Our listeners, in the order given.
    pub listeners: Vec<ListenerCensus>,
    /// Our clients' upstreams.
    pub upstreams: Vec<UpstreamCensus>,
    /// Our `CLOSE_WAIT` sockets (at most [`MAX_CLOSE_WAIT_ENTRIES`](super::MAX_CLOSE_WAIT_ENTRIES)).
    pub close_wait: Vec<CloseWaitEntry>,
    /// Our `CLOSE_WAIT` sockets beyond the listed ones.
    pub close_wait_unlisted: u64,
    /// Our connections by endpoint, with the kernel's detail: each upstream and listener by
    /// name, the first [`MAX_NAMED_REMOTES`](super::MAX_NAMED_REMOTES) other endpoints by
    /// address, the rest as `other`; most sockets first.
    pub peers: Vec<super::PeerCensus>,
    /// The cheap counters, fresh in every sample.
    pub counters: Counters,
    /// The findings, judged on this sample and the previous one.
    pub report: Report,
    /// What the sample cost.
    pub cost: SampleCost,
    /// Set when part of the census could not be read.
    pub degraded: Option<Degraded>,
}

impl CensusSnapshot {
    /// The listener named `name`.
    pub fn listener(&self, name: &str) -> Option<&ListenerCensus> {
        self.listeners.iter().find(|l| l.name == name)
    }

    /// The upstream named `name`.
    pub fn upstream(&self, name: &str) -> Option<&UpstreamCensus> {
        self.upstreams.iter().find(|u| u.name == name)
    }

    /// Our `CLOSE_WAIT` sockets, listed or not.
    pub fn close_wait_total(&self) -> u64 {
        self.close_wait.len() as u64 + self.close_wait_unlisted
    }

    /// Our `TIME_WAIT` sockets: those attributed to a listener or an upstream.
    pub fn time_wait_ours(&self) -> u64 {
        self.listeners.iter().map(|l| l.time_wait).sum::<u64>()
            + self.upstreams.iter().map(|u| u.time_wait).sum::<u64>()
    }
}
