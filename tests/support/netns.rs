//! Counting a server port's sockets with `ss`, for tests that run in a network namespace of
//! their own (`conn_hygiene_test_support::run_in_netns`), where the kernel tables hold only the
//! test's sockets.
//!
//! [`TimeWait`] counts `TIME_WAIT` sockets from `ss` per side of one server port;
//! [`parse_time_wait`] is the parser, kept apart from running `ss` so it can be tested on
//! captured output.
#![allow(dead_code, unreachable_pub)]

use std::{net::SocketAddr, process::Command};

/// `TIME_WAIT` sockets of connections to one server port, by side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeWait {
    /// Client ends: the peer's port is the server's (the client closed first).
    pub client: usize,
    /// Server ends: the local port is the server's (the server closed first).
    pub server: usize,
}

/// Counts the lines of `ss -Htan state time-wait` (`Recv-Q Send-Q Local Peer`, no state
/// column under a state filter) per side of connections to `server_port`.
pub fn parse_time_wait(text: &str, server_port: u16) -> TimeWait {
    let port = |s: &str| s.parse::<SocketAddr>().ok().map(|a| a.port());
    let mut tw = TimeWait::default();
    for line in text.lines() {
        let addrs: Vec<u16> = line.split_whitespace().filter_map(port).collect();
        let [local, peer] = addrs[..] else {
            continue;
        };
        if local == server_port {
            tw.server += 1;
        } else if peer == server_port {
            tw.client += 1;
        }
    }
    tw
}

/// Runs `ss` with `args` (and `-H`, no header) and returns its output. Panics, naming the
/// install script, when `ss` cannot run.
pub fn ss(args: &[&str]) -> String {
    let out = Command::new("ss")
        .arg("-H")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("`ss` (iproute2) is needed: run scripts/install-test-deps.sh: {e}")
        });
    assert!(out.status.success(), "ss {args:?} failed: {out:?}");
    String::from_utf8(out.stdout).expect("ss output is UTF-8")
}

/// The namespace's `TIME_WAIT` sockets of connections to `server_port`.
pub fn time_wait(server_port: u16) -> TimeWait {
    parse_time_wait(&ss(&["-tan", "state", "time-wait"]), server_port)
}

/// Sockets of connections to or from `server_port` in a state other than `LISTEN` and
/// `TIME-WAIT`: closes that have not landed yet.
pub fn unsettled(server_port: u16) -> Vec<String> {
    let p = format!(":{server_port}");
    ss(&["-tan"])
        .lines()
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() >= 5
                && f[0] != "LISTEN"
                && f[0] != "TIME-WAIT"
                && (f[3].ends_with(&p) || f[4].ends_with(&p))
        })
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured in a fresh namespace: two connections closed by the client, one by the server
    /// (port 45009).
    const SAMPLE: &str = "\
0      0      127.0.0.1:45009 127.0.0.1:54372
0      0      127.0.0.1:54362 127.0.0.1:45009
0      0      127.0.0.1:54368 127.0.0.1:45009
";

    #[test]
    fn time_wait_sides() {
        assert_eq!(
            parse_time_wait(SAMPLE, 45009),
            TimeWait {
                client: 2,
                server: 1
            }
        );
        assert_eq!(parse_time_wait(SAMPLE, 1), TimeWait::default());
        assert_eq!(parse_time_wait("", 45009), TimeWait::default());
    }
}
