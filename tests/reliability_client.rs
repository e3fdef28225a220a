//! The pooled client against a faulty upstream: a raw TCP server that closes idle connections
//! at random, resets some responses halfway, and stops answering some requests.
//!
//! Checked, for each close order:
//!
//! - no replayable request (GET) fails because of a stale pooled connection: every GET that
//!   fails is one the upstream itself failed (reset or stalled);
//! - a non-replayable request (POST) reaches the upstream at most once, and when it fails on a
//!   stale connection the error says so clearly;
//! - the pool never hands out a dead connection twice: failures caused by stale connections
//!   are at most the connections the upstream closed while idle, and a stalled connection is
//!   never reused (a request on it would stall without a fault of its own);
//! - nothing leaks: no lease outstanding, every connection closed, the process's descriptors
//!   back to where they were.
#![cfg(feature = "client")]

mod support;

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use bytes::Bytes;
use conn_hygiene::client::{CloseOrder, HygienicClient, UpstreamConfig};
use http_body_util::{BodyExt, Full};
use socket2::SockRef;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// Client tasks and requests per task.
const WORKERS: u64 = 4;
const PER_WORKER: u64 = 100;
/// The caller's bound on one request: a stalled upstream is noticed after this.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(400);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Headers and half the body, then a reset.
    Reset,
    /// Read the request, never answer.
    Stall,
}

/// What the upstream saw and did.
#[derive(Default)]
struct Log {
    /// Arrivals per request id.
    arrivals: Mutex<HashMap<u64, u32>>,
    /// Faults applied, per request id.
    faults: Mutex<HashMap<u64, Fault>>,
    /// Connections closed by the upstream while idle, after a response.
    idle_closes: AtomicU64,
    /// Connections accepted.
    accepted: AtomicU64,
    /// Sequence for the upstream's choices.
    seq: AtomicU64,
}

impl Log {
    /// A deterministic pseudo-random number per call (SplitMix64 over a counter).
    fn next(&self) -> u64 {
        let mut z = self
            .seq
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Reads one request head (and its body, by content length); returns its id, or `None` at
/// EOF or error.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<u64> {
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    let id = header("x-id:").expect("every test request carries x-id");
    let len = header("content-length:").unwrap_or(0) as usize;
    while buf.len() < head_end + len {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    buf.drain(..head_end + len);
    Some(id)
}

async fn serve_connection(mut stream: TcpStream, log: Arc<Log>) {
    let mut buf = Vec::new();
    while let Some(id) = read_request(&mut stream, &mut buf).await {
        *log.arrivals.lock().unwrap().entry(id).or_default() += 1;
        let roll = log.next();
        let fault = match roll % 16 {
            0 => Some(Fault::Reset),
            1 => Some(Fault::Stall),
            _ => None,
        };
        if let Some(f) = fault {
            log.faults.lock().unwrap().insert(id, f);
        }
        match fault {
            Some(Fault::Reset) => {
                let mut res = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n".to_vec();
                res.extend_from_slice(&[b'x'; 100]);
                let _ = stream.write_all(&res).await;
                let _ = SockRef::from(&stream).set_linger(Some(Duration::ZERO));
                return;
            }
            Some(Fault::Stall) => {
                // Alive but silent: hold the connection until the client gives up on it.
                let mut sink = [0u8; 1024];
                while let Ok(n) = stream.read(&mut sink).await {
                    if n == 0 {
                        break;
                    }
                }
                return;
            }
            None => {
                let body = format!("ok {id}");
                let res = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                if stream.write_all(res.as_bytes()).await.is_err() {
                    return;
                }
            }
        }
        // A third of the time, close the connection once idle, after 0–3 ms, whether or not
        // the client's next request is arriving right then (it then meets a reset).
        if (roll >> 8) % 3 == 0 {
            let delay = Duration::from_micros((roll >> 16) % 3000);
            // The upstream's own behaviour, not synchronisation: it waits, then closes.
            tokio::time::sleep(delay).await;
            log.idle_closes.fetch_add(1, Ordering::Relaxed);
            return;
        }
    }
}

async fn upstream(log: Arc<Log>) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            log.accepted.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(serve_connection(stream, log.clone()));
        }
    });
    (addr, task)
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[derive(Debug)]
enum Outcome {
    Ok,
    Failed(String),
    TimedOut,
}

async fn one(client: &HygienicClient<Full<Bytes>>, addr: SocketAddr, id: u64) -> Outcome {
    let post = id % 5 == 0;
    let req = http::Request::builder()
        .method(if post { "POST" } else { "GET" })
        .uri(format!("http://{addr}/r"))
        .header("x-id", id)
        .body(Full::new(Bytes::from_static(b"payload")))
        .unwrap();
    let call = async {
        let res = client.request(req).await.map_err(|e| e.to_string())?;
        let body = res
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?;
        if body.to_bytes() == format!("ok {id}").as_bytes() {
            Ok(())
        } else {
            Err("wrong body".to_owned())
        }
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, call).await {
        Ok(Ok(())) => Outcome::Ok,
        Ok(Err(e)) => Outcome::Failed(e),
        Err(_) => Outcome::TimedOut,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faulty_upstream_never_fails_a_replayable_request_on_a_stale_connection() {
    for order in [CloseOrder::ClientFirst, CloseOrder::ServerFirst] {
        let log = Arc::new(Log::default());
        let (addr, server) = upstream(log.clone()).await;
        let fds_before = open_fds();
        let client = HygienicClient::builder()
            .default_upstream(
                UpstreamConfig::new()
                    .name("faulty")
                    .close_order(order)
                    .idle_timeout(Duration::from_secs(30)),
            )
            .build::<Full<Bytes>>()
            .unwrap();
        let view = client.view();
        let trackers = client.view().lease_trackers();

        let mut tasks = Vec::new();
        for w in 0..WORKERS {
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                let mut out = Vec::new();
                for i in 0..PER_WORKER {
                    let id = w * PER_WORKER + i + 1;
                    out.push((id, one(&client, addr, id).await));
                    // A short, varying pause: some requests find the upstream's close racing.
                    tokio::time::sleep(Duration::from_micros((id * 7919) % 2000)).await;
                }
                out
            }));
        }
        let mut outcomes = Vec::new();
        for t in tasks {
            outcomes.extend(t.await.unwrap());
        }

        let arrivals = log.arrivals.lock().unwrap().clone();
        let faults = log.faults.lock().unwrap().clone();
        let mut ok = 0;
        let mut stale_post_failures = 0;
        for (id, outcome) in &outcomes {
            let post = id % 5 == 0;
            let fault = faults.get(id).copied();
            let seen = arrivals.get(id).copied().unwrap_or(0);
            if post {
                assert!(
                    seen <= 1,
                    "{order:?}: POST {id} reached the upstream {seen} times"
                );
            } else {
                assert!(seen <= 2, "{order:?}: GET {id} sent {seen} times");
            }
            match outcome {
                Outcome::Ok => {
                    assert_eq!(fault, None, "{order:?}: {id} succeeded despite {fault:?}");
                    ok += 1;
                }
                Outcome::TimedOut => assert_eq!(
                    fault,
                    Some(Fault::Stall),
                    "{order:?}: request {id} stalled without the upstream stalling it: a \
                     stalled connection was handed out again"
                ),
                Outcome::Failed(e) => match fault {
                    Some(Fault::Reset) => {}
                    Some(Fault::Stall) => panic!("{order:?}: {id} stalled but failed: {e}"),
                    None if post => {
                        // Stale connection, not retried: the error names the upstream and why.
                        assert!(
                            e.contains("upstream faulty: request failed"),
                            "{order:?}: unclear error for POST {id}: {e}"
                        );
                        stale_post_failures += 1;
                    }
                    None => panic!(
                        "{order:?}: GET {id} failed on a stale pooled connection \
                         (the upstream saw it {seen} times): {e}"
                    ),
                },
            }
        }
        let snap = view.snapshot();
        assert_eq!(snap.len(), 1);
        let totals = snap[0].totals.clone();
        let idle_closes = log.idle_closes.load(Ordering::Relaxed);
        let stale = totals.retries + stale_post_failures;
        println!(
            "{order:?}: {} requests, {ok} ok, {} resets, {} stalls, {idle_closes} idle closes by \
             the upstream, {} GETs retried, {stale_post_failures} POSTs failed on a stale \
             connection, {} connections",
            outcomes.len(),
            faults.values().filter(|f| **f == Fault::Reset).count(),
            faults.values().filter(|f| **f == Fault::Stall).count(),
            totals.retries,
            log.accepted.load(Ordering::Relaxed),
        );
        assert!(
            stale <= idle_closes,
            "{order:?}: {stale} failures on stale connections, but the upstream closed only \
             {idle_closes} idle ones: a dead connection was handed out twice"
        );
        assert!(ok > outcomes.len() / 2, "{order:?}: too few successes");

        // Nothing leaks: leases, connections, descriptors.
        for t in &trackers {
            conn_hygiene::testing::assert_no_leases(t);
        }
        drop(client);
        support::eventually(
            "every connection closed after the client is dropped",
            Duration::from_secs(10),
            || view.snapshot()[0].open == 0,
        )
        .await;
        let t = view.snapshot()[0].totals.clone();
        assert_eq!(t.closed, t.connects, "{order:?}: {t:?}");
        support::eventually(
            "descriptors back to where they were",
            Duration::from_secs(10),
            || open_fds() <= fds_before,
        )
        .await;
        server.abort();
    }
}

/// An upstream that accepts and never reads: the request's body fills both send buffers and
/// stops. The write timeout cuts the connection with a reset, the request fails, and nothing
/// is left holding the buffer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_stops_reading_is_cut_by_the_write_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (held_tx, held_rx) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        // Hold the socket unread until the test ends.
        let _ = held_rx.await;
        drop(socket);
    });
    let client = HygienicClient::builder()
        .upstream(
            addr.to_string(),
            UpstreamConfig::new()
                .name("deaf")
                .write_timeout(Some(Duration::from_millis(400))),
        )
        .build::<Full<Bytes>>()
        .unwrap();
    let body = Full::new(Bytes::from(vec![b'x'; 64 << 20]));
    let req = http::Request::post(format!("http://{addr}/"))
        .body(body)
        .unwrap();
    let started = tokio::time::Instant::now();
    let res = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .expect("the write timeout ends the request");
    assert!(
        res.is_err(),
        "a request whose body never went out cannot succeed"
    );
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "took {took:?}");
    support::eventually("the close counted", Duration::from_secs(10), || {
        client.view().snapshot()[0].totals.closed == 1
    })
    .await;
    let t = client.view().snapshot()[0].totals.clone();
    assert_eq!(
        t.closed_for(conn_hygiene::client::CloseReason::WriteTimeout),
        1,
        "{t:?}"
    );
    assert_eq!(t.aborted, 1, "reset, so the send buffer is freed: {t:?}");
    let _ = held_tx.send(());
    server.await.unwrap();
}
