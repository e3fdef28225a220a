//! The exporter installed after the listener, a lease tracker and the sampler were built: their
//! metrics are on the page all the same, with what they counted before the install. This
//! binary is the only one that installs the global recorder after building them.

use std::{future::IntoFuture, time::Duration};

use axum::{routing::get, Router};
use conn_hygiene::{
    census::Sampler,
    exporter::PrometheusExporter,
    lease::LeaseTracker,
    server::{HygienicListener, MakeTrackConnection},
};
use tokio::{io::AsyncReadExt, io::AsyncWriteExt, net::TcpStream};

async fn get_once(addr: std::net::SocketAddr) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.expect("read");
    assert!(out.starts_with(b"HTTP/1.1 200"), "{out:?}");
}

/// The value of the one series of `name` with `labels` on `page`.
fn value(page: &str, name: &str, labels: &str) -> Option<f64> {
    page.lines()
        .find(|l| l.starts_with(&format!("{name}{{")) && l.contains(labels))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_taken_before_the_exporter_is_installed_are_on_its_page() {
    // Built first, with no recorder installed.
    let listener = HygienicListener::builder()
        .name("early")
        .bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr();
    let registry = listener.registry().clone();
    let tracker = LeaseTracker::new("early_pool");
    let _sampler = Sampler::builder()
        .interval(Duration::from_millis(100))
        .listener(&registry)
        .spawn()
        .expect("valid sampler settings");
    let app = Router::new().route("/", get(|| async { "hello\n" }));
    let server = tokio::spawn(axum::serve(listener, MakeTrackConnection::new(app)).into_future());
    for _ in 0..3 {
        get_once(addr).await;
    }
    let held = tracker.lease();
    drop(tracker.lease());

    let exporter = PrometheusExporter::install().expect("install");
    for _ in 0..2 {
        get_once(addr).await;
    }
    // Every connection closes on its own (Connection: close); wait for the registry to see it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while registry.totals().closed < 5 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            registry.totals()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let page = exporter.render();
    let opened = value(
        &page,
        "conn_hygiene_server_connections_opened_total",
        "listener=\"early\"",
    );
    assert_eq!(opened, Some(5.0), "before and after the install:\n{page}");
    let backlog = value(
        &page,
        "conn_hygiene_server_listen_backlog",
        "kind=\"requested\"",
    );
    assert!(
        backlog.is_some_and(|b| b > 0.0),
        "set once, at bind:\n{page}"
    );
    assert_eq!(
        value(
            &page,
            "conn_hygiene_leases_acquired_total",
            "pool=\"early_pool\""
        ),
        Some(2.0),
        "{page}"
    );
    assert_eq!(
        value(
            &page,
            "conn_hygiene_leases_outstanding",
            "pool=\"early_pool\""
        ),
        Some(1.0),
        "{page}"
    );
    // The sampler, spawned before the install, reports too (its next tick).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let page = exporter.render();
        if page.contains("conn_hygiene_listener_tcp_sockets{") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no sampler series:\n{page}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(held);
    server.abort();
}
