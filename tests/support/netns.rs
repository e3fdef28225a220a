//! Tests that count the kernel's socket table exactly, in a network namespace of their own.
//!
//! In the host's namespace other programs open and close sockets while a test counts.
//! [`run_in_netns`] re-executes the current test binary under `unshare -n`, running only the
//! named `#[ignore]` test, with `lo` up and `net.ipv4.tcp_tw_reuse=0`; [`in_netns`] tells the
//! inner run apart. [`TimeWait`] counts `TIME_WAIT` sockets from `ss` per side of one server
//! port; [`parse_time_wait`] is the parser, kept apart from running `ss` so it can be tested on
//! captured output.
#![allow(dead_code, unreachable_pub)]

use std::{
    io::Read,
    net::SocketAddr,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

/// Set in the environment of the re-executed test binary.
pub const INNER_ENV: &str = "CONN_HYGIENE_IN_NETNS";

/// How long an inner run may take.
const INNER_TIMEOUT: Duration = Duration::from_secs(120);

/// Whether this is the inner run, inside the private namespace.
pub fn in_netns() -> bool {
    std::env::var_os(INNER_ENV).is_some()
}

/// Runs the `#[ignore]` test `inner` of this test binary in a fresh network namespace and
/// panics, with its output, unless it passes. Prints the inner run's output when it passes.
pub fn run_in_netns(inner: &str) {
    run_in_netns_with(inner, &[]);
}

/// Like [`run_in_netns`], setting `sysctls` (`name=value`) in the namespace first.
pub fn run_in_netns_with(inner: &str, sysctls: &[&str]) {
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
        .unwrap_or_else(|e| {
            panic!(
                "{inner}: cannot run `unshare` (util-linux), which this test needs \
                 (scripts/install-test-deps.sh installs it): {e}"
            )
        });
    // Drain both pipes on threads so a chatty child never blocks on a full pipe.
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
        "{inner} failed in its network namespace ({status}); this needs root (or user \
         namespaces), `unshare`, `ip` and `sysctl`.\n--- stdout\n{out}\n--- stderr\n{err}"
    );
    assert!(
        out.contains("1 passed"),
        "{inner} did not run in its network namespace:\n{out}\n{err}"
    );
    print!("{out}");
}

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
