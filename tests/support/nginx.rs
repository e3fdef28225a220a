//! A real nginx on loopback for client tests: its own prefix directory (config, logs, pid and
//! temp paths), one process in the foreground, killed by its PID when dropped.
//!
//! nginx binds its own listening socket, so the port comes from binding `127.0.0.1:0`, reading
//! the port and releasing it; should another socket take the port in between, nginx fails to
//! bind and [`Nginx::start`] retries with a fresh port a few times.
#![allow(dead_code, unreachable_pub)]

use std::{
    fmt::Write as _,
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

/// How long nginx may take to accept connections after it was started.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Fresh ports tried when nginx cannot bind the one it was given.
const BIND_ATTEMPTS: usize = 5;

/// The nginx settings a test chooses.
#[derive(Debug, Clone)]
pub struct NginxConfig {
    /// `keepalive_timeout`, in whole seconds.
    pub keepalive_timeout_secs: u32,
    /// `keepalive_requests`.
    pub keepalive_requests: u32,
    /// Serve HTTPS with this certificate and key instead of plain HTTP.
    pub tls: Option<NginxTls>,
}

/// HTTPS on nginx's port.
#[derive(Debug, Clone)]
pub struct NginxTls {
    /// PEM certificate (chain) file.
    pub cert: PathBuf,
    /// PEM private key file.
    pub key: PathBuf,
    /// Offer HTTP/2 by ALPN beside HTTP/1.1.
    pub http2: bool,
}

impl Default for NginxConfig {
    fn default() -> Self {
        Self {
            keepalive_timeout_secs: 1,
            keepalive_requests: 20,
            tls: None,
        }
    }
}

/// A running nginx. Dropping it kills the process and removes its directory.
#[derive(Debug)]
pub struct Nginx {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
    tls: Option<NginxTls>,
}

impl Nginx {
    /// Starts nginx serving `location / { return 200 "ok\n"; }` on a free loopback port and
    /// waits until it answers. Panics with nginx's error log when it cannot start.
    pub fn start(config: &NginxConfig) -> Nginx {
        let bin = find_nginx();
        let dir = fresh_dir();
        let mut last_log = String::new();
        for attempt in 1..=BIND_ATTEMPTS {
            let port = {
                let probe = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
                probe.local_addr().expect("local_addr").port()
            };
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            std::fs::write(dir.join("nginx.conf"), render_config(&dir, addr, config))
                .expect("write nginx.conf");
            let _ = std::fs::remove_file(dir.join("error.log"));
            let child = Command::new(&bin)
                .arg("-p")
                .arg(&dir)
                .arg("-c")
                .arg(dir.join("nginx.conf"))
                .arg("-e")
                .arg(dir.join("error.log"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
            // From here on the guard owns the process: a panic below still kills it.
            let mut nginx = Nginx {
                child,
                addr,
                dir: dir.clone(),
                tls: config.tls.clone(),
            };
            match nginx.wait_ready() {
                Ok(()) => return nginx,
                Err(log) if log.contains("Address already in use") => {
                    eprintln!("nginx: port {port} taken (attempt {attempt}), trying another");
                    last_log = log;
                    nginx.kill();
                    // Keep the directory for the next attempt.
                    nginx.dir = PathBuf::new();
                }
                Err(log) => panic!("nginx did not start on {addr}:\n{log}"),
            }
        }
        panic!("nginx could not bind a loopback port in {BIND_ATTEMPTS} attempts:\n{last_log}");
    }

    /// The address nginx listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://addr{path}`, or `https://` when it serves HTTPS.
    pub fn url(&self, path: &str) -> http::Uri {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.addr)
            .parse()
            .expect("valid URI")
    }

    /// Its HTTPS settings, when it serves HTTPS.
    pub fn tls(&self) -> Option<&NginxTls> {
        self.tls.as_ref()
    }

    /// nginx's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// nginx's error log so far.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }

    /// Polls until nginx answers a request with its own `Server` header, or until it exits
    /// (`Err` with its error log) or the deadline passes (panic).
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut pause = Duration::from_millis(1);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for nginx") {
                return Err(format!("nginx exited ({status}):\n{}", self.error_log()));
            }
            if answers_as_nginx(self.addr, self.tls.is_some()) {
                return Ok(());
            }
            assert!(
                Instant::now() < deadline,
                "nginx (pid {}) did not answer on {} within {READY_TIMEOUT:?}:\n{}",
                self.child.id(),
                self.addr,
                self.error_log()
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

impl Drop for Nginx {
    fn drop(&mut self) {
        self.kill();
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The nginx binary: on the PATH or in an sbin directory. Panics, naming the install script,
/// when it is missing: a test that needs nginx never passes without it.
fn find_nginx() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join("nginx"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "nginx is not installed, and this test needs a real nginx: \
                 run scripts/install-test-deps.sh"
            )
        })
}

/// A new directory under the target's temp dir, unique to this process and call.
fn fresh_dir() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "nginx-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("logs")).expect("create nginx dir");
    dir
}

fn render_config(dir: &Path, addr: SocketAddr, c: &NginxConfig) -> String {
    let d = dir.display();
    let mut conf = String::new();
    // nginx as root switches to `user` (default `nobody`); naming root keeps the process able
    // to write its own directory. Not root: the directive would only draw a warning.
    if running_as_root() {
        conf.push_str("user root;\n");
    }
    let _ = write!(
        conf,
        r#"daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{
    worker_connections 512;
}}
http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    default_type text/plain;
    keepalive_timeout {ka}s;
    keepalive_requests {kr};
    server {{
        listen {addr}{listen_tls};
{tls_files}        location / {{
            return 200 "ok\n";
        }}
    }}
}}
"#,
        ka = c.keepalive_timeout_secs,
        kr = c.keepalive_requests,
        listen_tls = match &c.tls {
            Some(t) if t.http2 => " ssl http2",
            Some(_) => " ssl",
            None => "",
        },
        tls_files = c.tls.as_ref().map_or_else(String::new, |t| format!(
            "        ssl_certificate {};\n        ssl_certificate_key {};\n",
            t.cert.display(),
            t.key.display()
        )),
    );
    conf
}

fn running_as_root() -> bool {
    // The owner of /proc/self is the process's effective uid.
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// One `GET /` whose response carries `Server: nginx`: the port is nginx's, not a stranger's.
/// On an HTTPS port nginx answers the plain request with its own 400.
fn answers_as_nginx(addr: SocketAddr, tls: bool) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if s.write_all(b"GET / HTTP/1.1\r\nHost: ready\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    let status = if tls { "http/1.1 400" } else { "http/1.1 200" };
    text.starts_with(status) && text.contains("\r\nserver: nginx")
}
