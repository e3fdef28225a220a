//! A real PostgreSQL server on loopback for pool tests, set up with its own tools: `initdb` (trust
//! authentication, user `postgres`) into a fresh data directory, `pg_ctl start` listening on
//! 127.0.0.1 only, on a free port, its Unix socket in the data directory; `pg_ctl stop` (then a
//! kill of the postmaster by its PID, should that fail) and the directory removed when dropped.
//!
//! PostgreSQL refuses to run as root: when the tests run as root, every tool runs as the user
//! `postgres` (`runuser -u postgres --`), and the data directory is made in the system's temp
//! directory and handed to that user. Debian keeps the server's programs in
//! `/usr/lib/postgresql/VERSION/bin`, off the PATH: the newest version there is used, then the
//! PATH.
#![allow(dead_code, unreachable_pub)]

use std::{
    net::{Ipv4Addr, SocketAddr, TcpListener},
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

/// How long `pg_ctl start` may wait for the server to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Fresh ports tried when the server cannot bind the one it was given.
const BIND_ATTEMPTS: usize = 5;

/// The user PostgreSQL's tools run as when the tests run as root.
const PG_USER: &str = "postgres";

/// A running PostgreSQL server. Dropping it stops it and removes its data directory.
#[derive(Debug)]
pub struct Postgres {
    bin: PathBuf,
    dir: PathBuf,
    data: PathBuf,
    addr: SocketAddr,
    as_root: bool,
}

impl Postgres {
    /// Creates a cluster and starts it on a free loopback port, waiting until it accepts
    /// connections. Panics with the tools' output when it cannot.
    pub fn start() -> Postgres {
        let bin = find_bin_dir();
        let as_root = running_as_root();
        let dir = fresh_dir();
        let data = dir.join("data");
        let mut pg = Postgres {
            bin,
            dir,
            data,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            as_root,
        };
        let out = pg.tool(
            "initdb",
            &[
                "-D",
                &pg.data.to_string_lossy(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "--no-locale",
                "-E",
                "UTF8",
            ],
        );
        assert!(out.status.success(), "initdb failed:\n{}", text(&out));
        let mut last = String::new();
        for attempt in 1..=BIND_ATTEMPTS {
            let port = {
                let probe = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
                probe.local_addr().expect("local_addr").port()
            };
            pg.addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let options = format!(
                "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=off \
                 -c full_page_writes=off -c synchronous_commit=off",
                pg.data.display()
            );
            let log = pg.data.join("server.log");
            let _ = std::fs::remove_file(&log);
            let out = pg.tool(
                "pg_ctl",
                &[
                    "-D",
                    &pg.data.to_string_lossy(),
                    "-l",
                    &log.to_string_lossy(),
                    "-o",
                    &options,
                    "-w",
                    "-t",
                    &START_TIMEOUT.as_secs().to_string(),
                    "start",
                ],
            );
            if out.status.success() {
                return pg;
            }
            let server_log = std::fs::read_to_string(&log).unwrap_or_default();
            last = format!("{}\n{server_log}", text(&out));
            if server_log.contains("Address already in use") {
                eprintln!("postgres: port {port} taken (attempt {attempt}), trying another");
                continue;
            }
            panic!("pg_ctl start failed on {}:\n{last}", pg.addr);
        }
        panic!("PostgreSQL could not bind a loopback port in {BIND_ATTEMPTS} attempts:\n{last}");
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@{}/postgres", self.addr)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.join("server.log")).unwrap_or_default()
    }

    /// Runs one of the server's programs (as `postgres` when we are root).
    fn tool(&self, name: &str, args: &[&str]) -> Output {
        let program = self.bin.join(name);
        let mut cmd = if self.as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", PG_USER, "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        cmd.args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {} (runuser is util-linux's; run scripts/install-test-deps.sh): {e}",
                    program.display()
                )
            })
    }

    /// The postmaster's PID, from `postmaster.pid`.
    fn postmaster_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.data.join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let pid = self.postmaster_pid();
        let stopped = self
            .tool(
                "pg_ctl",
                &[
                    "-D",
                    &self.data.to_string_lossy(),
                    "-m",
                    "immediate",
                    "-w",
                    "-t",
                    "20",
                    "stop",
                ],
            )
            .status
            .success();
        if !stopped {
            if let Some(pid) = pid.filter(|p| *p > 0) {
                // Only the postmaster this guard started, by its PID.
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The directory of `initdb`, `pg_ctl` and `postgres`: the newest
/// `/usr/lib/postgresql/VERSION/bin` that has them, else the PATH. Panics, naming the install
/// script, when they are missing: a test that needs PostgreSQL never passes without it.
pub fn find_bin_dir() -> PathBuf {
    let complete = |d: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|b| d.join(b).is_file())
    };
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, d)| complete(d))
        .collect();
    versions.sort();
    if let Some((_, dir)) = versions.pop() {
        return dir;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .find(|d| complete(d))
        .unwrap_or_else(|| {
            panic!(
                "PostgreSQL's server (initdb, pg_ctl, postgres) is not installed, and this test \
                 needs a real PostgreSQL: run scripts/install-test-deps.sh"
            )
        })
}

fn running_as_root() -> bool {
    // The owner of /proc/self is the process's effective uid.
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// A new directory in the system's temp directory (every user can reach it), unique to this
/// process and call, owned by `postgres` when we are root.
fn fresh_dir() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "conn-hygiene-pg-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create postgres dir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod 700");
    if running_as_root() {
        let (uid, gid) = user_ids(PG_USER).unwrap_or_else(|| {
            panic!(
                "no user `{PG_USER}` to run PostgreSQL as (the postgresql package creates it): \
                 run scripts/install-test-deps.sh"
            )
        });
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).expect("chown the postgres dir");
    }
    dir
}

/// `user`'s uid and gid, from `/etc/passwd`.
fn user_ids(user: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&user) && f.len() > 3)
            .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
            .flatten()
    })
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
