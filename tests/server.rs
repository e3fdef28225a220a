//! The hygienic server against real clients on loopback, through `axum::serve` and through the
//! crate's own hyper-util loop.

mod support;

use std::{
    sync::{atomic::Ordering, Arc, Mutex},
    time::Duration,
};

use conn_hygiene::{
    policy::{EffectiveOptions, Keepalive, Linger, SocketPolicy},
    server::{CloseReason, Closer, ConnState, ConnectionLimits, HalfClose, HygienicListener},
};
use socket2::SockRef;
use support::*;
use tokio::{io::AsyncWriteExt, net::TcpStream};

const LONG: Duration = Duration::from_secs(10);

fn limits() -> conn_hygiene::server::ConnectionLimitsBuilder {
    ConnectionLimits::builder()
}

fn listener(limits: ConnectionLimits) -> conn_hygiene::server::ListenerBuilder {
    HygienicListener::builder().name("test").limits(limits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_sockets_carry_the_policy() {
    let policy = SocketPolicy::builder()
        .keepalive(Some(Keepalive::new(
            Duration::from_secs(30),
            Duration::from_secs(5),
            3,
        )))
        .user_timeout(Some(Duration::from_secs(45)))
        .backlog(100)
        .build()
        .unwrap();
    let mut listener = HygienicListener::builder()
        .policy(policy)
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let port = listener.local_addr().port();
    assert_eq!(listener.backlog().requested, 100);
    assert_eq!(listener.backlog().effective, 100);
    // The kernel reports a listener's accept-queue maximum as Send-Q.
    let listen = ss(&["-ltn", &format!("( sport = :{port} )")]);
    assert_eq!(listen.len(), 1, "{listen:?}");
    assert_eq!(
        listen[0].split_whitespace().nth(2),
        Some("100"),
        "{listen:?}"
    );

    let client = TcpStream::connect(listener.local_addr()).await.unwrap();
    let (stream, peer) = listener.accept().await;
    assert_eq!(peer, client.local_addr().unwrap());
    let eff = EffectiveOptions::read(SockRef::from(stream.get_ref())).unwrap();
    assert_eq!(
        eff.keepalive,
        Some(Keepalive::new(
            Duration::from_secs(30),
            Duration::from_secs(5),
            3
        ))
    );
    assert_eq!(eff.user_timeout, Some(Duration::from_secs(45)));
    assert!(eff.nodelay);
    assert_eq!(eff.linger, None);

    // ss shows the keepalive timer on the server's end of the connection.
    let est = ss(&[
        "-tnio",
        "state",
        "established",
        &format!("( sport = :{port} )"),
    ]);
    // With -i, each socket takes a line plus an indented line of TCP info.
    let sockets: Vec<&String> = est
        .iter()
        .filter(|l| !l.starts_with(char::is_whitespace))
        .collect();
    assert_eq!(sockets.len(), 1, "{est:?}");
    assert!(sockets[0].contains("timer:(keepalive,"), "{est:?}");
    assert_eq!(listener.registry().live(), 1);
    drop(stream);
    assert_eq!(listener.registry().live(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_reuses_connections_and_sees_keep_alive_timeout() {
    for mode in MODES {
        let server = start(mode, listener(limits().build().unwrap())).await;
        let url = server.url("/");
        let (ok, out, err) = curl(&["-sv", &url, &url, &url]).await;
        assert!(ok, "{mode:?}: {err}");
        assert_eq!(out, "hello\n".repeat(3));
        assert!(
            err.to_lowercase().contains("< keep-alive: timeout=75"),
            "{mode:?}: {err}"
        );
        assert_eq!(
            err.matches("Re-using existing connection").count(),
            2,
            "{mode:?}: {err}"
        );
        // curl closes its connection when it exits: the peer closed first.
        let reg = server.registry.clone();
        support::wait_totals(&reg, |t| t.closed == 1).await;
        let t = reg.totals();
        assert_eq!(t.opened, 1, "{mode:?}");
        assert_eq!(t.closed_by(Closer::Peer), 1, "{mode:?}: {t:?}");
        assert_eq!(t.requests_on_closed, 3, "{mode:?}");
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_closes_and_the_server_closed_first() {
    for mode in MODES {
        let limits = limits()
            .idle_timeout(Some(Duration::from_millis(300)))
            .build()
            .unwrap();
        let server = start(mode, listener(limits)).await;
        let port = server.addr.port();
        let mut client = TcpStream::connect(server.addr).await.unwrap();
        let client_port = client.local_addr().unwrap().port();
        let res = get(&mut client, "/").await.unwrap();
        assert_eq!(res.status, 200);
        // A sub-second idle timeout cannot be advertised in whole seconds: no header.
        assert_eq!(res.header("keep-alive"), None, "{mode:?}");
        // The server closes the idle connection: we read EOF.
        assert_eq!(read_until_closed(&mut client, LONG).await.unwrap(), 0);
        let reg = server.registry.clone();
        support::wait_totals(&reg, |t| t.closed == 1).await;
        let t = reg.totals();
        assert_eq!(t.closed_for(CloseReason::IdleTimeout), 1, "{mode:?}: {t:?}");
        assert_eq!(t.closed_by(Closer::Local), 1, "{mode:?}");
        // Whoever sends the first FIN holds TIME_WAIT: here the server's port.
        drop(client);
        eventually("server-side TIME_WAIT", LONG, || {
            ss(&[
                "-tan",
                "state",
                "time-wait",
                &format!("( sport = :{port} and dport = :{client_port} )"),
            ])
            .len()
                == 1
        })
        .await;
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_requests_sends_connection_close_and_curl_reconnects() {
    for mode in MODES {
        let limits = limits().max_requests(Some(2)).build().unwrap();
        let server = start(mode, listener(limits)).await;
        let url = server.url("/");
        let (ok, out, err) = curl(&["-sv", &url, &url, &url]).await;
        assert!(ok, "{err}");
        assert_eq!(out, "hello\n".repeat(3));
        let lower = err.to_lowercase();
        assert_eq!(
            lower.matches("< connection: close").count(),
            1,
            "{mode:?}: {err}"
        );
        // Two TCP connections: the third request went on a new one.
        assert_eq!(err.matches("Connected to").count(), 2, "{mode:?}: {err}");
        let reg = server.registry.clone();
        support::wait_totals(&reg, |t| t.closed == 2).await;
        let t = reg.totals();
        assert_eq!(t.opened, 2);
        assert_eq!(t.closed_for(CloseReason::MaxRequests), 1, "{mode:?}: {t:?}");
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_half_close_on_idle_connection_leaves_no_close_wait() {
    for mode in MODES {
        let server = start(mode, listener(limits().build().unwrap())).await;
        let port = server.addr.port();
        let mut client = TcpStream::connect(server.addr).await.unwrap();
        let client_port = client.local_addr().unwrap().port();
        assert_eq!(get(&mut client, "/").await.unwrap().status, 200);
        let server_side = move || {
            ss(&[
                "-tan",
                &format!("( sport = :{port} and dport = :{client_port} )"),
            ])
        };
        assert_eq!(server_side().len(), 1, "the server's end is established");
        client.shutdown().await.unwrap();
        // The server's socket is gone within 200 ms: no CLOSE_WAIT, no LAST_ACK left.
        eventually("server socket gone", Duration::from_millis(200), || {
            server_side().is_empty()
        })
        .await;
        assert!(ss(&[
            "-tan",
            "state",
            "close-wait",
            &format!("( sport = :{port} )")
        ])
        .is_empty());
        let reg = server.registry.clone();
        support::wait_totals(&reg, |t| t.closed == 1).await;
        assert_eq!(
            reg.totals().closed_for(CloseReason::PeerClosed),
            1,
            "{mode:?}"
        );
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_a_header_is_cut_at_the_header_timeout() {
    for mode in MODES {
        let limits = limits()
            .header_timeout(Some(Duration::from_millis(300)))
            .build()
            .unwrap();
        let server = start(mode, listener(limits)).await;
        // A client that sends nothing at all, and one that stops mid-header.
        let mut silent = TcpStream::connect(server.addr).await.unwrap();
        let mut slow = TcpStream::connect(server.addr).await.unwrap();
        slow.write_all(b"GET / HTTP/1.1\r\nHost: te").await.unwrap();
        // A normal client keeps being served meanwhile.
        let url = server.url("/");
        let (ok, out, _) = curl(&["-s", &url]).await;
        assert!(ok);
        assert_eq!(out, "hello\n");
        let _ = read_until_closed(&mut slow, LONG).await;
        let _ = read_until_closed(&mut silent, LONG).await;
        let reg = server.registry.clone();
        support::wait_totals(&reg, |t| t.closed == 3).await;
        let t = reg.totals();
        assert_eq!(
            t.closed_for(CloseReason::HeaderTimeout),
            2,
            "{mode:?}: {t:?}"
        );
        assert_eq!(t.closed_by(Closer::Timeout), 2, "{mode:?}");
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_request_after_idle_gets_a_fresh_header_timeout() {
    // The header timer restarts with the first byte of each request, not at accept.
    let limits = limits()
        .header_timeout(Some(Duration::from_millis(400)))
        .build()
        .unwrap();
    let server = start(Mode::Axum, listener(limits)).await;
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    for _ in 0..3 {
        assert_eq!(get(&mut client, "/slow?ms=250").await.unwrap().status, 200);
    }
    assert_eq!(server.registry.totals().closed, 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_loses_no_in_flight_request() {
    for mode in MODES {
        let server = start(mode, listener(limits().build().unwrap())).await;
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<http_body_util::Empty<bytes::Bytes>>();
        let n = 16;
        let mut tasks = Vec::new();
        for _ in 0..n {
            let client = client.clone();
            let uri: http::Uri = server.url("/slow?ms=400").parse().unwrap();
            tasks.push(tokio::spawn(async move {
                let res = client.get(uri).await?;
                let status = res.status();
                let body = http_body_util::BodyExt::collect(res.into_body()).await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>((status, body.to_bytes()))
            }));
        }
        let state = server.state.clone();
        eventually("all requests in flight", LONG, || {
            state.started.load(Ordering::SeqCst) == n
        })
        .await;
        let registry = server.registry.clone();
        let report = server.stop().await;
        for t in tasks {
            let (status, body) = t.await.unwrap().expect("request survives shutdown");
            assert_eq!(status, 200);
            assert_eq!(&body[..], b"slept 400\n");
        }
        assert_eq!(state.finished.load(Ordering::SeqCst), n);
        assert_eq!(state.cancelled.load(Ordering::SeqCst), 0);
        let t = registry.totals();
        assert_eq!(t.shutdown_cut, 0, "{mode:?}");
        assert_eq!(registry.live(), 0);
        if let Some(report) = report {
            assert_eq!(report.cut, 0);
            assert_eq!(report.open_at_start, report.drained);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_deadline_cuts_what_is_still_active_and_counts_it() {
    for mode in MODES {
        let limits = limits()
            .shutdown_deadline(Duration::from_millis(200))
            .build()
            .unwrap();
        let mut server = start(mode, listener(limits)).await;
        let mut stuck = TcpStream::connect(server.addr).await.unwrap();
        stuck
            .write_all(b"GET /slow?ms=60000 HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let mut idle = TcpStream::connect(server.addr).await.unwrap();
        assert_eq!(get(&mut idle, "/").await.unwrap().status, 200);
        let state = server.state.clone();
        eventually("slow request started", LONG, || {
            state.started.load(Ordering::SeqCst) == 1
        })
        .await;
        let registry = server.registry.clone();
        server.trigger_stop();
        // The idle connection closes at once, the stuck one at the deadline.
        assert_eq!(read_until_closed(&mut idle, LONG).await.unwrap(), 0);
        let _ = read_until_closed(&mut stuck, LONG).await;
        let report = server.join().await;
        let t = registry.totals();
        assert_eq!(t.shutdown_cut, 1, "{mode:?}: {t:?}");
        assert_eq!(t.closed_for(CloseReason::ShutdownDeadline), 1, "{mode:?}");
        assert_eq!(t.closed_for(CloseReason::Shutdown), 1, "{mode:?}: {t:?}");
        eventually("handler dropped", LONG, || {
            state.cancelled.load(Ordering::SeqCst) == 1
        })
        .await;
        if let Some(report) = report {
            assert_eq!(
                (report.open_at_start, report.drained, report.cut),
                (2, 1, 1)
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_with_a_request_in_flight_finishes_or_cancels() {
    for (policy, expect_response) in [(HalfClose::Finish, true), (HalfClose::Cancel, false)] {
        for mode in MODES {
            let limits = limits().half_close(policy).build().unwrap();
            let server = start(mode, listener(limits)).await;
            let mut client = TcpStream::connect(server.addr).await.unwrap();
            client
                .write_all(b"GET /slow?ms=300 HTTP/1.1\r\nHost: t\r\n\r\n")
                .await
                .unwrap();
            let state = server.state.clone();
            eventually("request started", LONG, || {
                state.started.load(Ordering::SeqCst) == 1
            })
            .await;
            client.shutdown().await.unwrap();
            let res = read_response(&mut client).await;
            assert_eq!(res.is_ok(), expect_response, "{policy:?} {mode:?}: {res:?}");
            let reg = server.registry.clone();
            support::wait_totals(&reg, |t| t.closed == 1).await;
            let t = reg.totals();
            assert_eq!(t.half_closed_in_flight, 1);
            assert_eq!(t.closed_by(Closer::Peer), 1, "{policy:?} {mode:?}: {t:?}");
            if expect_response {
                assert_eq!(state.finished.load(Ordering::SeqCst), 1);
            } else {
                eventually("handler cancelled", LONG, || {
                    state.cancelled.load(Ordering::SeqCst) == 1
                })
                .await;
            }
            server.stop().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_linger_leaves_no_time_wait_anywhere() {
    for (linger, tw_expected) in [(Linger::Abort, 0), (Linger::Off, 1)] {
        let policy = SocketPolicy::builder().linger(linger).build().unwrap();
        let limits = limits()
            .idle_timeout(Some(Duration::from_millis(200)))
            .build()
            .unwrap();
        let server = start(Mode::Axum, listener(limits).policy(policy)).await;
        let port = server.addr.port();
        let mut client = TcpStream::connect(server.addr).await.unwrap();
        let client_port = client.local_addr().unwrap().port();
        assert_eq!(get(&mut client, "/").await.unwrap().status, 200);
        let end = read_until_closed(&mut client, LONG).await;
        match linger {
            Linger::Abort => assert_eq!(
                end.unwrap_err().kind(),
                std::io::ErrorKind::ConnectionReset,
                "abort-close resets"
            ),
            _ => assert_eq!(end.unwrap(), 0),
        }
        drop(client);
        let reg = server.registry.clone();
        support::wait_totals(&reg, |t| t.closed == 1).await;
        assert_eq!(reg.totals().aborted, (linger == Linger::Abort) as u64);
        // Match this connection's exact 4-tuple, either end: other tests' old TIME_WAIT
        // sockets may share one of its port numbers.
        let tw = || {
            ss(&[
                "-tan",
                "state",
                "time-wait",
                &format!(
                    "( ( sport = :{port} and dport = :{client_port} ) or \
                     ( sport = :{client_port} and dport = :{port} ) )"
                ),
            ])
            .len()
        };
        eventually("TIME_WAIT settled", LONG, || tw() == tw_expected).await;
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_hooks_and_metrics_match_what_happened() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // Metric handles are resolved when the listener is bound.
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listener = metrics::with_local_recorder(&recorder, || {
        HygienicListener::builder()
            .name("metered")
            .from_std(std_listener)
            .unwrap()
    });
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    listener.registry().on_state_change(move |e| {
        sink.lock()
            .unwrap()
            .push((e.id, e.from, e.to, e.close.map(|c| c.reason)))
    });
    let server = start_with(Mode::Hyper, listener);
    let mut a = TcpStream::connect(server.addr).await.unwrap();
    for _ in 0..3 {
        assert_eq!(get(&mut a, "/").await.unwrap().status, 200);
    }
    let mut b = TcpStream::connect(server.addr).await.unwrap();
    assert_eq!(get(&mut b, "/").await.unwrap().status, 200);
    let reg = server.registry.clone();
    // The server marks a connection idle once its response is written, which the client may
    // read first: wait for both, with a deadline.
    eventually("both connections idle", LONG, || {
        reg.snapshot().count_in(ConnState::Idle) == 2
    })
    .await;
    let snap = reg.snapshot();
    assert_eq!(snap.listener, "metered");
    assert_eq!(snap.connections.len(), 2);
    assert_eq!(snap.count_in(ConnState::Idle), 2);
    // The state gauges are counted from the live connections when metrics are collected.
    // (A snapshot of the debugging recorder drains its counters: the opened count is read here.)
    conn_hygiene::metrics::collect();
    let mid = snapshotter.snapshot().into_vec();
    let mid_value = |name: &str, label: &str| {
        mid.iter()
            .find(|(k, ..)| k.key().name() == name && k.key().labels().any(|l| l.value() == label))
            .map(|(.., v)| v)
    };
    use conn_hygiene::metrics::names::{SERVER_CONNECTIONS, SERVER_CONNECTIONS_OPENED_TOTAL};
    assert_eq!(
        mid_value(SERVER_CONNECTIONS, "idle"),
        Some(&DebugValue::Gauge(2.0.into()))
    );
    assert_eq!(
        mid_value(SERVER_CONNECTIONS, "active"),
        Some(&DebugValue::Gauge(0.0.into()))
    );
    assert_eq!(
        mid_value(SERVER_CONNECTIONS_OPENED_TOTAL, "metered"),
        Some(&DebugValue::Counter(2))
    );
    let first = &snap.connections[0];
    assert_eq!(first.requests, 3);
    assert_eq!(first.peer_addr, a.local_addr().unwrap());
    assert!(first.bytes_in > 0 && first.bytes_out > first.bytes_in);
    drop(a);
    drop(b);
    support::wait_totals(&reg, |t| t.closed == 2).await;

    let events = events.lock().unwrap().clone();
    let of_first: Vec<_> = events
        .iter()
        .filter(|e| e.0 == 1)
        .map(|e| (e.1, e.2))
        .collect();
    assert_eq!(
        of_first,
        vec![
            (ConnState::New, ConnState::Active),
            (ConnState::Active, ConnState::Idle),
            (ConnState::Idle, ConnState::Active),
            (ConnState::Active, ConnState::Idle),
            (ConnState::Idle, ConnState::Active),
            (ConnState::Active, ConnState::Idle),
            (ConnState::Idle, ConnState::Closing),
            (ConnState::Closing, ConnState::Closed),
        ]
    );
    assert_eq!(events.last().unwrap().3, Some(CloseReason::PeerClosed));

    conn_hygiene::metrics::collect();
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
    use conn_hygiene::metrics::names::*;
    assert_eq!(
        value(
            SERVER_CONNECTIONS_CLOSED_TOTAL,
            &[("closer", "peer"), ("reason", "peer_closed")]
        ),
        &DebugValue::Counter(2)
    );
    assert_eq!(
        value(
            SERVER_CONNECTIONS_CLOSED_TOTAL,
            &[("reason", "idle_timeout")]
        ),
        &DebugValue::Counter(0)
    );
    for state in ["new", "active", "idle", "half_closed", "closing"] {
        assert_eq!(
            value(SERVER_CONNECTIONS, &[("state", state)]),
            &DebugValue::Gauge(0.0.into()),
            "gauge {state} back to zero"
        );
    }
    match value(SERVER_REQUESTS_PER_CONNECTION, &[]) {
        DebugValue::Histogram(v) => {
            let mut v = v.clone();
            v.sort();
            let v: Vec<f64> = v.iter().map(|x| x.into_inner()).collect();
            assert_eq!(v, vec![1.0, 3.0]);
        }
        other => panic!("{other:?}"),
    }
    // No label ever carries a peer address.
    for (k, ..) in &metrics {
        for l in k.key().labels() {
            assert!(!l.value().contains("127.0.0.1"), "{k:?}");
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_caps_concurrent_connections() {
    let server = start(
        Mode::Axum,
        listener(limits().build().unwrap()).max_connections(Some(2)),
    )
    .await;
    let mut a = TcpStream::connect(server.addr).await.unwrap();
    let mut b = TcpStream::connect(server.addr).await.unwrap();
    assert_eq!(get(&mut a, "/").await.unwrap().status, 200);
    assert_eq!(get(&mut b, "/").await.unwrap().status, 200);
    // The third connection completes the handshake in the kernel queue but is not accepted.
    let mut c = TcpStream::connect(server.addr).await.unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let pending = tokio::time::timeout(Duration::from_millis(300), read_response(&mut c)).await;
    assert!(pending.is_err(), "third connection must wait");
    assert_eq!(server.registry.live(), 2);
    drop(a);
    let res = tokio::time::timeout(LONG, read_response(&mut c))
        .await
        .expect("served once a slot frees")
        .unwrap();
    assert_eq!(res.status, 200);
    assert_eq!(server.registry.totals().opened, 3);
    drop(b);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_connection_retires_with_goaway_after_max_requests() {
    use http_body_util::{BodyExt, Empty};
    let limits = limits().max_requests(Some(2)).build().unwrap();
    let server = start(Mode::Hyper, listener(limits)).await;
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    let conn_task = tokio::spawn(conn);
    for _ in 0..2 {
        let req = http::Request::get(server.url("/"))
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        let res = sender.send_request(req).await.unwrap();
        assert_eq!(res.version(), http::Version::HTTP_2);
        assert!(
            res.headers().get("connection").is_none(),
            "no connection header in h2"
        );
        res.into_body().collect().await.unwrap();
    }
    // The server sent GOAWAY: the client connection ends cleanly.
    tokio::time::timeout(LONG, conn_task)
        .await
        .expect("client connection ends after GOAWAY")
        .unwrap()
        .unwrap();
    let reg = server.registry.clone();
    support::wait_totals(&reg, |t| t.closed == 1).await;
    // Retired by us; after the GOAWAY the client may send the first FIN: both are recorded.
    let t = reg.totals();
    assert_eq!(t.closed_for(CloseReason::MaxRequests), 1, "{t:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_age_retires_an_idle_connection() {
    let limits = limits()
        .max_age(Some(Duration::from_millis(300)))
        .build()
        .unwrap();
    let server = start(Mode::Axum, listener(limits)).await;
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    assert_eq!(get(&mut client, "/").await.unwrap().status, 200);
    assert_eq!(read_until_closed(&mut client, LONG).await.unwrap(), 0);
    let reg = server.registry.clone();
    support::wait_totals(&reg, |t| t.closed == 1).await;
    assert_eq!(reg.totals().closed_for(CloseReason::MaxAge), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retire_from_a_handle_closes_after_the_response() {
    let server = start(Mode::Axum, listener(limits().build().unwrap())).await;
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    assert_eq!(get(&mut client, "/").await.unwrap().status, 200);
    let snap = server.registry.snapshot();
    assert_eq!(snap.connections.len(), 1);
    assert!(!snap.connections[0].retiring);
    // Retiring an idle connection through its handle closes it at once.
    let reg = server.registry.clone();
    let conn = reg.connection(snap.connections[0].id).expect("live");
    conn.retire();
    assert!(conn.is_retiring());
    assert_eq!(read_until_closed(&mut client, LONG).await.unwrap(), 0);
    support::wait_totals(&reg, |t| t.closed == 1).await;
    let t = reg.totals();
    assert_eq!(t.closed_for(CloseReason::Retired), 1, "{t:?}");
    assert_eq!(t.closed_by(Closer::Local), 1, "{t:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlog_above_somaxconn_is_reported_as_capped() {
    let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let policy = SocketPolicy::builder().backlog(65535).build().unwrap();
    let listener = HygienicListener::builder()
        .policy(policy)
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let b = listener.backlog();
    assert_eq!(b.requested, 65535);
    assert_eq!(b.somaxconn, Some(somaxconn));
    assert_eq!(b.effective, somaxconn.min(65535));
    assert_eq!(b.is_capped(), somaxconn < 65535);
    // The kernel agrees: a listener's Send-Q in `ss -lt` is its accept-queue maximum.
    let port = listener.local_addr().port();
    let listen = ss(&["-ltn", &format!("( sport = :{port} )")]);
    assert_eq!(
        listen[0].split_whitespace().nth(2),
        Some(b.effective.to_string().as_str()),
        "{listen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_hyper_service_fn_through_the_crate_loop() {
    use bytes::Bytes;
    use conn_hygiene::server::{ConnectionInfo, Server, TrackConnectionLayer};
    use http_body_util::{BodyExt, Empty, Full};
    use std::convert::Infallible;
    use tower::{Layer, ServiceExt};

    let listener = HygienicListener::builder()
        .name("plain")
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = listener.local_addr();
    let registry = listener.registry().clone();
    // A plain service_fn, with the layer applied explicitly: the loop's own tracking sees the
    // extension and does not count requests twice.
    let svc = TrackConnectionLayer::new().layer(tower::service_fn(
        |req: http::Request<hyper::body::Incoming>| async move {
            let info = req.extensions().get::<ConnectionInfo>().cloned();
            let body = match info {
                Some(i) => format!("conn={} req={}\n", i.id(), i.request_number()),
                None => "untracked\n".into(),
            };
            Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(body))))
        },
    ));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        Server::new()
            .serve_with_shutdown(listener, svc.boxed_clone(), async {
                let _ = rx.await;
            })
            .await
    });

    // curl, HTTP/1.1, one connection.
    let url = format!("http://{addr}/");
    let (ok, out, err) = curl(&["-sv", &url, &url]).await;
    assert!(ok, "{err}");
    assert_eq!(out, "conn=1 req=1\nconn=1 req=2\n");
    assert!(
        err.to_lowercase().contains("< keep-alive: timeout=75"),
        "{err}"
    );

    // hyper-util's pooled client, HTTP/1.1 and HTTP/2 (prior knowledge).
    for http2 in [false, true] {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .http2_only(http2)
                .build_http::<Empty<Bytes>>();
        for n in 1..=2u64 {
            let res = client.get(url.parse().unwrap()).await.unwrap();
            assert_eq!(
                res.version(),
                if http2 {
                    http::Version::HTTP_2
                } else {
                    http::Version::HTTP_11
                }
            );
            let body = res.into_body().collect().await.unwrap().to_bytes();
            assert!(
                String::from_utf8_lossy(&body).ends_with(&format!("req={n}\n")),
                "{body:?}"
            );
        }
    }
    let _ = tx.send(());
    let report = server.await.unwrap();
    assert_eq!(report.cut, 0);
    // curl's connection, then one per hyper client (which may open a spare it never uses, and
    // may connect it at any moment until the server stops): all of them accounted.
    let t = registry.totals();
    assert!(t.opened >= 3, "{t:?}");
    assert_eq!(t.closed, t.opened);
    assert_eq!(t.requests_on_closed, 6);
}

/// `axum::serve(listener, app)` without the layer: the listener's own I/O enforces the header
/// timeout, the idle timeout and max age exactly as with it, and the registry counts the
/// connections served without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_hold_without_the_layer() {
    use conn_hygiene::server::MakeTrackConnection;
    use tokio::io::AsyncReadExt;
    let t = Duration::from_millis(300);
    for with_layer in [true, false] {
        // Setters take the value itself, `Some` or `None` (off).
        let listener = listener(
            limits()
                .header_timeout(t)
                .idle_timeout(Some(t))
                .max_age(Duration::from_millis(600))
                .max_requests(None)
                .build()
                .unwrap(),
        )
        .bind("127.0.0.1:0")
        .await
        .unwrap();
        let addr = listener.local_addr();
        let reg = listener.registry().clone();
        let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
        let server = tokio::spawn(async move {
            if with_layer {
                let _ = axum::serve(listener, MakeTrackConnection::new(app)).await;
            } else {
                let _ = axum::serve(listener, app).await;
            }
        });
        // Timed from a moment before the server's timer can start: before the connect for the
        // header timeout, before the request for the idle timeout.
        let closed_after = |mut s: TcpStream, from: tokio::time::Instant| async move {
            let mut rest = Vec::new();
            let _ = tokio::time::timeout(LONG, s.read_to_end(&mut rest)).await;
            from.elapsed()
        };
        // Half a head: cut at the header timeout.
        let from = tokio::time::Instant::now();
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();
        let header = closed_after(s, from).await;
        // A request, then nothing: closed at the idle timeout.
        let mut s = TcpStream::connect(addr).await.unwrap();
        let from = tokio::time::Instant::now();
        s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        read_response(&mut s).await.unwrap();
        let idle = closed_after(s, from).await;
        // Requests every 100 ms: retired at the first boundary past its max age.
        let opened = tokio::time::Instant::now();
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut served = 0;
        while opened.elapsed() < LONG {
            if s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
                .await
                .is_err()
            {
                break;
            }
            if read_response(&mut s).await.is_err() {
                break;
            }
            served += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let age = opened.elapsed();
        for (what, took, low) in [("header", header, t), ("idle", idle, t)] {
            assert!(
                took >= low && took < low + Duration::from_millis(400),
                "layer {with_layer}: {what} closed after {took:?}"
            );
        }
        assert!(
            age >= Duration::from_millis(600) && age < Duration::from_millis(1200),
            "layer {with_layer}: max age closed after {age:?} ({served} served)"
        );
        wait_totals(&reg, |t| t.closed == 3).await;
        let totals = reg.totals();
        assert_eq!(
            totals.closed_for(CloseReason::HeaderTimeout),
            1,
            "{totals:?}"
        );
        assert_eq!(totals.closed_for(CloseReason::IdleTimeout), 1, "{totals:?}");
        assert_eq!(totals.closed_for(CloseReason::MaxAge), 1, "{totals:?}");
        assert_eq!(
            totals.served_without_layer,
            if with_layer { 0 } else { 2 },
            "{totals:?}"
        );
        server.abort();
    }
}

/// axum's `ListenerExt::tap_io` over the hygienic listener keeps tracking: requests carry their
/// `ConnectionInfo`, connect info works, and the tap sees every accepted stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tap_io_keeps_tracking() {
    use axum::{extract::ConnectInfo, serve::ListenerExt, Extension};
    use conn_hygiene::server::{ConnectionHandle, ConnectionInfo, MakeTrackConnection};
    use std::sync::atomic::{AtomicU64, Ordering};
    let listener = listener(ConnectionLimits::default())
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = listener.local_addr();
    let reg = listener.registry().clone();
    let tapped = Arc::new(AtomicU64::new(0));
    let seen = tapped.clone();
    let tapped_listener = listener.tap_io(move |io| {
        assert!(io.connection().id() > 0);
        seen.fetch_add(1, Ordering::Relaxed);
    });
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(
            |Extension(info): Extension<ConnectionInfo>,
             ConnectInfo(conn): ConnectInfo<ConnectionHandle>| async move {
                assert_eq!(info.id(), conn.id());
                format!("{} {}", info.id(), info.request_number())
            },
        ),
    );
    let server = tokio::spawn(async move {
        let app = app.into_make_service_with_connect_info::<ConnectionHandle>();
        let _ = axum::serve(tapped_listener, MakeTrackConnection::new(app)).await;
    });
    let url = format!("http://{addr}/");
    let (ok, out, err) = curl(&["-s", &url, &url]).await;
    assert!(ok, "{err}");
    // One connection, both requests on it, each with its number.
    let id = out.split(' ').next().unwrap_or_default().to_owned();
    assert_eq!(out, format!("{id} 1{id} 2"));
    assert_eq!(tapped.load(Ordering::Relaxed), 1);
    wait_totals(&reg, |t| t.closed == 1).await;
    assert_eq!(reg.totals().requests_on_closed, 2);
    assert_eq!(reg.totals().served_without_layer, 0);
    server.abort();
}

/// Totals read by name in `Debug`, and as intervals: each item holds what happened since the
/// one before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn totals_read_by_name_and_by_interval() {
    let server = start(Mode::Axum, HygienicListener::builder()).await;
    let reg = server.registry.clone();
    let mut intervals = reg.intervals();
    let one = |n: u64| {
        let addr = server.addr;
        async move {
            for _ in 0..n {
                let mut s = TcpStream::connect(addr).await.unwrap();
                s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
                    .await
                    .unwrap();
                read_response(&mut s).await.unwrap();
            }
        }
    };
    one(2).await;
    wait_totals(&reg, |t| t.closed == 2).await;
    let first = intervals.next().unwrap();
    assert_eq!((first.opened, first.closed), (2, 2), "{first:?}");
    assert_eq!(first.closed_by(Closer::Peer), 2);
    one(1).await;
    wait_totals(&reg, |t| t.closed == 3).await;
    let second = intervals.next().unwrap();
    assert_eq!((second.opened, second.closed), (1, 1), "{second:?}");
    assert_eq!(second.requests_on_closed, 1);
    assert_eq!(
        intervals.next().unwrap(),
        Default::default(),
        "nothing since"
    );
    let text = format!("{:?}", reg.totals());
    assert!(
        text.contains(r#"closed_for: {"peer_closed": 3}"#)
            && text.contains(r#"closed_by: {"peer": 3}"#),
        "{text}"
    );
    server.stop().await;
}
