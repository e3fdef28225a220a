//! HostWalk over made-up sockets.

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
