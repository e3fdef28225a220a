//! The server at the edges, tried as a hostile or merely unusual peer would, in both serve
//! modes: half-close right after a request, shutdown under keep-alive loops, HTTP/2 peers that
//! close with a stalled stream, prefaces that never become a request, readers that stop
//! reading, and peers that never answer GOAWAY.

mod support;

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use conn_hygiene::server::{CloseReason, ConnectionLimits, HygienicListener, ListenerBuilder};
use support::{read_response, read_until_closed, start, MODES};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

const LONG: Duration = Duration::from_secs(10);

fn listener(limits: ConnectionLimits) -> ListenerBuilder {
    HygienicListener::builder().limits(limits)
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// Sends `request` and shuts down the write side at once, then reads everything the server
/// sends until it closes; returns how many responses came back.
async fn half_close_after(addr: std::net::SocketAddr, request: &[u8]) -> usize {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    s.shutdown().await.unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(LONG, s.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "the server never closed");
    String::from_utf8_lossy(&out).matches(" 200 OK\r\n").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_close_right_after_the_request_gets_every_response() {
    let get11 = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    let cases: [(&str, Vec<u8>, usize); 5] = [
        ("HTTP/1.0", b"GET / HTTP/1.0\r\n\r\n".to_vec(), 1),
        ("HTTP/1.1", get11.to_vec(), 1),
        (
            "HTTP/1.1 close",
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".to_vec(),
            1,
        ),
        ("pipelined", get11.repeat(3), 3),
        (
            "slow handler",
            b"GET /slow?ms=30 HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
            1,
        ),
    ];
    for mode in MODES {
        let server = start(mode, listener(ConnectionLimits::default())).await;
        let mut expected = 0;
        for (name, request, n) in &cases {
            for round in 0..20 {
                let got = half_close_after(server.addr, request).await;
                assert_eq!(got, *n, "{mode:?} {name} round {round}");
                expected += *n as u64;
            }
        }
        let reg = server.registry.clone();
        support::wait_totals(&reg, |t| t.closed == 100).await;
        let t = reg.totals();
        assert_eq!(t.requests_on_closed, expected, "{mode:?}: {t:?}");
        assert_eq!(t.requests_unanswered, 0, "{mode:?}: {t:?}");
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_under_tight_keep_alive_loops_loses_no_request_read() {
    for mode in MODES {
        let server = start(mode, listener(ConnectionLimits::default())).await;
        let answered = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut clients = Vec::new();
        for _ in 0..8 {
            let (addr, answered, stop) = (server.addr, answered.clone(), stop.clone());
            clients.push(tokio::spawn(async move {
                // Each loop ends when the server closes its connection: a request it never read
                // gets no response, one it read must get one.
                while !stop.load(Ordering::Relaxed) {
                    let Ok(mut s) = TcpStream::connect(addr).await else {
                        return;
                    };
                    loop {
                        if s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
                            .await
                            .is_err()
                        {
                            break;
                        }
                        match read_response(&mut s).await {
                            Ok(r) if r.status == 200 => {
                                answered.fetch_add(1, Ordering::Relaxed);
                            }
                            _ => break,
                        }
                    }
                }
            }));
        }
        let deadline = tokio::time::Instant::now() + LONG;
        while answered.load(Ordering::Relaxed) < 2000 {
            assert!(tokio::time::Instant::now() < deadline, "{mode:?}: no load");
            tokio::task::yield_now().await;
        }
        let mut server = server;
        let reg = server.registry.clone();
        server.trigger_stop();
        let report = server.join().await;
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            c.await.unwrap();
        }
        tokio::time::timeout(LONG, reg.closed()).await.unwrap();
        let t = reg.totals();
        assert_eq!(t.requests_unanswered, 0, "{mode:?}: {t:?} {report:?}");
        assert_eq!(
            t.requests_on_closed,
            answered.load(Ordering::Relaxed),
            "{mode:?}: every request read was answered: {t:?}"
        );
        assert_eq!(t.opened, t.closed, "{mode:?}");
    }
}

/// Raw HTTP/2 frames.
mod h2 {
    pub(crate) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    pub(crate) fn frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        v.extend([ty, flags]);
        v.extend(stream.to_be_bytes());
        v.extend(payload);
        v
    }

    /// The preface and SETTINGS with a zero initial window: no response DATA can flow.
    pub(crate) fn start_with_zero_window() -> Vec<u8> {
        let mut v = PREFACE.to_vec();
        v.extend(frame(4, 0, 0, &[0, 4, 0, 0, 0, 0]));
        v
    }

    /// A GET for `path` on `stream`, ending the stream (HPACK without Huffman).
    pub(crate) fn get(stream: u32, path: &str) -> Vec<u8> {
        let mut block = vec![0x82, 0x86, 0x41, 1, b'a', 0x44, path.len() as u8];
        block.extend(path.as_bytes());
        frame(1, 0x4 | 0x1, stream, &block)
    }

    /// Reads frames until one of type `ty` arrives on `stream` (0: any stream).
    pub(crate) async fn read_until(s: &mut tokio::net::TcpStream, ty: u8, stream: u32) {
        use tokio::io::AsyncReadExt;
        loop {
            let mut h = [0u8; 9];
            s.read_exact(&mut h).await.expect("a frame header");
            let len = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
            let id = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
            let mut payload = vec![0; len];
            s.read_exact(&mut payload).await.expect("a frame payload");
            if h[3] == ty && (stream == 0 || id == stream) {
                return;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_peer_that_closes_with_a_stalled_stream_releases_the_descriptor() {
    for mode in MODES {
        let server = start(mode, listener(ConnectionLimits::default())).await;
        let reg = server.registry.clone();
        let baseline = open_fds();
        for round in 0..20 {
            let mut s = TcpStream::connect(server.addr).await.unwrap();
            s.write_all(&h2::start_with_zero_window()).await.unwrap();
            s.write_all(&h2::get(1, "/big?kb=64")).await.unwrap();
            // The response's HEADERS came; its DATA waits for a window that never opens.
            h2::read_until(&mut s, 1, 1).await;
            if round % 2 == 0 {
                // FIN only: the socket stays open on our side.
                s.shutdown().await.unwrap();
                support::wait_totals(&reg, |t| t.closed == round + 1).await;
                drop(s);
            } else {
                drop(s);
                support::wait_totals(&reg, |t| t.closed == round + 1).await;
            }
        }
        assert_eq!(reg.live(), 0, "{mode:?}");
        let t = reg.totals();
        assert_eq!(t.requests_unanswered, 20, "{mode:?}: {t:?}");
        // Descriptors come back: nothing is left behind by a connection the peer closed.
        support::eventually("descriptors released", LONG, || open_fds() <= baseline).await;
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preface_or_nothing_never_escapes_the_header_timeout() {
    let sends: [&[u8]; 4] = [
        b"",
        &h2::PREFACE[..10],
        h2::PREFACE,
        &h2::start_with_zero_window(),
    ];
    for mode in MODES {
        let limits = ConnectionLimits::builder()
            .header_timeout(Some(Duration::from_millis(300)))
            .build()
            .unwrap();
        let server = start(mode, listener(limits)).await;
        for (i, bytes) in sends.iter().enumerate() {
            let mut s = TcpStream::connect(server.addr).await.unwrap();
            s.write_all(bytes).await.unwrap();
            let started = tokio::time::Instant::now();
            let _ = read_until_closed(&mut s, LONG).await;
            let held = started.elapsed();
            assert!(
                held < Duration::from_secs(3),
                "{mode:?} case {i}: held {held:?}"
            );
        }
        let reg = server.registry.clone();
        support::wait_totals(&reg, |t| t.closed == 4).await;
        assert_eq!(
            reg.totals().closed_for(CloseReason::HeaderTimeout),
            4,
            "{mode:?}: {:?}",
            reg.totals()
        );
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_reading_is_cut_by_the_write_timeout() {
    for mode in MODES {
        let limits = ConnectionLimits::builder()
            .write_timeout(Some(Duration::from_millis(400)))
            .build()
            .unwrap();
        let server = start(mode, listener(limits)).await;
        let reg = server.registry.clone();

        // HTTP/1: pipelined requests for large bodies, never read.
        let mut s1 = TcpStream::connect(server.addr).await.unwrap();
        let port1 = s1.local_addr().unwrap().port();
        s1.write_all(&b"GET /big?kb=1024 HTTP/1.1\r\nHost: a\r\n\r\n".repeat(16))
            .await
            .unwrap();
        // HTTP/2: a stream stalled on a zero window, the connection otherwise healthy.
        let mut s2 = TcpStream::connect(server.addr).await.unwrap();
        s2.write_all(&h2::start_with_zero_window()).await.unwrap();
        s2.write_all(&h2::get(1, "/big?kb=64")).await.unwrap();

        support::wait_totals(&reg, |t| t.closed == 2).await;
        let t = reg.totals();
        assert_eq!(
            t.closed_for(CloseReason::WriteTimeout),
            2,
            "{mode:?}: {t:?}"
        );
        assert_eq!(t.aborted, 2, "{mode:?}: reset, so the send buffer is freed");
        // The kernel holds nothing for the reader any more: the server's socket is gone.
        let server_side = support::ss(&[
            "-tan",
            &format!("( sport = :{} and dport = :{port1} )", server.addr.port()),
        ]);
        assert!(server_side.is_empty(), "{mode:?}: {server_side:?}");
        drop((s1, s2));
        server.stop().await;
    }
}

/// A retiring HTTP/2 connection announces it with GOAWAY in both modes (under `axum::serve`
/// the stream writes it itself), and a peer that never closes is closed after the grace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_answers_goaway_is_closed_after_the_grace() {
    for mode in MODES {
        let limits = ConnectionLimits::builder()
            .goaway_grace(Duration::from_millis(300))
            .build()
            .unwrap();
        let server = start(mode, listener(limits)).await;
        let reg = server.registry.clone();
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(h2::PREFACE).await.unwrap();
        s.write_all(&h2::frame(4, 0, 0, &[])).await.unwrap();
        s.write_all(&h2::get(1, "/")).await.unwrap();
        h2::read_until(&mut s, 0, 1).await;
        let id = reg.snapshot().connections[0].id;
        reg.connection(id).unwrap().retire();
        // GOAWAY arrives; the peer neither answers nor closes.
        h2::read_until(&mut s, 7, 0).await;
        let started = tokio::time::Instant::now();
        support::wait_totals(&reg, |t| t.closed == 1).await;
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{mode:?}: {:?}",
            started.elapsed()
        );
        let t = reg.totals();
        assert_eq!(t.goaway_grace_expired, 1, "{mode:?}: {t:?}");
        assert_eq!(t.closed_for(CloseReason::Retired), 1, "{mode:?}: {t:?}");
        drop(s);
        server.stop().await;
    }
}

/// What one raw HTTP/2 client connection saw: streams it opened, answered, refused by a
/// GOAWAY's last stream id (safe to send again elsewhere), and lost (open when the connection
/// ended).
#[derive(Debug, Default)]
struct H2Run {
    opened: u32,
    answered: u32,
    refused: u32,
    lost: u32,
    goaway: bool,
}

/// A client as RFC 9113 asks: keeps 4 streams open, answers PINGs and SETTINGS, stops opening
/// streams once it reads GOAWAY, and closes once its streams are done.
async fn h2_client_until_goaway(addr: std::net::SocketAddr, limit: Duration) -> H2Run {
    use std::collections::BTreeSet;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut out = h2::PREFACE.to_vec();
    out.extend(h2::frame(4, 0, 0, &[]));
    let mut run = H2Run::default();
    let mut open = BTreeSet::new();
    let mut next = 1u32;
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        while !run.goaway && open.len() < 4 {
            out.extend(h2::get(next, "/"));
            open.insert(next);
            run.opened += 1;
            next += 2;
        }
        if !out.is_empty() && s.write_all(&std::mem::take(&mut out)).await.is_err() {
            break;
        }
        if run.goaway && open.is_empty() {
            break;
        }
        let mut h = [0u8; 9];
        match tokio::time::timeout_at(deadline, s.read_exact(&mut h)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => break,
            Err(_) => panic!("no frame before the limit: {run:?}"),
        }
        let len = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
        let (ty, flags) = (h[3], h[4]);
        let id = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
        let mut payload = vec![0; len];
        if s.read_exact(&mut payload).await.is_err() {
            break;
        }
        match ty {
            // DATA: give the window back; END_STREAM answers the stream.
            0 | 1 => {
                if ty == 0 && len > 0 {
                    out.extend(h2::frame(8, 0, 0, &(len as u32).to_be_bytes()));
                }
                if flags & 1 != 0 && open.remove(&id) {
                    run.answered += 1;
                }
            }
            3 => {
                open.remove(&id);
            }
            4 if flags & 1 == 0 => out.extend(h2::frame(4, 1, 0, &[])),
            6 if flags & 1 == 0 => out.extend(h2::frame(6, 1, 0, &payload)),
            7 => {
                run.goaway = true;
                let last = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]])
                    & 0x7fff_ffff;
                let refused: Vec<u32> = open.iter().copied().filter(|&i| i > last).collect();
                for i in refused {
                    open.remove(&i);
                    run.refused += 1;
                }
            }
            _ => {}
        }
    }
    run.lost = open.len() as u32;
    run
}

/// HTTP/2 clients that keep sending while their connections retire every 150 ms (max age):
/// the GOAWAY comes before the close, so every stream a client opened is answered (none lost
/// in flight, none refused), in both modes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_retirement_under_load_loses_no_request() {
    for mode in MODES {
        let limits = ConnectionLimits::builder()
            .max_age(Some(Duration::from_millis(150)))
            .build()
            .unwrap();
        let server = start(mode, listener(limits)).await;
        let until = tokio::time::Instant::now() + Duration::from_millis(1500);
        let mut tasks = Vec::new();
        for _ in 0..2 {
            let addr = server.addr;
            tasks.push(tokio::spawn(async move {
                let mut runs = Vec::new();
                while tokio::time::Instant::now() < until {
                    runs.push(h2_client_until_goaway(addr, LONG).await);
                }
                runs
            }));
        }
        let mut runs = Vec::new();
        for t in tasks {
            runs.extend(t.await.unwrap());
        }
        let answered: u32 = runs.iter().map(|r| r.answered).sum();
        assert!(answered > 100, "{mode:?}: {answered} answered");
        assert!(
            runs.iter().filter(|r| r.goaway).count() >= 4,
            "{mode:?}: {runs:?}"
        );
        for r in &runs {
            assert_eq!((r.lost, r.refused), (0, 0), "{mode:?}: {r:?}");
            assert_eq!(r.answered, r.opened, "{mode:?}: {r:?}");
        }
        let t = server.registry.totals();
        assert!(t.closed_for(CloseReason::MaxAge) >= 4, "{mode:?}: {t:?}");
        assert_eq!(t.requests_unanswered, 0, "{mode:?}: {t:?}");
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fin_then_reset_on_a_stalled_http1_response_releases_the_descriptor() {
    for mode in MODES {
        let server = start(mode, listener(ConnectionLimits::default())).await;
        let reg = server.registry.clone();
        let baseline = open_fds();
        for round in 0..10u64 {
            let s = TcpStream::connect(server.addr).await.unwrap();
            let std = s.into_std().unwrap();
            std.set_nonblocking(false).unwrap();
            let sock = socket2::Socket::from(std);
            sock.set_recv_buffer_size(4096).unwrap();
            use std::io::Write;
            (&sock)
                .write_all(b"GET /big?kb=4096 HTTP/1.1\r\nHost: a\r\n\r\n")
                .unwrap();
            // The response stalls on our closed window; our FIN is held by the server until
            // the response ends, which it never will: then we reset.
            sock.shutdown(std::net::Shutdown::Write).unwrap();
            support::eventually("the server's response stalled", LONG, || {
                reg.snapshot()
                    .connections
                    .iter()
                    .any(|c| c.bytes_out > 64 * 1024)
            })
            .await;
            sock.set_linger(Some(Duration::ZERO)).unwrap();
            drop(sock);
            support::wait_totals(&reg, |t| t.closed == round + 1).await;
        }
        assert_eq!(reg.live(), 0, "{mode:?}");
        let t = reg.totals();
        assert_eq!(t.requests_unanswered, 10, "{mode:?}: {t:?}");
        support::eventually("descriptors released", LONG, || open_fds() <= baseline).await;
        server.stop().await;
    }
}
