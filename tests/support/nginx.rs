//! A real nginx on loopback for client tests: its own prefix directory (config, logs, pid and
//! temp paths), one process in the foreground, killed by its PID when dropped.
//!
//! nginx binds its own listening socket: see [`daemon`] for how its port is chosen.
#![allow(dead_code, unreachable_pub)]

use std::{
    fmt::Write as _,
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

#[path = "daemon.rs"]
mod daemon;

use daemon::{find_program, fresh_dir, Daemon, Spec};

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
    daemon: Daemon,
    tls: Option<NginxTls>,
}

impl Nginx {
    /// Starts nginx serving `location / { return 200 "ok\n"; }` on a free loopback port and
    /// waits until it answers. Panics with nginx's error log when it cannot start.
    pub fn start(config: &NginxConfig) -> Nginx {
        let bin = find_program("nginx", &["/usr/local/sbin", "/usr/sbin", "/sbin"]);
        let dir = fresh_dir("nginx");
        std::fs::create_dir_all(dir.join("logs")).expect("create nginx logs dir");
        let log = dir.join("error.log");
        let tls = config.tls.is_some();
        let command = |addr: SocketAddr| {
            std::fs::write(dir.join("nginx.conf"), render_config(&dir, addr, config))
                .expect("write nginx.conf");
            let mut c = Command::new(&bin);
            c.arg("-p")
                .arg(&dir)
                .arg("-c")
                .arg(dir.join("nginx.conf"))
                .arg("-e")
                .arg(&log);
            c
        };
        let daemon = Daemon::start(&Spec {
            name: "nginx",
            dir: &dir,
            log: &log,
            command: &command,
            ready: &|addr| answers_as_nginx(addr, tls),
        });
        Nginx {
            daemon,
            tls: config.tls.clone(),
        }
    }

    /// The address nginx listens on.
    pub fn addr(&self) -> SocketAddr {
        self.daemon.addr()
    }

    /// `http://addr{path}`, or `https://` when it serves HTTPS.
    pub fn url(&self, path: &str) -> http::Uri {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.addr())
            .parse()
            .expect("valid URI")
    }

    /// Its HTTPS settings, when it serves HTTPS.
    pub fn tls(&self) -> Option<&NginxTls> {
        self.tls.as_ref()
    }

    /// nginx's PID.
    pub fn pid(&self) -> u32 {
        self.daemon.pid()
    }

    /// nginx's error log so far.
    pub fn error_log(&self) -> String {
        self.daemon.log()
    }
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
