//! `sample_host` on real sockets, in a private network namespace, judged by `evaluate`.
#![cfg(target_os = "linux")]

use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use conn_hygiene_census::findings::{evaluate, sample_host, Check, Severity, Thresholds};
use conn_hygiene_census::{count_states, TcpState, WalkOptions, Walker};
use conn_hygiene_test_support::{in_netns, run_in_netns, wait_until};

const TIME_WAIT: usize = 170;
const CLOSE_WAIT: usize = 3;

#[test]
fn sample_host_in_netns() {
    run_in_netns(
        "inner_sample_host",
        &["net.ipv4.ip_local_port_range=40000 40199"],
    );
}

#[test]
#[ignore = "runs inside a private network namespace, started by sample_host_in_netns"]
fn inner_sample_host() {
    if !in_netns() {
        return sample_host_in_netns();
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let dest: SocketAddr = listener.local_addr().unwrap();
    for _ in 0..TIME_WAIT {
        let client = TcpStream::connect(dest).unwrap();
        let (server, _) = listener.accept().unwrap();
        drop(client);
        drop(server);
    }
    let close_wait: Vec<(TcpStream, TcpStream)> = (0..CLOSE_WAIT)
        .map(|_| {
            let client = TcpStream::connect(dest).unwrap();
            let (server, _) = listener.accept().unwrap();
            client.shutdown(Shutdown::Write).unwrap();
            (client, server)
        })
        .collect();
    wait_until("the crafted states", Duration::from_secs(10), || {
        let c = count_states(&WalkOptions::new()).unwrap();
        c[TcpState::TimeWait] == TIME_WAIT as u64
            && c[TcpState::CloseWait] == CLOSE_WAIT as u64
            && c[TcpState::FinWait2] == CLOSE_WAIT as u64
    });

    let me = std::process::id();
    let mut walker = Walker::new(WalkOptions::new());
    let sample = sample_host(&mut walker, None).unwrap();
    let s = sample.states;
    assert_eq!(s[TcpState::TimeWait], TIME_WAIT as u64);
    assert_eq!(s[TcpState::CloseWait], CLOSE_WAIT as u64);
    assert_eq!(s[TcpState::Listen], 1);
    assert_eq!(s.total(), (TIME_WAIT + 2 * CLOSE_WAIT + 1) as u64);
    // Every client end (TIME_WAIT and FIN_WAIT2) uses a port of the range toward the
    // listener; the server ends share the listener's port and do not count.
    assert_eq!(sample.port_usage.len(), 1, "{:?}", sample.port_usage);
    assert_eq!(sample.port_usage[0].destination, dest);
    assert_eq!(sample.port_usage[0].used, (TIME_WAIT + CLOSE_WAIT) as u64);
    assert_eq!(sample.close_wait_by_process.len(), 1);
    let holder = &sample.close_wait_by_process[0];
    assert_eq!((holder.pid, holder.count), (me, CLOSE_WAIT as u64));
    assert!(!holder.comm.is_empty());
    assert!(sample.process_fds.iter().any(|p| p.pid == me));
    assert_eq!(sample.listeners.len(), 1);
    assert_eq!(sample.listeners[0].local, dest);
    assert!(sample.listeners[0].queue_max.is_some());
    assert_eq!(sample.sysctls.ip_local_port_range, Some((40_000, 40_199)));
    assert!(sample.counters.is_some() && sample.file_nr.is_some());

    // 200 ports, 173 in use toward one destination: 13.5 % left, a warning; so is the
    // narrow range, and tcp_tw_reuse = 0 where it would help.
    let again = sample_host(&mut walker, None).unwrap();
    let report = evaluate(&again, Some(&sample), &Thresholds::default());
    let headroom: Vec<_> = report.of(Check::LocalPortHeadroom).collect();
    assert_eq!(headroom.len(), 1);
    assert_eq!(headroom[0].severity, Severity::Warning);
    assert_eq!(
        headroom[0].subject.as_deref(),
        Some(dest.to_string().as_str())
    );
    for check in [Check::LocalPortRange, Check::TcpTwReuse] {
        assert_eq!(report.of(check).next().unwrap().severity, Severity::Warning);
    }
    assert_eq!(
        report.of(Check::CloseWaitGrowing).next().unwrap().severity,
        Severity::Ok
    );
    assert_eq!(report.status(), Severity::Warning, "{:#?}", report.findings);

    // Scoped to this process.
    let mine = sample_host(&mut walker, Some(me)).unwrap();
    assert_eq!(mine.pid, Some(me));
    assert_eq!(mine.close_wait_by_process.len(), 1);
    assert_eq!(mine.close_wait_by_process[0].count, CLOSE_WAIT as u64);
    assert_eq!(mine.process_fds.len(), 1);
    assert!(mine.process_fds[0].usage.open >= (2 * CLOSE_WAIT + 1) as u64);
    let err = sample_host(&mut walker, Some(u32::MAX)).unwrap_err();
    assert!(err.is_not_found(), "{err}");
    drop(close_wait);
}
