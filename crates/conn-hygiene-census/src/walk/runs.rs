//! A walk by runs ([`Walker::walk_runs_keeping_time_wait`](super::Walker::walk_runs_keeping_time_wait)):
//! `TIME_WAIT` sockets that the kernel lists one after another and that differ only in their
//! local port are handed over as one run, read once.
//!
//! Every `TIME_WAIT` socket toward one destination from one source address, no process
//! holding it, is the same to a census but for its local port: a service's own toward its
//! upstream, often most of a busy host's sockets, come in long runs (one destination, one
//! source). The netlink messages of a run are compared as bytes and not read.

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
    /// local port: one per port of `local_ports` (never empty), in the kernel's order, the
    /// first `like`'s own. Their detail (the timewait timer) is not kept.
    TimeWaitRun {
        /// The first socket of the run.
        like: &'a SockInfo,
        /// The local port of each socket of the run.
        local_ports: &'a [u16],
    },
}

impl WalkItem<'_> {
    /// The most sockets one [`WalkItem::TimeWaitRun`] holds; a longer run comes as several.
    pub const MAX_RUN: usize = 4096;

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

/// The visitor of a walk by runs: holds the run in progress, hands it over when a socket
/// that does not belong to it comes, when it is full, and when a dump ends.
pub(crate) struct Runs<F> {
    f: F,
    /// The run in progress: its key, first socket and local ports (none: no run).
    key: RunKey,
    like: SockInfo,
    ports: Vec<u16>,
}

impl<F: FnMut(WalkItem<'_>)> Runs<F> {
    pub(crate) fn new(f: F) -> Self {
        Runs {
            f,
            key: [0; 7],
            like: SockInfo::new(
                TcpState::TimeWait,
                ([0, 0, 0, 0], 0).into(),
                ([0, 0, 0, 0], 0).into(),
            ),
            ports: Vec::with_capacity(WalkItem::MAX_RUN),
        }
    }
}

impl<F: FnMut(WalkItem<'_>)> Visit for Runs<F> {
    #[inline(always)]
    fn take_raw(&mut self, p: &[u8]) -> bool {
        if self.ports.is_empty()
            || self.ports.len() >= WalkItem::MAX_RUN
            || p.len() < INET_DIAG_MSG_LEN
            || p[STATE] != KERNEL_TIME_WAIT
            || run_key(p) != self.key
        {
            return false;
        }
        self.ports.push(u16::from_be_bytes([p[4], p[5]]));
        true
    }

    #[inline(always)]
    fn socket(&mut self, s: &SockInfo, payload: Option<&[u8]>) {
        self.flush();
        match payload {
            // A run starts; what `take_raw` compares comes from the message.
            Some(p)
                if s.state == TcpState::TimeWait
                    && s.inode == 0
                    && p.len() >= INET_DIAG_MSG_LEN
                    && p[STATE] == KERNEL_TIME_WAIT =>
            {
                self.key = run_key(p);
                self.like = *s;
                self.ports.push(s.local.port());
            }
            _ => (self.f)(WalkItem::Socket(s, RawDetail::new(payload))),
        }
    }

    fn flush(&mut self) {
        if !self.ports.is_empty() {
            (self.f)(WalkItem::TimeWaitRun {
                like: &self.like,
                local_ports: &self.ports,
            });
            self.ports.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::netlink::{parse_messages_with, MessageSink};

    /// A `Runs` as the netlink parser's sink, as a walk sets it up.
    struct Sink<'a, V>(&'a mut V);

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
    fn message(state: u8, local: SocketAddr, remote: SocketAddr, inode: u32, n: u32) -> Vec<u8> {
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

    fn addr(s: &str) -> SocketAddr {
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

    /// Made-up messages: runs toward two destinations from two sources, with an established
    /// socket, a held `TIME_WAIT` one and ones toward another port in between, cut into
    /// datagrams anywhere: the sockets handed over are those of the messages, in order, and
    /// a run is as long as the kernel's run of messages alike.
    #[test]
    fn runs_hand_over_each_socket_in_order() {
        let dests = [addr("10.0.0.5:5432"), addr("10.0.0.6:6379")];
        let sources = ["10.0.0.1", "10.0.0.2"];
        let mut messages = Vec::new();
        let mut expected = Vec::new();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut n = 0u32;
        for _ in 0..300 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let (state, inode) = match seed % 11 {
                0 => (1, 77),                // established, held
                1 => (KERNEL_TIME_WAIT, 78), // TIME_WAIT with an inode: never one of a run
                _ => (KERNEL_TIME_WAIT, 0),
            };
            let mut remote = dests[(seed >> 8) as usize % 2];
            if (seed >> 12) % 13 == 0 {
                remote.set_port(remote.port() + 1);
            }
            let run = 1 + (seed >> 16) % 40;
            for _ in 0..run {
                n += 1;
                let local = addr(&format!(
                    "{}:{}",
                    sources[(seed >> 24) as usize % 2],
                    1024 + n
                ));
                let m = message(state, local, remote, inode, n);
                let mut s = SockInfo::new(TcpState::from_kernel(state).unwrap(), local, remote);
                s.inode = u64::from(inode);
                expected.push(s);
                messages.push(m);
            }
        }
        // Datagrams of 1 to 50 messages.
        let mut datagrams = Vec::new();
        let mut rest = &messages[..];
        while !rest.is_empty() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let k = (1 + seed % 50).min(rest.len() as u64) as usize;
            datagrams.push(rest[..k].concat());
            rest = &rest[k..];
        }
        let (seen, runs) = by_runs(&datagrams);
        assert_eq!(seen, expected);
        // The runs are the kernel's: maximal stretches of alike unheld TIME_WAIT messages.
        let mut want = Vec::new();
        let mut i = 0;
        while i < expected.len() {
            let s = expected[i];
            if s.state != TcpState::TimeWait || s.inode != 0 {
                i += 1;
                continue;
            }
            let mut j = i + 1;
            while j < expected.len()
                && expected[j].state == TcpState::TimeWait
                && expected[j].inode == 0
                && expected[j].remote == s.remote
                && expected[j].local.ip() == s.local.ip()
            {
                j += 1;
            }
            want.push(j - i);
            i = j;
        }
        assert_eq!(runs, want);
        assert!(runs.iter().any(|&r| r > 20), "some long runs: {runs:?}");
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
