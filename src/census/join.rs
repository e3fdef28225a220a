//! The join: one pass over the socket table, each socket attributed to a listener, an
//! upstream, or nobody.
//!
//! Kept apart from reading so it can be tested on made-up sockets.

use std::net::{Ipv4Addr, SocketAddr};

use conn_hygiene_census::lookup::AddrMap;
use conn_hygiene_census::{canonical_addr as canon, SockInfo, TcpState};

use super::MAX_CLOSE_WAIT_ENTRIES;

/// Who a socket is attributed to, by index into the targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum OwnerIdx {
    Listener(usize),
    Upstream(usize),
    Untracked,
}

/// Per listener counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ListenerCounts {
    pub(crate) time_wait: u64,
    pub(crate) syn_recv: u64,
    pub(crate) not_accepted: u64,
    pub(crate) close_wait: u64,
}

/// Per upstream counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct UpstreamCounts {
    pub(crate) time_wait: u64,
    pub(crate) close_wait: u64,
}

/// What the join looks for, and what it found. It attributes what the census crate's
/// [`HostWalk`](conn_hygiene_census::findings::HostWalk) counts for the whole host, fed the
/// same sockets. Memory: the targets, one small record per listener and upstream, and at most
/// [`MAX_CLOSE_WAIT_ENTRIES`] `CLOSE_WAIT` addresses; nothing per socket.
#[derive(Debug)]
pub(crate) struct Join {
    listener_exact: AddrMap<usize>,
    /// Listeners bound to an unspecified address, by port (keyed as `0.0.0.0:port`); `true`
    /// when IPv6 (dual-stack).
    listener_any: AddrMap<(usize, bool)>,
    upstream_dest: AddrMap<usize>,
    /// The last destination looked up (as the socket gave it, not canonical), and its
    /// upstream: sockets toward one destination (a busy upstream's) often come in runs.
    last_upstream: Option<(SocketAddr, Option<usize>)>,

    pub(crate) listeners: Vec<ListenerCounts>,
    pub(crate) upstreams: Vec<UpstreamCounts>,
    pub(crate) close_wait: Vec<(SocketAddr, SocketAddr, OwnerIdx)>,
    pub(crate) close_wait_unlisted: u64,
}

impl Join {
    /// A join for listeners on `listeners` and upstreams at `upstreams` (destinations per
    /// upstream).
    pub(crate) fn new(listeners: &[SocketAddr], upstreams: &[Vec<SocketAddr>]) -> Self {
        let mut listener_exact = AddrMap::new();
        let mut listener_any = AddrMap::new();
        for (i, addr) in listeners.iter().enumerate() {
            let addr = canon(*addr);
            if addr.ip().is_unspecified() {
                listener_any.insert(any_port(addr.port()), (i, addr.is_ipv6()));
            } else {
                listener_exact.insert(addr, i);
            }
        }
        let mut upstream_dest = AddrMap::new();
        for (i, dests) in upstreams.iter().enumerate() {
            for d in dests {
                // A destination shared by two upstreams counts for the first.
                upstream_dest.insert(canon(*d), i);
            }
        }
        Join {
            listener_exact,
            listener_any,
            upstream_dest,
            last_upstream: None,
            listeners: vec![ListenerCounts::default(); listeners.len()],
            upstreams: vec![UpstreamCounts::default(); upstreams.len()],
            close_wait: Vec::new(),
            close_wait_unlisted: 0,
        }
    }

    #[inline]
    pub(crate) fn listener_of(&self, local: SocketAddr) -> Option<usize> {
        if let Some(i) = self.listener_exact.get(&local) {
            return Some(*i);
        }
        match self.listener_any.get(&any_port(local.port())) {
            Some((i, v6)) if *v6 || local.is_ipv4() => Some(*i),
            _ => None,
        }
    }

    /// The upstream a destination (canonical) is attributed to.
    pub(crate) fn upstream_of(&self, destination: SocketAddr) -> Option<usize> {
        self.upstream_dest.get(&destination).copied()
    }

    /// Attributes one socket; `ours` when this process holds it.
    #[inline]
    pub(crate) fn visit(&mut self, s: &SockInfo, ours: bool) {
        // Only these states are attributed; the others (most of a host's established
        // connections among them) pass without a lookup.
        match s.state {
            TcpState::TimeWait | TcpState::SynRecv | TcpState::CloseWait => {}
            TcpState::Established if s.inode == 0 => {}
            _ => return,
        }
        // The ports first: most sockets are on no listener's port, and toward no upstream's.
        let local_port = s.local.port();
        let listener =
            if self.listener_exact.has_port(local_port) || self.listener_any.has_port(local_port) {
                self.listener_of(canon(s.local))
            } else {
                None
            };
        let upstream = match listener {
            Some(_) => None,
            None => self.upstream_toward(s.remote),
        };
        match (s.state, listener, upstream) {
            (TcpState::TimeWait, Some(l), _) => self.listeners[l].time_wait += 1,
            (TcpState::TimeWait, None, Some(u)) => self.upstreams[u].time_wait += 1,
            (TcpState::SynRecv, Some(l), _) => self.listeners[l].syn_recv += 1,
            // Completed, waiting in the accept queue: no process holds it yet.
            (TcpState::Established, Some(l), _) if s.inode == 0 => {
                self.listeners[l].not_accepted += 1
            }
            (TcpState::CloseWait, l, u) => {
                // A CLOSE_WAIT socket on our listener's address is ours whoever the inode
                // says; toward an upstream's destination only when we hold it.
                let owner = match (l, u) {
                    (Some(l), _) if s.inode != 0 => Some(OwnerIdx::Listener(l)),
                    (None, Some(u)) if ours => Some(OwnerIdx::Upstream(u)),
                    _ if ours => Some(OwnerIdx::Untracked),
                    _ => None,
                };
                if let Some(owner) = owner {
                    match owner {
                        OwnerIdx::Listener(l) => self.listeners[l].close_wait += 1,
                        OwnerIdx::Upstream(u) => self.upstreams[u].close_wait += 1,
                        OwnerIdx::Untracked => {}
                    }
                    if self.close_wait.len() < MAX_CLOSE_WAIT_ENTRIES {
                        self.close_wait
                            .push((canon(s.local), canon(s.remote), owner));
                    } else {
                        self.close_wait_unlisted += 1;
                    }
                }
            }
            _ => {}
        }
    }

    /// The upstream of a destination as a socket gives it (not canonical): the port first,
    /// then the last destination looked up, then the lookup.
    #[inline]
    fn upstream_toward(&mut self, remote: SocketAddr) -> Option<usize> {
        if !self.upstream_dest.has_port(remote.port()) {
            return None;
        }
        match &self.last_upstream {
            Some((last, u)) if *last == remote => *u,
            _ => {
                let u = self.upstream_of(canon(remote));
                self.last_upstream = Some((remote, u));
                u
            }
        }
    }

    /// Attributes sockets no process holds that differ from `like` only in their local ports,
    /// one per port of `local_ports` (a walk's run of `TIME_WAIT` sockets): as
    /// [`visit`](Self::visit) of each, the destination looked up once for all those on no
    /// listener's port.
    pub(crate) fn visit_run(&mut self, like: &SockInfo, local_ports: &[u16]) {
        let mut s = *like;
        if like.state != TcpState::TimeWait || like.inode != 0 {
            for &port in local_ports {
                s.local.set_port(port);
                self.visit(&s, false);
            }
            return;
        }
        let mut elsewhere = 0u64;
        for &port in local_ports {
            if self.listener_exact.has_port(port) || self.listener_any.has_port(port) {
                s.local.set_port(port);
                self.visit(&s, false);
            } else {
                elsewhere += 1;
            }
        }
        if elsewhere > 0 {
            if let Some(u) = self.upstream_toward(like.remote) {
                self.upstreams[u].time_wait += elsewhere;
            }
        }
    }
}

/// The key of a listener on every address.
fn any_port(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))
}

#[cfg(test)]
mod tests {
    use conn_hygiene_census::process::SocketInodes;

    use super::*;

    fn sock(state: TcpState, local: &str, remote: &str, inode: u64) -> SockInfo {
        let mut s = SockInfo::new(state, local.parse().unwrap(), remote.parse().unwrap());
        s.inode = inode;
        s
    }

    #[test]
    fn attributes_by_four_tuple() {
        let own = SocketInodes::new(vec![10, 11, 12]);
        let listeners = [
            "127.0.0.1:8080".parse().unwrap(),
            "0.0.0.0:9090".parse().unwrap(),
        ];
        let upstreams = vec![vec!["10.0.0.5:5432".parse().unwrap()]];
        let mut j = Join::new(&listeners, &upstreams);
        let socks = [
            sock(TcpState::Listen, "127.0.0.1:8080", "0.0.0.0:0", 10),
            // Server closed first: TIME_WAIT on the listener's address.
            sock(TcpState::TimeWait, "127.0.0.1:8080", "127.0.0.1:40000", 0),
            // Wildcard listener, any local IPv4 address, IPv4-mapped included.
            sock(
                TcpState::TimeWait,
                "[::ffff:10.1.1.1]:9090",
                "[::ffff:10.9.9.9]:1",
                0,
            ),
            // Client closed first: toward the upstream, from two sources.
            sock(TcpState::TimeWait, "10.0.0.1:40001", "10.0.0.5:5432", 0),
            sock(TcpState::TimeWait, "10.0.0.2:40001", "10.0.0.5:5432", 0),
            sock(TcpState::Established, "10.0.0.2:40002", "10.0.0.5:5432", 11),
            // Someone else's.
            sock(TcpState::TimeWait, "127.0.0.1:7000", "127.0.0.1:40003", 0),
            sock(
                TcpState::Established,
                "127.0.0.1:8080",
                "127.0.0.1:40004",
                0,
            ),
            sock(TcpState::SynRecv, "127.0.0.1:8080", "127.0.0.1:40005", 0),
            sock(TcpState::CloseWait, "127.0.0.1:8080", "127.0.0.1:40006", 12),
            sock(TcpState::CloseWait, "10.0.0.1:40007", "10.0.0.5:5432", 11),
            sock(TcpState::CloseWait, "10.0.0.1:40008", "10.0.0.6:1", 999),
        ];
        for s in &socks {
            j.visit(s, own.contains(s.inode));
        }
        assert_eq!(j.listeners[0].time_wait, 1);
        assert_eq!(j.listeners[1].time_wait, 1);
        assert_eq!(j.listeners[0].not_accepted, 1);
        assert_eq!(j.listeners[0].syn_recv, 1);
        assert_eq!(j.listeners[0].close_wait, 1);
        assert_eq!(j.upstreams[0].time_wait, 2);
        assert_eq!(j.upstreams[0].close_wait, 1);
        let dest: SocketAddr = "[::ffff:10.0.0.5]:5432".parse().unwrap();
        assert_eq!(j.upstream_of(canon(dest)), Some(0));
        assert_eq!(j.close_wait.len(), 2, "the foreign CLOSE_WAIT is not ours");
        assert_eq!(j.close_wait[1].2, OwnerIdx::Upstream(0));
    }

    /// Runs of sockets toward one destination (which the join attributes without looking the
    /// destination up again), the IPv4-mapped form of a destination beside its plain one, and
    /// sockets on a listener's port in between: each TIME_WAIT socket is counted where a
    /// lookup of its own says.
    #[test]
    fn runs_toward_one_destination_count_as_each_socket_alone() {
        let upstreams = vec![
            vec!["10.0.0.5:5432".parse().unwrap()],
            vec!["10.0.0.6:6379".parse().unwrap()],
        ];
        let listeners = ["0.0.0.0:8080".parse().unwrap()];
        let mut j = Join::new(&listeners, &upstreams);
        let remotes = [
            "10.0.0.5:5432",
            "[::ffff:10.0.0.5]:5432",
            "10.0.0.6:6379",
            "10.0.0.7:5432",
            "10.0.0.5:5433",
        ];
        let mut expected = ([0u64; 2], 0u64);
        let mut seed = 0x853c_49e6_748f_ea9bu64;
        for i in 0..600u32 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let remote = remotes[(seed % 5) as usize];
            let run = 1 + (seed >> 8) % 4;
            for k in 0..run {
                // Now and then a socket on the listener's port, between two of a run.
                let on_listener = (seed >> 16) % 7 == k;
                let local = if on_listener {
                    "10.0.0.1:8080".to_owned()
                } else {
                    format!("10.0.0.1:{}", 40_000 + i)
                };
                j.visit(&sock(TcpState::TimeWait, &local, remote, 0), false);
                if on_listener {
                    expected.1 += 1;
                } else if let Some(u) = j.upstream_of(canon(remote.parse().unwrap())) {
                    expected.0[u] += 1;
                }
            }
        }
        assert!(expected.0[0] > 0 && expected.0[1] > 0 && expected.1 > 0);
        assert_eq!(
            [j.upstreams[0].time_wait, j.upstreams[1].time_wait],
            expected.0
        );
        assert_eq!(j.listeners[0].time_wait, expected.1);
    }

    /// Runs of TIME_WAIT sockets (as a walk by runs hands them over), with ports of a
    /// listener among their local ports, toward upstreams, a mapped destination and others:
    /// attributed as each socket visited alone.
    #[test]
    fn a_run_is_attributed_as_each_of_its_sockets() {
        let upstreams = vec![
            vec!["10.0.0.5:5432".parse().unwrap()],
            vec!["10.0.0.6:6379".parse().unwrap()],
        ];
        let listeners = [
            "0.0.0.0:8080".parse().unwrap(),
            "10.0.0.1:8081".parse().unwrap(),
        ];
        let remotes = [
            "10.0.0.5:5432",
            "[::ffff:10.0.0.5]:5432",
            "10.0.0.6:6379",
            "10.0.0.7:5432",
        ];
        let (mut each, mut by_runs) = (
            Join::new(&listeners, &upstreams),
            Join::new(&listeners, &upstreams),
        );
        let mut seed = 0xda94_2042_e4dd_58b5u64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _ in 0..200 {
            let remote: SocketAddr = remotes[next(4) as usize].parse().unwrap();
            let local: SocketAddr = if remote.is_ipv4() {
                "10.0.0.1:0".parse().unwrap()
            } else {
                "[::ffff:10.0.0.1]:0".parse().unwrap()
            };
            let like = SockInfo::new(TcpState::TimeWait, local, remote);
            let ports: Vec<u16> = (0..1 + next(30))
                .map(|_| match next(10) {
                    0 => 8080,
                    1 => 8081,
                    _ => 40_000 + next(1000) as u16,
                })
                .collect();
            let mut s = like;
            for &p in &ports {
                s.local.set_port(p);
                each.visit(&s, false);
            }
            by_runs.visit_run(&like, &ports);
        }
        assert_eq!(each.upstreams, by_runs.upstreams);
        assert_eq!(each.listeners, by_runs.listeners);
        assert!(each.upstreams.iter().all(|u| u.time_wait > 0));
        assert!(each.listeners.iter().all(|l| l.time_wait > 0));
    }

    #[test]
    fn sockets_not_ours_are_nobodys() {
        let mut j = Join::new(&[], &[vec![]]);
        j.visit(
            &sock(TcpState::CloseWait, "1.1.1.1:1", "2.2.2.2:2", 5),
            false,
        );
        assert!(j.close_wait.is_empty());
        assert_eq!(j.upstreams[0], UpstreamCounts::default());
    }
}
