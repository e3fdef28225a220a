//! Shared helpers for the server tests: a test app, servers in both modes, a raw HTTP/1
//! client, `ss` and `curl` runners; [`eventually`] polls with a deadline.
#![allow(dead_code, unreachable_pub)]

use std::{
    collections::HashMap,
    net::SocketAddr,
    process::Command,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use axum::{
    extract::{Query, State},
    routing::get as route_get,
    Router,
};
use conn_hygiene::server::{
    ConnectionRegistry, HygienicListener, ListenerBuilder, MakeTrackConnection, Server,
    ShutdownReport,
};
#[allow(unused_imports)] // not every test binary waits
pub use conn_hygiene_test_support::eventually;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::oneshot,
    task::JoinHandle,
};

/// Counts handlers that finished and handlers that were cancelled (dropped early).
#[derive(Default)]
pub struct AppState {
    pub finished: AtomicUsize,
    pub cancelled: AtomicUsize,
    pub started: AtomicUsize,
}

struct CancelGuard(Arc<AppState>, bool);

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if !self.1 {
            self.0.cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", route_get(|| async { "hello\n" }))
        .route(
            "/slow",
            route_get(
                |State(s): State<Arc<AppState>>, Query(q): Query<HashMap<String, u64>>| async move {
                    s.started.fetch_add(1, Ordering::SeqCst);
                    let mut guard = CancelGuard(s.clone(), false);
                    let ms = q.get("ms").copied().unwrap_or(100);
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    guard.1 = true;
                    s.finished.fetch_add(1, Ordering::SeqCst);
                    format!("slept {ms}\n")
                },
            ),
        )
        .route(
            "/big",
            route_get(|Query(q): Query<HashMap<String, usize>>| async move {
                let kb = q.get("kb").copied().unwrap_or(1024).min(64 * 1024);
                vec![b'x'; kb * 1024]
            }),
        )
        .with_state(state)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `axum::serve(listener, MakeTrackConnection::new(app))`.
    Axum,
    /// The crate's own hyper-util serve loop.
    Hyper,
}

pub const MODES: [Mode; 2] = [Mode::Axum, Mode::Hyper];

pub struct TestServer {
    pub addr: SocketAddr,
    pub registry: ConnectionRegistry,
    pub state: Arc<AppState>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Option<ShutdownReport>>,
}

impl TestServer {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Signals shutdown and waits for the server to finish.
    pub async fn stop(mut self) -> Option<ShutdownReport> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("server stops within 30 s")
            .expect("server task")
    }

    pub fn trigger_stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }

    pub async fn join(self) -> Option<ShutdownReport> {
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("server stops within 30 s")
            .expect("server task")
    }
}

/// Serves the test app on a listener bound from `builder`; its shutdown deadline is the one in
/// the builder's limits (25 s by default).
pub async fn start(mode: Mode, builder: ListenerBuilder) -> TestServer {
    let listener = builder.bind("127.0.0.1:0").await.expect("bind");
    start_with(mode, listener)
}

pub fn start_with(mode: Mode, listener: HygienicListener) -> TestServer {
    let addr = listener.local_addr();
    let registry = listener.registry().clone();
    let state = Arc::new(AppState::default());
    let (tx, rx) = oneshot::channel::<()>();
    let signal = async move {
        let _ = rx.await;
    };
    let app = app(state.clone());
    let task = match mode {
        Mode::Axum => {
            let registry = registry.clone();
            tokio::spawn(async move {
                axum::serve(listener, MakeTrackConnection::new(app))
                    .with_graceful_shutdown(registry.graceful_shutdown(signal))
                    .await
                    .expect("axum::serve");
                // axum's serve returns once its connection tasks said they are done, which
                // each says just before it drops its connection: the last close is counted a
                // moment later (as the docs of `graceful_shutdown` say).
                tokio::time::timeout(Duration::from_secs(10), registry.closed())
                    .await
                    .expect("every connection accounted after axum::serve returned");
                None
            })
        }
        Mode::Hyper => tokio::spawn(async move {
            Some(
                Server::new()
                    .serve_with_shutdown(listener, app, signal)
                    .await,
            )
        }),
    };
    TestServer {
        addr,
        registry,
        state,
        stop: Some(tx),
        task,
    }
}

/// A minimal HTTP/1.1 response.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `GET path` on an open connection and reads one response (content-length bodies).
pub async fn get(stream: &mut TcpStream, path: &str) -> std::io::Result<RawResponse> {
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
        .await?;
    read_response(stream).await
}

pub async fn read_response(stream: &mut TcpStream) -> std::io::Result<RawResponse> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok(RawResponse {
        status,
        headers,
        body,
    })
}

/// Reads until EOF or error; returns what ended the read.
pub async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> std::io::Result<usize> {
    let mut sink = Vec::new();
    tokio::time::timeout(limit, stream.read_to_end(&mut sink))
        .await
        .expect("connection closed by the server in time")
}

/// Runs `ss` with the given arguments (no header line) and returns its lines.
pub fn ss(args: &[&str]) -> Vec<String> {
    let out = Command::new("ss")
        .arg("-H")
        .args(args)
        .output()
        .expect("ss (iproute2) is installed: run scripts/install-test-deps.sh");
    assert!(out.status.success(), "ss {args:?} failed: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// Sockets whose local port is `port`, with their state, from `ss -tan`.
pub fn sockets_on_local_port(port: u16) -> Vec<String> {
    ss(&["-tan", &format!("( sport = :{port} )")])
}

/// Runs curl with the given arguments off the runtime threads; returns (success, stdout, stderr).
pub async fn curl(args: &[&str]) -> (bool, String, String) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("curl")
            .args(&args)
            .output()
            .expect("curl is installed: run scripts/install-test-deps.sh")
    })
    .await
    .expect("curl task");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Waits, on the registry's close events and with a bound, until its totals satisfy `cond`;
/// fails with the totals it last saw.
pub async fn wait_totals(
    reg: &conn_hygiene::server::ConnectionRegistry,
    cond: impl FnMut(&conn_hygiene::server::RegistryTotals) -> bool,
) {
    if tokio::time::timeout(Duration::from_secs(10), reg.wait_for(cond))
        .await
        .is_err()
    {
        panic!("totals never got there in 10 s: {:?}", reg.totals());
    }
}
