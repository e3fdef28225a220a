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
mod tests {
    use super::*;
    use crate::Source;

    fn sock(state: TcpState, local: &str, remote: &str, inode: u64) -> SockInfo {
        let mut s = SockInfo::new(state, local.parse().unwrap(), remote.parse().unwrap());
        s.inode = inode;
        s
    }

    /// IPv4 read through netlink, IPv6 from `/proc`.
    fn netlink() -> WalkStats {
        WalkStats {
            ipv4: Some(Source::Netlink),
            ipv6: Some(Source::Proc),
            ..WalkStats::default()
        }
    }

    /// A listener on 40010 (inside the range), a client toward 10.0.0.5:5432 from two
    /// source addresses (one dual-stack), connections accepted on the listener's port, one
    /// IPv6 listener.
    fn host() -> Vec<SockInfo> {
        let mut l4 = sock(TcpState::Listen, "0.0.0.0:40010", "0.0.0.0:0", 1);
        l4.wqueue = 511;
        vec![
            l4,
            sock(TcpState::TimeWait, "10.0.0.1:40001", "10.0.0.5:5432", 0),
            sock(TcpState::Established, "10.0.0.1:40002", "10.0.0.5:5432", 11),
            sock(TcpState::CloseWait, "10.0.0.2:40001", "10.0.0.5:5432", 12),
            sock(TcpState::CloseWait, "10.0.0.1:40010", "10.0.0.9:1234", 13),
            sock(TcpState::TimeWait, "10.0.0.1:40010", "10.0.0.9:1235", 0),
            sock(TcpState::Established, "10.0.0.1:80", "10.0.0.7:40003", 14),
            sock(TcpState::Listen, "[::]:8443", "[::]:0", 2),
            sock(
                TcpState::TimeWait,
                "[::ffff:10.0.0.2]:40003",
                "[::ffff:10.0.0.5]:5432",
                0,
            ),
        ]
    }

    #[test]
    fn one_pass_over_the_host() {
        let mut walk = HostWalk::new(Some((40_000, 40_099)));
        for s in &host() {
            assert!(!walk.visit(s), "no process looked at");
        }
        let found = walk.finish(&netlink());
        assert_eq!(found.states.total(), 9);
        assert_eq!(found.states[TcpState::TimeWait], 3);
        assert_eq!(found.held.total(), 0);
        // IPv4 from netlink shows the queue maximum; IPv6 from /proc does not.
        assert_eq!(found.listeners.len(), 2);
        assert_eq!(found.listeners[0].queue_max, Some(511));
        assert_eq!(found.listeners[1].queue_max, None);
        // Per destination and source; the listener's port and ports outside the range do
        // not count; the IPv4-mapped socket counts as IPv4.
        let dest: SocketAddr = "10.0.0.5:5432".parse().unwrap();
        let got: Vec<_> = found
            .ports
            .iter()
            .map(|p| (p.destination, p.source.to_string(), p.used, p.time_wait))
            .collect();
        assert_eq!(
            got,
            [
                (dest, "10.0.0.1".to_owned(), 2, 1),
                (dest, "10.0.0.2".to_owned(), 2, 1),
            ]
        );
        assert_eq!(found.port_usage(), [PortUse::new(dest, 2)]);
        // Every process: inodes kept for the join to their holders.
        assert_eq!(found.close_wait_inodes, [12, 13]);
        assert_eq!(found.tcp_inodes, [1, 11, 12, 13, 14, 2]);
        let mut sample = HostSample::default();
        found.fill(&mut sample);
        assert_eq!(sample.states, found.states);
        assert!(sample.close_wait_by_process.is_empty());
    }

    #[test]
    fn one_process_destinations_and_bounds() {
        let mine = SocketInodes::new(vec![1, 12, 13]);
        let dest: SocketAddr = "[::ffff:10.0.0.5]:5432".parse().unwrap();
        let mut walk = HostWalk::new(Some((40_000, 40_099)))
            .process(42, "java", &mine)
            .toward([dest])
            .max_listeners(1)
            .max_ports(1);
        let held: Vec<bool> = host().iter().map(|s| walk.visit(s)).collect();
        assert_eq!(held.iter().filter(|h| **h).count(), 3);
        let found = walk.finish(&netlink());
        assert_eq!(found.held[TcpState::CloseWait], 2);
        assert_eq!(found.held[TcpState::Listen], 1);
        assert_eq!(found.listeners.len(), 1);
        assert_eq!(found.ports.len(), 1, "the first pair only");
        assert_eq!(found.ports[0].source.to_string(), "10.0.0.1");
        assert!(found.tcp_inodes.is_empty() && found.close_wait_inodes.is_empty());
        let mut sample = HostSample::default();
        found.fill(&mut sample);
        assert_eq!(
            sample.close_wait_by_process,
            [ProcessCount::new(42, "java", 2)]
        );
        // Toward other destinations only: nothing counted.
        let mut walk = HostWalk::new(Some((40_000, 40_099))).toward([]);
        host().iter().for_each(|s| {
            walk.visit(s);
        });
        assert!(walk.finish(&netlink()).ports.is_empty());
        // No range, or upside down: no port use.
        for range in [None, Some((40_099, 40_000))] {
            let mut walk = HostWalk::new(range);
            host().iter().for_each(|s| {
                walk.visit(s);
            });
            assert!(walk.finish(&netlink()).ports.is_empty());
        }
    }

    /// Made-up numbers below `n`, the same from one run to the next (xorshift from `seed`).
    fn below(mut seed: u64) -> impl FnMut(u64) -> u64 {
        move |n| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        }
    }

    /// Toward some destinations, the port counts are exactly those of a walk toward every
    /// destination, kept to them: made-up sockets over a few destinations, sources, ports in
    /// and out of the range and states, IPv4-mapped ones among them.
    #[test]
    fn toward_some_is_every_destination_kept_to_them() {
        let mut next = below(0x9e37_79b9_7f4a_7c15u64);
        let states = [
            TcpState::Established,
            TcpState::TimeWait,
            TcpState::CloseWait,
            TcpState::FinWait2,
        ];
        let mut socks = vec![sock(TcpState::Listen, "0.0.0.0:40010", "0.0.0.0:0", 1)];
        for _ in 0..2000 {
            let (src, dst) = (next(3), next(5));
            let port = 39_990 + next(120); // around the range 40000..=40099
            let (local, remote) = if next(4) == 0 {
                (
                    format!("[::ffff:10.0.0.{src}]:{port}"),
                    format!("[::ffff:10.0.1.{dst}]:5432"),
                )
            } else {
                (format!("10.0.0.{src}:{port}"), format!("10.0.1.{dst}:5432"))
            };
            let state = states[next(4) as usize];
            socks.push(sock(state, &local, &remote, 0));
        }
        let run = |walk: HostWalk<'_>| {
            let mut walk = walk;
            for s in &socks {
                walk.visit(s);
            }
            walk.finish(&netlink()).ports
        };
        let every = run(HostWalk::new(Some((40_000, 40_099))));
        assert!(every.len() > 10, "{} pairs", every.len());
        let some: Vec<SocketAddr> = ["10.0.1.1:5432", "[::ffff:10.0.1.3]:5432", "10.0.1.9:5432"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        let kept: Vec<PortCount> = every
            .iter()
            .filter(|p| some.iter().any(|d| canonical_addr(*d) == p.destination))
            .copied()
            .collect();
        assert!(!kept.is_empty());
        assert_eq!(
            run(HostWalk::new(Some((40_000, 40_099))).toward(some)),
            kept
        );
    }

    /// The port counts are those counted one socket at a time with a map, whatever the order:
    /// runs of sockets of one pair (which the walk counts without looking the pair up again),
    /// a pair's IPv4-mapped and plain forms next to each other, listening ports and ports out
    /// of the range in between.
    #[test]
    fn port_counts_are_a_plain_count_of_each_pair() {
        let mut next = below(0x2545_f491_4f6c_dd1du64);
        let mut socks = vec![sock(TcpState::Listen, "0.0.0.0:40010", "0.0.0.0:0", 1)];
        while socks.len() < 3000 {
            let (src, dst, run) = (next(3), next(4), 1 + next(6));
            for _ in 0..run {
                let port = 39_995 + next(110);
                let (local, remote) = if next(3) == 0 {
                    (
                        format!("[::ffff:10.0.0.{src}]:{port}"),
                        format!("[::ffff:10.0.1.{dst}]:5432"),
                    )
                } else {
                    (format!("10.0.0.{src}:{port}"), format!("10.0.1.{dst}:5432"))
                };
                let state = if next(2) == 0 {
                    TcpState::TimeWait
                } else {
                    TcpState::Established
                };
                socks.push(sock(state, &local, &remote, 0));
            }
        }
        let mut plain: HashMap<(SocketAddr, IpAddr), (u64, u64)> = HashMap::new();
        for s in &socks[1..] {
            if !(40_000..=40_099).contains(&s.local.port()) || s.local.port() == 40_010 {
                continue;
            }
            let c = plain
                .entry((canonical_addr(s.remote), canonical_addr(s.local).ip()))
                .or_default();
            c.0 += 1;
            c.1 += u64::from(s.state == TcpState::TimeWait);
        }
        for walk in [
            HostWalk::new(Some((40_000, 40_099))),
            HostWalk::new(Some((40_000, 40_099)))
                .toward((0..4).map(|d| SocketAddr::from(([10, 0, 1, d as u8], 5432)))),
        ] {
            let mut walk = walk;
            for s in &socks {
                walk.visit(s);
            }
            let counted: HashMap<(SocketAddr, IpAddr), (u64, u64)> = walk
                .finish(&netlink())
                .ports
                .iter()
                .map(|p| ((p.destination, p.source), (p.used, p.time_wait)))
                .collect();
            assert_eq!(counted, plain);
        }
    }

    /// A walk fed runs ([`HostWalk::visit_run`]) finds what one fed each socket does: made-up
    /// sockets in runs toward a few pairs, in and out of the port range, on the listener's
    /// port, held and not, IPv4-mapped ones among them, cut into runs as a walk by runs cuts
    /// them (and the rest handed over as runs of one).
    #[test]
    fn a_run_counts_as_each_of_its_sockets() {
        let mut next = below(0x9e37_79b9_7f4a_7c15u64);
        let mut socks = vec![sock(TcpState::Listen, "0.0.0.0:40010", "0.0.0.0:0", 1)];
        while socks.len() < 3000 {
            let (src, dst, run) = (next(3), next(3), 1 + next(30));
            let mapped = next(4) == 0;
            let (state, inode) = match next(8) {
                0 => (TcpState::Established, 0),
                1 => (TcpState::Established, 7),
                2 => (TcpState::TimeWait, 9), // never from the kernel: still its own
                _ => (TcpState::TimeWait, 0),
            };
            for _ in 0..run {
                let port = 39_995 + next(110);
                let (local, remote) = if mapped {
                    (
                        format!("[::ffff:10.0.0.{src}]:{port}"),
                        format!("[::ffff:10.0.1.{dst}]:5432"),
                    )
                } else {
                    (format!("10.0.0.{src}:{port}"), format!("10.0.1.{dst}:5432"))
                };
                socks.push(sock(state, &local, &remote, inode));
            }
        }
        // Runs as a walk by runs makes them: unheld TIME_WAIT sockets alike but for the port.
        let mut runs: Vec<(SockInfo, Vec<u16>)> = Vec::new();
        for s in &socks {
            match runs.last_mut() {
                Some((like, ports))
                    if s.state == TcpState::TimeWait
                        && s.inode == 0
                        && like.state == TcpState::TimeWait
                        && like.inode == 0
                        && like.remote == s.remote
                        && like.local.ip() == s.local.ip() =>
                {
                    ports.push(s.local.port())
                }
                _ => runs.push((*s, vec![s.local.port()])),
            }
        }
        assert!(runs.len() < socks.len() / 2, "long runs: {}", runs.len());
        let own = SocketInodes::new(vec![7]);
        let walk = || {
            HostWalk::new(Some((40_000, 40_099)))
                .process(1, "t", &own)
                .toward((0..2).map(|d| SocketAddr::from(([10, 0, 1, d as u8], 5432))))
        };
        let (mut each, mut by_runs) = (walk(), walk());
        let mut held = (0u64, 0u64);
        for s in &socks {
            held.0 += u64::from(each.visit(s));
        }
        for (like, ports) in &runs {
            held.1 += by_runs.visit_run(like, ports);
        }
        assert_eq!(held.0, held.1);
        assert!(held.0 > 0);
        let (each, by_runs) = (each.finish(&netlink()), by_runs.finish(&netlink()));
        assert_eq!(each.states, by_runs.states);
        assert_eq!(each.held, by_runs.held);
        assert_eq!(each.listeners.len(), by_runs.listeners.len());
        let counts = |found: &HostSockets| {
            found
                .ports
                .iter()
                .map(|p| ((p.destination, p.source), (p.used, p.time_wait)))
                .collect::<HashMap<_, _>>()
        };
        assert_eq!(counts(&each), counts(&by_runs));
        assert!(each.ports.iter().any(|p| p.time_wait > 100));
    }
}
