//! The pooled client against the crate's own server on loopback: close ordering, retirement,
//! the wait queue, and leases that know the line that took them.

mod support;

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use conn_hygiene::{
    client::{CloseOrder, CloseReason, Closer, HygienicClient, UpstreamConfig},
    server::{self, ConnectionLimits, HygienicListener},
};
use http_body_util::{BodyExt, Empty};
use support::*;

type Client = HygienicClient<Empty<Bytes>>;

fn client(config: UpstreamConfig) -> Client {
    HygienicClient::builder()
        .default_upstream(config)
        .build()
        .unwrap()
}

async fn get_ok(client: &Client, url: &str) {
    let res = client.get(url.parse().unwrap()).await.unwrap();
    assert_eq!(res.status(), 200);
    res.into_body().collect().await.unwrap();
}

/// Lets paused time run until the server has seen a connection close; returns the time since
/// `from`. Fails past `limit`.
async fn paused_until_closed(
    reg: &conn_hygiene::server::ConnectionRegistry,
    from: tokio::time::Instant,
    limit: Duration,
) -> Duration {
    eventually("the server to see a connection close", limit, || {
        reg.totals().closed > 0
    })
    .await;
    from.elapsed()
}

#[tokio::test(start_paused = true)]
async fn client_first_closes_before_the_advertised_keep_alive() {
    // The server advertises `Keep-Alive: timeout=75`; the client learns it and closes idle
    // connections at 74 s, so the client holds the TIME_WAIT and never races the server.
    let server = start(Mode::Axum, HygienicListener::builder()).await;
    let client = client(UpstreamConfig::new().idle_timeout(Duration::from_secs(600)));
    get_ok(&client, &server.url("/")).await;
    let snap = &client.view().snapshot()[0];
    assert_eq!(snap.learned_keep_alive, Some(Duration::from_secs(75)));
    assert_eq!(snap.effective_idle_timeout, Duration::from_secs(74));
    assert_eq!(snap.idle, 1);
    let idle_from = tokio::time::Instant::now();
    let reg = server.registry.clone();
    let closed_after = paused_until_closed(&reg, idle_from, Duration::from_secs(200)).await;
    assert!(
        closed_after >= Duration::from_secs(74) && closed_after < Duration::from_secs(75),
        "closed after {closed_after:?}"
    );
    // Both ends agree: the client closed first.
    assert_eq!(reg.totals().closed_by(Closer::Peer), 1);
    let t = client.view().snapshot()[0].totals.clone();
    assert_eq!(t.closed_for(CloseReason::IdleTimeout), 1, "{t:?}");
    assert_eq!(t.closed_by(Closer::Local), 1);
    server.stop().await;
}

#[tokio::test(start_paused = true)]
async fn server_first_lets_the_server_close_and_counts_it() {
    let listener = HygienicListener::builder().limits(
        ConnectionLimits::builder()
            .idle_timeout(Some(Duration::from_secs(5)))
            .build()
            .unwrap(),
    );
    let server = start(Mode::Axum, listener).await;
    let client = client(
        UpstreamConfig::new()
            .close_order(CloseOrder::ServerFirst)
            .idle_timeout(Duration::from_secs(60)),
    );
    get_ok(&client, &server.url("/")).await;
    let reg = server.registry.clone();
    paused_until_closed(&reg, tokio::time::Instant::now(), Duration::from_secs(60)).await;
    assert_eq!(reg.totals().closed_for(server::CloseReason::IdleTimeout), 1);
    // The pool notices the server's FIN.
    eventually(
        "the pool to see the server's FIN",
        Duration::from_secs(10),
        || client.view().snapshot()[0].totals.closed > 0,
    )
    .await;
    let t = client.view().snapshot()[0].totals.clone();
    assert_eq!(t.closed_by(Closer::Peer), 1, "{t:?}");
    assert_eq!(t.closed_for(CloseReason::ServerClosed), 1, "{t:?}");
    server.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_idle_connection_closes_at_its_max_age() {
    // The idle timeout is far away; the connection's age is what closes it, by the client,
    // though the stream was not woken by anything but its own timer and the response's end.
    let server = start(Mode::Axum, HygienicListener::builder()).await;
    let client = client(
        UpstreamConfig::new()
            .idle_timeout(Duration::from_secs(600))
            .server_keep_alive(Some(Duration::from_secs(900)))
            .max_age(Some(Duration::from_secs(10))),
    );
    let opened_at = tokio::time::Instant::now();
    get_ok(&client, &server.url("/")).await;
    let reg = server.registry.clone();
    let closed_after = paused_until_closed(&reg, opened_at, Duration::from_secs(60)).await;
    assert!(
        closed_after >= Duration::from_secs(10) && closed_after < Duration::from_secs(11),
        "closed after {closed_after:?}"
    );
    let t = client.view().snapshot()[0].totals.clone();
    assert_eq!(t.closed_for(CloseReason::MaxAge), 1, "{t:?}");
    assert_eq!(t.closed_by(Closer::Local), 1, "{t:?}");
    assert_eq!(reg.totals().closed_by(Closer::Peer), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_requests_retires_connections_and_the_client_closes_first() {
    let server = start(Mode::Axum, HygienicListener::builder()).await;
    let closes = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = closes.clone();
    server.registry.on_state_change(move |e| {
        if let Some(c) = e.close {
            sink.lock().unwrap().push((c.requests, c.closer));
        }
    });
    let client = client(UpstreamConfig::new().max_requests(Some(5)));
    for _ in 0..20 {
        get_ok(&client, &server.url("/")).await;
    }
    let snap = client.view().snapshot()[0].clone();
    drop(client);
    let reg = server.registry.clone();
    let opened = reg.totals().opened;
    eventually("every connection closed", LONG, || {
        reg.totals().closed == opened
    })
    .await;
    let closes = closes.lock().unwrap().clone();
    // No connection served more than five requests; together they served all twenty.
    assert!(closes.iter().all(|(n, _)| *n <= 5), "{closes:?}");
    assert_eq!(closes.iter().map(|(n, _)| n).sum::<u64>(), 20);
    // The client closed every connection first: the server holds no TIME_WAIT.
    assert!(closes.iter().all(|(_, c)| *c == Closer::Peer), "{closes:?}");
    let retired = snap.totals.closed_for(CloseReason::MaxRequests);
    assert!(retired >= 2, "{:?}", snap.totals);
    assert_eq!(
        closes.iter().filter(|(n, _)| *n == 5).count() as u64,
        retired + snap.connections.iter().filter(|c| c.requests == 5).count() as u64,
        "{closes:?} {:?}",
        snap.totals
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_open_queues_then_times_out_with_a_clear_error() {
    let server = start(Mode::Axum, HygienicListener::builder()).await;
    let client = client(
        UpstreamConfig::new()
            .max_connections(Some(1))
            .acquire_timeout(Duration::from_millis(200)),
    );
    // Hold the only connection with a large unread body (a small one would be buffered whole
    // and free the connection).
    let held = client
        .get(server.url("/big?kb=4096").parse().unwrap())
        .await
        .unwrap();
    let waiting = {
        let client = client.clone();
        let url = server.url("/");
        tokio::spawn(async move { client.get(url.parse().unwrap()).await })
    };
    eventually("one pending", LONG, || {
        client.view().snapshot()[0].pending == 1
    })
    .await;
    let err = waiting.await.unwrap().unwrap_err();
    assert!(err.is_acquire_timeout(), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("acquire timeout"), "{msg}");
    assert_eq!(
        axum::response::IntoResponse::into_response(err).status(),
        http::StatusCode::GATEWAY_TIMEOUT
    );
    assert_eq!(client.view().snapshot()[0].pending, 0);
    drop(held);
    get_ok(&client, &server.url("/")).await;
    server.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_unread_body_is_a_leak_reported_with_its_line() {
    let server = start(Mode::Axum, HygienicListener::builder()).await;
    let client = client(UpstreamConfig::new().leak_threshold(Some(Duration::from_secs(5))));
    let unread = client.get(server.url("/").parse().unwrap()).await.unwrap();
    let line = line!() - 1;
    let trackers = client.view().lease_trackers();
    assert_eq!(trackers.len(), 1);
    tokio::time::sleep(Duration::from_secs(6)).await;
    let snap = trackers[0].snapshot();
    assert_eq!(snap.outstanding(), 1);
    let lease = &snap.leases[0];
    assert!(lease.leaked, "{lease:?}");
    assert_eq!(lease.site.file(), file!());
    assert_eq!(lease.site.line(), line);
    // The helper fails a test that leaks, naming the line.
    let failure = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        conn_hygiene::testing::assert_no_leases(&trackers[0]);
    }))
    .unwrap_err();
    let message = failure
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(
        message.contains(&format!("{}:{line}", file!())),
        "{message}"
    );
    // Reading the body returns the lease; the helper passes.
    unread.into_body().collect().await.unwrap();
    conn_hygiene::testing::assert_no_leases(&trackers[0]);
    let totals = trackers[0].snapshot().totals;
    assert_eq!(totals.leaks_detected, 1);
    assert_eq!(totals.leaked_returned, 1);
    server.stop().await;
}

/// A request waiting for a slow response is a slow wait, not a leak (2.5 s against a 1 s
/// threshold); once the response is handed over, holding it past the threshold is.
#[tokio::test(start_paused = true)]
async fn a_slow_response_is_a_slow_wait_and_only_holding_it_leaks() {
    let server = start(Mode::Axum, HygienicListener::builder()).await;
    let client = client(UpstreamConfig::new().leak_threshold(Some(Duration::from_secs(1))));
    let url = server.url("/slow?ms=2500");
    let res = client.get(url.parse().unwrap()).await.unwrap();
    let trackers = client.view().lease_trackers();
    // The detector may have looked already: the totals say what was found, whoever found it.
    trackers[0].check_leaks();
    let snap = trackers[0].snapshot();
    assert_eq!(snap.totals.slow_waits, 1, "{snap:?}");
    assert_eq!(snap.totals.leaks_detected, 0, "{snap:?}");
    assert!(
        !snap.leases[0].leaked && !snap.leases[0].awaiting,
        "{snap:?}"
    );
    // The body left unread past the threshold: a leak.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    trackers[0].check_leaks();
    assert_eq!(trackers[0].snapshot().totals.leaks_detected, 1);
    res.into_body().collect().await.unwrap();
    assert_eq!(trackers[0].snapshot().outstanding(), 0);
    server.stop().await;
}

/// One call checks every upstream of a client, including upstreams made after the guard.
#[tokio::test(start_paused = true)]
async fn one_leak_check_covers_every_upstream_of_a_client() {
    use conn_hygiene::testing::{assert_no_client_leases, LeakCheck};
    let server = start(Mode::Axum, HygienicListener::builder()).await;
    let client = client(UpstreamConfig::new());
    let failed = {
        let check = LeakCheck::client(&client);
        // The client's first upstream is made by this request, after the guard.
        let unread = client.get(server.url("/").parse().unwrap()).await.unwrap();
        let line = line!() - 1;
        let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(check)));
        let message = failed
            .unwrap_err()
            .downcast::<String>()
            .map(|m| *m)
            .unwrap_or_default();
        assert!(
            message.contains(&format!("{}:{line}", file!())),
            "{message}"
        );
        let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            assert_no_client_leases(&client)
        }));
        unread.into_body().collect().await.unwrap();
        failed
    };
    assert!(
        failed.is_err(),
        "the assertion failed while the body was held"
    );
    assert_no_client_leases(&client);
    let _check = LeakCheck::client(&client);
    get_ok(&client, &server.url("/")).await;
    server.stop().await;
}

/// A small response body the HTTP stack read whole leaves its connection idle and reusable
/// while the response's lease is still held: accounting follows the connection's bytes, not
/// the lease, so the connection is reused, counted idle, and still closed by the client first.
#[tokio::test(start_paused = true)]
async fn a_held_small_body_leaves_its_connection_idle_and_closing_first() {
    let server = start(Mode::Axum, HygienicListener::builder()).await;
    let client = client(
        UpstreamConfig::new()
            .idle_timeout(Duration::from_secs(10))
            .leak_threshold(Some(Duration::from_secs(5))),
    );
    let url = server.url("/");
    let held = client.get(url.parse().unwrap()).await.unwrap();
    eventually("the held response's connection to be idle", LONG, || {
        let s = &client.view().snapshot()[0];
        s.idle == 1 && s.leased == 0
    })
    .await;
    // Reused while the first lease is held.
    get_ok(&client, &url).await;
    let snap = &client.view().snapshot()[0];
    assert_eq!(snap.totals.connects, 1, "{:?}", snap.totals);
    assert_eq!(snap.connections[0].requests, 2);
    assert_eq!(snap.leases.outstanding(), 1);
    // Idle from the second response on: the client closes it at its idle timeout, before the
    // server's keep-alive.
    let idle_from = tokio::time::Instant::now();
    let reg = server.registry.clone();
    let closed_after = paused_until_closed(&reg, idle_from, Duration::from_secs(60)).await;
    assert!(
        closed_after >= Duration::from_secs(10) && closed_after < Duration::from_secs(11),
        "closed after {closed_after:?}"
    );
    assert_eq!(reg.totals().closed_by(Closer::Peer), 1);
    let t = client.view().snapshot()[0].totals.clone();
    assert_eq!(t.closed_for(CloseReason::IdleTimeout), 1, "{t:?}");
    assert_eq!(t.closed_by(Closer::Local), 1);
    // The lease itself is still held, and reported as the leak it is.
    let leases = client.view().snapshot()[0].leases.clone();
    assert_eq!(leases.outstanding(), 1);
    assert!(leases.leases[0].leaked, "{leases:?}");
    drop(held);
    server.stop().await;
}

#[cfg(feature = "reqwest")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reqwest_connects_are_registered_by_destination() {
    use conn_hygiene::client::ReqwestConnectLayer;
    let server = start(Mode::Axum, HygienicListener::builder()).await;
    let layer = ReqwestConnectLayer::new();
    let client = reqwest::Client::builder()
        .connector_layer(layer.clone())
        .build()
        .unwrap();
    for _ in 0..20 {
        let res = client.get(server.url("/")).send().await.unwrap();
        assert_eq!(res.text().await.unwrap(), "hello\n");
    }
    let snap = layer.snapshot();
    assert_eq!(snap.len(), 1, "{snap:?}");
    assert_eq!(snap[0].remote_addr, Some(server.addr));
    // Keep-alive: far fewer connections than requests (hyper-util puts a connection back in
    // its pool a moment after the body ends, so a request now and then opens another), and
    // exactly the ones the server saw, from the same source ports (what TIME_WAIT attribution
    // joins on).
    let opened = server.registry.totals().opened;
    assert!(opened <= 10, "{opened} connections for 20 requests");
    assert_eq!(snap[0].connects, opened);
    let mut seen = Vec::new();
    for c in server.registry.snapshot().connections {
        seen.push(c.peer_addr);
    }
    assert!(!seen.is_empty());
    for peer in &seen {
        assert!(snap[0].local_addrs.contains(peer), "{peer} not in {snap:?}");
    }
    server.stop().await;
}

const LONG: Duration = Duration::from_secs(10);

/// A keep-alive server that answers the first request on each connection, then closes the
/// connection as the next request arrives, without a byte of response: the keep-alive race.
async fn closing_server() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut served = 0;
                loop {
                    let mut req = Vec::new();
                    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => req.extend_from_slice(&buf[..n]),
                        }
                    }
                    if served == 1 {
                        return; // drop: close without answering
                    }
                    served += 1;
                    // A retried request must carry its Host header like the first attempt.
                    let head = String::from_utf8_lossy(&req).to_ascii_lowercase();
                    let answer: &[u8] = if head.contains(&format!("\r\nhost: {addr}\r\n")) {
                        b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n"
                    } else {
                        b"HTTP/1.1 400 Bad Request\r\ncontent-length: 3\r\n\r\nno\n"
                    };
                    let _ = s.write_all(answer).await;
                }
            });
        }
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_first_retries_a_replayable_request_once_and_never_a_post() {
    let (addr, task) = closing_server().await;
    let client: HygienicClient<http_body_util::Full<Bytes>> = HygienicClient::builder()
        // One connection at a time, so every request after the first is on a reused one.
        .default_upstream(
            UpstreamConfig::new()
                .close_order(CloseOrder::ServerFirst)
                .max_connections(Some(1)),
        )
        .build()
        .unwrap();
    let url = format!("http://{addr}/");
    let send = |method: http::Method, key: Option<&str>| {
        let mut req = http::Request::builder().method(method).uri(&url);
        if let Some(k) = key {
            req = req.header("idempotency-key", k);
        }
        client.request(req.body(http_body_util::Full::new(Bytes::new())).unwrap())
    };
    // First request opens the connection; the second (GET) hits the race and is retried once.
    for _ in 0..2 {
        let res = send(http::Method::GET, None).await.unwrap();
        assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "ok\n");
    }
    assert_eq!(client.view().snapshot()[0].totals.retries, 1);
    // A POST on a reused connection that the server closes fails, and is not retried.
    let err = send(http::Method::POST, None).await.unwrap_err();
    assert!(!err.is_connect(), "{err:?}");
    assert!(
        err.is_closed_before_response(),
        "the keep-alive race: {err:?}"
    );
    // Its own message; the cause is in the source chain, printed once by a reporter.
    let upstream = err.upstream().to_owned();
    assert_eq!(
        err.to_string(),
        format!("upstream {upstream}: request failed")
    );
    assert!(std::error::Error::source(&err).is_some(), "{err:?}");
    // As a handler's response: 502, and nothing about the upstream in the body.
    let res = axum::response::IntoResponse::into_response(err);
    assert_eq!(res.status(), http::StatusCode::BAD_GATEWAY);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "Bad Gateway");
    assert_eq!(client.view().snapshot()[0].totals.retries, 1);
    // With an Idempotency-Key it may be replayed: warm a connection, then race it again.
    for key in ["k1", "k2"] {
        let res = send(http::Method::POST, Some(key)).await.unwrap();
        assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "ok\n");
    }
    assert_eq!(client.view().snapshot()[0].totals.retries, 2);
    assert_eq!(client.view().snapshot()[0].leases.outstanding(), 0);
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_spread_over_source_addresses() {
    let server = start(Mode::Axum, HygienicListener::builder()).await;
    let sources: Vec<std::net::IpAddr> =
        vec!["127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap()];
    let client = client(
        UpstreamConfig::new()
            .local_addrs(sources.clone())
            .max_requests(Some(1)),
    );
    let peers = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = peers.clone();
    server.registry.on_state_change(move |e| {
        if e.to == conn_hygiene::server::ConnState::Active {
            sink.lock().unwrap().push(e.peer_addr.ip());
        }
    });
    for _ in 0..4 {
        get_ok(&client, &server.url("/")).await;
    }
    let peers = peers.lock().unwrap().clone();
    assert_eq!(peers.len(), 4, "{peers:?}");
    for s in &sources {
        assert_eq!(peers.iter().filter(|p| *p == s).count(), 2, "{peers:?}");
    }
    server.stop().await;
}

#[test]
fn per_upstream_metrics_through_the_facade() {
    use conn_hygiene::metrics::names::*;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (up, server_opened, served) = rt.block_on(async {
        let server = start(Mode::Axum, HygienicListener::builder()).await;
        let served = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = served.clone();
        server.registry.on_state_change(move |e| {
            if let Some(c) = e.close {
                sink.lock().unwrap().push(c.requests);
            }
        });
        let authority = server.addr.to_string();
        let client: Client = metrics::with_local_recorder(&recorder, || {
            HygienicClient::builder()
                .upstream(
                    authority,
                    UpstreamConfig::new().name("backend").max_requests(Some(2)),
                )
                .build()
                .unwrap()
        });
        for _ in 0..4 {
            get_ok(&client, &server.url("/")).await;
        }
        // A fifth response whose body is not read yet: its lease is outstanding.
        let unread = client.get(server.url("/").parse().unwrap()).await.unwrap();
        // The gauges are set from the live state when metrics are collected. The connections'
        // states are taken around a collection until they held still across it (hyper-util
        // may open a connection and discard it meanwhile).
        let view = client.view();
        let mut tries = 0;
        let up = loop {
            let before = view.snapshot()[0].clone();
            conn_hygiene::metrics::collect();
            let after = view.snapshot()[0].clone();
            if (before.idle, before.leased) == (after.idle, after.leased) {
                break after;
            }
            tries += 1;
            assert!(tries < 100, "connection states never held still: {after:?}");
            tokio::task::yield_now().await;
        };
        assert_eq!(up.leases.outstanding(), 1, "{up:?}");
        // (The metrics snapshot below is taken after the client is gone, with no collection
        // since: the gauges hold what this one set.)
        unread.into_body().collect().await.unwrap();
        drop((client, view));
        let reg = server.registry.clone();
        eventually("closed", LONG, || reg.live() == 0).await;
        server.stop().await;
        let served = served.lock().unwrap().clone();
        (up, reg.totals().opened, served)
    });
    let totals = up.totals.clone();
    let metrics = snapshotter.snapshot().into_vec();
    let value = |name: &str, labels: &[(&str, &str)]| {
        metrics
            .iter()
            .find(|(k, ..)| {
                k.key().name() == name
                    && labels.iter().all(|(lk, lv)| {
                        k.key().labels().any(|l| l.key() == *lk && l.value() == *lv)
                    })
            })
            .map(|(_, _, _, v)| v)
            .unwrap_or_else(|| panic!("metric {name} {labels:?} missing"))
    };
    // The metric agrees with the snapshot and with the server's count of connections.
    assert_eq!(totals.connects, server_opened);
    assert!(totals.connects >= 2);
    assert_eq!(
        value(CLIENT_CONNECTS_TOTAL, &[("upstream", "backend")]),
        &DebugValue::Counter(server_opened)
    );
    // Connections that served their two requests were retired by the client.
    let retired = served.iter().filter(|n| **n == 2).count() as u64;
    assert!(retired >= 1, "{served:?}");
    assert_eq!(
        value(
            CLIENT_CONNECTIONS_CLOSED_TOTAL,
            &[("closer", "local"), ("reason", "max_requests")]
        ),
        &DebugValue::Counter(retired)
    );
    assert_eq!(
        value(LEASES_ACQUIRED_TOTAL, &[("pool", "backend")]),
        &DebugValue::Counter(5)
    );
    for (state, n) in [("idle", up.idle), ("leased", up.leased)] {
        assert_eq!(
            value(CLIENT_CONNECTIONS, &[("state", state)]),
            &DebugValue::Gauge((n as f64).into()),
            "{state}"
        );
    }
    // One lease was outstanding at the collection (a gauge never collected reads 0).
    assert_eq!(
        value(LEASES_OUTSTANDING, &[("pool", "backend")]),
        &DebugValue::Gauge(1.0.into())
    );
    // Labels are names, never addresses.
    for (k, ..) in &metrics {
        for l in k.key().labels() {
            assert!(!l.value().contains("127.0.0."), "{k:?}");
        }
    }
}

/// A keep-alive server that answers every request with `ok` and hands each request head, as
/// the bytes that arrived, to the test.
async fn recording_server() -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<String>,
    tokio::task::JoinHandle<()>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut pending = Vec::new();
                loop {
                    let end = loop {
                        if let Some(i) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => pending.extend_from_slice(&buf[..n]),
                        }
                    };
                    let head: Vec<u8> = pending.drain(..end).collect();
                    let _ = tx.send(String::from_utf8_lossy(&head).into_owned());
                    if s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n")
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (addr, rx, task)
}

/// hyper-util's pool is addressed by a short key per upstream, not by the request's authority:
/// what reaches the server must be exactly what hyper-util alone would send.
#[tokio::test]
async fn requests_reach_the_server_as_written() {
    for upstream_pool_keys in [true, false] {
        requests_reach_the_server_as_written_with(upstream_pool_keys).await;
    }
}

async fn requests_reach_the_server_as_written_with(upstream_pool_keys: bool) {
    let (addr, mut heads, task) = recording_server().await;
    let client: HygienicClient<http_body_util::Full<Bytes>> = HygienicClient::builder()
        .upstream_pool_keys(upstream_pool_keys)
        .build()
        .unwrap();
    let send = |uri: String, host: Option<&str>| {
        let mut req = http::Request::get(uri);
        if let Some(h) = host {
            req = req.header("host", h);
        }
        client.request(req.body(http_body_util::Full::new(Bytes::new())).unwrap())
    };
    let port = addr.port();
    let cases = [
        // (URI, Host header set by the caller, expected request line, expected Host)
        (
            format!("http://{addr}/a/b?q=1&r=%20"),
            None,
            "GET /a/b?q=1&r=%20 HTTP/1.1".to_owned(),
            format!("127.0.0.1:{port}"),
        ),
        (
            format!("http://{addr}"),
            None,
            "GET / HTTP/1.1".to_owned(),
            format!("127.0.0.1:{port}"),
        ),
        (
            format!("http://localhost:{port}/x"),
            None,
            "GET /x HTTP/1.1".to_owned(),
            format!("localhost:{port}"),
        ),
        (
            format!("http://user:pw@127.0.0.1:{port}/u"),
            None,
            "GET /u HTTP/1.1".to_owned(),
            format!("127.0.0.1:{port}"),
        ),
        (
            format!("http://{addr}/v"),
            Some("api.example"),
            "GET /v HTTP/1.1".to_owned(),
            "api.example".to_owned(),
        ),
    ];
    for (uri, host, line, want_host) in cases {
        let res = send(uri.clone(), host).await.unwrap();
        assert_eq!(res.status(), 200);
        res.into_body().collect().await.unwrap();
        let head = heads.recv().await.unwrap();
        let mut lines = head.split("\r\n");
        assert_eq!(lines.next(), Some(line.as_str()), "{uri}: {head:?}");
        let hosts: Vec<&str> = lines
            .filter_map(|l| l.split_once(':'))
            .filter(|(name, _)| name.eq_ignore_ascii_case("host"))
            .map(|(_, v)| v.trim())
            .collect();
        assert_eq!(hosts, [want_host.as_str()], "{uri}: {head:?}");
    }
    // Two upstreams (127.0.0.1 and localhost), each pooled apart. Keyed per upstream, every
    // request after an upstream's first reused its connection; keyed by authority (as
    // hyper-util alone), the one with user info was pooled apart.
    let snap = client.view().snapshot();
    assert_eq!(snap.len(), 2, "{snap:?}");
    let connects: u64 = snap.iter().map(|u| u.totals.connects).sum();
    assert_eq!(connects, if upstream_pool_keys { 2 } else { 3 });
    // Port 0 is a connect error, like any port nothing listens on.
    let err = send("http://127.0.0.1:0/".into(), None).await.unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    task.abort();
}

/// Over HTTP/2 the request's authority goes on the wire (`:authority`), so the pool is keyed
/// by it: the server sees the authority the caller wrote.
#[tokio::test]
async fn http2_requests_carry_their_own_authority() {
    use hyper_util::{rt::TokioIo, server::conn::auto};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(|req: http::Request<hyper::body::Incoming>| {
                        let authority = req.uri().authority().map(|a| a.to_string());
                        async move {
                            Ok::<_, std::convert::Infallible>(http::Response::new(
                                http_body_util::Full::new(Bytes::from(
                                    authority.unwrap_or_default(),
                                )),
                            ))
                        }
                    });
                let _ = auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    let client = HygienicClient::builder()
        .http2_only(true)
        .build::<Empty<Bytes>>()
        .unwrap();
    for uri in [
        format!("http://{addr}/"),
        format!("http://localhost:{}/", addr.port()),
    ] {
        for _ in 0..2 {
            let res = client.get(uri.parse().unwrap()).await.unwrap();
            assert_eq!(res.version(), http::Version::HTTP_2);
            let body = res.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(
                body,
                uri.trim_start_matches("http://").trim_end_matches('/')
            );
        }
    }
    // One HTTP/2 connection per upstream, every stream after the first on it.
    let snap = client.view().snapshot();
    assert_eq!(
        snap.iter().map(|u| u.totals.connects).collect::<Vec<_>>(),
        [1, 1]
    );
    server.abort();
}

/// An HTTP/2 connection is leased while a stream is open on it, and a server that retires it
/// (GOAWAY before anything of ours) is the server closing first.
#[tokio::test(start_paused = true)]
async fn http2_a_servers_goaway_is_the_server_closing_first() {
    let listener = HygienicListener::builder().limits(
        ConnectionLimits::builder()
            .idle_timeout(Some(Duration::from_secs(5)))
            .build()
            .unwrap(),
    );
    let server = start(Mode::Hyper, listener).await;
    let client = HygienicClient::builder()
        .http2_only(true)
        .default_upstream(UpstreamConfig::new().idle_timeout(Duration::from_secs(600)))
        .build::<Empty<Bytes>>()
        .unwrap();
    let res = client.get(server.url("/").parse().unwrap()).await.unwrap();
    assert_eq!(res.version(), http::Version::HTTP_2);
    res.into_body().collect().await.unwrap();
    eventually("the connection to be idle", LONG, || {
        client.view().snapshot()[0].idle == 1
    })
    .await;
    let reg = server.registry.clone();
    paused_until_closed(&reg, tokio::time::Instant::now(), Duration::from_secs(60)).await;
    eventually("the client to see the close", LONG, || {
        client.view().snapshot()[0].totals.closed_by(Closer::Peer) == 1
    })
    .await;
    let t = client.view().snapshot()[0].totals.clone();
    assert_eq!(t.closed_for(CloseReason::ServerClosed), 1, "{t:?}");
    assert_eq!(reg.totals().closed_for(server::CloseReason::IdleTimeout), 1);
    server.stop().await;
}

/// The client is a tower service (and so is `&HygienicClient`): it composes with tower
/// middleware, and a request through it is a lease like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_is_a_tower_service_and_composes_with_middleware() {
    use tower::{Service, ServiceBuilder, ServiceExt};
    let server = start(Mode::Axum, HygienicListener::builder()).await;
    let client = client(UpstreamConfig::new());
    let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = seen.clone();
    let svc = ServiceBuilder::new()
        .map_request(move |req: http::Request<Empty<Bytes>>| {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            req
        })
        .service(client.clone());
    let req = http::Request::get(server.url("/"))
        .body(Empty::new())
        .unwrap();
    let res = svc.oneshot(req).await.expect("through the middleware");
    assert_eq!(res.status(), 200);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"hello\n");
    assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 1);
    // Through a shared reference too.
    let mut by_ref = &client;
    let req = http::Request::get(server.url("/"))
        .body(Empty::new())
        .unwrap();
    let res = by_ref.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(res.status(), 200);
    drop(res);
    conn_hygiene::testing::assert_no_client_leases(&client);
    // Both were counted on the connections that carried them: usually one pooled connection,
    // two when the second request came before hyper-util had put the first one back.
    let up = &client.view().snapshot()[0];
    assert!(up.totals.connects <= 2, "{up:?}");
    let carried: u64 = up.connections.iter().map(|c| c.requests).sum();
    assert_eq!(carried, 2, "{up:?}");
}
