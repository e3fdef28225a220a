//! Census tests that count the kernel's socket table exactly, in a network namespace of their
//! own (`conn_hygiene_test_support::run_in_netns`): [`ss_counts`] reads `ss` for cross-checks.
#![allow(dead_code, unreachable_pub)]

use std::process::Command;

use conn_hygiene_census::{StateCounts, TcpState};

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
