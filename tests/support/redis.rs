//! A real redis-server on loopback for pool tests: its own directory (no persistence), one
//! process in the foreground, killed by its PID when dropped.
//!
//! redis-server binds its own listening socket: see [`daemon`] for how its port is chosen.
#![allow(dead_code, unreachable_pub)]

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::PathBuf,
    process::Command,
    time::Duration,
};

#[path = "daemon.rs"]
mod daemon;

use daemon::{find_program, fresh_dir, Daemon, Spec};

/// A running redis-server. Dropping it kills the process and removes its directory.
#[derive(Debug)]
pub struct RedisServer {
    daemon: Daemon,
}

impl RedisServer {
    /// Starts redis-server on a free loopback port, closing clients idle for `idle_timeout`
    /// seconds (`--timeout`, 0 for never), with no persistence; waits until it answers `PING`.
    /// Panics with its log when it cannot start.
    pub fn start(idle_timeout_secs: u32) -> RedisServer {
        let bin = find_redis_server();
        let dir = fresh_dir("redis");
        let log = dir.join("redis.log");
        let command = |addr: SocketAddr| {
            let mut c = Command::new(&bin);
            c.args(["--bind", "127.0.0.1", "--port"])
                .arg(addr.port().to_string())
                .arg("--timeout")
                .arg(idle_timeout_secs.to_string())
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .arg("--dir")
                .arg(&dir)
                .arg("--logfile")
                .arg(&log);
            c
        };
        let daemon = Daemon::start(&Spec {
            name: "redis-server",
            dir: &dir,
            log: &log,
            command: &command,
            ready: &answers_pong,
        });
        RedisServer { daemon }
    }

    /// The address redis-server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.daemon.addr()
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://{}/0", self.addr())
    }

    /// redis-server's PID.
    pub fn pid(&self) -> u32 {
        self.daemon.pid()
    }

    /// redis-server's log so far.
    pub fn log(&self) -> String {
        self.daemon.log()
    }
}

/// The redis-server binary: on the PATH or in the usual directories. Panics, naming the
/// install script, when it is missing: a test that needs Redis never passes without it.
pub fn find_redis_server() -> PathBuf {
    find_program("redis-server", &["/usr/local/bin", "/usr/bin", "/usr/sbin"])
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
