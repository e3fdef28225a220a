//! Metric label cardinality stays bounded whatever the traffic.
//!
//! In a private network namespace (`unshare -n`, see `conn_hygiene_test_support::run_in_netns`), where all of
//! 127.0.0.0/8 is ours:
//!
//! - 10 000 connections, each from its own source address (127.1.x.y), to a hygienic server:
//!   the number of exported series does not grow, and no label carries a peer address;
//! - a client sending to 600 distinct upstream authorities: at most 256 upstreams get series
//!   of their own, the rest share `other`, and the count stops growing there.
//!
//! Metrics go to a `DebuggingRecorder` through `metrics::with_local_recorder` on a
//! current-thread runtime, so every handle, resolved at bind or at first use, lands there.
#![cfg(all(feature = "axum", feature = "client"))]

mod support;

use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use conn_hygiene::{
    client::HygienicClient,
    server::{HygienicListener, MakeTrackConnection},
};
use conn_hygiene_test_support::{in_netns, run_in_netns};
use http_body_util::{BodyExt, Empty};
use metrics_util::debugging::{DebuggingRecorder, Snapshotter};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpSocket,
    sync::Semaphore,
    task::JoinSet,
};

/// Distinct peer addresses.
const PEERS: usize = 10_000;
/// Connections open at once (descriptors stay far below the limit).
const CONCURRENCY: usize = 200;
/// Distinct upstream authorities the client is sent to.
const AUTHORITIES: usize = 600;

#[test]
fn series_do_not_grow_with_peers_or_upstreams() {
    run_in_netns("inner_series_do_not_grow_with_peers_or_upstreams", &[]);
}

fn series(s: &Snapshotter) -> Vec<String> {
    let mut keys: Vec<String> = s
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, _)| format!("{:?}", key.key()))
        .collect();
    keys.sort();
    keys
}

/// The `i`-th peer address: 127.1.x.y with y in 1..=250.
fn peer(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 1, (i / 250) as u8, (i % 250 + 1) as u8)
}

async fn request_from(src: Ipv4Addr, server: SocketAddr) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((src, 0))).unwrap();
    let mut s = socket.connect(server).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    assert!(out.starts_with(b"HTTP/1.1 200"), "{src}");
}

#[test]
#[ignore = "runs inside a private network namespace, started by series_do_not_grow_with_peers_or_upstreams"]
fn inner_series_do_not_grow_with_peers_or_upstreams() {
    if !in_netns() {
        return series_do_not_grow_with_peers_or_upstreams();
    }
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || {
        rt.block_on(async {
            // Server side.
            let listener = HygienicListener::builder()
                .name("edge")
                .bind("127.0.0.1:0")
                .await
                .unwrap();
            let addr = listener.local_addr();
            let registry = listener.registry().clone();
            let app = axum::Router::new().route("/", axum::routing::get(|| async { "hello\n" }));
            tokio::spawn(async move {
                let _ = axum::serve(listener, MakeTrackConnection::new(app)).await;
            });
            request_from(Ipv4Addr::LOCALHOST, addr).await;
            let before = series(&snapshotter);

            let started = Instant::now();
            let slots = Arc::new(Semaphore::new(CONCURRENCY));
            let mut set = JoinSet::new();
            for i in 0..PEERS {
                let permit = slots.clone().acquire_owned().await.unwrap();
                set.spawn(async move {
                    request_from(peer(i), addr).await;
                    drop(permit);
                });
            }
            while let Some(r) = set.join_next().await {
                r.unwrap();
            }
            support::eventually("every connection closed", Duration::from_secs(30), || {
                registry.live() == 0
            })
            .await;
            assert_eq!(registry.totals().opened, PEERS as u64 + 1);
            let after = series(&snapshotter);
            println!(
                "server: {PEERS} distinct peer addresses in {:?}: {} series before, {} after",
                started.elapsed(),
                before.len(),
                after.len()
            );
            assert_eq!(before, after, "series grew with peer addresses");
            assert!(
                !after.iter().any(|k| k.contains("127.1.")),
                "a label carries a peer address"
            );

            // Client side: many upstream authorities. A second listener on every local
            // address of this private namespace answers all of them.
            let any = HygienicListener::builder()
                .name("any")
                .bind("0.0.0.0:0")
                .await
                .unwrap();
            let port = any.local_addr().port();
            let app = axum::Router::new().route("/", axum::routing::get(|| async { "hello\n" }));
            tokio::spawn(async move {
                let _ = axum::serve(any, MakeTrackConnection::new(app)).await;
            });
            let client = HygienicClient::builder().build::<Empty<Bytes>>().unwrap();
            let mut counts = Vec::new();
            for round in 0..2 {
                for i in (round * AUTHORITIES / 2)..((round + 1) * AUTHORITIES / 2) {
                    let host = Ipv4Addr::new(127, 2, (i / 250) as u8, (i % 250 + 1) as u8);
                    let uri = format!("http://{host}:{port}/").parse().unwrap();
                    let res = client.get(uri).await.unwrap();
                    assert_eq!(res.status(), 200);
                    res.into_body().collect().await.unwrap();
                }
                counts.push(series(&snapshotter).len());
            }
            let upstreams = client.view().snapshot();
            println!(
                "client: {AUTHORITIES} authorities: {} upstreams, series after {} and {} \
                 authorities: {:?}",
                upstreams.len(),
                AUTHORITIES / 2,
                AUTHORITIES,
                counts
            );
            assert_eq!(upstreams.len(), 257, "256 named upstreams and `other`");
            assert!(upstreams.iter().any(|u| u.name == "other"));
            assert_eq!(counts[0], counts[1], "series grew past the upstream bound");
        })
    });
}
