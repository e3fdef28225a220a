//! Exact counts over real sockets, in a private network namespace that holds only them.
#![cfg(target_os = "linux")]

mod support;

use std::collections::HashMap;
use std::net::TcpStream;
use std::time::Duration;

use conn_hygiene_census::findings::HostWalk;
use conn_hygiene_census::{
    count_states, listeners, process, walk, Backend, Family, ProcRoot, SockInfo, SocketFilter,
    Source, StateCounts, TcpState, WalkItem, WalkOptions, Walker,
};
use conn_hygiene_test_support::{in_netns, run_in_netns, wait_until};
use support::{ss_counts, Mix, MixSpec};

const SPEC: MixSpec = MixSpec {
    listeners: 4,
    established: 6,
    time_wait: 25,
    close_wait: 5,
    backlog: 7,
    queued: 3,
};

#[test]
fn exact_counts_in_netns() {
    run_in_netns("inner_exact_counts", &[]);
}

#[test]
#[ignore = "runs inside a private network namespace, started by exact_counts_in_netns"]
fn inner_exact_counts() {
    if !in_netns() {
        return exact_counts_in_netns();
    }
    let mix = Mix::build(SPEC);
    let expected = mix.expected();

    // Netlink, forced, and what it says about itself.
    let netlink = WalkOptions::new().backend(Backend::Netlink);
    let mut walker = Walker::new(netlink.clone());
    let (counts, stats) = walker.count_states().unwrap();
    assert_eq!(counts, expected, "netlink");
    assert_eq!(stats.ipv4, Some(Source::Netlink));
    assert_eq!(stats.ipv6, Some(Source::Netlink));
    assert!(stats.fallback.is_none());
    // TIME_WAIT is the kernel's count, not walked.
    assert_eq!(stats.timewait_counted, Some(SPEC.time_wait as u64));
    assert_eq!(stats.sockets, expected.total() - SPEC.time_wait as u64);
    assert!(
        stats.datagrams >= 1,
        "at least the answer that ends the dump"
    );
    // The walker is reusable and gives the same answer.
    assert_eq!(walker.count_states().unwrap().0, expected);
    // It holds its netlink socket until dropped.
    drop(walker);
    assert_eq!(count_states(&WalkOptions::new()).unwrap(), expected, "auto");

    // The /proc tables agree socket for socket, save the listeners' queue maximum.
    let proc_opts = WalkOptions::new().backend(Backend::Proc);
    assert_eq!(count_states(&proc_opts).unwrap(), expected, "/proc");
    let mut by_netlink = sockets(&netlink);
    let by_proc = sockets(&proc_opts);
    for s in &mut by_netlink {
        if s.state == TcpState::Listen {
            s.wqueue = 0;
        }
    }
    assert_eq!(by_netlink, by_proc);

    // `ss` agrees.
    assert_eq!(ss_counts(), expected, "ss -ant");

    keeping_time_wait(&mix, &expected);

    // A state filter is applied by the kernel and by the /proc parser alike.
    for backend in [Backend::Netlink, Backend::Proc] {
        let only_tw = WalkOptions::new()
            .backend(backend)
            .states(TcpState::TimeWait);
        let c = count_states(&only_tw).unwrap();
        assert_eq!(c[TcpState::TimeWait], SPEC.time_wait as u64, "{backend:?}");
        assert_eq!(c.total(), SPEC.time_wait as u64, "{backend:?}");
        let v6_only = WalkOptions::new().backend(backend).ipv4(false);
        let listen6 = count_states(&v6_only).unwrap()[TcpState::Listen];
        assert_eq!(listen6, (SPEC.listeners / 2) as u64, "{backend:?}");
    }

    // The listener that never accepts: 3 queued, maximum 7.
    let backlog_addr = mix.backlog_listener.local_addr().unwrap();
    let all = listeners(&WalkOptions::new()).unwrap();
    assert_eq!(all.len(), SPEC.listeners + 1);
    let l = all.iter().find(|l| l.local == backlog_addr).unwrap();
    assert_eq!(l.queue_len, SPEC.queued as u32);
    assert_eq!(l.queue_max, Some(SPEC.backlog as u32));
    assert_eq!(l.is_full(), Some(false));
    for other in all.iter().filter(|l| l.local != backlog_addr) {
        assert_eq!(other.queue_len, 0);
    }
    let from_proc = listeners(&proc_opts).unwrap();
    let l = from_proc.iter().find(|l| l.local == backlog_addr).unwrap();
    assert_eq!((l.queue_len, l.queue_max), (SPEC.queued as u32, None));

    // This process's sockets, through its descriptors.
    let pid = std::process::id();
    let mine = process::process_state_counts(&WalkOptions::new(), pid).unwrap();
    assert_eq!(mine, mix.expected_mine());
    let inodes = ProcRoot::default().socket_inodes(pid).unwrap();
    assert_eq!(inodes.len() as u64, mix.expected_mine().total());

    // Who holds the CLOSE_WAIT sockets: this process, and nobody else.
    let holders = ProcRoot::default().socket_holders().unwrap();
    let mut close_wait = 0;
    walk(&WalkOptions::new().states(TcpState::CloseWait), |s| {
        let h = holders.get(s.inode);
        assert_eq!(h.len(), 1, "{s:?}");
        assert_eq!(h[0].pid, pid);
        assert!(!h[0].comm.is_empty());
        close_wait += 1;
    })
    .unwrap();
    assert_eq!(close_wait, SPEC.close_wait);

    // Cheap counters agree where they count the same thing.
    let root = ProcRoot::default();
    let sockstat = root.sockstat().unwrap();
    assert_eq!(sockstat.tcp_tw, SPEC.time_wait as u64);
    let tcp = root.tcp_counters().unwrap();
    assert_eq!(
        tcp.curr_estab,
        Some(expected[TcpState::Established] + expected[TcpState::CloseWait])
    );
    let sysctls = root.sysctls().unwrap();
    assert_eq!(sysctls.tcp_tw_reuse, Some(0));
    assert!(sysctls.somaxconn.unwrap() >= SPEC.backlog as u32);

    // Closing the CLOSE_WAIT ends: they go through LAST_ACK and are gone.
    drop(mix.close_wait);
    wait_until("CLOSE_WAIT to drain", Duration::from_secs(10), || {
        let c = count_states(&netlink).unwrap();
        c[TcpState::CloseWait] == 0 && c[TcpState::LastAck] == 0
    });

    // Connections closed by a client whose server never closes: the client's socket, orphaned
    // in FIN_WAIT2, becomes a timewait socket the kernel's `tw` count includes and `ss` shows
    // as FIN-WAIT-2. The counts still agree with `ss`, both ways of counting.
    const ORPHANS: usize = 4;
    let held: Vec<TcpStream> = (0..ORPHANS)
        .map(|i| {
            let l = &mix.listeners[i % mix.listeners.len()];
            let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
            let (server, _) = l.accept().unwrap();
            drop(client);
            server
        })
        .collect();
    wait_until(
        "orphaned FIN_WAIT2 sockets",
        Duration::from_secs(10),
        || ss_counts()[TcpState::FinWait2] == ORPHANS as u64,
    );
    let by_ss = ss_counts();
    let tw = root.sockstat().unwrap().tcp_tw;
    assert_eq!(
        tw,
        by_ss[TcpState::TimeWait] + ORPHANS as u64,
        "the kernel's tw counts timewait sockets in FIN_WAIT2 too"
    );
    let (counts, stats) = Walker::new(netlink.clone()).count_states().unwrap();
    assert_eq!(counts, by_ss, "netlink with the kernel's count");
    assert_eq!(stats.timewait_counted, Some(by_ss[TcpState::TimeWait]));
    assert_eq!(count_states(&proc_opts).unwrap(), by_ss, "/proc");
    let only_tw = WalkOptions::new().states(TcpState::TimeWait);
    assert_eq!(
        count_states(&only_tw).unwrap().total(),
        by_ss[TcpState::TimeWait]
    );
    let no_tw = WalkOptions::new().states(TcpState::FinWait2);
    assert_eq!(count_states(&no_tw).unwrap().total(), ORPHANS as u64);
    drop(held);
}

/// `Walker::walk_detailed_keeping_time_wait`, and the same walk by runs: every other socket as
/// a full walk gives it and the `TIME_WAIT` sockets the filter keeps, each once, with the
/// count of all of them (asked for with the kernel's filter); or every socket (in one pass).
/// A walker's first walk takes the filter, its second the one pass, then the one that cost
/// less: each walk is checked by the way it took.
fn keeping_time_wait(mix: &Mix, expected: &StateCounts) {
    let all = sockets(&WalkOptions::new());
    let tw_total = expected[TcpState::TimeWait];
    let toward = |which: &[usize]| {
        which.iter().fold(SocketFilter::new(), |f, &i| {
            f.remote(mix.listeners[i].local_addr().unwrap())
        })
    };
    let others: Vec<SockInfo> = all
        .iter()
        .filter(|s| s.state != TcpState::TimeWait)
        .copied()
        .collect();
    let sort = |v: &mut Vec<SockInfo>| {
        v.sort_by_key(|s| (s.family, s.state, s.local, s.remote, s.inode));
    };
    // What a walk keeping `keep` handed over, by the way it took: `true` for the filter.
    let check = |keep: &SocketFilter, got: &[SockInfo], counted: Option<u64>, what: &str| {
        let (rest, tw): (Vec<SockInfo>, Vec<SockInfo>) =
            got.iter().partition(|s| s.state != TcpState::TimeWait);
        match counted {
            Some(n) => {
                assert_eq!(n, tw_total, "{what}: all counted");
                assert_eq!(rest, others, "{what}: every other socket");
                let want: Vec<SockInfo> = all
                    .iter()
                    .filter(|s| s.state == TcpState::TimeWait && keep.matches(s))
                    .copied()
                    .collect();
                assert_eq!(tw, want, "{what}: the kept TIME_WAIT sockets, each once");
            }
            None => assert_eq!(got, all, "{what}: one pass, every socket"),
        }
        let mut host = HostWalk::new(None);
        got.iter().for_each(|s| {
            host.visit(s);
        });
        let mut stats = conn_hygiene_census::WalkStats::default();
        stats.timewait_counted = counted;
        assert_eq!(host.finish(&stats).states, *expected, "{what}");
        counted.is_some()
    };
    let opts = WalkOptions::new().backend(Backend::Netlink).tcp_info(true);
    let (mut walker, mut by_runs) = (Walker::new(opts.clone()), Walker::new(opts.clone()));
    let mut walk_none = Walker::new(opts);
    let mut walk_keeping = |keep: &SocketFilter, what: &str| {
        let mut got = Vec::new();
        let stats = walker
            .walk_detailed_keeping_time_wait(keep, |s, detail| {
                assert!(detail.is_some(), "{s:?}");
                got.push(*s)
            })
            .unwrap();
        sort(&mut got);
        let filtered = check(keep, &got, stats.timewait_counted, what);
        // The same by runs: every TIME_WAIT socket in a run.
        let (mut in_runs, mut time_wait_alone) = (Vec::new(), 0);
        let run_stats = by_runs
            .walk_runs_keeping_time_wait(keep, |item| {
                if let WalkItem::Socket(s, _) = item {
                    time_wait_alone += u32::from(s.state == TcpState::TimeWait);
                }
                item.each(|s, _| in_runs.push(*s));
            })
            .unwrap();
        sort(&mut in_runs);
        check(keep, &in_runs, run_stats.timewait_counted, what);
        assert_eq!(
            time_wait_alone, 0,
            "{what}: every TIME_WAIT socket in a run"
        );
        filtered
    };

    // Two of the four listeners (one IPv6, one IPv4): 12 of the 25 TIME_WAIT sockets.
    let two = toward(&[1, 2]);
    assert_eq!(
        all.iter()
            .filter(|s| s.state == TcpState::TimeWait && two.matches(s))
            .count(),
        12
    );
    assert!(walk_keeping(&two, "first walk"), "the filter first");
    assert!(!walk_keeping(&two, "second walk"), "then one pass");
    // Nothing to keep: no TIME_WAIT socket comes, all are counted, whatever the costs.
    for _ in 0..3 {
        let mut got = Vec::new();
        let stats = walk_none
            .walk_detailed_keeping_time_wait(&SocketFilter::new(), |s, _| got.push(*s))
            .unwrap();
        sort(&mut got);
        assert_eq!((&got, stats.timewait_counted), (&others, Some(tw_total)));
    }
    // Then the cheaper way, and after 16 walks the other: both come up in 20 walks, with
    // every filter, each handing over what its way does.
    let (every, one) = (toward(&[0, 1, 2, 3]), toward(&[0]));
    let mut ways = Vec::new();
    for round in 0..20 {
        let keep = [&two, &every, &one][round % 3];
        ways.push(walk_keeping(keep, &format!("round {round}")));
    }
    assert!(ways.contains(&true) && ways.contains(&false), "{ways:?}");

    // From /proc: every socket, none counted.
    let mut from_proc = Walker::new(WalkOptions::new().backend(Backend::Proc));
    let mut n = 0u64;
    let stats = from_proc
        .walk_detailed_keeping_time_wait(&two, |_, _| n += 1)
        .unwrap();
    assert_eq!((n, stats.timewait_counted), (expected.total(), None));
}

/// Every socket, sorted, for comparing two backends.
fn sockets(opts: &WalkOptions) -> Vec<SockInfo> {
    let mut all = Vec::new();
    walk(opts, |s| all.push(*s)).unwrap();
    all.sort_by_key(|s| (s.family, s.state, s.local, s.remote, s.inode));
    all
}

#[test]
fn families_are_not_mixed() {
    // Host namespace: only checks that each walked family reports its own addresses.
    let _l4 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut seen = HashMap::new();
    walk(&WalkOptions::new(), |s| {
        assert_eq!(s.local.is_ipv4(), s.family == Family::Ipv4, "{s:?}");
        *seen.entry(s.family).or_insert(0) += 1;
    })
    .unwrap();
    assert!(seen.get(&Family::Ipv4).copied().unwrap_or(0) >= 1);
}
