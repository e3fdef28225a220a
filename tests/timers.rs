//! Timer logic of the tracked stream under paused tokio time: the default limits fire exactly
//! when they should, with real sockets and no real waiting.

mod support;

use std::time::Duration;

use conn_hygiene::server::{CloseReason, ConnectionLimits, HygienicListener};
use support::*;
use tokio::{io::AsyncWriteExt, net::TcpStream, time::Instant};

async fn server() -> TestServer {
    let listener = HygienicListener::bind("127.0.0.1:0").await.unwrap();
    start_with(Mode::Axum, listener)
}

#[tokio::test(start_paused = true)]
async fn default_idle_timeout_fires_at_75_seconds() {
    let defaults = ConnectionLimits::default();
    assert_eq!(defaults.idle_timeout(), Some(Duration::from_secs(75)));
    let server = server().await;
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    assert_eq!(get(&mut client, "/").await.unwrap().status, 200);
    let idle_from = Instant::now();
    assert_eq!(
        read_until_closed(&mut client, Duration::from_secs(600))
            .await
            .unwrap(),
        0
    );
    let idle = idle_from.elapsed();
    assert!(
        idle >= Duration::from_secs(75) && idle < Duration::from_secs(76),
        "closed after {idle:?}"
    );
    let t = server.registry.totals();
    assert_eq!(t.closed_for(CloseReason::IdleTimeout), 1, "{t:?}");
    server.stop().await;
}

#[tokio::test(start_paused = true)]
async fn header_timeout_counts_from_accept_and_from_each_first_byte() {
    let server = server().await;
    // Silent since accept: cut at 10 s.
    let start = Instant::now();
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let _ = read_until_closed(&mut silent, Duration::from_secs(600)).await;
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(10) && waited < Duration::from_secs(11),
        "cut after {waited:?}"
    );
    // A keep-alive connection: idle for 60 s is fine (below the idle timeout), then a request
    // that stalls mid-header is cut 10 s after its first byte.
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    assert_eq!(get(&mut client, "/").await.unwrap().status, 200);
    tokio::time::sleep(Duration::from_secs(60)).await;
    client.write_all(b"GET / HTT").await.unwrap();
    let first_byte = Instant::now();
    let _ = read_until_closed(&mut client, Duration::from_secs(600)).await;
    let waited = first_byte.elapsed();
    assert!(
        waited >= Duration::from_secs(10) && waited < Duration::from_secs(11),
        "cut after {waited:?}"
    );
    let t = server.registry.totals();
    assert_eq!(t.closed_for(CloseReason::HeaderTimeout), 2, "{t:?}");
    server.stop().await;
}
