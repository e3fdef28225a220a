//! What one walk of the socket table contributes to a [`HostSample`], apart from reading:
//! fed made-up sockets in the tests, a live walk in [`sample_host`](super::sample_host) and
//! in any sampler that adds its own attribution on top.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use super::{HostSample, PortUse, ProcessCount};
use crate::lookup::{AddrMap, PortSet};
use crate::process::SocketInodes;
use crate::{canonical_addr, Listener, SockInfo, StateCounts, TcpState, WalkStats};

/// Local ports of `ip_local_port_range` used toward one destination from one source address.
///
/// Connections to one destination from one source address must differ by local port, so each
/// such pair has the whole range to itself: every socket toward it (any state, `TIME_WAIT`
/// included, whoever holds it) uses one of its ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PortCount {
    /// The remote address and port, IPv4-mapped addresses as IPv4 ([`canonical_addr`]).
    pub destination: SocketAddr,
    /// The local address.
    pub source: IpAddr,
    /// Sockets toward the destination from the source whose local port lies in the range.
    pub used: u64,
    /// Of those, in `TIME_WAIT`.
    pub time_wait: u64,
}

/// One pass over a walk of the socket table: the state counts, the listeners, local-port use
/// per destination and source address, and the sockets of the process looked at.
///
/// Feed it every socket of one walk (every state, both families) with [`visit`](Self::visit),
/// then [`finish`](Self::finish) it with the walk's statistics. It reads nothing itself.
///
/// A socket counts toward local-port use when its remote address is set, its local port lies
/// in the port range and is not a listening port (accepted connections share the listener's
/// port). Netlink and `/proc` both list a family's listeners before its connections, which is
/// what lets one pass tell them apart.
///
/// ```
/// use conn_hygiene_census::findings::{HostSample, HostWalk};
/// use conn_hygiene_census::{SockInfo, TcpState, WalkStats};
///
/// let mut walk = HostWalk::new(Some((40_000, 40_099)));
/// let (local, remote) = ("10.0.0.1:40001".parse()?, "10.0.0.5:5432".parse()?);
/// walk.visit(&SockInfo::new(TcpState::TimeWait, local, remote));
/// let found = walk.finish(&WalkStats::default());
/// assert_eq!(found.states[TcpState::TimeWait], 1);
/// assert_eq!((found.ports[0].used, found.ports[0].time_wait), (1, 1));
///
/// let mut sample = HostSample::default();
/// found.fill(&mut sample);
/// assert_eq!(sample.port_usage[0].used, 1);
/// # Ok::<(), std::net::AddrParseError>(())
/// ```
#[derive(Debug)]
pub struct HostWalk<'a> {
    range: Option<(u16, u16)>,
    process: Option<Process<'a>>,
    /// Local-port use is counted toward the destinations in `ports` from the start only.
    toward_only: bool,
    max_listeners: usize,
    max_ports: usize,
    found: HostSockets,
    listen_ports: PortSet,
    /// Per destination, per source address.
    ports: AddrMap<Vec<PortCount>>,
    /// Pairs in `ports`.
    pairs: usize,
    /// Where the last socket counted went: sockets toward one destination from one source
    /// (a busy upstream's) often come in runs, which then skip the lookups.
    last: Option<LastPair>,
}

/// A (destination, source) pair's place in [`HostWalk`]'s counts.
#[derive(Debug, Clone, Copy)]
struct LastPair {
    /// As the socket gave them (not canonical): a socket with the same is of the pair.
    remote: SocketAddr,
    local: IpAddr,
    /// Index of the destination in `ports`.
    at: usize,
    /// Index of the source among the destination's.
    within: usize,
}

/// The process a walk looks at.
#[derive(Debug)]
struct Process<'a> {
    pid: u32,
    comm: String,
    sockets: &'a SocketInodes,
}

impl<'a> HostWalk<'a> {
    /// A pass over the whole host: every process, every destination, every listener.
    /// `port_range` is `ip_local_port_range`; without it (or upside down) no port use is
    /// counted.
    pub fn new(port_range: Option<(u16, u16)>) -> Self {
        HostWalk {
            range: port_range.filter(|(lo, hi)| lo <= hi),
            process: None,
            toward_only: false,
            max_listeners: usize::MAX,
            max_ports: usize::MAX,
            found: HostSockets::default(),
            listen_ports: PortSet::new(),
            ports: AddrMap::new(),
            pairs: 0,
            last: None,
        }
    }

    /// Looks at one process only: `pid`, running `comm`, holding `sockets`. Its sockets are
    /// counted by state in [`HostSockets::held`], and its `CLOSE_WAIT` sockets make its
    /// [`HostSample::close_wait_by_process`]. Default: every process, whose sockets are
    /// joined to their holders afterwards (by [`sample_host`](super::sample_host)).
    pub fn process(mut self, pid: u32, comm: impl Into<String>, sockets: &'a SocketInodes) -> Self {
        self.process = Some(Process {
            pid,
            comm: comm.into(),
            sockets,
        });
        self
    }

    /// Counts local-port use toward these destinations only (compared as
    /// [`canonical_addr`]s). Default: every destination.
    pub fn toward(mut self, destinations: impl IntoIterator<Item = SocketAddr>) -> Self {
        // Each destination starts with no source: one lookup per socket then both says whether
        // it goes toward one and finds its counts.
        let mut ports = AddrMap::new();
        for d in destinations {
            ports.insert(canonical_addr(d), Vec::new());
        }
        self.ports = ports;
        self.pairs = 0;
        self.last = None;
        self.toward_only = true;
        self
    }

    /// Keeps at most `n` listeners, the first walked. Default: all.
    pub fn max_listeners(mut self, n: usize) -> Self {
        self.max_listeners = n;
        self
    }

    /// Counts at most `n` (destination, source address) pairs, the first walked; sockets of
    /// other pairs are passed over. Default: no bound.
    pub fn max_ports(mut self, n: usize) -> Self {
        self.max_ports = n;
        self
    }

    /// Takes one socket into account. Returns whether the process looked at holds it (always
    /// `false` without one), for a caller that attributes sockets further.
    pub fn visit(&mut self, s: &SockInfo) -> bool {
        let found = &mut self.found;
        found.states.record(s.state);
        if s.inode == 0 && s.state != TcpState::Listen {
            // No descriptor holds it (every TIME_WAIT socket, often most of a walk): no
            // process's, no inode to keep, only its port.
            self.count_port(s);
            return false;
        }
        let held = self
            .process
            .as_ref()
            .is_some_and(|p| p.sockets.contains(s.inode));
        if held {
            found.held.record(s.state);
        }
        let host_wide = self.process.is_none() && s.inode != 0;
        if s.state == TcpState::Listen {
            self.listen_ports.insert(s.local.port());
            if found.listeners.len() < self.max_listeners {
                found.listeners.push(Listener::of(s));
            }
            if host_wide {
                found.tcp_inodes.push(s.inode);
            }
            return held;
        }
        if host_wide {
            if s.state == TcpState::CloseWait {
                found.close_wait_inodes.push(s.inode);
            }
            found.tcp_inodes.push(s.inode);
        }
        self.count_port(s);
        held
    }

    /// Takes into account sockets that differ from `like` only in their local ports, one per
    /// port of `local_ports`: a [`WalkItem::TimeWaitRun`](crate::WalkItem::TimeWaitRun) of
    /// a walk by runs. The same as [`visit`](Self::visit) of each, the pair they go toward
    /// and from looked up once. Returns how many of them the process looked at holds.
    pub fn visit_run(&mut self, like: &SockInfo, local_ports: &[u16]) -> u64 {
        if like.inode != 0 || like.state == TcpState::Listen {
            // Held, or listening: each its own.
            let mut s = *like;
            let mut held = 0;
            for &port in local_ports {
                s.local.set_port(port);
                held += u64::from(self.visit(&s));
            }
            return held;
        }
        self.found
            .states
            .record_many(like.state, local_ports.len() as u64);
        let Some((lo, hi)) = self.range else { return 0 };
        let listen_ports = &self.listen_ports;
        let counted = local_ports
            .iter()
            .filter(|&&port| (lo..=hi).contains(&port) && !listen_ports.contains(port))
            .count() as u64;
        if counted > 0 {
            self.count_pair(like, counted);
        }
        0
    }

    fn count_port(&mut self, s: &SockInfo) {
        let Some((lo, hi)) = self.range else { return };
        let port = s.local.port();
        if !(lo..=hi).contains(&port) || self.listen_ports.contains(port) {
            return;
        }
        self.count_pair(s, 1);
    }

    /// Counts `n` sockets like `s`, whose local ports lie in the range, toward its pair.
    fn count_pair(&mut self, s: &SockInfo, n: u64) {
        let time_wait = if s.state == TcpState::TimeWait { n } else { 0 };
        if let Some(last) = &self.last {
            if last.remote == s.remote && last.local == s.local.ip() {
                let c = &mut self.ports.value_at_mut(last.at)[last.within];
                c.used += n;
                c.time_wait += time_wait;
                return;
            }
        }
        // Canonical, copied only when IPv4-mapped.
        let mapped;
        let remote = match s.remote {
            SocketAddr::V4(_) => &s.remote,
            SocketAddr::V6(_) => {
                mapped = canonical_addr(s.remote);
                &mapped
            }
        };
        if remote.ip().is_unspecified() {
            return;
        }
        let at = self.ports.index_of(remote);
        if at.is_none() && self.toward_only {
            return;
        }
        let source = canonical_addr(s.local).ip();
        let room = self.pairs < self.max_ports;
        let count = || PortCount {
            destination: *remote,
            source,
            used: n,
            time_wait,
        };
        match at {
            Some(at) => {
                let sources = self.ports.value_at_mut(at);
                let within = match sources.iter().position(|c| c.source == source) {
                    Some(within) => {
                        let c = &mut sources[within];
                        c.used += n;
                        c.time_wait += time_wait;
                        within
                    }
                    None if room => {
                        sources.push(count());
                        self.pairs += 1;
                        sources.len() - 1
                    }
                    None => return,
                };
                self.last = Some(LastPair {
                    remote: s.remote,
                    local: s.local.ip(),
                    at,
                    within,
                });
            }
            None if room => {
                self.ports.insert(*remote, vec![count()]);
                self.pairs += 1;
            }
            None => {}
        }
    }

    /// What the walk found. `stats` tells which families were read from `/proc`, whose
    /// listeners' queue maximum is unknown.
    ///
    /// A walk that counted its `TIME_WAIT` sockets rather than handing them all over
    /// ([`WalkStats::timewait_counted`], see
    /// [`Walker::walk_detailed_keeping_time_wait`](crate::Walker::walk_detailed_keeping_time_wait))
    /// gives the `TIME_WAIT` count; port use counts the ones it handed over.
    pub fn finish(self, stats: &WalkStats) -> HostSockets {
        let mut found = self.found;
        if let Some(tw) = stats.timewait_counted {
            found.states.set(TcpState::TimeWait, tw);
        }
        Listener::settle(&mut found.listeners, stats);
        found.ports = self.ports.into_values().flatten().collect();
        found.ports.sort_by(|a, b| {
            b.used
                .cmp(&a.used)
                .then(a.destination.cmp(&b.destination))
                .then(a.source.cmp(&b.source))
        });
        found.process = self.process.map(|p| (p.pid, p.comm));
        found
    }
}

/// What one walk found ([`HostWalk::finish`]): plain data, kept until the next walk.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct HostSockets {
    /// Every socket by state.
    pub states: StateCounts,
    /// The sockets of the process looked at ([`HostWalk::process`]), by state; all 0
    /// without one.
    pub held: StateCounts,
    /// Listening sockets, in walk order.
    pub listeners: Vec<Listener>,
    /// Local-port use per destination and source address, most used first.
    pub ports: Vec<PortCount>,
    /// The process looked at, and its command name.
    process: Option<(u32, String)>,
    /// Without a process looked at: the inodes of the `CLOSE_WAIT` sockets, and of every
    /// socket a process holds, for the join to their holders.
    pub(super) close_wait_inodes: Vec<u64>,
    pub(super) tcp_inodes: Vec<u64>,
}

impl HostSockets {
    /// Local-port use per destination, from its busiest source address, most used first:
    /// what the `local_port_headroom` check judges.
    pub fn port_usage(&self) -> Vec<PortUse> {
        let mut busiest: HashMap<SocketAddr, u64> = HashMap::new();
        for p in &self.ports {
            let used = busiest.entry(p.destination).or_default();
            *used = (*used).max(p.used);
        }
        let mut usage: Vec<PortUse> = busiest
            .into_iter()
            .map(|(destination, used)| PortUse::new(destination, used))
            .collect();
        usage.sort_by(|a, b| b.used.cmp(&a.used).then(a.destination.cmp(&b.destination)));
        usage
    }

    /// Writes what the walk found into `sample`: [`states`](HostSample::states),
    /// [`listeners`](HostSample::listeners), [`port_usage`](HostSample::port_usage) and, for
    /// a walk that looked at one process, its
    /// [`close_wait_by_process`](HostSample::close_wait_by_process).
    pub fn fill(&self, sample: &mut HostSample) {
        sample.states = self.states;
        sample.listeners.clone_from(&self.listeners);
        sample.port_usage = self.port_usage();
        if let Some((pid, comm)) = &self.process {
            let n = self.held[TcpState::CloseWait];
            sample.close_wait_by_process = if n > 0 {
                vec![ProcessCount::new(*pid, comm.clone(), n)]
            } else {
                Vec::new()
            };
        }
    }
}

#[cfg(test)]
mod tests;
