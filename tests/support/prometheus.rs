//! Helpers for the exporter and Prometheus tests: a raw HTTP/1.1 client that can choose its
//! source address, polling with a deadline, and a Prometheus server run as a child process.
#![allow(dead_code, unreachable_pub)]

use std::{
    fs,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpSocket,
};

/// A parsed HTTP/1.1 response.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// The local address the request was sent from.
    pub from: SocketAddr,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one request with `Connection: close` from `source` (port chosen by the kernel) and
/// reads the whole response. `extra_headers` are written as given (`Name: value` lines).
pub async fn request(
    source: IpAddr,
    to: SocketAddr,
    method: &str,
    path: &str,
    extra_headers: &[&str],
) -> std::io::Result<HttpResponse> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    let mut stream = socket.connect(to).await?;
    let from = stream.local_addr()?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {to}\r\nConnection: close\r\n");
    for h in extra_headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "response timed out"))??;
    parse_response(&raw, from)
}

/// GET from 127.0.0.1.
pub async fn get(to: SocketAddr, path: &str) -> std::io::Result<HttpResponse> {
    request(IpAddr::from([127, 0, 0, 1]), to, "GET", path, &[]).await
}

fn parse_response(raw: &[u8], from: SocketAddr) -> std::io::Result<HttpResponse> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| bad("head not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or_else(|| bad("no status line"))?;
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let rest = &raw[split + 4..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(rest).ok_or_else(|| bad("bad chunked body"))?
    } else {
        rest.to_vec()
    };
    Ok(HttpResponse {
        status,
        headers,
        body: String::from_utf8(body).map_err(|_| bad("body not UTF-8"))?,
        from,
    })
}

fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    // Each round consumes one chunk, so the loop ends with the input.
    while !rest.is_empty() {
        let eol = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&rest[..eol]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
    Some(out)
}

/// Polls `check` every `every` until it returns `Some` or `deadline` passes; returns the last
/// observation for the failure message either way.
pub async fn poll_until<T, F, Fut>(
    deadline: Duration,
    every: Duration,
    mut check: F,
) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let end = Instant::now() + deadline;
    let mut last;
    loop {
        match check().await {
            Ok(v) => return Ok(v),
            Err(e) => last = e,
        }
        if Instant::now() >= end {
            return Err(format!("not reached within {deadline:?}; last: {last}"));
        }
        tokio::time::sleep(every).await;
    }
}

/// Finds a tool on the PATH (or in the sbin directories), or fails naming the install script.
pub fn require_tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain(
        ["/usr/local/sbin", "/usr/sbin", "/sbin"]
            .iter()
            .map(PathBuf::from),
    );
    for dir in dirs {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "`{name}` is not installed; this test needs it. Run scripts/install-test-deps.sh \
         (it installs the Debian package providing `{name}`)."
    );
}

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("{prefix}-{}-{nanos}", std::process::id()));
        fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A child process killed (by its PID, through the handle) and reaped on drop.
pub struct ChildGuard {
    pub child: Child,
    pub log: PathBuf,
}

impl ChildGuard {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The child's combined output so far, for failure messages.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Fails if the child has exited.
    pub fn check_running(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!(
                "pid {} exited with {status}; output:\n{}",
                self.child.id(),
                self.log_text()
            )),
            Err(e) => Err(format!("try_wait: {e}")),
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `program args`, output appended to `log`.
pub fn spawn_logged(program: &Path, args: &[String], log: PathBuf) -> ChildGuard {
    let out = fs::File::create(&log).expect("create log file");
    let err = out.try_clone().expect("clone log file");
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", program.display()));
    ChildGuard { child, log }
}

/// The TCP address a process listens on, read from `ss -Hltnp` (the process's only listening
/// socket, or the first one).
pub fn listening_addr_of(pid: u32) -> Option<SocketAddr> {
    let ss = require_tool("ss");
    let out = Command::new(ss).args(["-Hltnp"]).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let needle = format!("pid={pid},");
    text.lines()
        .filter(|l| l.contains(&needle))
        .find_map(|l| l.split_whitespace().nth(3)?.parse().ok())
}

/// The web address a Prometheus started with `--web.listen-address=127.0.0.1:0` bound: from its
/// log (`msg="Listening on" address=...`), else from `ss`.
pub fn web_addr(log: &str, pid: u32) -> Option<SocketAddr> {
    log.lines()
        .filter(|l| l.contains("msg=\"Listening on\""))
        .find_map(|l| {
            l.split_whitespace()
                .find_map(|field| field.strip_prefix("address="))
                .and_then(|a| a.parse::<SocketAddr>().ok())
                .filter(|a| a.port() != 0)
        })
        .or_else(|| listening_addr_of(pid))
}

/// Percent-encodes a query parameter value.
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
