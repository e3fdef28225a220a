//! The Prometheus exporter: what the page says (names, types, HELP, buckets), the axum route
//! and the exporter's own listener over real TCP, what the page never says (peer addresses,
//! request data), and the typed error when a recorder is already installed.
//!
//! Every test but `install_*` renders a recorder that was never installed, used through
//! `metrics::with_local_recorder` around a current-thread runtime, so the server's tasks (all on
//! this thread) record into it and tests do not share state.

#[path = "support/prometheus.rs"]
mod prom;

use std::{future::Future, net::IpAddr, time::Duration};

use axum::{routing::get, Router};
use conn_hygiene::{
    exporter::{
        ExporterError, PrometheusExporter, PrometheusRecorder, CONTENT_TYPE, DEFAULT_LISTEN_ADDR,
    },
    server::{ConnectionLimits, ConnectionRegistry, HygienicListener, MakeTrackConnection},
};
use tokio::sync::oneshot;

/// Runs `f` on a current-thread runtime with `recorder` as this thread's recorder.
fn with_recorder<F, Fut>(recorder: &PrometheusRecorder, f: F) -> Fut::Output
where
    F: FnOnce() -> Fut,
    Fut: Future,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    metrics::with_local_recorder(recorder, || rt.block_on(f()))
}

fn exporter() -> (PrometheusRecorder, PrometheusExporter) {
    PrometheusExporter::builder()
        .build()
        .expect("default settings are valid")
}

struct App {
    addr: std::net::SocketAddr,
    registry: ConnectionRegistry,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl App {
    async fn stop(mut self) {
        let _ = self.stop.take().map(|s| s.send(()));
        self.task.await.expect("server task");
    }
}

/// An app with `/` and the exporter's route, on a hygienic listener named `app`.
async fn start_app(exporter: &PrometheusExporter, limits: ConnectionLimits) -> App {
    let app = Router::new()
        .route("/", get(|| async { "hello\n" }))
        .merge(exporter.router());
    let listener = HygienicListener::builder()
        .name("app")
        .limits(limits)
        .bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr();
    let registry = listener.registry().clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let shutdown = registry.graceful_shutdown(async move {
        let _ = stopped.await;
    });
    let task = tokio::spawn(async move {
        axum::serve(listener, MakeTrackConnection::new(app))
            .with_graceful_shutdown(shutdown)
            .await
            .expect("serve");
    });
    App {
        addr,
        registry,
        stop: Some(stop),
        task,
    }
}

/// Waits until every connection the app accepted has closed (and its close is counted).
async fn all_closed(registry: &ConnectionRegistry, opened: u64) {
    prom::poll_until(Duration::from_secs(10), Duration::from_millis(10), || {
        let t = registry.totals();
        async move {
            if t.opened == opened && t.closed == opened {
                Ok(())
            } else {
                Err(format!("opened={} closed={}", t.opened, t.closed))
            }
        }
    })
    .await
    .expect("connections closed");
}

#[test]
fn page_has_names_types_help_and_buckets() {
    let (recorder, exporter) = exporter();
    with_recorder(&recorder, || async {
        let app = start_app(&exporter, ConnectionLimits::default()).await;
        for _ in 0..3 {
            let res = prom::get(app.addr, "/").await.expect("GET /");
            assert_eq!(res.status, 200);
        }
        all_closed(&app.registry, 3).await;
        app.stop().await;
        // As the census sampler records the cost of a counters-only sample.
        metrics::histogram!(
            conn_hygiene::metrics::names::SAMPLER_DURATION_SECONDS,
            "tier" => "counters"
        )
        .record(0.0003);
    });

    let page = exporter.render();
    let expect = [
        "# HELP conn_hygiene_server_connections_opened_total Connections accepted by a hygienic listener.",
        "# TYPE conn_hygiene_server_connections_opened_total counter",
        "conn_hygiene_server_connections_opened_total{listener=\"app\"} 3",
        "# TYPE conn_hygiene_server_connections_closed_total counter",
        "# HELP conn_hygiene_server_connections Live connections by state",
        "# TYPE conn_hygiene_server_connections gauge",
        "# TYPE conn_hygiene_server_listen_backlog gauge",
        "# HELP conn_hygiene_server_connection_duration_seconds Connection lifetime from accept to close.",
        "# TYPE conn_hygiene_server_connection_duration_seconds histogram",
        "conn_hygiene_server_connection_duration_seconds_bucket{listener=\"app\",le=\"0.001\"}",
        "conn_hygiene_server_connection_duration_seconds_bucket{listener=\"app\",le=\"3600\"} 3",
        "conn_hygiene_server_connection_duration_seconds_bucket{listener=\"app\",le=\"+Inf\"} 3",
        "conn_hygiene_server_connection_duration_seconds_count{listener=\"app\"} 3",
        "# TYPE conn_hygiene_server_requests_per_connection histogram",
        // One request per connection: all three in the `le="1"` bucket.
        "conn_hygiene_server_requests_per_connection_bucket{listener=\"app\",le=\"1\"} 3",
        "conn_hygiene_server_requests_per_connection_sum{listener=\"app\"} 3",
        "# TYPE conn_hygiene_sampler_duration_seconds histogram",
        "conn_hygiene_sampler_duration_seconds_bucket{tier=\"counters\",le=\"0.00025\"} 0",
        "conn_hygiene_sampler_duration_seconds_bucket{tier=\"counters\",le=\"0.0005\"} 1",
    ];
    for line in expect {
        assert!(page.contains(line), "missing {line:?} in:\n{page}");
    }
    // No histogram of ours falls back to a summary.
    assert!(!page.contains("summary"), "{page}");
    // Closes by closer and reason: only the pairs a close can have. A reason that decides
    // the closer (three timeouts cutting a message, a reset, an I/O error, a failed handshake,
    // the shutdown deadline) has that closer alone; the seven others are local or peer:
    // 7 + 7 x 2 = 21 of 70 pairs.
    let closed: Vec<&str> = page
        .lines()
        .filter(|l| l.starts_with("conn_hygiene_server_connections_closed_total{listener=\"app\""))
        .collect();
    assert_eq!(closed.len(), 21, "{closed:#?}");
    for impossible in [
        "closer=\"peer\",reason=\"shutdown_deadline\"",
        "closer=\"reset\",reason=\"idle_timeout\"",
        "closer=\"local\",reason=\"header_timeout\"",
        "closer=\"timeout\",reason=\"peer_reset\"",
    ] {
        assert!(
            !closed.iter().any(|l| l.contains(impossible)),
            "{impossible}: {closed:#?}"
        );
    }
}

#[test]
fn route_serves_the_page_over_tcp() {
    let (recorder, exporter) = exporter();
    with_recorder(&recorder, || async {
        let app = start_app(&exporter, ConnectionLimits::default()).await;
        let res = prom::get(app.addr, "/metrics").await.expect("GET /metrics");
        assert_eq!(res.status, 200, "{res:?}");
        assert_eq!(res.header("content-type"), Some(CONTENT_TYPE));
        // The scrape's own connection is already counted when the page renders.
        assert!(
            res.body
                .contains("conn_hygiene_server_connections_opened_total{listener=\"app\"} 1"),
            "{}",
            res.body
        );
        assert!(res
            .body
            .contains("# TYPE conn_hygiene_server_connections gauge"));

        let head = prom::request(
            IpAddr::from([127, 0, 0, 1]),
            app.addr,
            "HEAD",
            "/metrics",
            &[],
        )
        .await
        .expect("HEAD");
        assert_eq!(head.status, 200);
        assert_eq!(head.header("content-type"), Some(CONTENT_TYPE));

        let post = prom::request(
            IpAddr::from([127, 0, 0, 1]),
            app.addr,
            "POST",
            "/metrics",
            &["Content-Length: 0"],
        )
        .await
        .expect("POST");
        assert_eq!(post.status, 405);
        assert_eq!(post.header("allow"), Some("GET, HEAD"));
        app.stop().await;
    });
}

#[test]
fn own_listener_is_loopback_and_hygienic() {
    assert!(DEFAULT_LISTEN_ADDR.ip().is_loopback());
    let (recorder, exporter) = exporter();
    with_recorder(&recorder, || async {
        let server = exporter
            .listen()
            .addr("127.0.0.1:0".parse().unwrap())
            .bind()
            .await
            .expect("bind the metrics listener");
        let addr = server.local_addr();
        assert!(addr.ip().is_loopback());

        let res = prom::get(addr, "/metrics").await.expect("GET /metrics");
        assert_eq!(res.status, 200);
        assert_eq!(res.header("content-type"), Some(CONTENT_TYPE));
        // The endpoint tracks its own connections under `listener="metrics"`.
        assert!(
            res.body
                .contains("conn_hygiene_server_connections_opened_total{listener=\"metrics\"} 1"),
            "{}",
            res.body
        );
        let other = prom::get(addr, "/").await.expect("GET /");
        assert_eq!(other.status, 404);
        assert_eq!(server.registry().totals().opened, 2);
        all_closed(server.registry(), 2).await;

        let report = server.shutdown().await;
        assert_eq!(report.cut, 0);
        // Stopped: nothing accepts on the port any more.
        let err = prom::get(addr, "/metrics").await;
        assert!(err.is_err(), "still serving after shutdown: {err:?}");
    });

    // The shortcut binds whatever address it is given.
    with_recorder(&recorder, || async {
        let server = exporter.serve("127.0.0.1:0").await.expect("serve");
        let res = prom::get(server.local_addr(), "/metrics")
            .await
            .expect("GET /metrics");
        assert_eq!(res.status, 200);
        server.shutdown().await;
    });
}

/// Traffic from several loopback source addresses, with request data a peer controls (paths,
/// query strings, headers, errors, timeouts): none of it reaches the page.
#[test]
fn page_carries_no_peer_addresses_or_request_data() {
    let (recorder, exporter) = exporter();
    let (page, scraped, peers) = with_recorder(&recorder, || async {
        let limits = ConnectionLimits::builder()
            .header_timeout(Some(Duration::from_millis(200)))
            .build()
            .unwrap();
        let app = start_app(&exporter, limits).await;
        let mut peers = Vec::new();
        for last in 2..=6u8 {
            let source = IpAddr::from([127, 0, 0, last]);
            for (method, path, headers) in [
                ("GET", "/", &["X-Forwarded-For: 10.9.8.7"][..]),
                ("GET", "/secret-path?token=hunter2", &[][..]),
                (
                    "POST",
                    "/metrics",
                    &["Content-Length: 0", "User-Agent: sneaky-agent/1.0"][..],
                ),
            ] {
                let res = prom::request(source, app.addr, method, path, headers)
                    .await
                    .expect("request");
                assert_eq!(res.from.ip(), source, "source address not used");
                peers.push(res.from);
            }
            // A peer that never finishes its headers: closed by the header timeout.
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind((source, 0).into()).unwrap();
            let mut stream = socket.connect(app.addr).await.unwrap();
            peers.push(stream.local_addr().unwrap());
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            stream
                .write_all(b"GET /partial HTTP/1.1\r\nHost: x")
                .await
                .unwrap();
            let mut sink = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut sink))
                .await
                .expect("header timeout closes the connection");
        }
        let opened = peers.len() as u64;
        all_closed(&app.registry, opened).await;
        // Scrape from one of the peers' addresses too.
        let scraped = prom::request(
            IpAddr::from([127, 0, 0, 7]),
            app.addr,
            "GET",
            "/metrics",
            &[],
        )
        .await
        .expect("scrape");
        peers.push(scraped.from);
        app.stop().await;
        (exporter.render(), scraped.body, peers)
    });

    for text in [&page, &scraped] {
        // The traffic did get counted ...
        assert!(
            text.contains("conn_hygiene_server_connections_opened_total{listener=\"app\"}"),
            "{text}"
        );
        assert!(
            text.contains(
                "conn_hygiene_server_connections_closed_total{listener=\"app\",closer=\"timeout\",reason=\"header_timeout\"} 5"
            ),
            "{text}"
        );
        // ... but no address (source or listening) and no port of a peer appears.
        assert!(!text.contains("127.0.0."), "an address leaked:\n{text}");
        for peer in &peers {
            let port = peer.port();
            for needle in [format!(":{port}"), format!("\"{port}\"")] {
                assert!(!text.contains(&needle), "peer port {port} leaked:\n{text}");
            }
        }
        for data in [
            "10.9.8.7",
            "secret-path",
            "hunter2",
            "sneaky-agent",
            "partial",
            "POST",
        ] {
            assert!(!text.contains(data), "{data:?} leaked:\n{text}");
        }
    }
}

#[test]
fn install_sets_the_global_recorder_once() {
    // The only test in this binary that touches the global recorder.
    let exporter = PrometheusExporter::install().expect("first install");
    metrics::counter!("conn_hygiene_lease_leaks_total", "pool" => "db").increment(2);
    let page = exporter.render();
    assert!(
        page.contains(
            "# HELP conn_hygiene_lease_leaks_total Leases held longer than the leak threshold"
        ),
        "{page}"
    );
    assert!(
        page.contains("conn_hygiene_lease_leaks_total{pool=\"db\"} 2"),
        "{page}"
    );

    let err = PrometheusExporter::install().expect_err("second install");
    assert_eq!(err, ExporterError::RecorderAlreadyInstalled);
    assert!(err.to_string().contains("already installed"), "{err}");
    // The first recorder is still the one in place.
    metrics::counter!("conn_hygiene_lease_leaks_total", "pool" => "db").increment(1);
    assert!(exporter
        .render()
        .contains("conn_hygiene_lease_leaks_total{pool=\"db\"} 3"));
}
