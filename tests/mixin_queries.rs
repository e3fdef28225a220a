//! Every PromQL expression of the monitoring mixin, as committed (the rules in
//! `deploy/prometheus/conn-hygiene.rules.yml`, the dashboards in `deploy/grafana/*.json`), is
//! evaluated by a real Prometheus that scrapes a service built like the demo
//! (`examples/demo.rs`): a hygienic listener in front of an app, the pooled client toward a
//! healthy upstream and toward a flaky backend whose error responses the app keeps and never
//! reads (leaked leases, CLOSE_WAIT), the census sampler, and a socket option the kernel refuses.
//!
//! Prometheus loads the committed rules file itself and evaluates it every second. The test asks
//! its query API (`/api/v1/query`) for every rule's expression, every dashboard variable's series
//! selector and every panel target (the dashboard's variables filled in from their own queries,
//! `$__rate_interval` as 1m): none may fail, every rule must be healthy, every recording rule
//! must record, and every panel target must return at least one series. Series still empty are
//! polled for until a deadline, then listed.
//!
//! Needs `prometheus` (Debian package `prometheus`); without it the test fails and names
//! `scripts/install-test-deps.sh`. The only test in this binary: it installs the global
//! recorder, as an executable would.

#[path = "support/prometheus.rs"]
mod prom;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{extract::State, http::StatusCode, routing::get, Router};
use bytes::Bytes;
use conn_hygiene::{
    census::Sampler,
    client::{HygienicClient, LeasedBody, UpstreamConfig},
    exporter::PrometheusExporter,
    policy::{SocketPolicy, SocketSide},
    server::{ConnectionLimits, HygienicListener, MakeTrackConnection},
};
use http_body_util::{BodyExt, Empty};
use serde_json::Value;
use socket2::SockRef;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
    sync::oneshot,
};

const JOB: &str = "conn-hygiene";
/// What `$__rate_interval` stands for: longer than the whole test, so every rate sees the
/// workload's events.
const RATE_INTERVAL: &str = "1m";
const DEADLINE: Duration = Duration::from_secs(90);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A dashboard series the workload cannot produce on every machine, and why; `None` for every
/// other one. Exempt series are still evaluated, and must not fail.
fn exemption(expr: &str) -> Option<&'static str> {
    if expr.contains("conn_hygiene_host_conntrack_usage_ratio")
        && !Path::new("/proc/sys/net/netfilter/nf_conntrack_count").exists()
    {
        return Some(
            "this host has no connection tracking (nf_conntrack not loaded): there is no table \
             whose usage the census could measure",
        );
    }
    None
}

type Pooled = HygienicClient<Empty<Bytes>>;

#[derive(Clone)]
struct AppState {
    client: Pooled,
    upstream: http::Uri,
    flaky: http::Uri,
    /// The demo's bug on purpose: error responses kept "to retry later", never read.
    retry_later: Arc<Mutex<Vec<http::Response<LeasedBody>>>>,
}

/// Calls the healthy upstream through the pool and returns its body.
async fn via_upstream(State(state): State<AppState>) -> (StatusCode, String) {
    match state.client.get(state.upstream.clone()).await {
        Ok(res) => match res.into_body().collect().await {
            Ok(body) => (
                StatusCode::OK,
                String::from_utf8_lossy(&body.to_bytes()).into_owned(),
            ),
            Err(e) => (StatusCode::BAD_GATEWAY, format!("{e}\n")),
        },
        Err(e) => (StatusCode::BAD_GATEWAY, format!("{e}\n")),
    }
}

/// Calls the flaky backend and keeps its error response unread: the lease under it leaks.
async fn leaky(State(state): State<AppState>) -> (StatusCode, String) {
    match state.client.get(state.flaky.clone()).await {
        Ok(res) => {
            state.retry_later.lock().expect("lock").push(res);
            (StatusCode::BAD_GATEWAY, "will retry later\n".into())
        }
        Err(e) => (StatusCode::BAD_GATEWAY, format!("{e}\n")),
    }
}

/// A backend that answers every request with the head of a large 503, part of its body, and a
/// close: the reader that never reads on is left with the rest and the FIN (CLOSE_WAIT).
async fn flaky_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind flaky backend");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
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
            });
        }
    });
    addr
}

/// The result of an instant query; `Err` when Prometheus (or the way to it) failed, which is
/// never retried.
async fn query(web: SocketAddr, promql: &str) -> Result<Vec<Value>, String> {
    let path = format!("/api/v1/query?query={}", prom::urlencode(promql));
    let res = prom::get(web, &path)
        .await
        .map_err(|e| format!("query {promql}: {e}"))?;
    let json: Value = serde_json::from_str(&res.body)
        .map_err(|e| format!("query {promql}: HTTP {}: {e}: {}", res.status, res.body))?;
    if res.status != 200 || json["status"] != "success" {
        return Err(format!("query {promql}: HTTP {}: {}", res.status, res.body));
    }
    json["data"]["result"]
        .as_array()
        .cloned()
        .ok_or_else(|| format!("query {promql}: no result array: {}", res.body))
}

fn fail<T>(e: String) -> T {
    panic!("Prometheus could not evaluate an expression: {e}")
}

/// Escapes a label value for a regex matcher inside a PromQL string, as Grafana does.
fn regex_escape(value: &str) -> String {
    let mut out = String::new();
    for c in value.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push_str("\\\\");
        }
        out.push(c);
    }
    out
}

/// Fills in `$__rate_interval` and the dashboard's variables (longest names first).
fn substitute(expr: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = expr.replace("$__rate_interval", RATE_INTERVAL);
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    for name in names {
        out = out.replace(&format!("${{{name}}}"), &vars[name]);
        out = out.replace(&format!("${name}"), &vars[name]);
    }
    out
}

/// A panel and its queries, from a dashboard file.
struct Panel {
    dashboard: String,
    title: String,
    exprs: Vec<String>,
}

struct Dashboard {
    file: String,
    /// (name, label_values(selector, label) split into selector and label), in order.
    variables: Vec<(String, String, String)>,
    panels: Vec<Panel>,
}

fn load_dashboards() -> Vec<Dashboard> {
    let dir = repo().join("deploy/grafana");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no dashboard in {}", dir.display());
    files
        .iter()
        .map(|path| {
            let file = path.file_name().unwrap().to_string_lossy().into_owned();
            let json: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap())
                .unwrap_or_else(|e| panic!("{file}: {e}"));
            let mut variables = Vec::new();
            for v in json["templating"]["list"].as_array().expect("templating") {
                if v["type"] != "query" {
                    continue;
                }
                let name = v["name"].as_str().expect("variable name").to_owned();
                let q = v["query"].as_str().expect("variable query");
                let inner = q
                    .strip_prefix("label_values(")
                    .and_then(|r| r.strip_suffix(')'))
                    .unwrap_or_else(|| panic!("{file}: variable {name}: not label_values: {q}"));
                let (selector, label) = inner
                    .rsplit_once(", ")
                    .unwrap_or_else(|| panic!("{file}: variable {name}: {q}"));
                variables.push((name, selector.to_owned(), label.to_owned()));
            }
            let mut panels = Vec::new();
            let mut stack: Vec<&Value> = json["panels"]
                .as_array()
                .expect("panels")
                .iter()
                .rev()
                .collect();
            while let Some(p) = stack.pop() {
                if let Some(nested) = p["panels"].as_array() {
                    stack.extend(nested.iter().rev());
                }
                let Some(targets) = p["targets"].as_array() else {
                    continue;
                };
                let title = p["title"].as_str().unwrap_or("?").to_owned();
                let exprs: Vec<String> = targets
                    .iter()
                    .map(|t| {
                        t["expr"]
                            .as_str()
                            .unwrap_or_else(|| panic!("{file}: panel {title}: target without expr"))
                            .to_owned()
                    })
                    .collect();
                assert!(!exprs.is_empty(), "{file}: panel {title} has no query");
                panels.push(Panel {
                    dashboard: file.clone(),
                    title,
                    exprs,
                });
            }
            Dashboard {
                file,
                variables,
                panels,
            }
        })
        .collect()
}

/// What one pass over every expression found.
#[derive(Default)]
struct Pass {
    evaluated: usize,
    /// What returned no series, and is not exempt.
    empty: Vec<String>,
    /// Rules Prometheus does not (yet) report healthy.
    unhealthy: Vec<String>,
    panels: usize,
    panels_with_data: usize,
    exempt: Vec<String>,
    rules: usize,
}

async fn evaluate_everything(web: SocketAddr, dashboards: &[Dashboard], rule_count: usize) -> Pass {
    let mut pass = Pass::default();

    // The rules, as Prometheus loaded them from the committed file.
    let res = prom::get(web, "/api/v1/rules")
        .await
        .expect("GET /api/v1/rules");
    let json: Value = serde_json::from_str(&res.body).expect("rules JSON");
    let rules: Vec<&Value> = json["data"]["groups"]
        .as_array()
        .expect("rule groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules").iter())
        .collect();
    assert_eq!(
        rules.len(),
        rule_count,
        "Prometheus loaded {} rules, the file has {rule_count}",
        rules.len()
    );
    for rule in rules {
        let name = rule["name"].as_str().expect("rule name");
        let expr = rule["query"].as_str().expect("rule query");
        match rule["health"].as_str() {
            Some("ok") => {}
            Some("err") => fail(format!("rule {name}: {}", rule["lastError"])),
            other => pass.unhealthy.push(format!("{name}: health {other:?}")),
        }
        let result = query(web, expr).await.unwrap_or_else(fail);
        pass.evaluated += 1;
        pass.rules += 1;
        if rule["type"] == "recording" && result.is_empty() {
            pass.empty.push(format!("recording rule {name}: {expr}"));
        }
    }

    for d in dashboards {
        let mut vars = BTreeMap::new();
        vars.insert("job".to_owned(), JOB.to_owned());
        for (name, selector, label) in &d.variables {
            let sel = substitute(selector, &vars);
            let result = query(web, &sel).await.unwrap_or_else(fail);
            pass.evaluated += 1;
            let values: BTreeSet<&str> = result
                .iter()
                .filter_map(|s| s["metric"][label.as_str()].as_str())
                .collect();
            if values.is_empty() {
                pass.empty
                    .push(format!("{}: variable {name}: no {label} in {sel}", d.file));
            }
            // Every value selected, as Grafana sends a multi-value selection to Prometheus.
            let value = match values.len() {
                1 => regex_escape(values.first().unwrap()),
                _ => format!(
                    "({})",
                    values
                        .iter()
                        .map(|v| regex_escape(v))
                        .collect::<Vec<_>>()
                        .join("|")
                ),
            };
            if name != "job" {
                vars.insert(name.clone(), value);
            }
        }
        for panel in &d.panels {
            pass.panels += 1;
            let mut has_data = true;
            for expr in &panel.exprs {
                let promql = substitute(expr, &vars);
                let result = query(web, &promql).await.unwrap_or_else(fail);
                pass.evaluated += 1;
                if result.is_empty() {
                    if let Some(why) = exemption(expr) {
                        pass.exempt.push(format!(
                            "{} / {}: {promql}: {why}",
                            panel.dashboard, panel.title
                        ));
                    } else {
                        has_data = false;
                        pass.empty
                            .push(format!("{} / {}: {promql}", panel.dashboard, panel.title));
                    }
                }
            }
            if has_data {
                pass.panels_with_data += 1;
            }
        }
    }
    pass
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rule_and_dashboard_query_evaluates_and_every_panel_has_data() {
    let prometheus = prom::require_tool("prometheus");
    let dashboards = load_dashboards();
    let rules_file = repo().join("deploy/prometheus/conn-hygiene.rules.yml");
    let rules_text = std::fs::read_to_string(&rules_file).expect("read the rules file");
    // Each rule has one `alert:` or `record:` key, first on its line or after the list's `- `.
    let rule_count = rules_text
        .lines()
        .map(|l| l.trim_start().trim_start_matches("- "))
        .filter(|l| l.starts_with("alert: ") || l.starts_with("record: "))
        .count();

    let exporter = PrometheusExporter::install().expect("install the recorder");

    // --- the upstream (closes pooled connections idle for 1 s) and the flaky backend
    let upstream_limits = ConnectionLimits::builder()
        .idle_timeout(Some(Duration::from_secs(1)))
        .build()
        .expect("limits");
    let upstream = HygienicListener::builder()
        .name("upstream")
        .limits(upstream_limits)
        .bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let upstream_addr = upstream.local_addr();
    let upstream_registry = upstream.registry().clone();
    let (upstream_stop, upstream_stopped) = oneshot::channel::<()>();
    let upstream_shutdown = upstream_registry.graceful_shutdown(async move {
        let _ = upstream_stopped.await;
    });
    let upstream_task = tokio::spawn(async move {
        let app = Router::new().route("/", get(|| async { "upstream says hi\n" }));
        axum::serve(upstream, MakeTrackConnection::new(app))
            .with_graceful_shutdown(upstream_shutdown)
            .await
            .expect("serve upstream");
    });
    let flaky_addr = flaky_backend().await;

    // --- the service: hygienic listener, pooled client, sampler, /metrics
    let client: Pooled = HygienicClient::builder()
        .upstream(
            upstream_addr.to_string(),
            UpstreamConfig::new().name("upstream").max_idle(4),
        )
        .upstream(
            flaky_addr.to_string(),
            UpstreamConfig::new()
                .name("flaky-backend")
                .leak_threshold(Some(Duration::from_secs(1))),
        )
        .build()
        .expect("client");
    let service = HygienicListener::builder()
        .name("service")
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
        upstream: format!("http://{upstream_addr}/").parse().expect("uri"),
        flaky: format!("http://{flaky_addr}/").parse().expect("uri"),
        retry_later: Arc::new(Mutex::new(Vec::new())),
    };
    let app = Router::new()
        .route("/upstream", get(via_upstream))
        .route("/leaky", get(leaky))
        .with_state(state.clone())
        .merge(exporter.router());
    let (stop, stopped) = oneshot::channel::<()>();
    let shutdown = service_registry.graceful_shutdown(async move {
        let _ = stopped.await;
    });
    let server = tokio::spawn(async move {
        axum::serve(service, MakeTrackConnection::new(app))
            .with_graceful_shutdown(shutdown)
            .await
            .expect("serve");
    });

    // --- the workload
    // A socket option the kernel refuses: the TCP options on a UDP socket.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind UDP");
    let report = SocketPolicy::default().apply(SockRef::from(&udp), SocketSide::Outbound);
    assert!(
        !report.is_clean(),
        "the kernel took TCP options on UDP: {report:?}"
    );
    // Requests through the pool to the upstream; each request to the service on a connection
    // of its own, which the service closes after the response.
    for _ in 0..10 {
        let res = prom::get(service_addr, "/upstream")
            .await
            .expect("GET /upstream");
        assert_eq!(res.status, 200, "{}", res.body);
    }
    // Three leaked leases toward the flaky backend, reported after the 1 s leak threshold.
    for _ in 0..3 {
        let res = prom::get(service_addr, "/leaky").await.expect("GET /leaky");
        assert_eq!(res.status, 502, "{}", res.body);
    }
    let flaky_tracker = client
        .view()
        .lease_trackers()
        .into_iter()
        .find(|t| t.pool() == "flaky-backend")
        .expect("the flaky backend's lease tracker");
    prom::poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
        let leaks = flaky_tracker.snapshot().totals.leaks_detected;
        async move {
            if leaks >= 3 {
                Ok(())
            } else {
                Err(format!("{leaks} leaks reported"))
            }
        }
    })
    .await
    .expect("three leaks reported");

    // --- Prometheus, scraping the service and evaluating the committed rules every second
    let dir = prom::TempDir::new("conn-hygiene-mixin");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: {JOB}\n    metrics_path: /metrics\n    \
             static_configs:\n      - targets: ['{service_addr}']\n",
            rules_file.display()
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
    let web = prom::poll_until(Duration::from_secs(30), Duration::from_millis(100), || {
        let running = child.check_running();
        let found = prom::web_addr(&child.log_text(), pid);
        async move {
            running?;
            found.ok_or_else(|| "Prometheus not listening yet".to_string())
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", child.log_text()));

    // The leaked connections returned once Prometheus has seen them leaked: their leases end
    // (leaks returned) and the client closes them.
    prom::poll_until(
        Duration::from_secs(30),
        Duration::from_millis(250),
        || async {
            let r = query(
                web,
                "conn_hygiene_leases_outstanding{pool=\"flaky-backend\"} >= 3",
            )
            .await?;
            if r.is_empty() {
                Err("Prometheus has not seen the three leaked leases yet".to_string())
            } else {
                Ok(())
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", child.log_text()));
    state.retry_later.lock().expect("lock").clear();

    // --- every expression, until every series the dashboards show is there
    let end = Instant::now() + DEADLINE;
    let pass = loop {
        if let Err(e) = child.check_running() {
            panic!("{e}");
        }
        let pass = evaluate_everything(web, &dashboards, rule_count).await;
        if pass.empty.is_empty() && pass.unhealthy.is_empty() {
            break pass;
        }
        assert!(
            Instant::now() < end,
            "after {DEADLINE:?}, still without data:\n  {}\nrules not healthy:\n  {}\n{}",
            pass.empty.join("\n  "),
            pass.unhealthy.join("\n  "),
            child.log_text()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    println!(
        "{} expressions evaluated ({} rules); {} of {} panels returned data; exempt: {:?}",
        pass.evaluated, pass.rules, pass.panels_with_data, pass.panels, pass.exempt
    );
    assert_eq!(pass.panels_with_data, pass.panels);
    assert_eq!(pass.rules, rule_count);

    sampler.stop();
    drop(child); // kills Prometheus by its PID and reaps it
    let _ = stop.send(());
    let _ = upstream_stop.send(());
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the service stops")
        .expect("server task");
    tokio::time::timeout(Duration::from_secs(10), upstream_task)
        .await
        .expect("the upstream stops")
        .expect("upstream task");
}
