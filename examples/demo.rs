//! The field notes' failure cases, run on purpose in one process, with what conn-hygiene sees and
//! does about each.
//!
//! ```text
//! cargo run --release --example demo [-- --serve]
//! ```
//!
//! It starts an upstream, a flaky backend and an axum service wired with everything (hygienic
//! listener and layer, pooled client, census sampler, `/metrics`), then:
//!
//! 1. short connections: a connection-per-request client against the pooled client, to the same
//!    upstream: requests, connections, TIME_WAIT attributed to each, port headroom left;
//! 2. a handler that leaks a pooled connection on an error path: the leak report with its
//!    file:line, and the CLOSE_WAIT it causes traced back to that line;
//! 3. peers that half-close, go idle or stall mid-header: closed by the server, counted by who
//!    closed first.
//!
//! It ends with a summary, the URL of its `/metrics` page and, on the next line, the URL of
//! its live connections page (`/connections`: the leaks with their lines, the CLOSE_WAIT they
//! hold, the findings and charts); `--serve` keeps it open until Ctrl-C. Needs nothing but this crate; finishes in well under a minute.

use std::{
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{extract::State, http::StatusCode, routing::get, Router};
use bytes::Bytes;
use conn_hygiene::{
    census::{Owner, Sampler},
    client::{HygienicClient, LeasedBody, UpstreamConfig},
    exporter::PrometheusExporter,
    page::ConnectionsPage,
    server::{
        CloseReason, Closer, ConnectionLimits, ConnectionRegistry, HygienicListener,
        MakeTrackConnection,
    },
};
use http_body_util::{BodyExt, Empty};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

const SHORT_REQUESTS: usize = 400;
const NAIVE_SOURCE: [u8; 4] = [127, 0, 0, 2];
const POOLED_SOURCE: [u8; 4] = [127, 0, 0, 3];

type Pooled = HygienicClient<Empty<Bytes>>;

#[derive(Clone)]
struct AppState {
    client: Pooled,
    flaky: String,
    /// The bug on purpose: responses kept "to retry later" and never read or dropped.
    retry_later: Arc<Mutex<Vec<http::Response<LeasedBody>>>>,
}

/// Calls the flaky backend; on its error status keeps the response for a retry that never
/// comes. The connection under that unread body is leaked.
async fn leaky(State(state): State<AppState>) -> (StatusCode, String) {
    let res = match state.client.get(state.flaky.parse().expect("uri")).await {
        Ok(res) => res,
        Err(e) => {
            tracing::warn!(error = %e, cause = ?std::error::Error::source(&e), "flaky backend");
            return (StatusCode::BAD_GATEWAY, format!("{e}\n"));
        }
    };
    if res.status().is_success() {
        let _ = res.into_body().collect().await;
        return (StatusCode::OK, "ok\n".into());
    }
    // Error path: "keep it for later" -- and never come back to it.
    state.retry_later.lock().expect("lock").push(res);
    (
        StatusCode::BAD_GATEWAY,
        "backend failed, will retry later\n".into(),
    )
}

/// A backend that answers every request with a large 503 body, sends part of it, and closes.
async fn flaky_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind flaky backend");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let mut head = Vec::new();
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s
                    .write_all(
                        b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 8388608\r\n\r\n",
                    )
                    .await;
                let _ = s.write_all(&vec![b'x'; 64 * 1024]).await;
                // Closes mid-body: our side keeps the unread rest and the FIN.
            });
        }
    });
    addr
}

async fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > limit {
            eprintln!("demo: gave up waiting for {what}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn source_ip(ip: [u8; 4]) -> IpAddr {
    IpAddr::from(ip)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let serve = std::env::args().any(|a| a == "--serve");
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "conn_hygiene::lease=warn,off".into()),
        )
        .with_target(false)
        .with_writer(std::io::stdout)
        .init();
    // Install the recorder before anything registers its metrics.
    let exporter = PrometheusExporter::install().expect("install the Prometheus exporter");
    let started = Instant::now();

    // --- the upstream and the flaky backend
    let upstream = HygienicListener::builder()
        .name("upstream")
        .bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let upstream_addr = upstream.local_addr();
    let upstream_registry = upstream.registry().clone();
    tokio::spawn(async move {
        let app = Router::new().route("/", get(|| async { "upstream says hi\n" }));
        let _ = axum::serve(upstream, MakeTrackConnection::new(app)).await;
    });
    let flaky_addr = flaky_backend().await;

    // --- the service under test, wired with everything
    let client: Pooled = HygienicClient::builder()
        .upstream(
            upstream_addr.to_string(),
            UpstreamConfig::new()
                .name("upstream")
                .max_idle(4)
                .local_addrs(vec![source_ip(POOLED_SOURCE)]),
        )
        .upstream(
            flaky_addr.to_string(),
            UpstreamConfig::new()
                .name("flaky-backend")
                .leak_threshold(Some(Duration::from_secs(1))),
        )
        .build()
        .expect("client");
    let limits = ConnectionLimits::builder()
        .idle_timeout(Some(Duration::from_secs(2)))
        .header_timeout(Some(Duration::from_secs(2)))
        .shutdown_deadline(Duration::from_secs(5))
        .build()
        .expect("limits");
    let service = HygienicListener::builder()
        .name("service")
        .limits(limits)
        .bind("127.0.0.1:0")
        .await
        .expect("bind service");
    let service_addr = service.local_addr();
    let service_registry = service.registry().clone();
    let sampler = Sampler::builder()
        .interval(Duration::from_millis(500))
        .listener(&service_registry)
        .listener(&upstream_registry)
        .client(client.view())
        .spawn()
        .expect("valid sampler settings");
    let state = AppState {
        client: client.clone(),
        flaky: format!("http://{flaky_addr}/"),
        retry_later: Arc::new(Mutex::new(Vec::new())),
    };
    // The live connections page over the same samples, with the same listeners and client.
    let page = ConnectionsPage::builder(sampler.clone())
        .listener(&service_registry)
        .listener(&upstream_registry)
        .client(client.view())
        .old_lease_after(Duration::from_secs(1))
        .refresh(Duration::from_secs(2))
        .build();
    let app = Router::new()
        .route("/leaky", get(leaky))
        .with_state(state.clone())
        .merge(exporter.router())
        .merge(page.router());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown = service_registry.graceful_shutdown(async move {
        let _ = stop_rx.await;
    });
    let server = tokio::spawn(async move {
        axum::serve(service, MakeTrackConnection::new(app))
            .with_graceful_shutdown(shutdown)
            .await
    });
    println!("service on http://{service_addr}, upstream on {upstream_addr}, flaky backend on {flaky_addr}\n");

    // --- 1. short connections vs the pooled client
    println!("1. {SHORT_REQUESTS} requests to the upstream: a new connection per request vs the pooled client");
    let upstream_uri: http::Uri = format!("http://{upstream_addr}/").parse().expect("uri");
    let mut http = HttpConnector::new();
    http.set_local_address(Some(source_ip(NAIVE_SOURCE)));
    for _ in 0..SHORT_REQUESTS {
        // A client per request, dropped after it: it closes first, every time.
        let naive = Client::builder(TokioExecutor::new()).build::<_, Empty<Bytes>>(http.clone());
        if let Ok(res) = naive.get(upstream_uri.clone()).await {
            let _ = res.into_body().collect().await;
        }
    }
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (client, uri) = (client.clone(), upstream_uri.clone());
        workers.push(tokio::spawn(async move {
            for _ in 0..SHORT_REQUESTS / 4 {
                if let Ok(res) = client.get(uri.clone()).await {
                    let _ = res.into_body().collect().await;
                }
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
    let snap = sampler.sample_now().await;
    let up = snap.upstreams.iter().find(|u| u.name == "upstream");
    let pooled_connects = client
        .view()
        .snapshot()
        .iter()
        .find(|u| u.name == "upstream")
        .map(|u| u.totals.connects)
        .unwrap_or(0);
    let headroom = |ip: [u8; 4]| {
        up.and_then(|u| u.ports.iter().find(|p| p.source == source_ip(ip)))
            .map(|p| format!("{}/{}", p.headroom, p.range_size))
            .unwrap_or_else(|| "-".into())
    };
    let tw = |ip: [u8; 4]| up.map(|u| u.time_wait_from(source_ip(ip))).unwrap_or(0);
    println!(
        "   {:<28} {:>9} {:>12} {:>10} {:>16}",
        "client", "requests", "connections", "TIME_WAIT", "ports left"
    );
    println!(
        "   {:<28} {:>9} {:>12} {:>10} {:>16}",
        "new connection per request",
        SHORT_REQUESTS,
        SHORT_REQUESTS,
        tw(NAIVE_SOURCE),
        headroom(NAIVE_SOURCE)
    );
    println!(
        "   {:<28} {:>9} {:>12} {:>10} {:>16}",
        "hygienic pooled client",
        SHORT_REQUESTS,
        pooled_connects,
        tw(POOLED_SOURCE),
        headroom(POOLED_SOURCE)
    );
    println!("   (TIME_WAIT counted by the census toward the upstream, by source address; the pooled client's connections are still open and reused)\n");

    // --- 2. a leak on an error path
    println!("2. a handler keeps a pooled connection on its error path (GET /leaky, three times)");
    let service_uri: http::Uri = format!("http://{service_addr}/leaky").parse().expect("uri");
    let caller: Pooled = HygienicClient::builder().build().expect("client");
    for _ in 0..3 {
        if let Ok(res) = caller.get(service_uri.clone()).await {
            let _ = res.into_body().collect().await;
        }
    }
    let trackers = client.view().lease_trackers();
    let flaky_tracker = trackers
        .iter()
        .find(|t| t.pool() == "flaky-backend")
        .cloned();
    wait_until("the leak report", Duration::from_secs(10), || {
        flaky_tracker
            .as_ref()
            .is_some_and(|t| t.snapshot().leaked().count() == 3)
    })
    .await;
    if let Some(t) = &flaky_tracker {
        for lease in t.snapshot().leaked() {
            println!(
                "   leaked lease #{} taken at {}:{}, held for {:.1}s",
                lease.id,
                lease.site.file(),
                lease.site.line(),
                lease.age.as_secs_f64()
            );
        }
    }
    let snap = sampler.sample_now().await;
    let ours: Vec<_> = snap
        .close_wait
        .iter()
        .filter(|c| c.owner == Owner::Upstream("flaky-backend".into()))
        .collect();
    println!(
        "   CLOSE_WAIT held by this process toward the flaky backend: {}",
        ours.len()
    );
    for c in &ours {
        let site = c
            .lease_site
            .map(|s| format!("{}:{}", s.file(), s.line()))
            .unwrap_or_else(|| "-".into());
        println!(
            "   {} -> {}  upstream flaky-backend, leased at {site}",
            c.local, c.remote
        );
    }
    println!();

    // --- 3. peers that half-close, go idle, or stall
    println!("3. peers that half-close, go idle, or stall mid-header (service idle and header timeouts: 2 s)");
    let before = service_registry.totals().closed;
    let mut held = Vec::new();
    for kind in 0..9 {
        let Ok(mut s) = TcpStream::connect(service_addr).await else {
            continue;
        };
        match kind % 3 {
            0 => {
                let _ = s
                    .write_all(b"GET /metrics HTTP/1.1\r\nHost: demo\r\n\r\n")
                    .await;
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s.shutdown().await;
            }
            1 => {
                let _ = s
                    .write_all(b"GET /metrics HTTP/1.1\r\nHost: demo\r\n\r\n")
                    .await;
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
            }
            _ => {
                let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: de").await;
            }
        }
        held.push(s);
    }
    let reg = service_registry.clone();
    wait_until("the service to close them", Duration::from_secs(10), || {
        reg.totals().closed >= before + 9
    })
    .await;
    drop(held);
    let t = service_registry.totals();
    println!(
        "   {:<34} {:>6}",
        "peer half-closed, closed at once",
        t.closed_for(CloseReason::PeerClosed)
    );
    println!(
        "   {:<34} {:>6}",
        "idle, closed by the idle timeout",
        t.closed_for(CloseReason::IdleTimeout)
    );
    println!(
        "   {:<34} {:>6}",
        "stalled, cut at the header timeout",
        t.closed_for(CloseReason::HeaderTimeout)
    );
    println!(
        "   who closed first: local {}  peer {}  timeout {}  reset {}\n",
        t.closed_by(Closer::Local),
        t.closed_by(Closer::Peer),
        t.closed_by(Closer::Timeout),
        t.closed_by(Closer::Reset)
    );

    // --- summary
    let snap = sampler.sample_now().await;
    println!("summary");
    summary(&snap, &service_registry, &client);
    println!(
        "\nmetrics: http://{service_addr}/metrics   (ran for {:.1}s)",
        started.elapsed().as_secs_f64()
    );
    println!("connections: http://{service_addr}/connections   (the live page; JSON at /connections.json)");
    if serve {
        println!("serving until Ctrl-C");
        let _ = tokio::signal::ctrl_c().await;
    }
    // Return the leaked connections, then shut down.
    state.retry_later.lock().expect("lock").clear();
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
}

fn summary(
    snap: &conn_hygiene::census::CensusSnapshot,
    service: &ConnectionRegistry,
    client: &Pooled,
) {
    use conn_hygiene::census::TcpState;
    println!(
        "   host TCP: ESTABLISHED {}  TIME_WAIT {}  CLOSE_WAIT {}  (this process: CLOSE_WAIT {})",
        snap.host.get(TcpState::Established),
        snap.host.get(TcpState::TimeWait),
        snap.host.get(TcpState::CloseWait),
        snap.process.get(TcpState::CloseWait)
    );
    let walk = snap
        .cost
        .walk
        .map(|w| {
            format!(
                "{:.2} ms for {} sockets",
                w.as_secs_f64() * 1e3,
                snap.cost.sockets_walked
            )
        })
        .unwrap_or_else(|| "-".into());
    println!(
        "   sampler cost: counters tier {:.0} us, full walk {walk}",
        snap.cost.counters.as_secs_f64() * 1e6
    );
    let t = service.totals();
    println!("   service: {} connections, {} closed", t.opened, t.closed);
    for u in client.view().snapshot() {
        println!(
            "   upstream {:<14} connections {:>4}  requests {:>5}  leases out {}  leaks {}",
            u.name,
            u.totals.connects,
            u.totals.requests_on_closed + u.connections.iter().map(|c| c.requests).sum::<u64>(),
            u.leases.outstanding(),
            u.leases.totals.leaks_detected
        );
    }
    let findings: Vec<_> = snap
        .report
        .findings
        .iter()
        .filter(|f| f.severity != conn_hygiene::census::Severity::Ok)
        .collect();
    println!(
        "   census findings: {} (status {:?})",
        findings.len(),
        snap.report.status()
    );
    for f in findings.iter().take(6) {
        println!("     {:?} {}: {}", f.severity, f.check, f.message);
    }
}
