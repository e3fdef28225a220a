//! A real Prometheus scrapes the service: the exporter's route on an axum app served through a
//! hygienic listener (and, with feature `census`, the census sampler), scraped every second by
//! a `prometheus` process of the test's own, on loopback, with its own storage directory. The
//! test polls the query API until Prometheus answers what the service itself knows.
//!
//! Needs `prometheus` (Debian package `prometheus`); without it the test fails and names
//! `scripts/install-test-deps.sh`. The only test in this binary: it installs the global
//! recorder, as an executable would.

#[path = "support/prometheus.rs"]
mod prom;

use std::{net::SocketAddr, time::Duration};

use axum::{routing::get, Router};
use conn_hygiene::{
    exporter::PrometheusExporter,
    server::{HygienicListener, MakeTrackConnection},
};
use tokio::sync::oneshot;

const DEADLINE: Duration = Duration::from_secs(30);

/// The value of an instant query with exactly one result; `Err` while there is none yet.
async fn query_one(web: SocketAddr, promql: &str) -> Result<f64, String> {
    let path = format!("/api/v1/query?query={}", prom::urlencode(promql));
    let res = prom::get(web, &path)
        .await
        .map_err(|e| format!("query {promql}: {e}"))?;
    if res.status != 200 {
        return Err(format!("query {promql}: HTTP {}: {}", res.status, res.body));
    }
    let json: serde_json::Value =
        serde_json::from_str(&res.body).map_err(|e| format!("{e}: {}", res.body))?;
    if json["status"] != "success" {
        return Err(format!("query {promql}: {}", res.body));
    }
    let result = json["data"]["result"]
        .as_array()
        .ok_or_else(|| format!("no result array: {}", res.body))?;
    match result.as_slice() {
        [one] => one["value"][1]
            .as_str()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("bad sample: {one}")),
        [] => Err(format!("{promql}: no sample yet")),
        many => Err(format!("{promql}: {} series, expected one", many.len())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_what_the_service_knows() {
    let prometheus = prom::require_tool("prometheus");
    let exporter = PrometheusExporter::install().expect("install the recorder");

    let app = Router::new()
        .route("/", get(|| async { "hello\n" }))
        .merge(exporter.router());
    let listener = HygienicListener::builder()
        .name("scraped")
        .bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr();
    let registry = listener.registry().clone();
    #[cfg(feature = "census")]
    let sampler = conn_hygiene::census::Sampler::builder()
        .interval(Duration::from_millis(500))
        .listener(&registry)
        .spawn()
        .expect("valid sampler settings");
    let (stop, stopped) = oneshot::channel::<()>();
    let shutdown = registry.graceful_shutdown(async move {
        let _ = stopped.await;
    });
    let server = tokio::spawn(async move {
        axum::serve(listener, MakeTrackConnection::new(app))
            .with_graceful_shutdown(shutdown)
            .await
            .expect("serve");
    });

    for _ in 0..3 {
        let res = prom::get(addr, "/").await.expect("GET /");
        assert_eq!(res.status, 200);
    }

    let dir = prom::TempDir::new("conn-hygiene-prometheus");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: conn-hygiene\n    metrics_path: /metrics\n    \
             static_configs:\n      - targets: ['{addr}']\n"
        ),
    )
    .expect("write prometheus.yml");
    let args = vec![
        format!("--config.file={}", config.display()),
        format!("--storage.tsdb.path={}", dir.path().join("data").display()),
        "--web.listen-address=127.0.0.1:0".to_string(),
        "--log.level=info".to_string(),
    ];
    let mut child = prom::spawn_logged(&prometheus, &args, dir.path().join("prometheus.log"));
    let pid = child.pid();

    let web = prom::poll_until(DEADLINE, Duration::from_millis(100), || {
        let running = child.check_running();
        let found = prom::web_addr(&child.log_text(), pid);
        async move {
            running?;
            found.ok_or_else(|| "Prometheus not listening yet".to_string())
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", child.log_text()));

    // The service's own count of accepted connections: the three requests above and the
    // scrape connection Prometheus keeps open. Equal once a scrape after the last accept landed.
    let q =
        "conn_hygiene_server_connections_opened_total{job=\"conn-hygiene\",listener=\"scraped\"}";
    let opened = prom::poll_until(DEADLINE, Duration::from_millis(250), || {
        let running = child.check_running();
        let registry = registry.clone();
        async move {
            running?;
            let seen = query_one(web, q).await?;
            let known = registry.totals().opened;
            if known >= 4 && seen == known as f64 {
                Ok(known)
            } else {
                Err(format!("Prometheus has {seen}, the service knows {known}"))
            }
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", child.log_text()));
    assert!(opened >= 4);

    let up = query_one(web, "up{job=\"conn-hygiene\"}")
        .await
        .expect("up");
    assert_eq!(up, 1.0);

    #[cfg(feature = "census")]
    {
        // This process listens on one socket, the app's; the host has that one and
        // Prometheus's own at least.
        let latest = sampler.sample_now().await;
        let ours = latest
            .process
            .iter()
            .find(|(s, _)| s.as_str() == "LISTEN")
            .map(|(_, n)| n)
            .expect("a LISTEN count");
        assert_eq!(ours, 1, "{latest:?}");
        let q = "conn_hygiene_process_tcp_sockets{job=\"conn-hygiene\",state=\"LISTEN\"}";
        let seen = prom::poll_until(DEADLINE, Duration::from_millis(250), || async {
            match query_one(web, q).await? {
                v if v == ours as f64 => Ok(v),
                v => Err(format!("Prometheus has {v}, the sampler counted {ours}")),
            }
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", child.log_text()));
        assert_eq!(seen, 1.0);
        let q = "conn_hygiene_host_tcp_sockets{job=\"conn-hygiene\",state=\"LISTEN\"}";
        let host = prom::poll_until(DEADLINE, Duration::from_millis(250), || async {
            match query_one(web, q).await? {
                v if v >= 2.0 => Ok(v),
                v => Err(format!(
                    "host LISTEN {v}, expected the app's and Prometheus's"
                )),
            }
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", child.log_text()));
        assert!(host >= 2.0);
        sampler.stop();
    }

    drop(child); // kills Prometheus by its PID and reaps it
    let _ = stop.send(());
    server.await.expect("server task");
}
