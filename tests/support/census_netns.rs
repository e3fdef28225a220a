//! Census tests that count the kernel's socket table exactly, in a network namespace of their
//! own: [`run_in_netns`] re-executes the current test binary under `unshare -n`, running only
//! the named `#[ignore]` test, with `lo` up, `net.ipv4.tcp_tw_reuse=0` and any extra sysctls;
//! [`in_netns`] tells the inner run apart. [`ss_counts`] reads `ss` for cross-checks.
#![allow(dead_code, unreachable_pub)]

use std::{
    io::Read,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use conn_hygiene_census::{StateCounts, TcpState};

/// Set in the environment of the re-executed test binary.
pub const INNER_ENV: &str = "CONN_HYGIENE_CENSUS_TEST_IN_NETNS";

/// How long an inner run may take.
const INNER_TIMEOUT: Duration = Duration::from_secs(120);

/// Whether this is the inner run, inside the private namespace.
pub fn in_netns() -> bool {
    std::env::var_os(INNER_ENV).is_some()
}

/// Runs the `#[ignore]` test `inner` of this binary in a fresh network namespace, after
/// setting `sysctls` (`name=value`), and panics with its output unless it passes.
pub fn run_in_netns(inner: &str, sysctls: &[&str]) {
    assert!(!in_netns(), "{inner}: already inside the namespace");
    let exe = std::env::current_exe().expect("current_exe");
    let mut script = String::from("ip link set lo up && sysctl -qw net.ipv4.tcp_tw_reuse=0");
    for s in sysctls {
        script.push_str(&format!(" && sysctl -qw '{s}'"));
    }
    script.push_str(" && exec \"$0\" \"$@\"");
    let mut child = Command::new("unshare")
        .args(["-n", "--", "sh", "-c", &script])
        .arg(&exe)
        .args([
            "--exact",
            inner,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(INNER_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{inner}: cannot run `unshare` (util-linux): {e}"));
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout")));
    let err = drain(Box::new(child.stderr.take().expect("stderr")));
    let deadline = Instant::now() + INNER_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for unshare") {
            break status;
        }
        if Instant::now() > deadline {
            // Our own child, by its PID.
            let _ = child.kill();
            let _ = child.wait();
            panic!("{inner}: still running after {INNER_TIMEOUT:?}; killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = out.join().expect("stdout reader");
    let err = err.join().expect("stderr reader");
    assert!(
        status.success(),
        "{inner} failed in its network namespace ({status}); this needs root, `unshare`, `ip`, \
         `sysctl` and `ss`.\n--- stdout\n{out}\n--- stderr\n{err}"
    );
    assert!(
        out.contains("1 passed"),
        "{inner} did not run:\n{out}\n{err}"
    );
    print!("{out}");
}

/// Counts the state column of `ss -Hant` (every socket) or, with `pid`, of `ss -Hantp`
/// lines that name the process (`pid=N,`).
pub fn ss_counts(pid: Option<u32>) -> StateCounts {
    let args = if pid.is_some() { "-Hantp" } else { "-Hant" };
    let out = Command::new("ss")
        .arg(args)
        .output()
        .unwrap_or_else(|e| panic!("`ss` (iproute2) is needed to cross-check counts: {e}"));
    assert!(out.status.success(), "ss {args} failed: {out:?}");
    let text = String::from_utf8(out.stdout).expect("ss output is UTF-8");
    let needle = pid.map(|p| format!("pid={p},"));
    text.lines()
        .filter(|l| needle.as_ref().is_none_or(|n| l.contains(n.as_str())))
        .filter_map(|l| l.split_whitespace().next())
        .map(|name| {
            name.parse::<TcpState>()
                .unwrap_or_else(|e| panic!("ss printed a state the census does not know: {e}"))
        })
        .collect()
}

/// Polls `cond` (blocking) until it holds, failing with `what` after `limit`.
pub fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_micros(200);
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Polls `cond` (blocking) until it holds or `limit` passes; whether it held.
pub fn poll_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_micros(200);
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}
