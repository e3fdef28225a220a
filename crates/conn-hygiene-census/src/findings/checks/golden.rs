//! Every check's words, held against a recorded report: samples that take each check through
//! its branches, evaluated and printed, must print exactly `tests/fixtures/findings_report.txt`.
//! Set `UPDATE_FINDINGS_REPORT=1` to rewrite the file after a deliberate change.
// Samples are filled field by field, as code outside the crate must fill these
// `#[non_exhaustive]` structs.
#![allow(clippy::field_reassign_with_default)]

use std::fmt::Write as _;
use std::net::SocketAddr;

use super::testing::{counters, listener, sysctls_ok};
use crate::findings::{evaluate, HostSample, PortUse, ProcessCount, ProcessFd, Thresholds};
use crate::{Conntrack, FdUsage, FileNr, TcpState};

const RECORDED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/findings_report.txt"
);

fn fd(pid: u32, comm: &str, open: u64, limit: Option<u64>) -> ProcessFd {
    let mut u = FdUsage::default();
    u.open = open;
    u.soft_limit = limit;
    ProcessFd::new(pid, comm, u)
}

fn dest(last: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, last], 443))
}

/// Settings at the kernel's defaults, and file handles to spare.
fn quiet() -> HostSample {
    let mut s = sysctls_ok();
    s.counters = counters(5, 5, 5).counters;
    s.listeners = vec![listener(8080, 0, Some(511)), listener(443, 2, Some(4096))];
    s.process_fds = vec![fd(1, "init", 10, Some(1000)), fd(7, "nolimit", 9, None)];
    s.close_wait_by_process = vec![ProcessCount::new(7, "app", 3)];
    s.port_usage = vec![PortUse::new(dest(1), 100)];
    s
}

/// Everything at or beyond its levels.
fn loud() -> HostSample {
    let mut s = quiet();
    s.states.set(TcpState::TimeWait, 200_000);
    s.states.set(TcpState::CloseWait, 5_000);
    s.states.set(TcpState::SynRecv, 2_000);
    s.states.set(TcpState::FinWait2, 900);
    s.close_wait_by_process = vec![
        ProcessCount::new(42, "java", 4_000),
        ProcessCount::new(7, "app", 1_000),
        ProcessCount::new(9, "new", 1),
    ];
    s.sysctls.ip_local_port_range = Some((40_000, 40_099));
    s.sysctls.tcp_tw_reuse = Some(0);
    s.sysctls.tcp_max_tw_buckets = Some(180_000);
    s.sysctls.somaxconn = Some(128);
    s.sysctls.tcp_max_syn_backlog = Some(512);
    s.sysctls.tcp_syncookies = Some(0);
    s.port_usage = vec![
        PortUse::new(dest(3), 85),
        PortUse::new(dest(1), 99),
        PortUse::new(dest(2), 99),
        PortUse::new(dest(4), 10),
    ];
    s.process_fds = vec![
        fd(1, "init", 10, Some(1000)),
        fd(42, "java", 990, Some(1000)),
        fd(43, "worker", 850, Some(1000)),
    ];
    let mut nr = FileNr::default();
    nr.allocated = 97;
    nr.max = 100;
    s.file_nr = Some(nr);
    let mut ct = Conntrack::default();
    ct.count = 900;
    ct.max = 1000;
    s.conntrack = Some(ct);
    s.listeners = vec![
        listener(8080, 129, Some(128)),
        listener(80, 128, Some(128)),
        listener(9090, 0, Some(0)),
        listener(22, 1, Some(4096)),
    ];
    s.counters = counters(9, 5, 0).counters;
    // One process looked at: twelve endpoints without keepalive, one with it.
    s.pid = Some(42);
    s.peers = Some(
        (0..13u8)
            .map(|i| {
                let mut p = crate::peers::Peer::new(dest(10 + i));
                p.states.set(TcpState::Established, u64::from(i) + 1);
                p.without_keepalive = if i == 12 { 0 } else { u64::from(i) + 1 };
                // Two left in CLOSE_WAIT (one past critical), one idle too long.
                if i < 2 {
                    p.states.set(TcpState::CloseWait, 2);
                    p.close_wait_max =
                        Some(std::time::Duration::from_secs([700, 90][usize::from(i)]));
                }
                if i == 2 {
                    p.idle_max = Some(std::time::Duration::from_secs(300));
                }
                p
            })
            .collect(),
    );
    s
}

/// Listeners read from `/proc`, a port range upside down, keepalive that takes long.
fn odd() -> HostSample {
    let mut s = quiet();
    s.listeners = vec![listener(8080, 3, None), listener(80, 0, Some(4096))];
    s.sysctls.ip_local_port_range = Some((2, 1));
    s.sysctls.tcp_keepalive_time = Some(7200);
    s.sysctls.tcp_keepalive_probes = Some(90);
    s.sysctls.somaxconn = None;
    s.sysctls.tcp_fin_timeout = Some(10);
    s.states.set(TcpState::FinWait2, 501);
    s.states.set(TcpState::TimeWait, 60_000);
    s.counters = None;
    // A process looked at whose connections' timers could not be read.
    s.pid = Some(7);
    s
}

fn render() -> String {
    let t = Thresholds::default();
    let strict = Thresholds::builder()
        .time_wait(10, 20)
        .close_wait_critical(0)
        .syn_recv_warning(0)
        .fin_wait2_warning(0)
        .port_headroom_percent(100.0, 50.0)
        .fd_usage_percent(0.0, 0.5)
        .conntrack_percent(0.0, 0.0)
        .min_somaxconn(65_535)
        .min_port_range_width(65_536)
        .max_fin_timeout(5)
        .max_keepalive_detect_secs(60)
        .build()
        .unwrap();
    let empty = HostSample::default();
    let cases: [(&str, &HostSample, Option<&HostSample>, &Thresholds); 8] = [
        ("nothing read", &empty, None, &t),
        ("nothing read, twice", &empty, Some(&empty), &t),
        ("quiet", &quiet(), None, &t),
        ("quiet, twice", &quiet(), Some(&quiet()), &t),
        ("loud after quiet", &loud(), Some(&quiet()), &t),
        ("quiet after loud", &quiet(), Some(&loud()), &t),
        ("odd after quiet", &odd(), Some(&quiet()), &t),
        ("quiet, strict", &quiet(), Some(&empty), &strict),
    ];
    let mut out = String::new();
    for (name, now, prev, t) in cases {
        let r = evaluate(now, prev, t);
        writeln!(out, "## {name}: {}", r.status()).unwrap();
        for f in &r.findings {
            writeln!(
                out,
                "{} {} [{}] value={} ({:?}) threshold={} ({:?})\n  {}\n  -> {}",
                f.severity,
                f.check,
                f.subject.as_deref().unwrap_or("-"),
                f.value,
                f.value,
                f.threshold,
                f.threshold,
                f.message,
                f.recommendation,
            )
            .unwrap();
        }
    }
    out
}

#[test]
fn report_matches_the_recorded_one() {
    let now = render();
    if std::env::var_os("UPDATE_FINDINGS_REPORT").is_some() {
        std::fs::write(RECORDED, &now).unwrap();
    }
    let recorded = std::fs::read_to_string(RECORDED).unwrap();
    for (i, (a, b)) in now.lines().zip(recorded.lines()).enumerate() {
        assert_eq!(a, b, "line {} differs", i + 1);
    }
    assert_eq!(now.lines().count(), recorded.lines().count());
}
