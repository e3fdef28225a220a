//! The live connections page, opened by a real headless browser (Debian's Chromium), in a
//! private network namespace where only loopback exists: nothing the page asked for could
//! leave the host, and the page is checked to ask for nothing at all.
//!
//! The process under test has known connections (five idle keep-alive connections and two
//! that never sent a byte on the `api` listener), a pooled client whose two responses from a
//! backend that closes are kept unread (two leaked leases, two `CLOSE_WAIT` sockets held by
//! the upstream), and a lease of its own never returned. The rendered DOM must show those
//! numbers, the same as the JSON twin, and the `file:line` of the lines that leaked; the
//! screenshot must not be blank.
//!
//! Needs root (for the namespace) and `chromium` (Debian package `chromium`); without them the
//! test fails and names `scripts/install-test-deps.sh`.

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use axum::{routing::get, Router};
use bytes::Bytes;
use conn_hygiene::{
    census::{Owner, Sampler, TcpState},
    client::{HygienicClient, ResponseFuture, UpstreamConfig},
    exporter::PrometheusExporter,
    lease::LeaseTracker,
    page::ConnectionsPage,
    pools::TrackedDeadpool,
    server::{ConnState, ConnectionLimits, HygienicListener, MakeTrackConnection},
};
use conn_hygiene_test_support::{eventually, in_netns, precondition, run_in_netns, satisfies};
use http_body_util::Empty;
use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

const LIMIT: Duration = Duration::from_secs(20);
const IDLE_CONNS: usize = 5;
const SILENT_CONNS: usize = 2;
const LEAKED: usize = 2;

fn find_chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .flat_map(|d| ["chromium", "chromium-browser"].map(|n| d.join(n)))
        .find(|p| p.is_file())
}

/// A backend that answers every request with the head of a large 503, part of its body, and
/// a close: a client that keeps the response unread holds the rest and the FIN (`CLOSE_WAIT`).
async fn closing_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind backend");
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

/// `GET path` on a connection of its own; the status line's code, the headers and the body.
async fn fetch(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: page\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .expect("write");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8(raw).expect("UTF-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head");
    let code = head[9..12].parse().expect("status code");
    (code, head.to_ascii_lowercase(), body.to_owned())
}

/// The element of `dom` that starts with `start` (an opening tag's beginning), up to its
/// closing `end`.
fn element<'a>(dom: &'a str, start: &str, end: &str) -> &'a str {
    let at = dom
        .find(start)
        .unwrap_or_else(|| panic!("no `{start}` in the page:\n{dom}"));
    let rest = &dom[at..];
    &rest[..rest.find(end).map_or(rest.len(), |i| i + end.len())]
}

/// The text of the cell `data-k="key"` in `row`, its inner tags left out.
fn cell(row: &str, key: &str) -> String {
    let marker = format!("data-k=\"{key}\">");
    let at = row
        .find(&marker)
        .unwrap_or_else(|| panic!("no cell {key} in {row}"));
    let rest = &row[at + marker.len()..];
    let inner = &rest[..rest.find("</td>").expect("cell end")];
    let mut text = String::new();
    let mut in_tag = false;
    for c in inner.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    text.trim().to_owned()
}

fn num(row: &str, key: &str) -> u64 {
    cell(row, key)
        .parse()
        .unwrap_or_else(|_| panic!("cell {key} of {row} is not a number"))
}

/// Runs Chromium headless on `url` with `args`; its stdout.
async fn chromium(bin: &Path, profile: &Path, url: &str, args: &[&str]) -> String {
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(args)
    .arg(url)
    .stdin(Stdio::null())
    .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(90), cmd.output())
        .await
        .expect("chromium finished within 90 s")
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium {args:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("chromium's output is UTF-8")
}

/// Pixels of the screenshot that differ from its top-left one (the page's background), and
/// how many colours it has.
fn screenshot_ink(png_file: &Path) -> (u32, u32, usize, BTreeSet<[u8; 3]>) {
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(png_file).expect("open the screenshot"),
    ));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("decode the screenshot");
    let channels = info.color_type.samples();
    assert!(
        channels >= 3,
        "unexpected PNG colour type {:?}",
        info.color_type
    );
    let pixels: Vec<[u8; 3]> = buf[..info.buffer_size()]
        .chunks_exact(channels)
        .map(|p| [p[0], p[1], p[2]])
        .collect();
    let background = pixels[0];
    let ink = pixels.iter().filter(|p| **p != background).count();
    let colours: BTreeSet<[u8; 3]> = pixels.iter().copied().collect();
    (info.width, info.height, ink, colours)
}

type Client = HygienicClient<Empty<Bytes>>;

/// `GET uri`, and the line that sent it: the site its lease records.
fn leaky_get(client: &Client, uri: http::Uri) -> (u32, ResponseFuture<Empty<Bytes>>) {
    (line!(), client.get(uri))
}

#[test]
fn the_page_in_a_headless_browser() {
    run_in_netns("inner_the_page_in_a_headless_browser", &[]);
}

#[test]
#[ignore = "runs inside a private network namespace, started by `the_page_in_a_headless_browser`"]
fn inner_the_page_in_a_headless_browser() {
    if !in_netns() {
        return the_page_in_a_headless_browser();
    }
    let chromium_bin = find_chromium();
    if !precondition(
        "the_page_in_a_headless_browser",
        chromium_bin.is_some(),
        "chromium (Debian package `chromium`): run scripts/install-test-deps.sh",
    ) {
        return;
    }
    let chromium_bin = chromium_bin.expect("checked");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        // --- the api listener, with connections of known states
        let limits = ConnectionLimits::builder()
            .header_timeout(Some(Duration::from_secs(120)))
            .idle_timeout(Some(Duration::from_secs(120)))
            .build()
            .expect("limits");
        let api = HygienicListener::builder()
            .name("api")
            .limits(limits)
            .bind("127.0.0.1:0")
            .await
            .expect("bind api");
        let api_addr = api.local_addr();
        let api_registry = api.registry().clone();
        tokio::spawn(async move {
            let app = Router::new().route("/", get(|| async { "ok\n" }));
            let _ = axum::serve(api, MakeTrackConnection::new(app)).await;
        });
        let mut held = Vec::new();
        for _ in 0..IDLE_CONNS {
            let mut s = TcpStream::connect(api_addr).await.expect("connect api");
            s.write_all(b"GET / HTTP/1.1\r\nHost: api\r\n\r\n")
                .await
                .expect("write");
            let mut buf = [0u8; 512];
            let n = s.read(&mut buf).await.expect("read");
            assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "api answered");
            held.push(s);
        }
        for _ in 0..SILENT_CONNS {
            held.push(TcpStream::connect(api_addr).await.expect("connect api"));
        }

        // --- a client whose responses from a closing backend are kept unread
        let backend = closing_backend().await;
        let client: Client = HygienicClient::builder()
            .upstream(
                backend.to_string(),
                UpstreamConfig::new()
                    .name("flaky-backend")
                    .leak_threshold(Some(Duration::from_millis(300))),
            )
            .build()
            .expect("client");
        let uri: http::Uri = format!("http://{backend}/").parse().expect("uri");
        let mut leaked = Vec::new();
        let mut request_line = 0;
        for _ in 0..LEAKED {
            let (line, res) = leaky_get(&client, uri.clone());
            request_line = line;
            leaked.push(res.await.expect("the backend's response head"));
        }
        // --- a lease of our own, never returned
        let jobs = LeaseTracker::builder("jobs")
            .leak_threshold(Some(Duration::from_millis(300)))
            .build()
            .expect("tracker");
        let (lease_line, _job) = (line!(), jobs.lease());

        // --- the page, on a listener of its own
        let admin = HygienicListener::builder()
            .name("admin")
            .bind("127.0.0.1:0")
            .await
            .expect("bind admin");
        let admin_addr = admin.local_addr();
        let sampler = Sampler::builder()
            .interval(Duration::from_millis(200))
            .listener(&api_registry)
            .listener(admin.registry())
            .client(client.view())
            .spawn()
            .expect("sampler");
        let page = ConnectionsPage::builder(sampler.clone())
            .listener(&api_registry)
            .listener(admin.registry())
            .client(client.view())
            .leases(jobs.clone())
            .old_lease_after(Duration::from_millis(100))
            .build();
        let app: Router = page.router();
        tokio::spawn(async move {
            let _ = axum::serve(admin, MakeTrackConnection::new(app)).await;
        });

        // --- wait for the states to land: connections, leaks, CLOSE_WAIT, samples
        eventually("the api connections idle and new", LIMIT, || {
            let by_state = api_registry.live_by_state();
            let n = |s: ConnState| by_state.iter().find(|(k, _)| *k == s).map_or(0, |(_, n)| *n);
            satisfies(by_state, |_| {
                n(ConnState::Idle) == IDLE_CONNS && n(ConnState::New) == SILENT_CONNS
            })
        })
        .await;
        eventually("the leaks reported", LIMIT, || {
            let leaks: usize = client
                .view()
                .lease_trackers()
                .iter()
                .map(|t| t.snapshot().leaked().count())
                .sum::<usize>()
                + jobs.snapshot().leaked().count();
            satisfies(leaks, |n| *n == LEAKED + 1)
        })
        .await;
        let mut last = None;
        eventually("two CLOSE_WAIT sockets held by the upstream, leased", LIMIT, || {
            let snap = sampler.latest();
            let ok = snap.as_ref().is_some_and(|s| {
                s.close_wait
                    .iter()
                    .filter(|c| {
                        c.owner == Owner::Upstream("flaky-backend".into()) && c.lease_site.is_some()
                    })
                    .count()
                    == LEAKED
            });
            last = snap;
            ok
        })
        .await;
        let seq = last.as_ref().map_or(0, |s| s.seq);
        eventually("three more samples, for the charts", LIMIT, || {
            sampler.latest().is_some_and(|s| s.seq >= seq + 3)
        })
        .await;

        // --- the JSON twin, as a script would read it
        let (code, head, body) = fetch(admin_addr, "/connections.json").await;
        assert_eq!(code, 200, "{head}");
        assert!(head.contains("content-type: application/json"), "{head}");
        let json: Value = serde_json::from_str(&body).expect("the twin is JSON");
        let api_json = json["listeners"]
            .as_array()
            .expect("listeners")
            .iter()
            .find(|l| l["name"] == "api")
            .expect("the api listener")
            .clone();
        assert_eq!(api_json["connections"]["idle"], IDLE_CONNS);
        assert_eq!(api_json["connections"]["new"], SILENT_CONNS);
        assert_eq!(api_json["live"], IDLE_CONNS + SILENT_CONNS);
        assert_eq!(api_json["opened"], IDLE_CONNS + SILENT_CONNS);
        assert!(
            json["history"]["at"].as_array().expect("history").len() >= 3,
            "{}",
            json["history"]
        );

        // --- the HTML page: headers, and nothing it could fetch
        let (code, head, html) = fetch(admin_addr, "/connections").await;
        assert_eq!(code, 200, "{head}");
        assert!(head.contains("content-type: text/html"), "{head}");
        assert!(
            head.contains("content-security-policy: default-src 'none'"),
            "the page forbids every fetch: {head}"
        );
        for fetcher in ["<script", "<link", "<img", "<iframe", "@import", "url(", "src=", "http://", "https://"] {
            assert!(!html.contains(fetcher), "the page must fetch nothing, yet has `{fetcher}`");
        }
        assert!(html.contains("<meta http-equiv=\"refresh\""), "the page refreshes itself");

        // --- the browser
        let profile = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("chromium-{}", std::process::id()));
        let url = format!("http://{admin_addr}/connections");
        let dom = chromium(&chromium_bin, &profile, &url, &["--dump-dom"]).await;
        assert!(dom.contains("Connections of pid"), "the page rendered:\n{dom}");

        // The listener's numbers, as the DOM shows them and as the JSON says.
        let row = element(&dom, "<tr data-listener=\"api\"", "</tr>");
        assert_eq!(num(row, "idle"), IDLE_CONNS as u64, "{row}");
        assert_eq!(num(row, "new"), SILENT_CONNS as u64, "{row}");
        assert_eq!(num(row, "active"), 0, "{row}");
        assert_eq!(num(row, "live"), (IDLE_CONNS + SILENT_CONNS) as u64, "{row}");
        assert_eq!(num(row, "opened"), api_json["opened"].as_u64().expect("opened"), "{row}");
        assert_eq!(num(row, "closed"), 0, "{row}");

        // The upstream: two connections leased and leaked, two CLOSE_WAIT.
        let row = element(&dom, "<tr data-upstream=\"flaky-backend\"", "</tr>");
        assert_eq!(num(row, "leased"), LEAKED as u64, "{row}");
        assert_eq!(num(row, "leases"), LEAKED as u64, "{row}");
        assert_eq!(num(row, "leaks"), LEAKED as u64, "{row}");
        assert_eq!(num(row, "close_wait"), LEAKED as u64, "{row}");

        // The host: only this test's sockets in the namespace.
        let host_close_wait = last
            .as_ref()
            .map_or(0, |s| s.host.get(TcpState::CloseWait));
        let row = element(&dom, "<tr data-state=\"CLOSE_WAIT\"", "</tr>");
        assert_eq!(num(row, "host"), LEAKED as u64, "{row}");
        assert_eq!(num(row, "process"), LEAKED as u64, "{row}");
        assert_eq!(host_close_wait, LEAKED as u64);

        // The leaks, each with the line that took it.
        let request_site = format!("tests/page.rs:{request_line}:");
        let lease_site = format!("tests/page.rs:{lease_line}:");
        let leases = element(&dom, "<section id=\"leases\"", "</section>");
        let rows: Vec<&str> = leases.split("<tr").skip(2).collect();
        assert_eq!(rows.len(), LEAKED + 1, "{leases}");
        assert_eq!(
            rows.iter().filter(|r| cell(r, "site").contains(&request_site)).count(),
            LEAKED,
            "{leases}"
        );
        assert_eq!(
            rows.iter().filter(|r| cell(r, "site").contains(&lease_site)).count(),
            1,
            "{leases}"
        );
        assert!(rows.iter().all(|r| cell(r, "state") == "leaked"), "{leases}");

        // The CLOSE_WAIT sockets, each with its holder and the line that leased it.
        let close_wait = element(&dom, "<section id=\"close-wait\"", "</section>");
        let rows: Vec<&str> = close_wait.split("<tr class=\"close-wait\"").skip(1).collect();
        assert_eq!(rows.len(), LEAKED, "{close_wait}");
        for r in &rows {
            assert_eq!(cell(r, "holder"), "upstream flaky-backend", "{r}");
            assert!(cell(r, "site").contains(&request_site), "{r}");
        }

        // The charts: four, drawn.
        assert_eq!(dom.matches("<figure data-chart=").count(), 4, "{dom}");
        assert!(dom.matches("<polyline").count() >= 3, "{dom}");

        // --- a screenshot, not blank
        let shot = profile.with_extension("png");
        let _ = std::fs::remove_file(&shot);
        chromium(
            &chromium_bin,
            &profile,
            &url,
            &["--window-size=1400,1600", &format!("--screenshot={}", shot.display())],
        )
        .await;
        let (width, height, ink, colours) = screenshot_ink(&shot);
        assert_eq!((width, height), (1400, 1600));
        let share = ink as f64 / f64::from(width * height);
        assert!(
            share > 0.02 && colours.len() > 16,
            "the screenshot looks blank: {:.2} % of pixels drawn, {} colours",
            share * 100.0,
            colours.len()
        );
        println!(
            "page: {} bytes of HTML, screenshot {width}x{height}, {:.1} % of pixels drawn, {} colours",
            html.len(),
            share * 100.0,
            colours.len()
        );
        let _ = std::fs::remove_dir_all(&profile);
        let _ = std::fs::remove_file(&shot);
        drop(leaked);
        drop(held);
    });
}

/// A pool of plain TCP connections.
struct Tcp(SocketAddr);

impl deadpool::managed::Manager for Tcp {
    type Type = TcpStream;
    type Error = std::io::Error;

    async fn create(&self) -> std::io::Result<TcpStream> {
        TcpStream::connect(self.0).await
    }

    async fn recycle(
        &self,
        _: &mut TcpStream,
        _: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<std::io::Error> {
        Ok(())
    }
}

/// The exporter's own listener serves the page beside `/metrics`, and nothing else; a tracked
/// pool shows its own statistics and its checkouts.
#[tokio::test]
async fn the_exporters_own_listener_serves_the_page_beside_metrics() {
    let (_recorder, exporter) = PrometheusExporter::builder()
        .upkeep_interval(None)
        .build()
        .expect("exporter");
    let api = HygienicListener::builder()
        .name("api")
        .bind("127.0.0.1:0")
        .await
        .expect("bind api");
    let sampler = Sampler::builder()
        .listener(api.registry())
        .spawn()
        .expect("sampler");
    // A pool of at most 4 connections to the api listener: 3 made, 2 of them checked out.
    let pool = TrackedDeadpool::new(
        deadpool::managed::Pool::builder(Tcp(api.local_addr()))
            .max_size(4)
            .build()
            .expect("pool"),
        LeaseTracker::new("db"),
    );
    let mut checked_out = Vec::new();
    for _ in 0..3 {
        checked_out.push(pool.get().await.expect("a connection"));
    }
    drop(checked_out.pop());
    let page = ConnectionsPage::builder(sampler.clone())
        .listener(api.registry())
        .pool(pool.view())
        .build();
    let admin = exporter
        .listen()
        .addr("127.0.0.1:0".parse().expect("addr"))
        .page(page)
        .bind()
        .await
        .expect("bind the exporter's listener");
    let addr = admin.local_addr();

    let (code, head, body) = fetch(addr, "/connections").await;
    assert_eq!(code, 200, "{head}");
    assert!(head.contains("content-type: text/html"), "{head}");
    assert!(body.contains("<tr data-listener=\"api\""), "{body}");
    let (code, _, body) = fetch(addr, "/connections.json").await;
    assert_eq!(code, 200);
    let json: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(json["listeners"][0]["name"], "api");
    assert_eq!(json["pid"], std::process::id());
    let db = &json["pools"][0];
    assert_eq!(db["name"], "db", "{db}");
    assert_eq!(
        (
            &db["size"],
            &db["idle"],
            &db["max_size"],
            &db["checked_out"],
            &db["leases_outstanding"]
        ),
        (
            &Value::from(3),
            &Value::from(1),
            &Value::from(4),
            &Value::from(2),
            &Value::from(2)
        ),
        "{db}"
    );
    let (_, _, html) = fetch(addr, "/connections").await;
    let row = element(&html, "<tr data-pool=\"db\"", "</tr>");
    assert_eq!(cell(row, "size"), "3 / 4", "{row}");
    assert_eq!(num(row, "checked_out"), 2, "{row}");
    assert_eq!(num(row, "leases"), 2, "{row}");
    let (code, head, _) = fetch(addr, "/metrics").await;
    assert_eq!(code, 200);
    assert!(head.contains("content-type: text/plain"), "{head}");
    let (code, _, _) = fetch(addr, "/elsewhere").await;
    assert_eq!(code, 404);
    drop(checked_out);
    admin.shutdown().await;
}
