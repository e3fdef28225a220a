//! Parsers and readers over samples the kernel produced, kept in `tests/fixtures/`.
//!
//! The samples come from `capture_fixtures` below, which builds a known set of loopback
//! sockets in a private network namespace and saves what the kernel shows of them:
//!
//! ```text
//! CENSUS_CAPTURE_DIR=$PWD/tests/fixtures \
//!     cargo test -p conn-hygiene-census --test fixtures -- --ignored capture_fixtures
//! ```
//!
//! Sockets in the sample: 4 listeners (127.0.0.1, ::1, 127.0.0.1, ::1) plus one with
//! backlog 7 on 127.0.0.1 holding 3 connections it never accepted; 3 open connections; 4
//! closed client first (`TIME_WAIT`); 2 whose client shut down its side (`CLOSE_WAIT` and
//! `FIN_WAIT2`). Connection *i* goes to listener *i* mod 4.
// Off Linux only the pure parsers are tested; the readers report "unsupported" there.
#![cfg_attr(not(target_os = "linux"), allow(unused))]

mod support;

use std::path::{Path, PathBuf};

use conn_hygiene_census::counters::{parse_counter_table, parse_file_nr, parse_limits};
use conn_hygiene_census::{
    netlink, proc_net, process, Backend, Family, ProcRoot, SockInfo, StateCounts, TcpState,
    WalkOptions,
};
use conn_hygiene_test_support::{in_netns, run_in_netns};
use support::{Mix, MixSpec};

const SPEC: MixSpec = MixSpec {
    listeners: 4,
    established: 3,
    time_wait: 4,
    close_wait: 2,
    backlog: 7,
    queued: 3,
};

/// The pid the sample process's files are stored under.
const PID: u32 = 4242;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn root() -> ProcRoot {
    ProcRoot::new(dir().join("proc"))
}

fn counts(pairs: &[(TcpState, u64)]) -> StateCounts {
    let mut c = StateCounts::new();
    for (s, n) in pairs {
        c.set(*s, *n);
    }
    c
}

fn expected_v4() -> StateCounts {
    use TcpState::*;
    counts(&[
        (Listen, 3),
        (Established, 2 * 2 + 2 * 3),
        (TimeWait, 2),
        (CloseWait, 1),
        (FinWait2, 1),
    ])
}

fn expected_v6() -> StateCounts {
    use TcpState::*;
    counts(&[
        (Listen, 2),
        (Established, 2),
        (TimeWait, 2),
        (CloseWait, 1),
        (FinWait2, 1),
    ])
}

fn read(name: &str) -> String {
    std::fs::read_to_string(dir().join(name)).unwrap()
}

fn read_bytes(name: &str) -> Vec<u8> {
    std::fs::read(dir().join(name)).unwrap()
}

// ---------------------------------------------------------------- /proc/net/tcp, tcp6

#[cfg(target_endian = "little")]
#[test]
fn proc_tables_parse() {
    for (file, family, expected) in [
        ("proc/net/tcp", Family::Ipv4, expected_v4()),
        ("proc/net/tcp6", Family::Ipv6, expected_v6()),
    ] {
        let mut c = StateCounts::new();
        let mut all = Vec::new();
        let summary = proc_net::parse_table(&read(file), family, |s| {
            c.record(s.state);
            all.push(*s);
        })
        .unwrap();
        assert_eq!(c, expected, "{file}");
        assert_eq!(summary.sockets, expected.total());
        for s in &all {
            assert_eq!(s.family, family);
            assert!(s.local.ip().is_loopback(), "{s:?}");
            if s.state == TcpState::TimeWait {
                assert_eq!((s.inode, s.uid), (0, 0));
            }
            if s.state == TcpState::Listen {
                assert!(s.remote.ip().is_unspecified());
            }
        }
        // The never-accepting listener holds 3 in its queue.
        if family == Family::Ipv4 {
            let queued: Vec<_> = all
                .iter()
                .filter(|s| s.state == TcpState::Listen && s.rqueue > 0)
                .collect();
            assert_eq!(queued.len(), 1);
            assert_eq!(queued[0].rqueue, 3);
        }
    }
}

#[cfg(all(target_os = "linux", target_endian = "little"))]
#[test]
fn proc_tables_through_the_walk() {
    let opts = WalkOptions::new().backend(Backend::Proc).proc_root(root());
    // Smallest buffer: lines cross buffer boundaries many times.
    let small = opts.clone().buffer_size(0);
    for opts in [opts, small] {
        let c = conn_hygiene_census::count_states(&opts).unwrap();
        assert_eq!(c, expected_v4() + expected_v6());
    }
}

#[test]
fn corrupted_proc_table_is_an_error() {
    let text = read("proc/net/tcp");
    let mut lines: Vec<&str> = text.lines().collect();
    let cut = &lines[2][..40];
    lines[2] = cut;
    let err = proc_net::parse_table(&lines.join("\n"), Family::Ipv4, |_| ()).unwrap_err();
    assert!(err.is_malformed());
    assert!(err.to_string().contains("line 3"), "{err}");
}

// ---------------------------------------------------------------- netlink

fn parse_dump(
    bytes: &[u8],
) -> Result<(StateCounts, Vec<SockInfo>, bool), conn_hygiene_census::CensusError> {
    let mut c = StateCounts::new();
    let mut all = Vec::new();
    let summary = netlink::parse_datagram(bytes, |s| {
        c.record(s.state);
        all.push(*s);
    })?;
    Ok((c, all, summary.done))
}

#[cfg(target_endian = "little")]
#[test]
fn netlink_dumps_parse_and_match_proc() {
    for (file, table, family, expected) in [
        (
            "sock_diag_inet.bin",
            "proc/net/tcp",
            Family::Ipv4,
            expected_v4(),
        ),
        (
            "sock_diag_inet6.bin",
            "proc/net/tcp6",
            Family::Ipv6,
            expected_v6(),
        ),
    ] {
        let (c, mut by_netlink, done) = parse_dump(&read_bytes(file)).unwrap();
        assert!(done, "{file} ends with NLMSG_DONE");
        assert_eq!(c, expected, "{file}");
        assert!(by_netlink.iter().all(|s| s.family == family));

        // Netlink gives the listeners' queue maximum; /proc does not.
        let backlog: Vec<_> = by_netlink
            .iter()
            .filter(|s| s.state == TcpState::Listen && s.rqueue > 0)
            .collect();
        if family == Family::Ipv4 {
            assert_eq!((backlog[0].rqueue, backlog[0].wqueue), (3, 7));
        }
        for s in &mut by_netlink {
            if s.state == TcpState::Listen {
                s.wqueue = 0;
            }
        }
        let mut by_proc = Vec::new();
        proc_net::parse_table(&read(table), family, |s| by_proc.push(*s)).unwrap();
        let key = |s: &SockInfo| (s.state, s.local, s.remote, s.inode);
        by_netlink.sort_by_key(key);
        by_proc.sort_by_key(key);
        assert_eq!(by_netlink, by_proc, "{file} against {table}");
    }
}

#[test]
fn truncated_netlink_dump_never_panics_nor_lies() {
    let bytes = read_bytes("sock_diag_inet.bin");
    let total = expected_v4().total();
    for cut in 0..bytes.len() {
        match parse_dump(&bytes[..cut]) {
            // A cut on a message boundary parses, but the dump is visibly unfinished:
            // no NLMSG_DONE.
            Ok((c, _, done)) => {
                assert!(!done, "cut at {cut} still reached NLMSG_DONE");
                assert!(c.total() <= total);
            }
            Err(e) => assert!(e.is_malformed(), "cut at {cut}: {e}"),
        }
    }
}

#[test]
fn corrupted_netlink_dump_never_panics() {
    let bytes = read_bytes("sock_diag_inet6.bin");
    for i in 0..bytes.len() {
        for flip in [0xff, 0x80, 0x01] {
            let mut b = bytes.clone();
            b[i] ^= flip;
            let _ = parse_dump(&b);
        }
    }
    // Garbage in place of the first message header.
    let mut b = bytes.clone();
    b[..16].copy_from_slice(&[0xAB; 16]);
    assert!(parse_dump(&b).unwrap_err().is_malformed());
    // An NLMSG_ERROR (EPERM) in place of the dump.
    let mut err = Vec::new();
    err.extend_from_slice(&36u32.to_ne_bytes());
    err.extend_from_slice(&2u16.to_ne_bytes());
    err.extend_from_slice(&0u16.to_ne_bytes());
    err.extend_from_slice(&bytes[8..16]);
    err.extend_from_slice(&(-1i32).to_ne_bytes());
    err.extend_from_slice(&bytes[..16]);
    let e = parse_dump(&err).unwrap_err();
    assert!(e.is_kernel_error() && e.is_permission_denied(), "{e}");
}

// ---------------------------------------------------------------- counters, sysctls

#[cfg(target_os = "linux")]
#[test]
fn sockstat_sample() {
    let s = root().sockstat().unwrap();
    assert_eq!(s.tcp_tw, SPEC.time_wait as u64);
    // In the hash tables: IPv4 listeners and connections (TIME_WAIT excluded).
    let v4 = expected_v4();
    assert_eq!(s.tcp_inuse, v4.total() - v4[TcpState::TimeWait]);
    let v6 = expected_v6();
    assert_eq!(s.tcp6_inuse, Some(v6.total() - v6[TcpState::TimeWait]));
    assert!(s.sockets_used.is_some());
}

#[cfg(target_os = "linux")]
#[test]
fn snmp_and_netstat_samples() {
    let snmp = parse_counter_table(&read("proc/net/snmp")).unwrap();
    let netstat = parse_counter_table(&read("proc/net/netstat")).unwrap();
    assert_eq!(snmp.get("Tcp", "MaxConn"), Some(-1));
    assert!(netstat.get("TcpExt", "ListenOverflows").is_some());
    assert!(netstat.len() > 100);
    assert!(snmp
        .iter()
        .any(|(g, f, _)| g == "Udp" && f == "InDatagrams"));

    let tcp = root().tcp_counters().unwrap();
    let all = expected_v4() + expected_v6();
    assert_eq!(
        tcp.curr_estab,
        Some(all[TcpState::Established] + all[TcpState::CloseWait])
    );
    // Every connect of the sample: open, TIME_WAIT, CLOSE_WAIT and queued connections.
    let connects = (SPEC.established + SPEC.time_wait + SPEC.close_wait + SPEC.queued) as u64;
    assert_eq!(tcp.active_opens, Some(connects));
    assert_eq!(tcp.passive_opens, Some(connects));
    assert_eq!(tcp.listen_overflows, Some(0));
    for field in [
        tcp.syncookies_sent,
        tcp.syncookies_recv,
        tcp.syncookies_failed,
        tcp.abort_on_data,
        tcp.abort_on_close,
        tcp.abort_on_memory,
        tcp.abort_on_timeout,
        tcp.abort_on_linger,
        tcp.abort_failed,
        tcp.time_wait_overflow,
        tcp.listen_drops,
        tcp.estab_resets,
        tcp.out_rsts,
        tcp.retrans_segs,
        tcp.attempt_fails,
        tcp.in_errs,
    ] {
        assert_eq!(field, Some(0), "{tcp:?}");
    }
}

#[cfg(target_os = "linux")]
#[test]
fn file_nr_and_limits_samples() {
    let f = parse_file_nr(&read("proc/sys/fs/file-nr")).unwrap();
    assert!(f.allocated > 0 && f.max >= f.allocated);
    assert_eq!(root().file_nr().unwrap(), f);

    let limits = parse_limits(&read(&format!("proc/{PID}/limits"))).unwrap();
    assert_eq!(limits.iter().count(), 16);
    let nofile = limits.open_files().unwrap();
    assert!(nofile.soft.is_some() && nofile.hard >= nofile.soft);
    assert_eq!(nofile.unit.as_deref(), Some("files"));
    assert_eq!(limits.get("Max cpu time").unwrap().soft, None);

    let usage = root().fd_usage(PID).unwrap();
    assert_eq!(usage.soft_limit, nofile.soft);
    assert!(usage.open >= (SPEC.listeners + 1) as u64);
}

#[cfg(target_os = "linux")]
#[test]
fn sysctl_sample() {
    let s = root().sysctls().unwrap();
    assert_eq!(s.tcp_tw_reuse, Some(0));
    let (lo, hi) = s.ip_local_port_range.unwrap();
    assert!(lo < hi);
    assert!(s.somaxconn.unwrap() >= 128);
    assert!(s.tcp_max_tw_buckets.is_some());
    assert!(s.tcp_fin_timeout.is_some());
    assert!(s.tcp_max_syn_backlog.is_some());
    assert!(s.tcp_syncookies.is_some());
    assert!(s.tcp_keepalive_time.is_some());
    assert!(s.tcp_keepalive_intvl.is_some());
    assert!(s.tcp_keepalive_probes.is_some());
    assert!(!s.tcp_congestion_control.unwrap().is_empty());
}

#[cfg(target_os = "linux")]
#[test]
fn missing_files_are_none_or_typed_errors() {
    let empty = ProcRoot::new(dir().join("no-such-proc"));
    let s = empty.sysctls().unwrap();
    assert_eq!(s, Default::default(), "every sysctl absent");
    assert_eq!(empty.conntrack().unwrap(), None);
    let e = empty.sockstat().unwrap_err();
    assert!(e.is_not_found());
    assert!(e.to_string().contains("no-such-proc/net/sockstat"), "{e}");
    let e = conn_hygiene_census::count_states(
        &WalkOptions::new().backend(Backend::Proc).proc_root(empty),
    )
    .unwrap_err();
    assert!(e.is_not_found(), "{e}");
}

// ---------------------------------------------------------------- processes

#[cfg(all(target_os = "linux", target_endian = "little"))]
#[test]
fn process_join_on_sample() {
    let opts = WalkOptions::new().backend(Backend::Proc).proc_root(root());
    let inodes = root().socket_inodes(PID).unwrap();
    let mine = Mix::expected_mine_for(SPEC);
    assert_eq!(inodes.len() as u64, mine.total());
    assert_eq!(process::process_state_counts(&opts, PID).unwrap(), mine);

    let holders = root().socket_holders().unwrap();
    assert_eq!(holders.len(), inodes.len());
    for inode in inodes.as_slice() {
        let h = holders.get(*inode);
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].pid, PID);
        assert_eq!(&*h[0].comm, read(&format!("proc/{PID}/comm")).trim_end());
    }
}

#[test]
fn ss_state_names_parse() {
    let text = read("ss-ant.txt");
    let c: StateCounts = text
        .lines()
        .map(|l| {
            l.split_whitespace()
                .next()
                .unwrap()
                .parse::<TcpState>()
                .unwrap()
        })
        .collect();
    assert_eq!(c, expected_v4() + expected_v6());
}

// ---------------------------------------------------------------- capture

/// Writes the samples above into `$CENSUS_CAPTURE_DIR`. Not run by default.
#[cfg(target_os = "linux")]
#[test]
#[ignore = "writes fixtures; run with CENSUS_CAPTURE_DIR set"]
fn capture_fixtures() {
    let out = PathBuf::from(
        std::env::var_os("CENSUS_CAPTURE_DIR").expect("set CENSUS_CAPTURE_DIR to the output dir"),
    );
    if !in_netns() {
        return run_in_netns("capture_fixtures", &[]);
    }
    let mix = Mix::build(SPEC);
    let proc_out = out.join("proc");
    let copy = |rel: &str| {
        let to = proc_out.join(rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(Path::new("/proc").join(rel), &to)
            .unwrap_or_else(|e| panic!("copy /proc/{rel}: {e}"));
    };
    for rel in [
        "net/tcp",
        "net/tcp6",
        "net/sockstat",
        "net/sockstat6",
        "net/snmp",
        "net/netstat",
        "sys/fs/file-nr",
        "sys/net/core/somaxconn",
    ] {
        copy(rel);
    }
    for name in [
        "ip_local_port_range",
        "tcp_tw_reuse",
        "tcp_max_tw_buckets",
        "tcp_fin_timeout",
        "tcp_max_syn_backlog",
        "tcp_syncookies",
        "tcp_keepalive_time",
        "tcp_keepalive_intvl",
        "tcp_keepalive_probes",
        "tcp_congestion_control",
    ] {
        copy(&format!("sys/net/ipv4/{name}"));
    }
    // This process's limits, name and descriptors, under a fixed pid.
    let me = proc_out.join(PID.to_string());
    let fd_out = me.join("fd");
    let _ = std::fs::remove_dir_all(&fd_out);
    std::fs::create_dir_all(&fd_out).unwrap();
    std::fs::copy("/proc/self/limits", me.join("limits")).unwrap();
    std::fs::copy("/proc/self/comm", me.join("comm")).unwrap();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap() {
        let entry = entry.unwrap();
        if let Ok(target) = std::fs::read_link(entry.path()) {
            std::os::unix::fs::symlink(target, fd_out.join(entry.file_name())).unwrap();
        }
    }
    for (family, name) in [
        (Family::Ipv4, "sock_diag_inet.bin"),
        (Family::Ipv6, "sock_diag_inet6.bin"),
    ] {
        let mut bytes = Vec::new();
        netlink::dump_raw(family, Default::default(), 64 * 1024, |d| {
            bytes.extend_from_slice(d)
        })
        .unwrap();
        std::fs::write(out.join(name), bytes).unwrap();
    }
    let ss = std::process::Command::new("ss")
        .arg("-Hant")
        .output()
        .unwrap();
    std::fs::write(out.join("ss-ant.txt"), ss.stdout).unwrap();
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    std::fs::write(
        out.join("CAPTURE.txt"),
        format!(
            "kernel {}\nsockets {}\n",
            release.trim(),
            conn_hygiene_census::count_states(&WalkOptions::new()).unwrap()
        ),
    )
    .unwrap();
    drop(mix);
}
