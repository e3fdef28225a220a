//! Census tests that count the kernel's socket table exactly, in a network namespace of their
//! own: the namespace runner is the one in `netns.rs` (with extra sysctls); [`ss_counts`] reads
//! `ss` for cross-checks.
#![allow(dead_code, unreachable_pub)]

use std::{
    process::Command,
    time::{Duration, Instant},
};

use conn_hygiene_census::{StateCounts, TcpState};

#[path = "netns.rs"]
mod netns;

pub use self::netns::{in_netns, run_in_netns_with as run_in_netns};

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
