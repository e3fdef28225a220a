//! Running the binary as a user would, inside private network namespaces
//! (`conn_hygiene_test_support::run_in_netns`).
//!
//! [`Helper`] re-executes this test binary once more as a separate process that holds sockets
//! until its stdin closes, so that `who` and `doctor` have another process to name.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::time::Duration;

use conn_hygiene_census::{StateCounts, TcpState};
use conn_hygiene_test_support::{rerun_args, wait_child};

/// Set for the helper process: the number of CLOSE_WAIT sockets to hold.
pub(crate) const HELPER_ENV: &str = "CONN_HYGIENE_CLI_HELPER_CLOSE_WAIT";

/// The binary under test.
pub(crate) fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_conn-hygiene"))
}

/// Runs `conn-hygiene ARGS`, output captured.
pub(crate) fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("run conn-hygiene")
}

/// Runs `conn-hygiene ARGS` and parses its stdout as JSON.
pub(crate) fn run_json(args: &[&str]) -> (Option<i32>, serde_json::Value) {
    let out = run(args);
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?}: stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), v)
}

/// Counts the states column of `ss -Hant`.
pub(crate) fn ss_counts() -> StateCounts {
    let out = Command::new("ss")
        .arg("-Hant")
        .output()
        .unwrap_or_else(|e| panic!("`ss` (iproute2) is needed to cross-check counts: {e}"));
    assert!(out.status.success(), "ss -Hant failed: {out:?}");
    String::from_utf8(out.stdout)
        .expect("ss output is UTF-8")
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(|name| name.parse::<TcpState>().expect("a state ss prints"))
        .collect()
}

/// Parses the `{"tcp": {...}}` of `states --json` into counts, checking every state is there.
pub(crate) fn counts_of(v: &serde_json::Value) -> StateCounts {
    let tcp = v["tcp"].as_object().expect("\"tcp\" object");
    assert_eq!(tcp.len(), TcpState::COUNT, "every state present: {v}");
    let mut c = StateCounts::new();
    for state in TcpState::ALL {
        let n = tcp[state.as_str()].as_u64().expect("count");
        c.set(state, n);
    }
    c
}

/// Another process holding `n` CLOSE_WAIT sockets and one listener, until dropped.
pub(crate) struct Helper {
    child: Child,
    stdin: Option<ChildStdin>,
    /// Its pid.
    pub(crate) pid: u32,
    /// Its command name.
    pub(crate) comm: String,
}

impl Helper {
    /// Starts this test binary as the helper (test `helper_entry`) with a descriptor limit
    /// raised for the sockets, and waits until it says it is ready.
    pub(crate) fn start(n: usize) -> Helper {
        let exe = std::env::current_exe().expect("current_exe");
        let mut child = Command::new("sh")
            .args(["-c", "ulimit -n 8192 && exec \"$0\" \"$@\""])
            .arg(&exe)
            .args(rerun_args("helper_entry"))
            .env(HELPER_ENV, n.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the helper");
        let stdin = child.stdin.take();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        loop {
            let line = lines
                .next()
                .expect("helper ended before it was ready")
                .expect("helper output");
            if line.contains("HELPER READY") {
                break;
            }
        }
        // Keep draining so the helper never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let pid = child.id();
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .expect("helper comm")
            .trim_end()
            .to_owned();
        Helper {
            child,
            stdin,
            pid,
            comm,
        }
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = wait_child(&mut self.child, Duration::from_secs(20), "helper");
    }
}

/// The body of the helper process: accept `n` connections, have their clients close, hold
/// the server ends (CLOSE_WAIT) until stdin closes.
pub(crate) fn helper_main(n: usize) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap();
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        let client = TcpStream::connect(addr).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        client.shutdown(Shutdown::Write).expect("shutdown");
        drop(client);
        held.push(server);
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "HELPER READY {addr}").unwrap();
    out.flush().unwrap();
    drop(out);
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    drop(held);
}
