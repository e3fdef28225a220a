//! A private network namespace for one test.
//!
//! A test that asserts exact socket counts cannot run in the host's namespace, where other
//! programs open and close sockets while it counts. Such a test comes in two halves: an outer
//! test that calls [`run_in_netns`], and an `#[ignore]` inner half that does the work and
//! starts with
//!
//! ```text
//! if !in_netns() {
//!     return outer_test(); // run on its own (`--ignored`): start the namespace as the outer does
//! }
//! ```
//!
//! so that running ignored tests never passes an inner half that did nothing.

use std::{
    ffi::OsString,
    io::Read,
    process::{Command, Stdio},
    thread::JoinHandle,
    time::Duration,
};

use crate::process::{on_path, precondition, rerun_args, wait_child};

/// Set in the environment of the inner run, to the network namespace of the process that
/// started it (`net:[inode]`), which the inner run must not be in.
pub const INNER_ENV: &str = "CONN_HYGIENE_TEST_NETNS";

/// How long an inner run may take.
const INNER_TIMEOUT: Duration = Duration::from_secs(120);

/// The tools the namespace is set up with, and where they come from.
const TOOLS: [(&str, &str); 3] = [
    ("unshare", "util-linux"),
    ("ip", "iproute2"),
    ("sysctl", "procps"),
];

/// This process's network namespace, as `/proc/self/ns/net` names it (`net:[inode]`).
fn current_netns() -> OsString {
    std::fs::read_link("/proc/self/ns/net")
        .expect("read /proc/self/ns/net")
        .into_os_string()
}

/// Whether this is the inner run, inside the private namespace [`run_in_netns`] made.
///
/// Panics when [`INNER_ENV`] is set but this process is still in the namespace its runner
/// was in: an inner half must not do its work, nor pass, outside its namespace.
pub fn in_netns() -> bool {
    inner_run(std::env::var_os(INNER_ENV), current_netns())
}

/// [`in_netns`] given the runner's namespace from the environment and this process's.
fn inner_run(runner: Option<OsString>, here: OsString) -> bool {
    let Some(runner) = runner else {
        return false;
    };
    assert_ne!(
        here, runner,
        "{INNER_ENV} is set, but this process is in the network namespace its runner was in: \
         an inner half runs only in a private namespace, started by its outer test"
    );
    true
}

/// Quotes `s` for `sh`: one word, whatever it holds.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Runs the `#[ignore]` test `inner` of this test binary in a fresh network namespace, with
/// `lo` up, `net.ipv4.tcp_tw_reuse=0` and then `sysctls` (`name=value`, e.g.
/// `net.ipv4.ip_local_port_range=40000 40199`) set, and panics, with its output, unless it
/// ran and passed. Prints the inner run's output when it passes.
///
/// Needs root and `unshare`, `ip` and `sysctl` on the `PATH`; without them it fails, or
/// skips the test when [`ALLOW_SKIP_ENV`](crate::ALLOW_SKIP_ENV) says so.
pub fn run_in_netns(inner: &str, sysctls: &[&str]) {
    assert!(
        std::env::var_os(INNER_ENV).is_none(),
        "{inner}: already inside a private namespace"
    );
    let missing: Vec<String> = TOOLS
        .iter()
        .filter(|(tool, _)| !on_path(tool))
        .map(|(tool, package)| format!("`{tool}` ({package})"))
        .collect();
    let root = crate::is_root();
    let needs = format!(
        "root and `unshare`, `ip` and `sysctl` on the PATH to run in a private network \
         namespace (root: {}; missing from the PATH: {})",
        if root { "yes" } else { "no" },
        if missing.is_empty() {
            "nothing".to_owned()
        } else {
            missing.join(", ")
        },
    );
    if !precondition(inner, root && missing.is_empty(), &needs) {
        return;
    }
    let mut script = String::from("ip link set lo up && sysctl -qw net.ipv4.tcp_tw_reuse=0");
    for s in sysctls {
        script.push_str(" && sysctl -qw ");
        script.push_str(&shell_quote(s));
    }
    script.push_str(" && exec \"$0\" \"$@\"");
    let mut child = Command::new("unshare")
        .args(["-n", "--", "sh", "-c", &script])
        .arg(std::env::current_exe().expect("current_exe"))
        .args(rerun_args(inner))
        .env(INNER_ENV, current_netns())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{inner}: cannot run `unshare` (util-linux): {e}"));
    // Drained on threads so a chatty child never blocks on a full pipe.
    let out = drain(child.stdout.take().expect("stdout"));
    let err = drain(child.stderr.take().expect("stderr"));
    let status = wait_child(&mut child, INNER_TIMEOUT, inner);
    let out = out.join().expect("stdout reader");
    let err = err.join().expect("stderr reader");
    assert!(
        status.success(),
        "{inner} failed in its network namespace ({status}).\n--- stdout\n{out}\n--- stderr\n{err}"
    );
    assert!(
        out.contains("test result: ok. 1 passed"),
        "{inner} did not run in its network namespace:\n--- stdout\n{out}\n--- stderr\n{err}"
    );
    print!("{out}");
}

fn drain(mut r: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = r.read_to_string(&mut s);
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_for_the_shell_as_one_word() {
        assert_eq!(
            shell_quote("net.ipv4.ip_local_port_range=40000 40199"),
            "'net.ipv4.ip_local_port_range=40000 40199'"
        );
        let out = Command::new("sh")
            .args([
                "-c",
                &format!("printf %s {}", shell_quote("it's $HOME `x`")),
            ])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), "it's $HOME `x`");
    }

    #[test]
    fn an_inner_run_must_be_in_another_namespace() {
        let ns = |s: &str| OsString::from(s);
        assert!(!inner_run(None, ns("net:[1]")));
        assert!(inner_run(Some(ns("net:[1]")), ns("net:[2]")));
        // The variable set, as a stale environment would have it, in the namespace it names.
        let err = std::panic::catch_unwind(|| inner_run(Some(ns("net:[1]")), ns("net:[1]")))
            .expect_err("refused");
        let msg = err.downcast_ref::<String>().unwrap();
        assert!(msg.contains("runs only in a private namespace"), "{msg}");
    }

    #[test]
    fn this_process_has_a_network_namespace() {
        assert!(current_netns().to_string_lossy().starts_with("net:["));
    }
}
