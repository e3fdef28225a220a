//! The pooled client against a real nginx on loopback, under each close order.
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
#![cfg(all(feature = "client", feature = "axum"))]

#[path = "support/nginx.rs"]
mod nginx;

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use conn_hygiene::client::{
    CloseOrder, CloseReason, Closer, HygienicClient, UpstreamConfig, UpstreamSnapshot,
};
use http_body_util::{BodyExt, Empty};
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

/// What one close order's workload did.
#[derive(Debug)]
struct Outcome {
    order: CloseOrder,
    ok: u64,
    failed: u64,
    elapsed: Duration,
    snap: UpstreamSnapshot,
}

async fn run(nginx: &Nginx, order: CloseOrder) -> Outcome {
    let client = HygienicClient::builder()
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_orders_against_nginx_keep_alive() {
    let nginx = Nginx::start(&NginxConfig {
        keepalive_timeout_secs: 1,
        keepalive_requests: 20,
    });
    let mut outcomes = Vec::new();
    for order in [
        CloseOrder::ClientFirst,
        CloseOrder::AbortOnIdle,
        CloseOrder::ServerFirst,
    ] {
        let outcome = tokio::time::timeout(ORDER_TIMEOUT, run(&nginx, order))
            .await
            .unwrap_or_else(|_| panic!("{}: workload took over {ORDER_TIMEOUT:?}", order.as_str()));
        outcomes.push(outcome);
    }

    println!(
        "nginx {} (keepalive_timeout 1s, keepalive_requests 20); {WORKERS} workers x {ROUNDS} \
         rounds x {PER_ROUND} requests, gaps {GAPS_MS:?} ms",
        nginx.addr()
    );
    println!(
        "{:<13} {:>8} {:>6} {:>11} {:>7} {:>11} {:>11} {:>5} {:>5} {:>7} {:>7} {:>6}",
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
        "secs"
    );
    let mut states = String::new();
    for o in &outcomes {
        let t = &o.snap.totals;
        println!(
            "{:<13} {:>8} {:>6} {:>11} {:>7} {:>12} {:>11} {:>5} {:>5} {:>7} {:>7} {:>6.2}",
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
            o.elapsed.as_secs_f64(),
        );
        states.push_str(&format!(
            "{}: at the end {} open, {} idle, {} leased; states {:?}\n",
            o.order.as_str(),
            o.snap.open,
            o.snap.idle,
            o.snap.leased,
            o.snap
                .connections
                .iter()
                .map(|c| (c.state, c.requests))
                .collect::<Vec<_>>()
        ));
    }
    print!("{states}");

    for o in &outcomes {
        let name = o.order.as_str();
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
        assert_eq!(
            o.snap.leases.outstanding(),
            0,
            "{name}: no lease outstanding"
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
        }
    }
    assert!(
        !nginx.error_log().contains("[emerg]"),
        "nginx logged an emergency:\n{}",
        nginx.error_log()
    );
}
