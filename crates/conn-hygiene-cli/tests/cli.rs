//! The `conn-hygiene` binary run as a user would: inside private network namespaces with
//! crafted socket mixes (exact counts, checked against `ss`), and on bad input.
#![cfg(target_os = "linux")]

mod support;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use conn_hygiene_census::{count_states, StateCounts, TcpState, WalkOptions};
use conn_hygiene_test_support::{
    helper_env, in_netns, is_root, precondition, run_in_netns, wait_until,
};
use serde_json::Value;
use support::{counts_of, helper_main, run, run_json, ss_counts, Helper, HELPER_ENV};

/// Entry point of the helper process started by [`Helper::start`]; fails when run on its own.
#[test]
#[ignore = "the helper process of states_who_doctor_with_a_close_wait_leak"]
fn helper_entry() {
    let n = helper_env(
        "helper_entry",
        HELPER_ENV,
        "states_who_doctor_with_a_close_wait_leak",
    );
    helper_main(n.parse().expect("helper count"));
}

const CLOSE_WAIT: u64 = 1100;
const ESTABLISHED_PAIRS: usize = 5;
const TIME_WAIT: usize = 20;

#[test]
fn states_who_doctor_with_a_close_wait_leak() {
    run_in_netns("inner_close_wait_leak", &[]);
}

#[test]
#[ignore = "runs inside a private network namespace, started by states_who_doctor_with_a_close_wait_leak"]
fn inner_close_wait_leak() {
    if !in_netns() {
        return states_who_doctor_with_a_close_wait_leak();
    }
    // This process: two listeners, five open connections, twenty closed client first.
    let l4 = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let _l6 = TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).unwrap();
    let dest = l4.local_addr().unwrap();
    let established: Vec<_> = (0..ESTABLISHED_PAIRS)
        .map(|_| {
            let c = TcpStream::connect(dest).unwrap();
            let (s, _) = l4.accept().unwrap();
            (c, s)
        })
        .collect();
    for _ in 0..TIME_WAIT {
        let c = TcpStream::connect(dest).unwrap();
        let (s, _) = l4.accept().unwrap();
        drop(c);
        drop(s);
    }
    // Another process: 1100 CLOSE_WAIT it never closes (their clients sit in FIN_WAIT2).
    let helper = Helper::start(CLOSE_WAIT as usize);

    let mut expected = StateCounts::new();
    expected.set(TcpState::Listen, 3);
    expected.set(TcpState::Established, 2 * ESTABLISHED_PAIRS as u64);
    expected.set(TcpState::TimeWait, TIME_WAIT as u64);
    expected.set(TcpState::CloseWait, CLOSE_WAIT);
    expected.set(TcpState::FinWait2, CLOSE_WAIT);
    wait_until("the crafted states", Duration::from_secs(10), || {
        count_states(&WalkOptions::new()).is_ok_and(|c| c == expected)
    });

    // states: the crafted numbers, and what ss counts.
    let (code, v) = run_json(&["states", "--json"]);
    assert_eq!(code, Some(0));
    assert_eq!(counts_of(&v), expected, "{v}");
    assert_eq!(ss_counts(), expected, "ss -Hant");
    assert!(v.get("pid").is_none());
    let human = String::from_utf8(run(&["states"]).stdout).unwrap();
    let line = |state: &str| {
        human
            .lines()
            .find(|l| l.split_whitespace().next() == Some(state))
            .unwrap_or_else(|| panic!("no {state} line in:\n{human}"))
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse::<u64>().ok())
    };
    assert_eq!(line("CLOSE_WAIT"), Some(CLOSE_WAIT));
    assert_eq!(line("TIME_WAIT"), Some(TIME_WAIT as u64));
    assert_eq!(line("TOTAL"), Some(expected.total()));

    // states --pid: each process's own sockets.
    let (code, v) = run_json(&["states", "--pid", &helper.pid.to_string(), "--json"]);
    assert_eq!(code, Some(0));
    assert_eq!(v["pid"], Value::from(helper.pid));
    let mut theirs = StateCounts::new();
    theirs.set(TcpState::CloseWait, CLOSE_WAIT);
    theirs.set(TcpState::Listen, 1);
    assert_eq!(counts_of(&v), theirs);
    let me = std::process::id().to_string();
    let (_, v) = run_json(&["states", "--pid", &me, "--json"]);
    let mut mine = StateCounts::new();
    mine.set(TcpState::Listen, 2);
    mine.set(TcpState::Established, 2 * ESTABLISHED_PAIRS as u64);
    assert_eq!(counts_of(&v), mine);

    // who CLOSE_WAIT names the helper; who TIME_WAIT groups by endpoint and says so.
    let (code, v) = run_json(&["who", "close-wait", "--json"]);
    assert_eq!(code, Some(0));
    assert_eq!(v["state"], "CLOSE_WAIT");
    let procs = v["processes"].as_array().unwrap();
    assert_eq!(procs.len(), 1, "{v}");
    assert_eq!(procs[0]["pid"], Value::from(helper.pid));
    assert_eq!(procs[0]["comm"], Value::from(helper.comm.as_str()));
    assert_eq!(procs[0]["count"], Value::from(CLOSE_WAIT));
    let human = String::from_utf8(run(&["who", "CLOSE_WAIT"]).stdout).unwrap();
    let row = human
        .lines()
        .find(|l| l.split_whitespace().next() == Some(helper.pid.to_string().as_str()))
        .unwrap_or_else(|| panic!("helper not listed:\n{human}"));
    assert!(
        row.contains(&helper.comm) && row.ends_with(&CLOSE_WAIT.to_string()),
        "{row}"
    );

    let (_, v) = run_json(&["who", "TIME_WAIT", "--json"]);
    assert_eq!(v["grouped_by"], "endpoint");
    assert!(v["processes"].as_array().unwrap().is_empty());
    assert!(v["note"].as_str().unwrap().contains("no process"));
    let endpoints = v["endpoints"].as_array().unwrap();
    assert_eq!(endpoints.len(), 1, "{v}");
    assert_eq!(endpoints[0]["local"], "127.0.0.1:*");
    assert_eq!(endpoints[0]["remote"], Value::from(dest.to_string()));
    assert_eq!(endpoints[0]["count"], Value::from(TIME_WAIT));

    // doctor: CRITICAL, exit 2, naming the process that holds the CLOSE_WAIT sockets.
    let (code, v) = run_json(&["doctor", "--json", "--window-ms", "100"]);
    assert_eq!(code, Some(2), "{v:#}");
    assert_eq!(v["status"], "CRITICAL");
    let findings = v["findings"].as_array().unwrap();
    let cw = findings
        .iter()
        .find(|f| f["check"] == "close_wait")
        .expect("close_wait finding");
    assert_eq!(cw["severity"], "CRITICAL");
    assert_eq!(cw["value"], Value::from(CLOSE_WAIT));
    assert_eq!(cw["threshold"], Value::from(1000));
    let named = format!("pid {} ({})", helper.pid, helper.comm);
    assert!(cw["message"].as_str().unwrap().contains(&named), "{cw}");
    assert!(!cw["recommendation"].as_str().unwrap().is_empty());
    for f in findings {
        for key in [
            "severity",
            "check",
            "value",
            "threshold",
            "message",
            "recommendation",
        ] {
            assert!(f.get(key).is_some(), "{key} missing in {f}");
        }
    }
    let out = run(&["doctor", "--window-ms", "50"]);
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("conn-hygiene doctor: CRITICAL"), "{text}");
    assert!(text.contains(&named), "{text}");

    // Scoped to the helper: the same verdict, and its descriptors are the ones looked at.
    let (code, v) = run_json(&[
        "doctor",
        "--pid",
        &helper.pid.to_string(),
        "--json",
        "--window-ms",
        "50",
    ]);
    assert_eq!(code, Some(2));
    assert_eq!(v["pid"], Value::from(helper.pid));
    let fd = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == "process_fd_usage")
        .unwrap();
    assert!(fd["message"].as_str().unwrap().contains(&named), "{fd}");

    drop(helper);
    drop(established);
}

#[test]
fn doctor_warns_on_time_wait_with_a_narrow_port_range() {
    run_in_netns(
        "inner_narrow_port_range",
        &["net.ipv4.ip_local_port_range=40000 40199"],
    );
}

#[test]
#[ignore = "runs inside a private network namespace, started by doctor_warns_on_time_wait_with_a_narrow_port_range"]
fn inner_narrow_port_range() {
    if !in_netns() {
        return doctor_warns_on_time_wait_with_a_narrow_port_range();
    }
    // 170 TIME_WAIT toward one destination out of 200 ports: 15 % left.
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let dest: SocketAddr = listener.local_addr().unwrap();
    for _ in 0..170 {
        let c = TcpStream::connect(dest).unwrap();
        let (s, _) = listener.accept().unwrap();
        drop(c);
        drop(s);
    }
    wait_until("170 TIME_WAIT", Duration::from_secs(10), || {
        count_states(&WalkOptions::new()).is_ok_and(|c| c[TcpState::TimeWait] == 170)
    });
    let (code, v) = run_json(&["doctor", "--json", "--window-ms", "100"]);
    assert_eq!(code, Some(1), "{v:#}");
    assert_eq!(v["status"], "WARNING");
    let findings = v["findings"].as_array().unwrap();
    assert!(
        findings.iter().all(|f| f["severity"] != "CRITICAL"),
        "{v:#}"
    );
    let headroom = findings
        .iter()
        .find(|f| f["check"] == "local_port_headroom")
        .unwrap();
    assert_eq!(headroom["severity"], "WARNING");
    assert_eq!(headroom["subject"], Value::from(dest.to_string()));
    assert_eq!(headroom["value"], Value::from(15.0));
    assert_eq!(headroom["threshold"], Value::from(20.0));
    assert!(headroom["recommendation"]
        .as_str()
        .unwrap()
        .contains("net.ipv4.ip_local_port_range = 1024 65535"));
    let range = findings
        .iter()
        .find(|f| f["check"] == "sysctl_ip_local_port_range")
        .unwrap();
    assert_eq!(
        (range["severity"].as_str(), range["value"].as_u64()),
        (Some("WARNING"), Some(200))
    );
    let reuse = findings
        .iter()
        .find(|f| f["check"] == "sysctl_tcp_tw_reuse")
        .unwrap();
    assert_eq!(reuse["severity"], "WARNING");
    assert_eq!(run(&["doctor", "--window-ms", "10"]).status.code(), Some(1));
    // The recommended file says the same.
    let out = run(&["sysctl"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("\nnet.ipv4.tcp_tw_reuse = 1\n"), "{text}");
    assert!(text.contains("# current: 40000 40199 (change)"), "{text}");
}

/// Exit status 3 and exactly one line on stderr, nothing on stdout.
fn assert_bad_input(args: &[&str], says: &str) {
    let out = run(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{args:?}: {err}");
    assert_eq!(err.lines().count(), 1, "{args:?}: one line, got {err:?}");
    assert!(err.starts_with("conn-hygiene: "), "{args:?}: {err}");
    assert!(err.contains(says), "{args:?}: expected {says:?} in {err:?}");
    assert!(out.stdout.is_empty(), "{args:?}: stdout {:?}", out.stdout);
}

#[test]
fn bad_input_is_one_line_and_exit_3() {
    assert_bad_input(&["who", "BOGUS"], "unknown TCP state \"BOGUS\"");
    assert_bad_input(&["who", "BOGUS", "--json"], "unknown TCP state");
    assert_bad_input(&["states", "--pid", "abc"], "'abc'");
    assert_bad_input(&["states", "--pid", "-5"], "'-5'");
    assert_bad_input(
        &["states", "--pid", "4294967295"],
        "no process with pid 4294967295",
    );
    assert_bad_input(
        &["states", "--pid", "4294967295", "--json"],
        "no process with pid",
    );
    assert_bad_input(&["doctor", "--pid", "4294967295"], "no process with pid");
    assert_bad_input(&["doctor", "--window-ms", "0"], "--window-ms 0");
    assert_bad_input(&["watch", "--interval", "0"], "--interval");
    assert_bad_input(&["watch", "--count", "0"], "--count");
    assert_bad_input(&["frobnicate"], "frobnicate");
    assert_bad_input(&[], "subcommand");
    assert_bad_input(&["states", "--bogus"], "--bogus");
    let help = run(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&help.stdout).contains("doctor"));
}

#[test]
fn another_users_process_is_refused_with_exit_3() {
    // Needs root to become another user; as another user, pid 1's descriptors are closed.
    if !precondition(
        "another_users_process_is_refused_with_exit_3",
        is_root(),
        "root, to run the binary as another user (setpriv)",
    ) {
        return;
    }
    for args in [["states", "--pid", "1"], ["doctor", "--pid", "1"]] {
        let out = std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_conn-hygiene"))
            .args(args)
            .output()
            .expect("setpriv (util-linux)");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{err}");
        assert_eq!(err.lines().count(), 1, "{err:?}");
        assert!(
            err.contains("no permission to read the descriptors of pid 1"),
            "{err}"
        );
    }
}

#[test]
fn watch_prints_count_lines() {
    let out = run(&["watch", "--count", "3", "--interval", "0.05"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    for l in &lines {
        let ts = l.split_whitespace().next().unwrap();
        assert_eq!(ts.len(), 20, "{l}");
        assert!(ts.ends_with('Z') && ts.as_bytes()[10] == b'T', "{l}");
        for key in [
            "ESTABLISHED=",
            "TIME_WAIT=",
            "CLOSE_WAIT=",
            "SYN_RECV=",
            "FIN_WAIT2=",
        ] {
            assert!(l.contains(key), "{l}");
        }
        assert!(!l.contains('\x1b'), "no colour off a terminal: {l:?}");
    }
    assert!(lines[1].contains("ListenOverflows+="), "{}", lines[1]);
    let out = run(&["watch", "--count", "1", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["time"].is_string() && v["TIME_WAIT"].is_u64() && v["over"].is_object(),
        "{v}"
    );
}

#[test]
fn sysctl_prints_a_sysctl_d_file_and_changes_nothing() {
    let before = std::fs::read_to_string("/proc/sys/net/core/somaxconn").unwrap();
    let out = run(&["sysctl"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains("recycle"), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    let mut settings = 0;
    for (i, l) in lines.iter().enumerate() {
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        settings += 1;
        let (name, value) = l
            .split_once(" = ")
            .unwrap_or_else(|| panic!("not `k = v`: {l}"));
        assert!(name.contains('.') && !value.is_empty(), "{l}");
        assert!(
            lines[i - 2].starts_with("# current: "),
            "{l}: {}",
            lines[i - 2]
        );
        assert!(
            lines[i - 1].starts_with("# risk: "),
            "{l}: {}",
            lines[i - 1]
        );
    }
    assert!(settings >= 10, "{text}");
    let current = format!("# current: {} (", before.trim());
    let at = lines
        .iter()
        .position(|l| l.starts_with("net.core.somaxconn = "))
        .unwrap();
    assert!(lines[at - 2].starts_with(&current), "{}", lines[at - 2]);
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/core/somaxconn").unwrap(),
        before
    );
    let (code, v) = run_json(&["sysctl", "--json"]);
    assert_eq!(code, Some(0));
    let list = v["settings"].as_array().unwrap();
    assert_eq!(list.len(), settings);
    for s in list {
        for key in ["name", "current", "recommended", "reason", "risk"] {
            assert!(s.get(key).is_some(), "{key} in {s}");
        }
    }
}

#[test]
fn doctor_json_shape_on_this_host() {
    let (code, v) = run_json(&["doctor", "--json", "--window-ms", "20"]);
    let status = v["status"].as_str().unwrap();
    let want = match status {
        "OK" => 0,
        "WARNING" => 1,
        "CRITICAL" => 2,
        "UNKNOWN" => 3,
        other => panic!("status {other}"),
    };
    assert_eq!(code, Some(want));
    let checks: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["check"].as_str().unwrap())
        .collect();
    for check in [
        "time_wait",
        "close_wait",
        "syn_recv",
        "fin_wait2",
        "local_port_headroom",
        "listen_overflows",
        "listen_drops",
        "time_wait_overflow",
        "process_fd_usage",
        "keepalive_missing",
        "close_wait_age",
        "idle_too_long",
        "system_file_nr",
        "conntrack",
        "listener_backlog",
        "accept_queue_full",
        "sysctl_somaxconn",
        "sysctl_tcp_tw_reuse",
        "sysctl_ip_local_port_range",
    ] {
        assert!(checks.contains(&check), "{check} missing: {checks:?}");
    }
}

/// What `ss -tnoi` says of this process's sockets toward `remote`: (sockets, without a
/// keepalive timer, longest idle in ms as min(lastsnd, lastrcv), total retransmissions).
fn ss_peer(remote: SocketAddr) -> (u64, u64, u64, u64) {
    let out = std::process::Command::new("ss")
        .args(["-tnoiH", "state", "all", "dst", &remote.to_string()])
        .output()
        .expect("ss (iproute2): run scripts/install-test-deps.sh");
    let text = String::from_utf8_lossy(&out.stdout);
    // With -i each socket takes two lines: the addresses (and timer), then tcp_info.
    let mut sockets = 0;
    let mut without = 0;
    let mut idle_max = 0;
    let mut retrans = 0;
    let field = |line: &str, key: &str| -> Option<u64> {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .and_then(|v| v.split('/').next_back())
            .and_then(|v| v.parse().ok())
    };
    for line in text.lines() {
        if !line.starts_with(char::is_whitespace) {
            // Listeners and TIME_WAIT are not this process's connections.
            if line.starts_with("LISTEN") || line.starts_with("TIME-WAIT") {
                continue;
            }
            sockets += 1;
            if !line.contains("timer:(keepalive") {
                without += 1;
            }
        } else {
            if let (Some(s), Some(r)) = (field(line, "lastsnd:"), field(line, "lastrcv:")) {
                idle_max = idle_max.max(s.min(r));
            }
            retrans += field(line, "retrans:").unwrap_or(0);
        }
    }
    (sockets, without, idle_max, retrans)
}

/// The largest `KEY:N` value (ms) in the tcp_info lines `ss -tnoi` shows toward `remote`.
fn ss_field_max(remote: SocketAddr, key: &str) -> u64 {
    let out = std::process::Command::new("ss")
        .args(["-tnoiH", "state", "all", "dst", &remote.to_string()])
        .output()
        .expect("ss (iproute2): run scripts/install-test-deps.sh");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|w| w.strip_prefix(key).and_then(|v| v.parse::<u64>().ok()))
        .max()
        .unwrap_or(0)
}

/// `peers --pid` and `doctor --pid` against this process, with sockets made for it: five
/// connections toward one listener (three with SO_KEEPALIVE), two toward another whose server
/// side closed (CLOSE_WAIT, no keepalive). Every figure is what `ss -tnoi` shows.
#[test]
fn peers_and_keepalive_missing_match_ss() {
    let pid = std::process::id().to_string();
    let l4 = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let l6 = match TcpListener::bind((Ipv6Addr::LOCALHOST, 0)) {
        Ok(l) => l,
        Err(e) => {
            assert!(
                precondition(
                    "peers_and_keepalive_missing_match_ss",
                    false,
                    "IPv6 loopback"
                ),
                "{e}"
            );
            return;
        }
    };
    let (a4, a6) = (l4.local_addr().unwrap(), l6.local_addr().unwrap());
    let mut held = Vec::new();
    for i in 0..5 {
        let c = TcpStream::connect(a4).unwrap();
        socket2::SockRef::from(&c).set_keepalive(i < 3).unwrap();
        let (s, _) = l4.accept().unwrap();
        held.push((c, Some(s)));
    }
    for _ in 0..2 {
        let c = TcpStream::connect(a6).unwrap();
        let (s, _) = l6.accept().unwrap();
        drop(s); // FIN to the client: it sits in CLOSE_WAIT
        held.push((c, None));
    }
    wait_until(
        "two CLOSE_WAIT toward the IPv6 listener",
        Duration::from_secs(10),
        || ss_peer(a6).0 == 2,
    );

    let (code, v) = run_json(&["peers", "--pid", &pid, "--json"]);
    assert_eq!(code, Some(0), "{v}");
    let peers = v.as_array().expect("a list");
    let find = |addr: SocketAddr| {
        peers
            .iter()
            .find(|p| p["remote"] == addr.to_string())
            .unwrap_or_else(|| panic!("{addr} in {v}"))
            .clone()
    };
    let (p4, p6) = (find(a4), find(a6));
    assert_eq!(
        p6["remote"].as_str().unwrap(),
        format!("[::1]:{}", a6.port())
    );
    assert_eq!(p4["states"]["ESTABLISHED"], 5);
    assert_eq!(p6["states"]["CLOSE_WAIT"], 2);
    for (p, addr) in [(&p4, a4), (&p6, a6)] {
        let (sockets, without, idle_ms, retrans) = ss_peer(addr);
        assert_eq!(p["sockets"].as_u64(), Some(sockets), "{addr}: {p}");
        assert_eq!(
            p["without_keepalive"].as_u64(),
            Some(without),
            "{addr}: {p}"
        );
        assert_eq!(p["retransmits"].as_u64(), Some(retrans), "{addr}: {p}");
        // Read a moment apart: ss's reading is the later one, and only a little later.
        let ours = (p["idle_max_s"].as_f64().expect("idle known") * 1000.0).round() as u64;
        assert!(
            ours <= idle_ms && idle_ms - ours < 2_000,
            "{addr}: idle {ours} ms here, {idle_ms} ms by ss: {p}"
        );
    }
    assert_eq!(p4["without_keepalive"], 2);
    assert_eq!(p6["without_keepalive"], 2);
    // The CLOSE_WAIT age, as ss's lastack reads it: a moment later, by at most a little.
    let cw = (p6["close_wait_max_s"].as_f64().expect("dated") * 1000.0).round() as u64;
    let lastack = ss_field_max(a6, "lastack:");
    assert!(
        cw <= lastack && lastack - cw < 2_000,
        "{cw} ms here, {lastack} ms by ss: {p6}"
    );
    assert!(
        p4["close_wait_max_s"].is_null(),
        "no CLOSE_WAIT toward {a4}: {p4}"
    );

    // doctor --pid names both endpoints, with their counts.
    let (_, report) = run_json(&["doctor", "--pid", &pid, "--json", "--window-ms", "20"]);
    let missing: Vec<&Value> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["check"] == "keepalive_missing")
        .collect();
    for (addr, n) in [(a4, 2), (a6, 2)] {
        let f = missing
            .iter()
            .find(|f| f["subject"] == addr.to_string())
            .unwrap_or_else(|| panic!("a finding about {addr}: {missing:?}"));
        assert_eq!(f["severity"], "WARNING", "{f}");
        assert_eq!(f["value"], n, "{f}");
        assert!(
            f["message"].as_str().unwrap().contains(&addr.to_string()),
            "{f}"
        );
    }
    drop(held);
}
