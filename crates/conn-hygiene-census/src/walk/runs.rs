//! A walk by runs ([`Walker::walk_runs_keeping_time_wait`](super::Walker::walk_runs_keeping_time_wait)):
//! `TIME_WAIT` sockets that differ only in their local port are handed over together, as one
//! run, read once.
//!
//! Every `TIME_WAIT` socket toward one destination from one source address, no process
//! holding it, is the same to a census but for its local port: a service's own toward its
//! upstreams, often most of a busy host's sockets, make a few such runs, which the kernel
//! lists interleaved (in the order of its hash table). A walk by runs keeps up to
//! [`WalkItem::MAX_RUNS`] runs open at once; a message of one of them is compared as bytes, its local
//! port kept, and not read.

use super::Visit;
use crate::netlink::INET_DIAG_MSG_LEN;
use crate::peers::RawDetail;
use crate::{SockInfo, TcpState};

/// What a walk by runs hands over.
#[derive(Debug, Clone, Copy)]
pub enum WalkItem<'a> {
    /// One socket, with the kernel's detail unread.
    Socket(&'a SockInfo, RawDetail<'a>),
    /// `TIME_WAIT` sockets that no process holds and that differ from `like` only in their
    /// local port: one per port of `local_ports` (never empty). Their detail (the timewait
    /// timer) is not kept.
    ///
    /// A run comes when it is full ([`MAX_RUN`](Self::MAX_RUN)), when another needs its room,
    /// and when the kernel's answer to a request ends; so a run's sockets come after
    /// sockets the kernel listed after them, but before the next request's (the other
    /// family's, or the next pass's, listeners first).
    TimeWaitRun {
        /// A socket of the run.
        like: &'a SockInfo,
        /// The local port of each socket of the run.
        local_ports: &'a [u16],
    },
}

impl WalkItem<'_> {
    /// The most sockets one [`WalkItem::TimeWaitRun`] holds; a longer run comes as several.
    pub const MAX_RUN: usize = 1024;

    /// The most runs a walk by runs keeps open at once: `TIME_WAIT` sockets toward more
    /// pairs than this are handed over in shorter runs.
    pub const MAX_RUNS: usize = 8;

    /// How many sockets this item stands for.
    pub fn len(&self) -> usize {
        match self {
            WalkItem::Socket(..) => 1,
            WalkItem::TimeWaitRun { local_ports, .. } => local_ports.len(),
        }
    }

    /// Never: an item stands for one socket at least.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Each socket the item stands for, as a walk socket by socket hands it over (a run's
    /// without their detail).
    pub fn each(&self, mut f: impl FnMut(&SockInfo, RawDetail<'_>)) {
        match *self {
            WalkItem::Socket(s, raw) => f(s, raw),
            WalkItem::TimeWaitRun { like, local_ports } => {
                let mut s = *like;
                for &port in local_ports {
                    s.local.set_port(port);
                    f(&s, RawDetail::new(None));
                }
            }
        }
    }
}

/// Byte offsets in `inet_diag_msg`.
const STATE: usize = 1;
/// `TCP_TIME_WAIT`.
const KERNEL_TIME_WAIT: u8 = 6;

/// What makes two `TIME_WAIT` messages one socket but for the local port: family and state;
/// remote port, both addresses; receive and send queues, uid and inode (all 0 for a
/// `TIME_WAIT` socket). Left out: timer and retransmissions, local port, interface, cookie and
/// expiry, none of which a [`SockInfo`] holds.
type RunKey = [u64; 7];

/// The key of a message of at least [`INET_DIAG_MSG_LEN`] bytes.
#[inline(always)]
fn run_key(p: &[u8]) -> RunKey {
    let at = |i: usize| u64::from_ne_bytes(p[i..i + 8].try_into().unwrap_or([0; 8]));
    // Bytes 0..8: family, state, timer, retransmissions, local port, remote port.
    let head = u64::from_ne_bytes([p[0], p[1], 0, 0, 0, 0, p[6], p[7]]);
    [head, at(8), at(16), at(24), at(32), at(56), at(64)]
}

/// An open run: its key, a socket of it, and the local ports of those not handed over yet.
struct Run {
    key: RunKey,
    like: SockInfo,
    ports: Vec<u16>,
}

/// The visitor of a walk by runs: holds up to [`WalkItem::MAX_RUNS`] runs open, hands one
/// over when it is full or another needs its room, and all of them when a dump ends. Memory:
/// at most `MAX_RUNS` × [`WalkItem::MAX_RUN`] ports.
pub(crate) struct Runs<F> {
    f: F,
    runs: Vec<Run>,
    /// The run the last message taken went to: looked at first.
    last: usize,
    /// The run that makes room next, when all are open.
    victim: usize,
}

impl<F: FnMut(WalkItem<'_>)> Runs<F> {
    pub(crate) fn new(f: F) -> Self {
        Runs {
            f,
            runs: Vec::new(),
            last: 0,
            victim: 0,
        }
    }

    /// Hands over run `i`'s sockets, if it holds any.
    fn hand_over(&mut self, i: usize) {
        let run = &mut self.runs[i];
        if !run.ports.is_empty() {
            (self.f)(WalkItem::TimeWaitRun {
                like: &run.like,
                local_ports: &run.ports,
            });
            run.ports.clear();
        }
    }

    /// Adds a socket's local port to run `i`, handing the run over first when full.
    #[inline(always)]
    fn push(&mut self, i: usize, port: u16) {
        if self.runs[i].ports.len() >= WalkItem::MAX_RUN {
            self.hand_over(i);
        }
        self.runs[i].ports.push(port);
        self.last = i;
    }
}

impl<F: FnMut(WalkItem<'_>)> Visit for Runs<F> {
    #[inline(always)]
    fn take_raw(&mut self, p: &[u8]) -> bool {
        if p.len() < INET_DIAG_MSG_LEN || p[STATE] != KERNEL_TIME_WAIT || self.runs.is_empty() {
            return false;
        }
        let key = run_key(p);
        let port = u16::from_be_bytes([p[4], p[5]]);
        let i = match self.runs.get(self.last) {
            Some(run) if run.key == key => self.last,
            _ => match self.runs.iter().position(|run| run.key == key) {
                Some(i) => i,
                // A run not open: read it, and `socket` opens it.
                None => return false,
            },
        };
        self.push(i, port);
        true
    }

    #[inline(always)]
    fn socket(&mut self, s: &SockInfo, payload: Option<&[u8]>) {
        match payload {
            // A run not open yet (`take_raw` would have taken it otherwise): open it, in a
            // free place or in the victim's, handed over first.
            Some(p)
                if s.state == TcpState::TimeWait
                    && s.inode == 0
                    && p.len() >= INET_DIAG_MSG_LEN
                    && p[STATE] == KERNEL_TIME_WAIT =>
            {
                let key = run_key(p);
                let i = if self.runs.len() < WalkItem::MAX_RUNS {
                    self.runs.push(Run {
                        key,
                        like: *s,
                        ports: Vec::with_capacity(64),
                    });
                    self.runs.len() - 1
                } else {
                    let i = self.victim;
                    self.victim = (i + 1) % WalkItem::MAX_RUNS;
                    self.hand_over(i);
                    self.runs[i].key = key;
                    self.runs[i].like = *s;
                    i
                };
                self.push(i, s.local.port());
            }
            _ => (self.f)(WalkItem::Socket(s, RawDetail::new(payload))),
        }
    }

    fn flush(&mut self) {
        for i in 0..self.runs.len() {
            self.hand_over(i);
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::netlink::{parse_messages_with, MessageSink};

    /// A `Runs` as the netlink parser's sink, as a walk sets it up.
    pub(in crate::walk) struct Sink<'a, V>(pub(in crate::walk) &'a mut V);

    impl<V: Visit> MessageSink for Sink<'_, V> {
        fn take_raw(&mut self, p: &[u8]) -> bool {
            self.0.take_raw(p)
        }
        fn socket(&mut self, s: &SockInfo, p: &[u8]) {
            self.0.socket(s, Some(p))
        }
    }

    /// One `inet_diag_msg` in its netlink message: `state` (the kernel's number), local and
    /// remote IPv4 addresses and ports, the inode, and `expires` and a cookie that differ per
    /// socket.
    pub(in crate::walk) fn message(
        state: u8,
        local: SocketAddr,
        remote: SocketAddr,
        inode: u32,
        n: u32,
    ) -> Vec<u8> {
        let mut m = vec![0u8; 16 + INET_DIAG_MSG_LEN];
        let len = m.len() as u32;
        m[0..4].copy_from_slice(&len.to_ne_bytes());
        m[4..6].copy_from_slice(&20u16.to_ne_bytes());
        m[8..12].copy_from_slice(&1u32.to_ne_bytes());
        let p = &mut m[16..];
        let (SocketAddr::V4(l), SocketAddr::V4(r)) = (local, remote) else {
            unreachable!("IPv4 only here")
        };
        p[0] = 2;
        p[1] = state;
        p[2] = if state == KERNEL_TIME_WAIT { 3 } else { 1 };
        p[4..6].copy_from_slice(&l.port().to_be_bytes());
        p[6..8].copy_from_slice(&r.port().to_be_bytes());
        p[8..12].copy_from_slice(&l.ip().octets());
        p[24..28].copy_from_slice(&r.ip().octets());
        p[44..48].copy_from_slice(&n.to_ne_bytes()); // cookie
        p[52..56].copy_from_slice(&(60_000 - n).to_ne_bytes()); // expires
        p[68..72].copy_from_slice(&inode.to_ne_bytes());
        m
    }

    pub(in crate::walk) fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// What a walk by runs hands over for these datagrams, each run and socket expanded,
    /// and the runs' lengths.
    fn by_runs(datagrams: &[Vec<u8>]) -> (Vec<SockInfo>, Vec<usize>) {
        let (mut seen, mut runs) = (Vec::new(), Vec::new());
        let mut v = Runs::new(|item: WalkItem<'_>| {
            if let WalkItem::TimeWaitRun { local_ports, .. } = item {
                runs.push(local_ports.len());
            }
            item.each(|s, _| seen.push(*s));
        });
        let mut sockets = 0;
        for d in datagrams {
            sockets += parse_messages_with(d, Some(1), "t", &mut Sink(&mut v))
                .unwrap()
                .sockets;
        }
        v.flush();
        drop(v);
        assert_eq!(sockets as usize, seen.len(), "every message counted once");
        (seen, runs)
    }

    fn next(seed: &mut u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    }

    /// Made-up messages toward `dests` from two sources, interleaved, with established
    /// sockets and held `TIME_WAIT` ones among them, cut into datagrams of 1 to 50 messages;
    /// and the sockets they are.
    fn made_up(dests: &[SocketAddr], seed: u64) -> (Vec<Vec<u8>>, Vec<SockInfo>) {
        let sources = ["10.0.0.1", "10.0.0.2"];
        let (mut messages, mut expected) = (Vec::new(), Vec::new());
        let mut seed = seed;
        for n in 0..6000u32 {
            let r = next(&mut seed);
            let (state, inode) = match r % 23 {
                0 => (1, 77),                // established, held
                1 => (KERNEL_TIME_WAIT, 78), // TIME_WAIT with an inode: never one of a run
                _ => (KERNEL_TIME_WAIT, 0),
            };
            let remote = dests[(r >> 8) as usize % dests.len()];
            let local = addr(&format!(
                "{}:{}",
                sources[(r >> 24) as usize % 2],
                1024 + n % 60_000
            ));
            messages.push(message(state, local, remote, inode, n));
            let mut s = SockInfo::new(TcpState::from_kernel(state).unwrap(), local, remote);
            s.inode = u64::from(inode);
            expected.push(s);
        }
        let mut datagrams = Vec::new();
        let mut rest = &messages[..];
        while !rest.is_empty() {
            let k = (1 + next(&mut seed) % 50).min(rest.len() as u64) as usize;
            datagrams.push(rest[..k].concat());
            rest = &rest[k..];
        }
        (datagrams, expected)
    }

    fn sorted(mut v: Vec<SockInfo>) -> Vec<SockInfo> {
        v.sort_by_key(|s| (s.state, s.local, s.remote, s.inode));
        v
    }

    fn not_in_runs(v: &[SockInfo]) -> Vec<SockInfo> {
        v.iter()
            .filter(|s| s.state != TcpState::TimeWait || s.inode != 0)
            .copied()
            .collect()
    }

    /// TIME_WAIT sockets toward four destinations (two ports on one) from two sources,
    /// interleaved as the kernel lists them, other sockets among them, cut into datagrams
    /// anywhere: each socket is handed over once, the others in order, and the TIME_WAIT ones
    /// in one run per pair, as long as a run may be.
    #[test]
    fn runs_hand_over_each_socket_once() {
        let dests = [
            addr("10.0.0.5:5432"),
            addr("10.0.0.5:5433"),
            addr("10.0.0.6:6379"),
            addr("10.0.0.7:6379"),
        ];
        let (datagrams, expected) = made_up(&dests, 0x2545_f491_4f6c_dd1d);
        let (seen, runs) = by_runs(&datagrams);
        assert_eq!(
            not_in_runs(&seen),
            not_in_runs(&expected),
            "the others in order"
        );
        assert_eq!(sorted(seen), sorted(expected.clone()));
        // 8 pairs, each of its TIME_WAIT sockets in runs of MAX_RUN but the last.
        let mut per_pair = std::collections::HashMap::new();
        for s in expected
            .iter()
            .filter(|s| s.state == TcpState::TimeWait && s.inode == 0)
        {
            *per_pair.entry((s.local.ip(), s.remote)).or_insert(0usize) += 1;
        }
        assert_eq!(per_pair.len(), 8);
        let mut want: Vec<usize> = per_pair
            .values()
            .flat_map(|&n| {
                let full = n / WalkItem::MAX_RUN;
                let mut v = vec![WalkItem::MAX_RUN; full];
                if n % WalkItem::MAX_RUN > 0 {
                    v.push(n % WalkItem::MAX_RUN);
                }
                v
            })
            .collect();
        want.sort();
        let mut runs = runs;
        runs.sort();
        assert_eq!(runs, want);
    }

    /// More pairs than runs kept open: runs make room for each other, and each socket is
    /// still handed over once.
    #[test]
    fn more_pairs_than_open_runs() {
        let dests: Vec<SocketAddr> = (0..20).map(|i| addr(&format!("10.0.1.{i}:5432"))).collect();
        let (datagrams, expected) = made_up(&dests, 0x9e37_79b9_7f4a_7c15);
        let (seen, runs) = by_runs(&datagrams);
        assert_eq!(not_in_runs(&seen), not_in_runs(&expected));
        assert_eq!(sorted(seen), sorted(expected));
        assert!(runs.len() > 40, "runs made room: {}", runs.len());
    }

    /// A run longer than the most one item holds comes as several.
    #[test]
    fn a_long_run_comes_in_items_of_at_most_max_run() {
        let remote = addr("10.0.0.5:5432");
        let total = 2 * WalkItem::MAX_RUN + 3;
        let datagram: Vec<u8> = (0..total as u32)
            .flat_map(|n| {
                let local = addr(&format!("10.0.0.1:{}", 1024 + n));
                message(KERNEL_TIME_WAIT, local, remote, 0, n)
            })
            .collect();
        let (seen, runs) = by_runs(&[datagram]);
        assert_eq!(seen.len(), total);
        assert_eq!(runs, [WalkItem::MAX_RUN, WalkItem::MAX_RUN, 3]);
        assert_eq!(seen[total - 1].local.port(), 1024 + total as u16 - 1);
    }

    /// Messages cut short are still the parser's to refuse: none is taken unread.
    #[test]
    fn a_short_message_is_not_taken() {
        let remote = addr("10.0.0.5:5432");
        let first = message(KERNEL_TIME_WAIT, addr("10.0.0.1:2000"), remote, 0, 1);
        let mut short = message(KERNEL_TIME_WAIT, addr("10.0.0.1:2001"), remote, 0, 2);
        short.truncate(16 + 40);
        short[0..4].copy_from_slice(&(16u32 + 40).to_ne_bytes());
        let mut v = Runs::new(|_: WalkItem<'_>| {});
        let datagram = [first, short].concat();
        let err = parse_messages_with(&datagram, Some(1), "t", &mut Sink(&mut v)).unwrap_err();
        assert!(err.is_malformed(), "{err}");
    }
}
