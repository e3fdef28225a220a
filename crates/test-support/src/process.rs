//! Re-executed test processes and the preconditions of tests that need root or a tool.

use std::{
    path::Path,
    process::{Child, ExitStatus},
    time::Duration,
};

use crate::wait::poll_blocking;

/// Set (to anything) to let a test whose precondition is missing pass with a `SKIPPED` line
/// on stderr instead of failing. For a developer's machine without root; CI never sets it, so
/// there a missing precondition fails the run.
pub const ALLOW_SKIP_ENV: &str = "CONN_HYGIENE_TEST_ALLOW_SKIP";

/// Checks a precondition of `test`: `true` when it `holds`. When it does not, panics saying
/// the test needs `needs`, unless [`ALLOW_SKIP_ENV`] is set: then prints a `SKIPPED` line to
/// stderr and returns `false`, and the test should return at once.
#[must_use = "the test must return when its precondition is missing"]
pub fn precondition(test: &str, holds: bool, needs: &str) -> bool {
    if holds {
        return true;
    }
    if std::env::var_os(ALLOW_SKIP_ENV).is_some() {
        eprintln!("SKIPPED {test}: it needs {needs} ({ALLOW_SKIP_ENV} is set)");
        return false;
    }
    panic!(
        "{test} needs {needs}, which this run lacks. Run the tests as root after \
         scripts/install-test-deps.sh (scripts/test.sh does both), or set {ALLOW_SKIP_ENV}=1 \
         to skip such tests on purpose."
    );
}

/// Whether this process runs with effective user id 0.
pub fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .expect("an effective uid in /proc/self/status")
        == "0"
}

/// Whether `tool` is an executable file in a directory of `PATH`, where a shell looks.
pub(crate) fn on_path(tool: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| is_file(&dir.join(tool)))
}

fn is_file(p: &Path) -> bool {
    p.metadata().is_ok_and(|m| m.is_file())
}

/// The arguments that make this test binary run only the `#[ignore]` test `test`, on one
/// thread, output not captured: for `Command::new(std::env::current_exe()?)`.
pub fn rerun_args(test: &str) -> [&str; 5] {
    [
        "--exact",
        test,
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ]
}

/// The value of `env` for the `#[ignore]` test `test`, which is only a helper process that
/// `parent` starts (through [`rerun_args`]) with `env` set. Run on its own (`--ignored`,
/// `--run-ignored all`) it has nothing to do: this panics saying so, instead of letting it
/// pass having done nothing.
pub fn helper_env(test: &str, env: &str, parent: &str) -> String {
    match std::env::var(env) {
        Ok(value) => value,
        Err(e) => panic!(
            "{test} is a helper process that `{parent}` starts with {env} set ({env}: {e}); \
             on its own it has nothing to do. Run `{parent}` instead."
        ),
    }
}

/// Waits up to `limit` for `child` to exit; past it, kills the child (our own, by its PID)
/// and panics naming `what`.
pub fn wait_child(child: &mut Child, limit: Duration, what: &str) -> ExitStatus {
    let waited = poll_blocking(limit, || {
        child.try_wait().expect("wait for a child process")
    });
    waited.unwrap_or_else(|_| {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{what}: still running after {limit:?}; killed");
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rerun_args_select_one_ignored_test() {
        assert_eq!(
            rerun_args("inner"),
            [
                "--exact",
                "inner",
                "--ignored",
                "--nocapture",
                "--test-threads=1"
            ]
        );
    }

    #[test]
    fn a_helper_run_on_its_own_fails_naming_its_parent() {
        let err = std::panic::catch_unwind(|| {
            helper_env("helper_entry", "CONN_HYGIENE_TEST_SUPPORT_UNSET", "outer")
        })
        .expect_err("no env, no pass");
        let msg = err.downcast_ref::<String>().unwrap();
        assert!(msg.contains("Run `outer` instead"), "{msg}");
    }

    #[test]
    fn the_shell_is_on_the_path() {
        assert!(on_path("sh"));
        assert!(!on_path("conn-hygiene-no-such-tool"));
    }

    #[test]
    fn a_child_past_its_deadline_is_killed() {
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .expect("sleep(1)");
        let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wait_child(&mut child, Duration::from_millis(50), "sleep 60")
        }))
        .expect_err("past its deadline");
        let msg = err.downcast_ref::<String>().unwrap();
        assert!(
            msg.starts_with("sleep 60: still running after 50ms"),
            "{msg}"
        );
        assert!(child.try_wait().unwrap().is_some(), "killed and reaped");
        let mut quick = std::process::Command::new("true").spawn().unwrap();
        assert!(wait_child(&mut quick, Duration::from_secs(10), "true").success());
    }
}
