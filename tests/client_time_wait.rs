//! Who holds TIME_WAIT, counted exactly in the kernel's table of a private network namespace.
//!
//! One workload of `N` GETs against the hygienic axum server, three ways:
//!
//! - a fresh hyper-util client per request, dropped after its response: the client closes
//!   every connection first, so about `N` TIME_WAIT sockets sit on the client side;
//! - the pooled [`HygienicClient`] (`client-first`, `max_idle` = `P`), then dropped: it closes
//!   its few connections itself, so at most `P` TIME_WAIT on the client side;
//! - the same with `abort`: idle connections end with a reset, so no TIME_WAIT on either side,
//!   and the server counts the resets.
//!
//! Each way has a server of its own, all bound before any traffic, so sockets are told apart by
//! the server's port: the client side of a connection is the one whose peer port is the
//! server's. `ss -Htan state time-wait` is read once every close has landed.
#![cfg(all(feature = "client", feature = "axum"))]

#[path = "support/netns.rs"]
mod netns;
mod support;

use std::time::Duration;

use bytes::Bytes;
use conn_hygiene::{
    client::{CloseOrder, CloseReason, Closer, HygienicClient, UpstreamConfig},
    server::{self, HygienicListener},
};
use conn_hygiene_test_support::{in_netns, run_in_netns, satisfies};
use http_body_util::{BodyExt, Empty};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use netns::TimeWait;
use support::{Mode, TestServer};

/// Requests per workload.
const N: usize = 300;
/// `max_idle` of the pooled client, and its concurrency.
const P: usize = 4;
const _: () = assert!(N % P == 0, "the workers share the requests evenly");
/// Bound on one request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long closes may take to land in the kernel table.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

#[test]
fn time_wait_by_close_order() {
    run_in_netns("inner_time_wait_by_close_order", &[]);
}

/// One row of the table.
#[derive(Debug)]
struct Row {
    way: &'static str,
    requests: usize,
    connections: u64,
    tw: TimeWait,
    server_resets: u64,
}

#[test]
#[ignore = "runs inside a private network namespace, started by time_wait_by_close_order"]
fn inner_time_wait_by_close_order() {
    if !in_netns() {
        return time_wait_by_close_order();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        // Every server is bound before any client connects: no client socket can then have
        // a server's port as its own, and each server's port names its workload's sockets.
        let mut servers = Vec::new();
        for _ in 0..3 {
            servers.push(support::start(Mode::Axum, HygienicListener::builder()).await);
        }
        for s in &servers {
            assert_eq!(netns::time_wait(s.addr.port()), TimeWait::default());
        }
        let mut rows = Vec::new();

        // (a) A connection per request: a fresh client each time, dropped after the body.
        let s = &servers[0];
        let url: http::Uri = s.url("/").parse().unwrap();
        for _ in 0..N {
            let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
            let res = tokio::time::timeout(REQUEST_TIMEOUT, client.get(url.clone()))
                .await
                .expect("response in time")
                .expect("response");
            assert_eq!(res.status(), 200);
            res.into_body().collect().await.expect("body");
            drop(client);
        }
        let tw = settle(s).await;
        let opened = s.registry.totals().opened;
        rows.push(Row {
            way: "per-request",
            requests: N,
            connections: opened,
            tw,
            server_resets: s.registry.totals().closed_by(Closer::Reset),
        });
        assert_eq!(opened, N as u64, "one connection per request");
        assert!(
            tw.client * 10 >= N * 9,
            "the client closed first on (nearly) every connection: {tw:?} for {N}"
        );
        assert_eq!(tw.server, 0, "the server never closed first: {tw:?}");

        // (b) and (c): the pooled client, then dropped.
        for (s, order) in servers[1..]
            .iter()
            .zip([CloseOrder::ClientFirst, CloseOrder::AbortOnIdle])
        {
            let name = order.as_str();
            let (snap, tw) = pooled(s, order).await;
            let t = &snap.totals;
            let server = s.registry.totals();
            rows.push(Row {
                way: name,
                requests: N,
                connections: server.opened,
                tw,
                server_resets: server.closed_by(Closer::Reset),
            });
            println!(
                "{name}: client opened {}, closed before the drop: {} local ({} idle timeout, \
                 {} max idle), {} peer, {} aborted; left open {:?}",
                t.connects,
                t.closed_by(Closer::Local),
                t.closed_for(CloseReason::IdleTimeout),
                t.closed_for(CloseReason::MaxIdle),
                t.closed_by(Closer::Peer),
                t.aborted,
                snap.connections
                    .iter()
                    .map(|c| (c.state, c.requests))
                    .collect::<Vec<_>>()
            );
            // A connection attempt the pool started for a request that went elsewhere may
            // still land after the snapshot, so the server's count is the reference.
            assert!(
                t.connects <= server.opened,
                "{name}: the server saw every connection the client opened: {server:?}"
            );
            assert_eq!(
                tw.server, 0,
                "{name}: the server never closed first: {tw:?}"
            );
            match order {
                CloseOrder::ClientFirst => {
                    // Every connection the client opened, it closed: one TIME_WAIT each.
                    assert_eq!(
                        tw.client as u64, server.opened,
                        "{name}: one client TIME_WAIT per connection: {tw:?}"
                    );
                    // The pool holds at most max_idle = P; hyper-util's pool opens a connection
                    // more now and then, when a request misses a connection on its way back
                    // to the pool (it then idles unused), so P is not a hard bound.
                    assert!(
                        tw.client <= 2 * P,
                        "{name}: a handful of TIME_WAIT on the client, about max_idle = {P}: \
                         {tw:?} for {N} requests"
                    );
                }
                _ => {
                    assert_eq!(tw.client, 0, "{name}: no TIME_WAIT after resets: {tw:?}");
                    let resets = server.closed_for(server::CloseReason::PeerReset);
                    assert_eq!(
                        resets, server.opened,
                        "{name}: the server saw every connection reset: {server:?}"
                    );
                }
            }
        }

        println!(
            "{:<12} {:>8} {:>11} {:>16} {:>16} {:>13}",
            "way",
            "requests",
            "connections",
            "client TIME_WAIT",
            "server TIME_WAIT",
            "server resets"
        );
        for r in &rows {
            println!(
                "{:<12} {:>8} {:>11} {:>16} {:>16} {:>13}",
                r.way, r.requests, r.connections, r.tw.client, r.tw.server, r.server_resets
            );
        }
        for s in servers {
            s.stop().await;
        }
    });
}

/// `N` GETs from `P` workers through a pooled client with `order`; then drops the client and
/// waits for its closes to land. Returns the client's snapshot from just before the drop, and
/// the TIME_WAIT count.
async fn pooled(
    s: &TestServer,
    order: CloseOrder,
) -> (conn_hygiene::client::UpstreamSnapshot, TimeWait) {
    let client = HygienicClient::builder()
        .default_upstream(
            UpstreamConfig::new()
                .name("local")
                .close_order(order)
                .max_idle(P),
        )
        .build::<Empty<Bytes>>()
        .expect("client config");
    let url: http::Uri = s.url("/").parse().unwrap();
    let workers: Vec<_> = (0..P)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                for _ in 0..N / P {
                    let res = tokio::time::timeout(REQUEST_TIMEOUT, client.get(url.clone()))
                        .await
                        .expect("response in time")
                        .expect("response");
                    assert_eq!(res.status(), 200);
                    res.into_body().collect().await.expect("body");
                }
            })
        })
        .collect();
    for w in workers {
        w.await.expect("worker");
    }
    for tracker in client.view().lease_trackers() {
        conn_hygiene::testing::assert_no_leases(&tracker);
    }
    let snap = client.view().snapshot().remove(0);
    drop(client);
    (snap, settle(s).await)
}

/// Waits until every connection to `s` has closed on both sides (the server tracks none, and
/// the kernel shows nothing but the listener and TIME_WAIT on its port), then counts TIME_WAIT.
async fn settle(s: &TestServer) -> TimeWait {
    let port = s.addr.port();
    support::eventually(
        "every close to land (connections the server tracks, sockets not yet closed)",
        SETTLE_TIMEOUT,
        || {
            satisfies(
                (s.registry.live(), netns::unsettled(port)),
                |(live, pending)| *live == 0 && pending.is_empty(),
            )
        },
    )
    .await;
    netns::time_wait(port)
}

/// BUG (client): a connection that hyper-util's pool opens for a request, but that the request
/// does not use because a pooled connection came back first, enters the pool marked `Leased`
/// (a connection "starts leased") and stays so until it carries a request. Its idle timer never
/// runs (`compute_deadline` arms only `Idle` connections), so under `client-first` the client
/// never closes it: the server's keep-alive does, the very race `client-first` exists to avoid,
/// and the snapshot counts it as leased while no request is outstanding.
///
/// Made deterministic with `max_connections = 1`: the second request's connection attempt waits for a
/// slot while the first request holds the only connection; that connection comes back and
/// serves the second request; once it closes at its idle timeout, the waiting attempt connects
/// into the pool, unused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unused_pooled_connection_idles_out() {
    let server = support::start(Mode::Axum, HygienicListener::builder()).await;
    let idle = Duration::from_millis(300);
    let client = HygienicClient::builder()
        .default_upstream(
            UpstreamConfig::new()
                .close_order(CloseOrder::ClientFirst)
                .idle_timeout(idle)
                .max_connections(Some(1))
                .acquire_timeout(Duration::from_secs(5)),
        )
        .build::<Empty<Bytes>>()
        .expect("client config");
    let slow = {
        let client = client.clone();
        let url: http::Uri = server.url("/slow?ms=300").parse().unwrap();
        tokio::spawn(async move {
            let res = client.get(url).await.expect("slow response");
            res.into_body().collect().await.expect("slow body");
        })
    };
    support::eventually(
        "the slow request reaches the server",
        Duration::from_secs(5),
        || {
            server
                .state
                .started
                .load(std::sync::atomic::Ordering::SeqCst)
                == 1
        },
    )
    .await;
    // Its checkout waits for the busy connection; its connection attempt waits for a slot.
    let res = client
        .get(server.url("/").parse().unwrap())
        .await
        .expect("second response");
    res.into_body().collect().await.expect("second body");
    slow.await.expect("slow task");
    let first = client.view().snapshot().remove(0);
    assert_eq!(
        first.totals.connects, 1,
        "both requests shared one connection"
    );

    // The first connection idles out; the waiting attempt then connects, unused.
    support::eventually(
        "the second connection is opened",
        Duration::from_secs(3),
        || client.view().snapshot()[0].totals.connects == 2,
    )
    .await;
    // Every connection must now idle out within the idle timeout, and none may count as leased
    // while no request is outstanding.
    support::eventually(
        &format!(
            "every pooled connection to idle out, within 4 idle timeouts of {idle:?} (open, idle, \
             leased, connections by id, state, requests and age)"
        ),
        idle * 4,
        || {
            let snap = client.view().snapshot().remove(0);
            assert_eq!(snap.leases.outstanding(), 0);
            let connections: Vec<_> = snap
                .connections
                .iter()
                .map(|c| (c.id, c.state, c.requests, c.age))
                .collect();
            satisfies(
                (snap.open, snap.idle, snap.leased, connections),
                |(open, ..)| *open == 0,
            )
        },
    )
    .await;
    server.stop().await;
}
