//! A real redis-server on loopback for pool tests: its own directory (no persistence), one
//! process in the foreground, killed by its PID when dropped.
//!
//! redis-server binds its own listening socket, so the port comes from binding `127.0.0.1:0`,
//! reading the port and releasing it; should another socket take the port in between,
//! redis-server fails to bind and [`RedisServer::start`] retries with a fresh port a few times.
#![allow(dead_code, unreachable_pub)]

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

/// How long redis-server may take to answer `PING` after it was started.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Fresh ports tried when redis-server cannot bind the one it was given.
const BIND_ATTEMPTS: usize = 5;

/// A running redis-server. Dropping it kills the process and removes its directory.
#[derive(Debug)]
pub struct RedisServer {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl RedisServer {
    /// Starts redis-server on a free loopback port, closing clients idle for `idle_timeout`
    /// seconds (`--timeout`, 0 for never), with no persistence; waits until it answers `PING`.
    /// Panics with its log when it cannot start.
    pub fn start(idle_timeout_secs: u32) -> RedisServer {
        let bin = find_redis_server();
        let dir = fresh_dir();
        let mut last_log = String::new();
        for attempt in 1..=BIND_ATTEMPTS {
            let port = {
                let probe = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
                probe.local_addr().expect("local_addr").port()
            };
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let _ = std::fs::remove_file(dir.join("redis.log"));
            let child = Command::new(&bin)
                .args(["--bind", "127.0.0.1", "--port"])
                .arg(port.to_string())
                .arg("--timeout")
                .arg(idle_timeout_secs.to_string())
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .arg("--dir")
                .arg(&dir)
                .arg("--logfile")
                .arg(dir.join("redis.log"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
            // From here on the guard owns the process: a panic below still kills it.
            let mut server = RedisServer {
                child,
                addr,
                dir: dir.clone(),
            };
            match server.wait_ready() {
                Ok(()) => return server,
                Err(log) if log.contains("Address already in use") => {
                    eprintln!(
                        "redis-server: port {port} taken (attempt {attempt}), trying another"
                    );
                    last_log = log;
                    server.kill();
                    // Keep the directory for the next attempt.
                    server.dir = PathBuf::new();
                }
                Err(log) => panic!("redis-server did not start on {addr}:\n{log}"),
            }
        }
        panic!(
            "redis-server could not bind a loopback port in {BIND_ATTEMPTS} attempts:\n{last_log}"
        );
    }

    /// The address redis-server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://{}/0", self.addr)
    }

    /// redis-server's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// redis-server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
    }

    /// Polls until redis-server answers `PING` with `+PONG`, or until it exits (`Err` with its
    /// log) or the deadline passes (panic).
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut pause = Duration::from_millis(1);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for redis-server") {
                return Err(format!("redis-server exited ({status}):\n{}", self.log()));
            }
            if answers_pong(self.addr) {
                return Ok(());
            }
            assert!(
                Instant::now() < deadline,
                "redis-server (pid {}) did not answer on {} within {READY_TIMEOUT:?}:\n{}",
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

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The redis-server binary: on the PATH or in the usual directories. Panics, naming the
/// install script, when it is missing: a test that needs Redis never passes without it.
pub fn find_redis_server() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/bin", "/usr/bin", "/usr/sbin"].map(PathBuf::from))
        .map(|d| d.join("redis-server"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "redis-server is not installed, and this test needs a real Redis: \
                 run scripts/install-test-deps.sh"
            )
        })
}

/// A new directory under the target's temp dir, unique to this process and call.
fn fresh_dir() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "redis-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create redis dir");
    dir
}

/// One `PING` answered `+PONG`: the port is redis-server's, not a stranger's.
fn answers_pong(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}
