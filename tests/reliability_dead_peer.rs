//! A peer that vanishes without FIN or RST is reaped within the bound the socket policy
//! promises ([`SocketPolicy::dead_peer_bound`]), and counted as `PeerTimeout`.
//!
//! The test runs in a private network namespace (`unshare -n`, see `conn_hygiene_test_support::run_in_netns`), where
//! it makes `lo` drop every packet once the connection is up: `tc qdisc … netem loss 100%`
//! where the kernel has `sch_netem`, else the `blackhole` qdisc (every packet dropped, reported
//! sent). Nothing outside the namespace is touched. Two cases, with keepalive idle 1 s,
//! interval 1 s, 2 probes and a 3 s user timeout:
//!
//! - an idle keep-alive connection: keepalive probes go unanswered;
//! - a response being streamed: the data stays unacknowledged and `TCP_USER_TIMEOUT` fires.
#![cfg(feature = "axum")]

mod support;

use std::{
    convert::Infallible,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use axum::{body::Body, routing::get, Router};
use bytes::Bytes;
use conn_hygiene::{
    policy::{Keepalive, SocketPolicy},
    server::{
        CloseReason, Closer, ConnectionRegistry, HygienicListener, MakeTrackConnection, Server,
    },
};
use conn_hygiene_test_support::{in_netns, run_in_netns, satisfies};
use support::Mode;
use tokio::{io::AsyncReadExt, io::AsyncWriteExt, net::TcpStream};

/// Slack over the promised bound: timer granularity of the kernel and of the poll below.
const MARGIN: Duration = Duration::from_millis(1500);

#[test]
fn dead_peer_is_reaped_within_the_policy_bound() {
    run_in_netns("inner_dead_peer_is_reaped_within_the_policy_bound", &[]);
}

fn policy() -> SocketPolicy {
    SocketPolicy::builder()
        .keepalive(Some(Keepalive::new(
            Duration::from_secs(1),
            Duration::from_secs(1),
            2,
        )))
        .user_timeout(Some(Duration::from_secs(3)))
        .build()
        .expect("policy")
}

fn app() -> Router {
    Router::new().route("/", get(|| async { "hello\n" })).route(
        "/stream",
        get(|| async {
            // 16 KiB every 2 ms, for at most 60 s: data is always in flight.
            let chunks = futures_util::stream::unfold(0u32, |n| async move {
                if n >= 30_000 {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
                Some((
                    Ok::<_, Infallible>(Bytes::from(vec![b'x'; 16 * 1024])),
                    n + 1,
                ))
            });
            Body::from_stream(chunks)
        }),
    )
}

/// Makes the namespace's `lo` drop every packet; returns how.
fn blackhole_lo() -> &'static str {
    let tc = |args: &[&str]| {
        Command::new("tc")
            .args(args)
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    if tc(&["qdisc", "add", "dev", "lo", "root", "netem", "loss", "100%"]) {
        return "tc netem loss 100%";
    }
    // The `blackhole` qdisc drops every packet yet reports it sent, as a lossy network does.
    // (A queue that refuses packets, such as `pfifo limit 0`, would not do: TCP sees local
    // congestion, retries without counting unanswered keepalive probes, and never gives up.)
    if tc(&["qdisc", "add", "dev", "lo", "root", "blackhole"]) {
        return "tc blackhole qdisc";
    }
    panic!(
        "cannot make lo drop packets in the test namespace: neither `tc qdisc … netem` \
         (kernel module sch_netem) nor `tc qdisc … blackhole` works; install iproute2 \
         (scripts/install-test-deps.sh) on a kernel with packet scheduling"
    );
}

fn restore_lo() {
    let ok = Command::new("tc")
        .args(["qdisc", "del", "dev", "lo", "root"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "tc qdisc del dev lo root");
}

async fn serve(mode: Mode, name: &str) -> (std::net::SocketAddr, ConnectionRegistry) {
    let listener = HygienicListener::builder()
        .name(name.to_owned())
        .policy(policy())
        .bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr();
    let registry = listener.registry().clone();
    match mode {
        Mode::Axum => {
            tokio::spawn(async move {
                let _ = axum::serve(listener, MakeTrackConnection::new(app())).await;
            });
        }
        Mode::Hyper => {
            tokio::spawn(async move {
                Server::new().serve(listener, app()).await;
            });
        }
    }
    (addr, registry)
}

/// Waits until the registry counts one peer timeout, at most 10 s past `limit`; returns the
/// time since `since`.
async fn reaped(registry: &ConnectionRegistry, since: Instant, limit: Duration) -> Duration {
    support::eventually(
        "the dead peer reaped, 10 s past its bound at most (registry totals)",
        limit + Duration::from_secs(10),
        || {
            satisfies(registry.totals(), |t| {
                t.closed_for(CloseReason::PeerTimeout) == 1
            })
        },
    )
    .await;
    since.elapsed()
}

#[test]
#[ignore = "runs inside a private network namespace, started by dead_peer_is_reaped_within_the_policy_bound"]
fn inner_dead_peer_is_reaped_within_the_policy_bound() {
    if !in_netns() {
        return dead_peer_is_reaped_within_the_policy_bound();
    }
    let bound = policy().dead_peer_bound().expect("a bound");
    assert_eq!(bound, Duration::from_secs(3));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        // An idle keep-alive connection whose peer vanishes: keepalive probes reap it.
        for mode in support::MODES {
            let (addr, registry) = serve(mode, "idle").await;
            let mut client = TcpStream::connect(addr).await.unwrap();
            let res = support::get(&mut client, "/").await.unwrap();
            assert_eq!(res.status, 200);
            let how = blackhole_lo();
            let t0 = Instant::now();
            let took = reaped(&registry, t0, bound).await;
            println!("{mode:?} idle connection, dead peer ({how}): reaped after {took:?} (bound {bound:?})");
            assert!(took <= bound + MARGIN, "{mode:?}: reaped after {took:?}");
            assert!(took >= Duration::from_millis(900), "{mode:?}: too early, {took:?}");
            let t = registry.totals();
            assert_eq!(t.closed_by(Closer::Timeout), 1, "{mode:?}: {t:?}");
            assert_eq!(registry.live(), 0);
            restore_lo();
            drop(client);
        }

        // A response in flight whose peer vanishes: the unacknowledged data hits the user
        // timeout.
        let (addr, registry) = serve(Mode::Axum, "streaming").await;
        let mut client = TcpStream::connect(addr).await.unwrap();
        client
            .write_all(b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = client.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        });
        // Streaming for a while: bytes flow.
        let reg = registry.clone();
        support::eventually("1 MiB streamed", Duration::from_secs(10), || {
            reg.snapshot()
                .connections
                .first()
                .is_some_and(|c| c.bytes_out > 1 << 20)
        })
        .await;
        let how = blackhole_lo();
        let t0 = Instant::now();
        let took = reaped(&registry, t0, bound).await;
        println!("streaming response, dead peer ({how}): reaped after {took:?} (bound {bound:?})");
        assert!(took <= bound + MARGIN, "streaming: reaped after {took:?}");
        assert_eq!(registry.totals().closed_by(Closer::Timeout), 1);
        assert_eq!(registry.live(), 0);
        restore_lo();
        reader.abort();
    });
}
