//! A real server program on loopback for tests (nginx, redis-server): started in the foreground
//! in its own directory, on a port found free just before, retried on a fresh port when another
//! socket took it in between, and killed by its PID when dropped.
#![allow(dead_code, unreachable_pub)]

use std::{
    net::{Ipv4Addr, SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

/// How long a daemon may take to answer after it was started.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Fresh ports tried when the daemon cannot bind the one it was given.
const BIND_ATTEMPTS: usize = 5;

/// How to start one daemon and tell that it is ready.
pub struct Spec<'a> {
    /// Its name in messages (`nginx`, `redis-server`).
    pub name: &'a str,
    /// Its directory (config, logs, data), made by [`fresh_dir`].
    pub dir: &'a Path,
    /// Its log file, read into failure messages; it is removed before each attempt.
    pub log: &'a Path,
    /// The command that runs it in the foreground listening on the address given.
    pub command: &'a dyn Fn(SocketAddr) -> Command,
    /// One probe of the address: true when the daemon (not a stranger) answers there.
    pub ready: &'a dyn Fn(SocketAddr) -> bool,
}

/// A running daemon. Dropping it kills the process and removes its directory.
#[derive(Debug)]
pub struct Daemon {
    name: String,
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
    log: PathBuf,
}

impl Daemon {
    /// Starts the daemon on a free loopback port and waits until it answers. Panics with its
    /// log when it cannot start.
    pub fn start(spec: &Spec<'_>) -> Daemon {
        let name = spec.name;
        let mut last_log = String::new();
        for attempt in 1..=BIND_ATTEMPTS {
            let port = {
                let probe = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
                probe.local_addr().expect("local_addr").port()
            };
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let _ = std::fs::remove_file(spec.log);
            let mut command = (spec.command)(addr);
            let child = command
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
            // From here on the guard owns the process: a panic below still kills it.
            let mut daemon = Daemon {
                name: name.to_owned(),
                child,
                addr,
                dir: spec.dir.to_owned(),
                log: spec.log.to_owned(),
            };
            match daemon.wait_ready(spec.ready) {
                Ok(()) => return daemon,
                Err(log) if log.contains("Address already in use") => {
                    eprintln!("{name}: port {port} taken (attempt {attempt}), trying another");
                    last_log = log;
                    daemon.kill();
                    // Keep the directory for the next attempt.
                    daemon.dir = PathBuf::new();
                }
                Err(log) => panic!("{name} did not start on {addr}:\n{log}"),
            }
        }
        panic!("{name} could not bind a loopback port in {BIND_ATTEMPTS} attempts:\n{last_log}");
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls until `ready` says yes, or until the daemon exits (`Err` with its log) or the
    /// deadline passes (panic).
    fn wait_ready(&mut self, ready: &dyn Fn(SocketAddr) -> bool) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut pause = Duration::from_millis(1);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the daemon") {
                return Err(format!("{} exited ({status}):\n{}", self.name, self.log()));
            }
            if ready(self.addr) {
                return Ok(());
            }
            assert!(
                Instant::now() < deadline,
                "{} (pid {}) did not answer on {} within {READY_TIMEOUT:?}:\n{}",
                self.name,
                self.child.id(),
                self.addr,
                self.log()
            );
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    fn kill(&mut self) {
        // Only our own child, by its PID; `wait` reaps it.
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The program `name` on the PATH or in one of `dirs`. Panics, naming the install script, when
/// it is missing: a test that needs a real daemon never passes without it.
pub fn find_program(name: &str, dirs: &[&str]) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(dirs.iter().map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} is not installed, and this test needs it: run scripts/install-test-deps.sh"
            )
        })
}

/// A new, empty directory under the target's temp dir, unique to this process and call.
pub fn fresh_dir(prefix: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the daemon's directory");
    dir
}
