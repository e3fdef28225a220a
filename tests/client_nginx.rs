//! The pooled client against a real nginx on loopback, under each close order, over plain
//! HTTP and over HTTPS (a certificate for 127.0.0.1 made at test time, trusted as the client's
//! CA), in a private network namespace whose kernel table holds only these connections.
//!
//! nginx closes a keep-alive connection after `keepalive_timeout 1s` idle and after
//! `keepalive_requests 20`. Workers send rounds of back-to-back requests separated by idle gaps
//! of 0.8 s to 1.2 s that straddle the keep-alive timeout, three of them within 10 ms of it:
//! there nginx's close and the client's next request on the same connection cross on the wire
//! (the keep-alive race), and a client that does nothing about it loses requests. Each close
//! order must finish every request, reuse its connections, and end with no lease outstanding:
//!
//! - `client-first` and `abort` close idle connections themselves before nginx does;
//! - `server-first` keeps them and retries a replayable request once when a reused connection
//!   fails before any response byte (the retries are printed: how many depends on timing).
//!
//! The TIME_WAIT sockets each run leaves on the client's side are counted exactly with `ss`:
//! HTTPS leaves no more than plain HTTP. A last test speaks HTTP/2 to nginx, chosen by ALPN.
#![cfg(all(feature = "client", feature = "axum"))]

#[path = "support/netns.rs"]
mod netns;
#[path = "support/nginx.rs"]
mod nginx;
#[path = "support/tls.rs"]
mod tls_support;

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use conn_hygiene::client::{
    ClientBuilder, CloseOrder, CloseReason, Closer, HygienicClient, UpstreamConfig,
    UpstreamSnapshot,
};
use conn_hygiene_test_support::{in_netns, run_in_netns, wait_until};
use http_body_util::{BodyExt, Empty};
use netns::TimeWait;
use nginx::{Nginx, NginxConfig};

const WORKERS: usize = 8;
const ROUNDS: usize = 6;
const PER_ROUND: usize = 50;
const REQUESTS: usize = WORKERS * ROUNDS * PER_ROUND;
/// Idle gaps between rounds, straddling nginx's 1 s keep-alive timeout. The ones within 10 ms
/// of it are where nginx's close and the client's next request cross on the wire.
const GAPS_MS: [u64; ROUNDS - 1] = [800, 990, 1000, 1010, 1200];
/// A request that takes longer than this counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on one close order's whole workload.
const ORDER_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the closes of a finished workload may take to land in the kernel table.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

/// What one close order's workload did.
#[derive(Debug)]
struct Outcome {
    order: CloseOrder,
    ok: u64,
    failed: u64,
    elapsed: Duration,
    snap: UpstreamSnapshot,
}

/// A client for `nginx`: trusting its certificate when it serves HTTPS.
fn builder_for(nginx: &Nginx) -> ClientBuilder {
    let builder = HygienicClient::builder();
    match nginx.tls() {
        None => builder,
        #[cfg(feature = "rustls")]
        Some(tls) => builder.tls(
            conn_hygiene::client::ClientTls::builder()
                .add_ca_file(&tls.cert)
                .expect("nginx's certificate")
                .build()
                .expect("client TLS"),
        ),
        #[cfg(not(feature = "rustls"))]
        Some(_) => unreachable!("HTTPS runs need the rustls feature"),
    }
}

async fn run(nginx: &Nginx, order: CloseOrder) -> Outcome {
    let client = builder_for(nginx)
        .default_upstream(
            UpstreamConfig::new()
                .name("nginx")
                .close_order(order)
                // nginx does not send `Keep-Alive: timeout=N`: tell the client.
                .server_keep_alive(Some(Duration::from_secs(1)))
                .max_idle(WORKERS),
        )
        .build::<Empty<Bytes>>()
        .expect("client config");
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    for round in 0..ROUNDS {
        if round > 0 {
            // The idle gap is the workload, not synchronisation.
            tokio::time::sleep(Duration::from_millis(GAPS_MS[round - 1])).await;
        }
        let workers: Vec<_> = (0..WORKERS)
            .map(|w| {
                let (client, ok, failed) = (client.clone(), ok.clone(), failed.clone());
                let url = nginx.url("/");
                tokio::spawn(async move {
                    for _ in 0..PER_ROUND {
                        let result = tokio::time::timeout(REQUEST_TIMEOUT, async {
                            let res = client.get(url.clone()).await?;
                            let status = res.status();
                            let body = res.into_body().collect().await?.to_bytes();
                            Ok::<_, Box<dyn std::error::Error + Send + Sync>>((status, body))
                        })
                        .await;
                        match result {
                            Ok(Ok((s, body))) if s == 200 && &body[..] == b"ok\n" => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(Ok((s, body))) => {
                                failed.fetch_add(1, Ordering::Relaxed);
                                eprintln!(
                                    "{}: worker {w}: status {s}, body {body:?}",
                                    order.as_str()
                                );
                            }
                            Ok(Err(e)) => {
                                failed.fetch_add(1, Ordering::Relaxed);
                                eprintln!("{}: worker {w}: {e}", order.as_str());
                            }
                            Err(_) => {
                                failed.fetch_add(1, Ordering::Relaxed);
                                eprintln!(
                                    "{}: worker {w}: no response within {REQUEST_TIMEOUT:?}",
                                    order.as_str()
                                );
                            }
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            w.await.expect("worker task");
        }
    }
    let elapsed = started.elapsed();
    // Every body was read to its end, so no lease may remain.
    for tracker in client.view().lease_trackers() {
        conn_hygiene::testing::assert_no_leases(&tracker);
    }
    let mut snaps = client.view().snapshot();
    assert_eq!(snaps.len(), 1, "one upstream: {snaps:?}");
    Outcome {
        order,
        ok: ok.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
        elapsed,
        snap: snaps.remove(0),
    }
}

#[test]
fn close_orders_against_nginx_keep_alive() {
    run_in_netns("inner_close_orders_against_nginx_keep_alive", &[]);
}

/// One workload's outcome and the TIME_WAIT sockets it left, by side.
struct Row {
    https: bool,
    outcome: Outcome,
    tw: TimeWait,
}

#[test]
#[ignore = "runs inside a private network namespace, started by close_orders_against_nginx_keep_alive"]
fn inner_close_orders_against_nginx_keep_alive() {
    if !in_netns() {
        return close_orders_against_nginx_keep_alive();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let tls = certificate();
    let mut schemes = vec![None];
    if cfg!(feature = "rustls") {
        schemes.push(Some(tls));
    }
    let mut rows = Vec::new();
    for tls in schemes {
        for order in [
            CloseOrder::ClientFirst,
            CloseOrder::AbortOnIdle,
            CloseOrder::ServerFirst,
        ] {
            // An nginx of its own per workload: its port names the workload's sockets.
            let nginx = Nginx::start(&NginxConfig {
                keepalive_timeout_secs: 1,
                keepalive_requests: 20,
                tls: tls.clone(),
            });
            let outcome = rt.block_on(async {
                tokio::time::timeout(ORDER_TIMEOUT, run(&nginx, order))
                    .await
                    .unwrap_or_else(|_| {
                        panic!("{}: workload took over {ORDER_TIMEOUT:?}", order.as_str())
                    })
            });
            let port = nginx.addr().port();
            wait_until("the workload's closes land", SETTLE_TIMEOUT, || {
                netns::unsettled(port).is_empty()
            });
            rows.push(Row {
                https: tls.is_some(),
                outcome,
                tw: netns::time_wait(port),
            });
            assert!(
                !nginx.error_log().contains("[emerg]"),
                "nginx logged an emergency:\n{}",
                nginx.error_log()
            );
        }
    }
    report(&rows);
}

/// A self-signed certificate for 127.0.0.1 in PEM files, for nginx and as the client's CA.
fn certificate() -> nginx::NginxTls {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("nginx-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("certificate dir");
    let made = tls_support::test_tls();
    let tls = nginx::NginxTls {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
        http2: false,
    };
    std::fs::write(&tls.cert, made.cert_pem).expect("write cert");
    std::fs::write(&tls.key, made.key_pem).expect("write key");
    tls
}

fn report(rows: &[Row]) {
    println!(
        "nginx (keepalive_timeout 1s, keepalive_requests 20); {WORKERS} workers x {ROUNDS} \
         rounds x {PER_ROUND} requests, gaps {GAPS_MS:?} ms"
    );
    println!(
        "{:<6} {:<13} {:>8} {:>6} {:>11} {:>7} {:>11} {:>11} {:>5} {:>5} {:>7} {:>7} {:>9} {:>9} {:>6}",
        "scheme",
        "order",
        "requests",
        "failed",
        "connections",
        "retries",
        "closed:local",
        "closed:peer",
        "reset",
        "error",
        "idle_to",
        "aborted",
        "client_tw",
        "nginx_tw",
        "secs"
    );
    let scheme = |r: &Row| if r.https { "https" } else { "http" };
    let mut states = String::new();
    for r in rows {
        let o = &r.outcome;
        let t = &o.snap.totals;
        println!(
            "{:<6} {:<13} {:>8} {:>6} {:>11} {:>7} {:>12} {:>11} {:>5} {:>5} {:>7} {:>7} {:>9} {:>9} {:>6.2}",
            scheme(r),
            o.order.as_str(),
            o.ok + o.failed,
            o.failed,
            t.connects,
            t.retries,
            t.closed_by(Closer::Local),
            t.closed_by(Closer::Peer),
            t.closed_by(Closer::Reset),
            t.closed_by(Closer::Error),
            t.closed_for(CloseReason::IdleTimeout),
            t.aborted,
            r.tw.client,
            r.tw.server,
            o.elapsed.as_secs_f64(),
        );
        states.push_str(&format!(
            "{} {}: at the end {} open, {} idle, {} leased; states {:?}\n",
            scheme(r),
            o.order.as_str(),
            o.snap.open,
            o.snap.idle,
            o.snap.leased,
            o.snap
                .connections
                .iter()
                .map(|c| (c.state, c.requests, c.tls))
                .collect::<Vec<_>>()
        ));
    }
    print!("{states}");

    for r in rows {
        let o = &r.outcome;
        let name = format!("{} {}", scheme(r), o.order.as_str());
        let t = &o.snap.totals;
        assert_eq!(
            o.ok + o.failed,
            REQUESTS as u64,
            "{name}: every request ran"
        );
        assert_eq!(o.failed, 0, "{name}: no request may fail");
        assert!(
            t.connects <= REQUESTS as u64 / 10,
            "{name}: connections are reused: {} opened for {REQUESTS} requests",
            t.connects
        );
        assert!(
            o.snap.connections.iter().all(|c| c.tls == r.https),
            "{name}: every connection is {}",
            scheme(r)
        );
        assert_eq!(
            o.snap.leases.outstanding(),
            0,
            "{name}: no lease outstanding"
        );
        // The client holds TIME_WAIT only for connections it opened and closed itself: a
        // few per round at most, never one per request, over HTTPS as over HTTP.
        assert!(
            r.tw.client as u64 <= t.connects,
            "{name}: client TIME_WAIT {} for {} connections",
            r.tw.client,
            t.connects
        );
        match o.order {
            CloseOrder::ClientFirst | CloseOrder::AbortOnIdle => {
                // The gaps exceed the effective idle timeout (1 s - 250 ms): the client retires
                // idle connections itself before nginx's timer fires.
                assert!(
                    t.closed_by(Closer::Local) > 0 && t.closed_for(CloseReason::IdleTimeout) > 0,
                    "{name}: the client closed idle connections first: {t:?}"
                );
                assert_eq!(t.retries, 0, "{name}: only server-first retries");
            }
            CloseOrder::ServerFirst => {}
        }
        if o.order == CloseOrder::AbortOnIdle {
            assert!(
                t.aborted > 0,
                "{name}: idle connections closed with a reset: {t:?}"
            );
            assert_eq!(
                r.tw.client, 0,
                "{name}: a reset leaves no TIME_WAIT on the client"
            );
        }
    }
}

/// HTTP/2 chosen by ALPN: the client offers `h2` and `http/1.1`, nginx picks `h2`, and the
/// requests share a few multiplexed connections. nginx ends each connection after 50 requests
/// with a graceful GOAWAY: the streams it refused are sent again on a fresh connection, so no
/// request fails.
#[cfg(feature = "rustls")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_by_alpn_against_nginx() {
    let nginx = Nginx::start(&NginxConfig {
        keepalive_timeout_secs: 10,
        keepalive_requests: 50,
        tls: Some(nginx::NginxTls {
            http2: true,
            ..certificate()
        }),
    });
    let client = builder_for(&nginx)
        .default_upstream(UpstreamConfig::new().name("nginx-h2"))
        .build::<Empty<Bytes>>()
        .expect("client config");
    // The first connection: HTTP/2 over TLS, as ALPN chose.
    let res = tokio::time::timeout(REQUEST_TIMEOUT, client.get(nginx.url("/")))
        .await
        .expect("response in time")
        .expect("response");
    assert_eq!(res.version(), http::Version::HTTP_2);
    res.into_body().collect().await.expect("body");
    let first = client.view().snapshot()[0].connections.clone();
    assert!(
        first.len() == 1 && first[0].http2 && first[0].tls,
        "one HTTP/2 connection over TLS: {first:?}"
    );
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (client, url) = (client.clone(), nginx.url("/"));
            tokio::spawn(async move {
                for _ in 0..PER_ROUND {
                    let res = tokio::time::timeout(REQUEST_TIMEOUT, client.get(url.clone()))
                        .await
                        .expect("response in time")
                        .expect("response");
                    assert_eq!(res.version(), http::Version::HTTP_2);
                    let body = res.into_body().collect().await.expect("body").to_bytes();
                    assert_eq!(&body[..], b"ok\n");
                }
            })
        })
        .collect();
    for w in workers {
        w.await.expect("worker");
    }
    let snap = &client.view().snapshot()[0];
    println!(
        "HTTP/2 by ALPN: {} requests on {} connections, {} retried after a GOAWAY: {:?}",
        WORKERS * PER_ROUND,
        snap.totals.connects,
        snap.totals.retries,
        snap.connections
            .iter()
            .map(|c| (c.http2, c.tls, c.requests))
            .collect::<Vec<_>>()
    );
    // Those still open (nginx ends each after 50 requests: maybe none).
    assert!(
        snap.connections.iter().all(|c| c.http2 && c.tls),
        "every connection speaks HTTP/2 over TLS: {:?}",
        snap.connections
    );
    let total = (WORKERS * PER_ROUND) as u64 + 1;
    assert!(
        snap.totals.connects >= total / 50,
        "nginx ended each connection after 50 requests: {:?}",
        snap.totals
    );
    assert!(
        snap.totals.connects <= total / 5,
        "HTTP/2 multiplexes: {:?}",
        snap.totals
    );
    assert_eq!(
        snap.totals.closed_for(CloseReason::ServerClosed),
        snap.totals.closed_by(Closer::Peer),
        "a GOAWAY is nginx closing first: {:?}",
        snap.totals
    );
    assert_eq!(snap.leases.outstanding(), 0);
}
