//! The pooled client over HTTPS against the crate's own TLS server on loopback (a certificate
//! for 127.0.0.1 made at test time, trusted as the client's CA): HTTP/2 or HTTP/1.1 by ALPN,
//! the socket policy on the socket beneath TLS (read back with getsockopt), who closed first
//! when either side ends the connection, and handshakes that fail counted as `tls` connect
//! errors without a connection.
#![cfg(all(feature = "client", feature = "rustls", feature = "axum"))]

#[path = "support/tls.rs"]
mod tls_support;

use std::{net::SocketAddr, time::Duration};

use axum::{routing::get, Router};
use bytes::Bytes;
use conn_hygiene::{
    client::{
        ClientTls, CloseReason, Closer, HygienicClient, TlsConfigError, UpstreamConfig,
        UpstreamSnapshot,
    },
    policy::{EffectiveOptions, Keepalive, SocketPolicy},
    server::{self, ConnectionLimits, ConnectionRegistry, HygienicListener, MakeTrackConnection},
    Transport,
};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use socket2::SockRef;
use tls_support::{test_tls, TestTls};
use tokio::task::JoinHandle;
use tower::Service;

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

async fn serve(tls: &TestTls, limits: ConnectionLimits) -> Served {
    let listener = HygienicListener::builder()
        .name("https")
        .limits(limits)
        .bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr();
    let registry = listener.registry().clone();
    let app = Router::new().route("/", get(|| async { "hello over tls\n" }));
    let listener = listener.with_handshake(tls.acceptor.clone());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, MakeTrackConnection::new(app)).await;
    });
    Served {
        addr,
        registry,
        task,
    }
}

fn client_tls(tls: &TestTls) -> conn_hygiene::client::ClientTlsBuilder {
    ClientTls::builder()
        .add_ca_pem(tls.cert_pem.as_bytes())
        .expect("the test CA")
}

fn url(addr: SocketAddr) -> http::Uri {
    format!("https://127.0.0.1:{}/", addr.port())
        .parse()
        .unwrap()
}

async fn get_ok(client: &HygienicClient<Empty<Bytes>>, addr: SocketAddr) -> http::Version {
    let res = tokio::time::timeout(LIMIT, client.get(url(addr)))
        .await
        .expect("response in time")
        .expect("response");
    assert_eq!(res.status(), 200);
    let version = res.version();
    let body = res.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(&body[..], b"hello over tls\n");
    version
}

fn upstream(client: &HygienicClient<Empty<Bytes>>) -> UpstreamSnapshot {
    let mut snaps = client.view().snapshot();
    assert_eq!(snaps.len(), 1, "one upstream: {snaps:?}");
    snaps.remove(0)
}

/// Polls the client's upstream until `cond` holds, or panics with what it last saw.
async fn wait_upstream(
    client: &HygienicClient<Empty<Bytes>>,
    what: &str,
    mut cond: impl FnMut(&UpstreamSnapshot) -> bool,
) -> UpstreamSnapshot {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let snap = upstream(client);
        if cond(&snap) {
            return snap;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: never happened: {snap:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_speaks_http2_or_http1_by_alpn_and_the_client_closes_first() {
    let tls = test_tls();
    let served = serve(&tls, ConnectionLimits::default()).await;

    // Default: h2 and http/1.1 offered, the server picks h2.
    let h2 = HygienicClient::builder()
        .tls(client_tls(&tls).build().unwrap())
        .build::<Empty<Bytes>>()
        .unwrap();
    for _ in 0..3 {
        assert_eq!(get_ok(&h2, served.addr).await, http::Version::HTTP_2);
    }
    let snap = upstream(&h2);
    assert_eq!(snap.totals.connects, 1, "{snap:?}");
    let c = &snap.connections[0];
    assert!(c.tls && c.http2, "{c:?}");
    assert_eq!(c.requests, 3);

    // HTTP/1.1 alone offered.
    let h1 = HygienicClient::builder()
        .tls(client_tls(&tls).offer_http2(false).build().unwrap())
        .build::<Empty<Bytes>>()
        .unwrap();
    for _ in 0..3 {
        assert_eq!(get_ok(&h1, served.addr).await, http::Version::HTTP_11);
    }
    // Usually one connection; two when a request came before hyper-util had put the previous
    // one back in its pool (it then starts a connect, which lands a moment later, unused).
    let snap = upstream(&h1);
    assert!(snap.totals.connects <= 2, "{snap:?}");
    assert!(
        snap.connections.iter().all(|c| c.tls && !c.http2),
        "{snap:?}"
    );
    let carried: u64 = snap.connections.iter().map(|c| c.requests).sum();
    assert_eq!(carried, 3, "{snap:?}");

    // The server saw every connection both clients made, once every connect has landed.
    wait_upstream(&h1, "every connect landed on both sides", |h1_snap| {
        served.registry.totals().opened == upstream(&h2).totals.connects + h1_snap.totals.connects
    })
    .await;
    let opened = served.registry.totals().opened;

    // The census attributes the TLS connections to the client's upstream, as over TCP: the
    // local ports in use toward the server (both clients' connections) are the upstream's.
    #[cfg(feature = "census")]
    {
        let sampler = conn_hygiene::census::Sampler::builder()
            .interval(Duration::from_secs(3600))
            .client(h1.view())
            .spawn()
            .expect("sampler");
        let census = sampler.sample_now().await;
        let name = format!("127.0.0.1:{}", served.addr.port());
        let up = census
            .upstream(&name)
            .unwrap_or_else(|| panic!("{name} in {:?}", census.upstreams));
        let used: u64 = up
            .ports
            .iter()
            .filter(|p| p.destination == served.addr)
            .map(|p| p.used)
            .sum();
        let connects = upstream(&h1).totals.connects + upstream(&h2).totals.connects;
        assert_eq!(used, connects, "{up:?}");
        sampler.stop();
    }

    // Dropping the clients closes their idle connections: each closed first, with its
    // close_notify and FIN, and the server saw the client close first.
    drop(h1);
    drop(h2);
    tokio::time::timeout(LIMIT, served.registry.wait_for(|t| t.closed == opened))
        .await
        .unwrap_or_else(|_| panic!("closes never landed: {:?}", served.registry.totals()));
    let t = served.registry.totals();
    assert_eq!(t.closed_by(Closer::Peer), opened, "{t:?}");
    assert_eq!(t.closed_by(Closer::Error), 0, "{t:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_closing_an_idle_tls_connection_closed_first() {
    let tls = test_tls();
    let limits = ConnectionLimits::builder()
        .idle_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let served = serve(&tls, limits).await;
    let client = HygienicClient::builder()
        .tls(client_tls(&tls).offer_http2(false).build().unwrap())
        .default_upstream(UpstreamConfig::new().idle_timeout(Duration::from_secs(60)))
        .build::<Empty<Bytes>>()
        .unwrap();
    get_ok(&client, served.addr).await;
    // The server's idle timeout ends the connection: close_notify, then FIN.
    let snap = wait_upstream(&client, "the server's close", |s| s.totals.closed == 1).await;
    let t = &snap.totals;
    assert_eq!(t.closed_by(Closer::Peer), 1, "{t:?}");
    assert_eq!(t.closed_for(CloseReason::ServerClosed), 1, "{t:?}");
    assert_eq!(
        served
            .registry
            .totals()
            .closed_for(server::CloseReason::IdleTimeout),
        1
    );
    // And a next request opens a fresh connection.
    get_ok(&client, served.addr).await;
    assert_eq!(upstream(&client).totals.connects, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_socket_policy_is_on_the_socket_beneath_tls() {
    let tls = test_tls();
    let served = serve(&tls, ConnectionLimits::default()).await;
    let keepalive = Keepalive::new(Duration::from_secs(17), Duration::from_secs(3), 4);
    let policy = SocketPolicy::builder()
        .keepalive(keepalive)
        .user_timeout(Duration::from_secs(29))
        .nodelay(true)
        .build()
        .unwrap();
    let client = HygienicClient::builder()
        .policy(policy)
        .tls(client_tls(&tls).offer_http2(false).build().unwrap())
        .build::<Empty<Bytes>>()
        .unwrap();
    // The client's own connector, as another HTTP stack would use it.
    let mut connector = client.view().connector();
    let io = tokio::time::timeout(LIMIT, connector.call(url(served.addr)))
        .await
        .expect("connect in time")
        .expect("connect");
    let stream = io.inner();
    assert!(stream.get_ref().is_tls());
    assert_eq!(stream.get_ref().alpn_protocol(), Some(&b"http/1.1"[..]));
    let eff = EffectiveOptions::read(SockRef::from(stream.get_ref().socket())).unwrap();
    assert_eq!(eff.keepalive, Some(keepalive));
    assert_eq!(eff.user_timeout, Some(Duration::from_secs(29)));
    assert!(eff.nodelay);
    // The connection is the client's: tracked, over TLS.
    let snap = upstream(&client);
    assert_eq!(snap.connections.len(), 1);
    assert!(snap.connections[0].tls);
    assert_eq!(
        snap.connections[0].local_addr,
        stream.get_ref().socket().local_addr().unwrap()
    );
    // A request over it with hyper's own connection: the tracking follows the decrypted bytes.
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io.into_inner()))
        .await
        .expect("HTTP/1 handshake");
    let driver = tokio::spawn(conn);
    let req = http::Request::builder()
        .uri("/")
        .header("host", "127.0.0.1")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let res = sender.send_request(req).await.expect("response");
    assert_eq!(res.status(), 200);
    res.into_body().collect().await.expect("body");
    assert_eq!(upstream(&client).connections[0].requests, 1);
    drop(sender);
    let _ = tokio::time::timeout(LIMIT, driver).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_or_a_plain_server_is_a_tls_connect_error() {
    let tls = test_tls();
    let served = serve(&tls, ConnectionLimits::default()).await;
    // A CA that did not sign the server's certificate.
    let other = test_tls();
    let client = HygienicClient::builder()
        .tls(client_tls(&other).build().unwrap())
        .build::<Empty<Bytes>>()
        .unwrap();
    let err = tokio::time::timeout(LIMIT, client.get(url(served.addr)))
        .await
        .expect("an answer in time")
        .expect_err("an untrusted certificate fails");
    assert!(err.is_connect(), "{err:?}");
    assert!(
        format!("{:?}", err).contains("TLS handshake failed"),
        "the error says what failed: {err:?}"
    );
    let snap = upstream(&client);
    assert_eq!(snap.totals.connects, 0, "no connection was made: {snap:?}");
    assert!(snap.totals.connect_errors >= 1, "{snap:?}");

    // A plain HTTP server behind an https:// URL.
    let plain = HygienicListener::bind("127.0.0.1:0").await.unwrap();
    let addr = plain.local_addr();
    let task = tokio::spawn(async move {
        let app = Router::new().route("/", get(|| async { "plain" }));
        let _ = axum::serve(plain, MakeTrackConnection::new(app)).await;
    });
    let client = HygienicClient::builder()
        .tls(client_tls(&tls).build().unwrap())
        .build::<Empty<Bytes>>()
        .unwrap();
    let err = tokio::time::timeout(LIMIT, client.get(url(addr)))
        .await
        .expect("an answer in time")
        .expect_err("a plain server fails the handshake");
    assert!(err.is_connect(), "{err:?}");
    assert_eq!(upstream(&client).totals.connects, 0);
    task.abort();
}

#[test]
fn bad_tls_settings_are_typed_errors_naming_the_setting() {
    let missing = ClientTls::builder()
        .add_ca_file("/nonexistent/ca.pem")
        .unwrap_err();
    assert!(matches!(missing, TlsConfigError::Ca { .. }));
    assert!(
        missing
            .to_string()
            .starts_with("invalid client TLS: add_ca_file = /nonexistent/ca.pem: expected"),
        "{missing}"
    );
    let not_pem = ClientTls::builder().add_ca_pem(b"hello").unwrap_err();
    assert!(
        not_pem.to_string().contains("no CERTIFICATE block found"),
        "{not_pem}"
    );
    let none = ClientTls::builder().build().unwrap_err();
    assert_eq!(none, TlsConfigError::NoRoots);
    assert!(none
        .to_string()
        .starts_with("invalid client TLS: roots = none: expected"));
}

/// A connector of the user's: tokio-rustls with a configuration of its own (ALPN `h2`), and
/// an address of its own choosing for a name no resolver knows. The hygiene stays: the
/// connection is tracked, over TLS and HTTP/2 as the stream says, with the policy on its
/// socket; a plain TCP connector works the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connector_of_ones_own_keeps_the_hygiene() {
    let tls = test_tls();
    let served = serve(&tls, ConnectionLimits::default()).await;
    let addr = served.addr;
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates({
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_pemfile_certs(&tls.cert_pem) {
                roots.add(cert).unwrap();
            }
            roots
        })
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let own = tower::service_fn(move |uri: http::Uri| {
        let connector = connector.clone();
        async move {
            assert_eq!(uri.host(), Some("backend.internal"));
            let tcp = tokio::net::TcpStream::connect(addr).await?;
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            connector.connect(name, tcp).await
        }
    });
    let keepalive = Keepalive::new(Duration::from_secs(21), Duration::from_secs(2), 3);
    let client = HygienicClient::builder()
        .policy(
            SocketPolicy::builder()
                .keepalive(keepalive)
                .build()
                .unwrap(),
        )
        .connector(own)
        .build::<Empty<Bytes>>()
        .unwrap();
    for _ in 0..3 {
        let res = tokio::time::timeout(
            LIMIT,
            client.get("https://backend.internal/".parse().unwrap()),
        )
        .await
        .expect("response in time")
        .expect("response");
        assert_eq!(res.version(), http::Version::HTTP_2);
        res.into_body().collect().await.expect("body");
    }
    let snap = upstream(&client);
    assert_eq!(snap.name, "backend.internal:443");
    assert_eq!(snap.totals.connects, 1, "{snap:?}");
    let c = &snap.connections[0];
    assert!(c.tls && c.http2, "{c:?}");
    assert_eq!(c.peer_addr, addr);
    assert_eq!(c.requests, 3);
    // The policy is on the socket: the server's side of it sees our keepalive probes' timer
    // only on our side, so read ours back through the kernel's table.
    let ss = std::process::Command::new("ss")
        .args(["-tnoH", "state", "established", "dst", &addr.to_string()])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    assert!(
        ss.contains("timer:(keepalive,2"),
        "our socket toward {addr} has the policy's 21 s keepalive timer: {ss}"
    );
    // Dropped, the client closes first, with close_notify: the server counts the peer's close.
    drop(client);
    tokio::time::timeout(LIMIT, served.registry.wait_for(|t| t.closed == 1))
        .await
        .unwrap_or_else(|_| panic!("close never landed: {:?}", served.registry.totals()));
    assert_eq!(served.registry.totals().closed_by(Closer::Peer), 1);
}

fn rustls_pemfile_certs(pem: &str) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(|c| c.expect("PEM certificate"))
        .collect()
}
