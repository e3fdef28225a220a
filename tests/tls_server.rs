//! TLS beneath the tracking (`HygienicListener::with_handshake` with a rustls acceptor), served
//! by `axum::serve`: every limit and count holds as over plain TCP, because the tracked stream
//! follows the decrypted HTTP bytes, while the socket beneath still tells who closed first.
//! Real TLS on loopback: a certificate made at test time (rcgen), tokio-rustls clients and
//! curl, and raw TCP peers that never handshake or speak plain HTTP.
#![cfg(all(feature = "rustls", feature = "axum"))]

use std::{net::SocketAddr, time::Duration};

use axum::{routing::get, Extension, Router};
use conn_hygiene::server::{
    CloseReason, Closer, ConnState, ConnectionInfo, ConnectionLimits, ConnectionRegistry,
    HygienicListener, MakeTrackConnection, RegistryTotals,
};
use rustls::pki_types::ServerName;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
    task::JoinHandle,
};
use tokio_rustls::TlsAcceptor;

#[path = "support/tls.rs"]
mod tls_support;

use tls_support::{test_tls as tls, TestTls as Tls};

const LIMIT: Duration = Duration::from_secs(10);

struct Served {
    addr: SocketAddr,
    registry: ConnectionRegistry,
    task: JoinHandle<()>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(acceptor: TlsAcceptor, limits: ConnectionLimits) -> Served {
    let listener = HygienicListener::builder()
        .name("tls")
        .limits(limits)
        .bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr();
    let registry = listener.registry().clone();
    let app = Router::new()
        .route("/", get(|| async { "hello over tls\n" }))
        .route(
            "/info",
            get(|Extension(info): Extension<ConnectionInfo>| async move {
                format!("request {}\n", info.request_number())
            }),
        );
    let listener = listener.with_handshake(acceptor);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, MakeTrackConnection::new(app)).await;
    });
    Served {
        addr,
        registry,
        task,
    }
}

async fn wait_totals(reg: &ConnectionRegistry, cond: impl FnMut(&RegistryTotals) -> bool) {
    if tokio::time::timeout(LIMIT, reg.wait_for(cond))
        .await
        .is_err()
    {
        panic!("totals never got there: {:?}", reg.totals());
    }
}

async fn connect(tls: &Tls, addr: SocketAddr) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    tls.connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake")
}

/// One HTTP/1.1 response with a `Content-Length` body: (status, body).
async fn response<S: AsyncRead + Unpin>(s: &mut S) -> std::io::Result<(u16, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
    let status = head[9..12].parse().unwrap_or(0);
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = buf[end..].to_vec();
    while body.len() < len {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

async fn request<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, path: &str) -> (u16, String) {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .expect("write");
    response(s).await.expect("response")
}

fn limits() -> conn_hygiene::server::ConnectionLimitsBuilder {
    ConnectionLimits::builder()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_tls_are_tracked_counted_and_told_their_connection() {
    let tls = tls();
    let served = serve(tls.acceptor.clone(), limits().build().unwrap()).await;
    let mut s = connect(&tls, served.addr).await;
    assert_eq!(request(&mut s, "/").await, (200, "hello over tls\n".into()));
    assert_eq!(request(&mut s, "/info").await, (200, "request 2\n".into()));
    let snap = served.registry.snapshot();
    assert_eq!(snap.connections.len(), 1);
    let conn = &snap.connections[0];
    assert_eq!(conn.requests, 2, "{conn:?}");
    assert_eq!(conn.state, ConnState::Idle);
    // The tracked stream counts the HTTP bytes above TLS, not the records: the second
    // response alone is longer than what a TLS record adds.
    assert!(
        conn.bytes_in > 0 && conn.bytes_out > conn.bytes_in,
        "{conn:?}"
    );
    // The client closes (close_notify, then FIN): the peer closed first.
    s.shutdown().await.expect("close_notify");
    drop(s);
    wait_totals(&served.registry, |t| t.closed == 1).await;
    let t = served.registry.totals();
    assert_eq!(t.closed_by(Closer::Peer), 1, "{t:?}");
    assert_eq!(t.closed_for(CloseReason::PeerClosed), 1, "{t:?}");
    assert_eq!(t.requests_unanswered, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_idle_timeout_holds_over_tls() {
    let tls = tls();
    let limits = limits()
        .idle_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let served = serve(tls.acceptor.clone(), limits).await;
    let mut s = connect(&tls, served.addr).await;
    assert_eq!(request(&mut s, "/").await.0, 200);
    // Nothing more is sent: the server ends the connection at the idle timeout.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(LIMIT, s.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the server closed the idle TLS connection");
    wait_totals(&served.registry, |t| t.closed == 1).await;
    let t = served.registry.totals();
    assert_eq!(t.closed_for(CloseReason::IdleTimeout), 1, "{t:?}");
    assert_eq!(t.closed_by(Closer::Local), 1, "{t:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_starts_the_handshake_is_cut_at_the_header_timeout_without_holding_up_others(
) {
    let tls = tls();
    let limits = limits()
        .header_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let served = serve(tls.acceptor.clone(), limits).await;
    // A silent client: connected, no ClientHello.
    let mut silent = TcpStream::connect(served.addr).await.unwrap();
    // Accepting goes on while its handshake waits: a real client is served meanwhile.
    let mut s = connect(&tls, served.addr).await;
    assert_eq!(request(&mut s, "/").await.0, 200);
    let mut sink = Vec::new();
    let closed = tokio::time::timeout(LIMIT, silent.read_to_end(&mut sink)).await;
    assert!(closed.is_ok(), "the silent connection was closed");
    wait_totals(&served.registry, |t| t.closed == 1).await;
    let t = served.registry.totals();
    assert_eq!(t.closed_for(CloseReason::HeaderTimeout), 1, "{t:?}");
    assert_eq!(t.closed_by(Closer::Timeout), 1, "{t:?}");
    // The live connection is the real client's, served.
    assert_eq!(served.registry.live(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_on_the_tls_port_is_a_failed_handshake_counted() {
    let tls = tls();
    let served = serve(tls.acceptor.clone(), limits().build().unwrap()).await;
    let mut plain = TcpStream::connect(served.addr).await.unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(LIMIT, plain.read_to_end(&mut sink))
        .await
        .expect("closed");
    wait_totals(&served.registry, |t| t.closed == 1).await;
    let t = served.registry.totals();
    assert_eq!(t.closed_for(CloseReason::HandshakeFailed), 1, "{t:?}");
    assert_eq!(t.closed_by(Closer::Error), 1, "{t:?}");
    assert_eq!(served.registry.live(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_close_right_after_the_request_still_gets_the_response_over_tls() {
    let tls = tls();
    let served = serve(tls.acceptor.clone(), limits().build().unwrap()).await;
    for _ in 0..10 {
        let s = connect(&tls, served.addr).await;
        let (mut rd, mut wr) = tokio::io::split(s);
        wr.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        // close_notify, then FIN: the request is complete, the client reads on.
        wr.shutdown().await.unwrap();
        let (status, body) = response(&mut rd)
            .await
            .expect("the response after a half-close");
        assert_eq!((status, body.as_str()), (200, "hello over tls\n"));
    }
    wait_totals(&served.registry, |t| t.closed == 10).await;
    let t = served.registry.totals();
    assert_eq!(t.requests_unanswered, 0, "{t:?}");
    assert_eq!(t.closed_by(Closer::Peer), 10, "{t:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_over_tls_with_http2_by_alpn_and_http1() {
    let tls = tls();
    let served = serve(tls.acceptor.clone(), limits().build().unwrap()).await;
    let dir = std::env::temp_dir().join(format!("conn-hygiene-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &tls.cert_pem).unwrap();
    let url = format!("https://localhost:{}/", served.addr.port());
    let resolve = format!("localhost:{}:127.0.0.1", served.addr.port());
    for (version, expect) in [("--http2", "HTTP/2 200"), ("--http1.1", "HTTP/1.1 200")] {
        let out = tokio::process::Command::new("curl")
            .args(["-sS", "-i", "--max-time", "10", version, "--cacert"])
            .arg(&ca)
            .args(["--resolve", &resolve, &url])
            .output()
            .await
            .expect("curl is installed: run scripts/install-test-deps.sh");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.starts_with(expect) && text.ends_with("hello over tls\n"),
            "curl {version}: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    wait_totals(&served.registry, |t| t.closed == 2).await;
    let t = served.registry.totals();
    assert_eq!(t.requests_unanswered, 0, "{t:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_crates_own_server_serves_over_tls_and_drains_at_shutdown() {
    let tls = tls();
    let listener = HygienicListener::builder()
        .name("tls-own")
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = listener.local_addr();
    let registry = listener.registry().clone();
    let app = Router::new()
        .route("/", get(|| async { "hello over tls\n" }))
        .with_state(());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let listener = listener.with_handshake(tls.acceptor.clone());
    let server = tokio::spawn(async move {
        conn_hygiene::server::Server::new()
            .serve_with_shutdown(listener, app, async {
                let _ = stopped.await;
            })
            .await
    });
    let mut s = connect(&tls, addr).await;
    assert_eq!(request(&mut s, "/").await.0, 200);
    assert_eq!(registry.live(), 1);
    let _ = stop.send(());
    // The idle connection closes at once at shutdown; the report says it drained.
    let report = tokio::time::timeout(LIMIT, server)
        .await
        .expect("shut down in time")
        .expect("server task");
    assert_eq!(
        (report.open_at_start, report.drained, report.cut),
        (1, 1, 0)
    );
    let t = registry.totals();
    assert_eq!(t.closed_for(CloseReason::Shutdown), 1, "{t:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_peer_that_closes_without_close_notify_closed_first() {
    let tls = tls();
    let served = serve(tls.acceptor.clone(), limits().build().unwrap()).await;
    let s = connect(&tls, served.addr).await;
    let (mut tcp, _) = s.into_inner();
    // The TLS session is left as it is: the TCP connection ends with a bare FIN.
    tcp.shutdown().await.unwrap();
    drop(tcp);
    wait_totals(&served.registry, |t| t.closed == 1).await;
    let t = served.registry.totals();
    assert_eq!(t.closed_for(CloseReason::PeerClosed), 1, "{t:?}");
    assert_eq!(t.closed_by(Closer::Peer), 1, "{t:?}");
}
