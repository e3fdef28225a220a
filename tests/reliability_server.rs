//! The hygienic server under hostile peers and faults, through `axum::serve` and through the
//! crate's own loop: slowloris, resets in the middle of a request body or of a response, a
//! half-close with a request in flight, graceful shutdown under load, and the registry's
//! hard bound.
//!
//! Every test takes [`SERIAL`]: one counts the process's descriptors and tasks, so no other
//! test of this binary may open sockets meanwhile.

mod support;

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use axum::{body::Body, routing::get, routing::post, Router};
use bytes::Bytes;
use conn_hygiene::server::{
    CloseReason, Closer, ConnectionLimits, ConnectionRegistry, HygienicListener,
    MakeTrackConnection, Server, ShutdownReport,
};
use futures_util::StreamExt;
use socket2::SockRef;
use support::{Mode, MODES};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::oneshot,
    task::JoinHandle,
};

const LONG: Duration = Duration::from_secs(10);

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

// ---------------------------------------------------------------------------------------------
// Slowloris.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_is_cut_at_the_header_timeout_while_others_are_served() {
    let _serial = SERIAL.lock().await;
    const SLOW: usize = 64;
    let header_timeout = Duration::from_secs(1);
    for mode in MODES {
        let limits = ConnectionLimits::builder()
            .header_timeout(Some(header_timeout))
            .build()
            .unwrap();
        let server = support::start(
            mode,
            HygienicListener::builder().name("slowloris").limits(limits),
        )
        .await;
        let addr = server.addr;
        // Each slow client sends one header byte every 250 ms and never finishes its header.
        let mut slow = Vec::new();
        for _ in 0..SLOW {
            slow.push(tokio::spawn(async move {
                let start = Instant::now();
                let mut s = TcpStream::connect(addr).await.unwrap();
                let header =
                    b"GET / HTTP/1.1\r\nHost: slowloris\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaa";
                let mut buf = [0u8; 256];
                for byte in header.iter().cycle().take(40) {
                    tokio::select! {
                        r = s.read(&mut buf) => {
                            // Cut: EOF or reset, whatever a 408 before it.
                            if matches!(r, Ok(0) | Err(_)) {
                                return Some(start.elapsed());
                            }
                        }
                        _ = tokio::time::sleep(Duration::from_millis(250)) => {
                            if s.write_all(std::slice::from_ref(byte)).await.is_err() {
                                return Some(start.elapsed());
                            }
                        }
                    }
                }
                None
            }));
        }
        // Normal clients keep being served meanwhile, each on a fresh connection.
        let mut served = 0;
        let mut worst = Duration::ZERO;
        let until = Instant::now() + Duration::from_millis(1500);
        while Instant::now() < until {
            let t = Instant::now();
            let mut c = TcpStream::connect(addr).await.unwrap();
            let res = tokio::time::timeout(Duration::from_secs(1), support::get(&mut c, "/"))
                .await
                .expect("a normal client is answered within 1 s during the attack")
                .unwrap();
            assert_eq!(res.status, 200);
            worst = worst.max(t.elapsed());
            served += 1;
            // A steady rate, not a flood: each closed connection leaves a TIME_WAIT socket on
            // the host's loopback, which other tests' port filters could catch.
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let mut cut_after = Vec::new();
        for t in slow {
            cut_after.push(t.await.unwrap().expect("slowloris client was cut"));
        }
        let max = cut_after.iter().max().copied().unwrap();
        let min = cut_after.iter().min().copied().unwrap();
        println!(
            "{mode:?}: {SLOW} slowloris clients cut after {min:?}..{max:?} (header timeout \
             {header_timeout:?}); {served} normal requests served meanwhile, slowest {worst:?}"
        );
        assert!(min >= header_timeout - Duration::from_millis(50), "{min:?}");
        assert!(
            max <= header_timeout + Duration::from_millis(750),
            "{max:?}"
        );
        let reg = server.registry.clone();
        support::eventually("every slow client counted", LONG, || {
            reg.totals().closed_for(CloseReason::HeaderTimeout) == SLOW as u64
        })
        .await;
        assert_eq!(reg.totals().closed_by(Closer::Timeout), SLOW as u64);
        server.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Resets and half-close: counted, nothing left behind.

#[derive(Default)]
struct Counts {
    started: AtomicUsize,
    finished: AtomicUsize,
    dropped: AtomicUsize,
}

struct DropGuard(Arc<Counts>, bool);

impl Drop for DropGuard {
    fn drop(&mut self) {
        if !self.1 {
            self.0.dropped.fetch_add(1, Ordering::SeqCst);
        }
    }
}

fn fault_app(counts: Arc<Counts>) -> Router {
    let upload = {
        let counts = counts.clone();
        move |body: Body| {
            let counts = counts.clone();
            async move {
                counts.started.fetch_add(1, Ordering::SeqCst);
                let mut guard = DropGuard(counts.clone(), false);
                let mut stream = body.into_data_stream();
                let mut n = 0;
                while let Some(chunk) = stream.next().await {
                    match chunk {
                        Ok(c) => n += c.len(),
                        Err(_) => break,
                    }
                }
                guard.1 = true;
                counts.finished.fetch_add(1, Ordering::SeqCst);
                format!("{n}\n")
            }
        }
    };
    let slow = {
        let counts = counts.clone();
        move || {
            let counts = counts.clone();
            async move {
                counts.started.fetch_add(1, Ordering::SeqCst);
                let mut guard = DropGuard(counts.clone(), false);
                tokio::time::sleep(Duration::from_millis(300)).await;
                guard.1 = true;
                counts.finished.fetch_add(1, Ordering::SeqCst);
                "slept\n"
            }
        }
    };
    Router::new()
        .route("/upload", post(upload))
        .route("/slow", get(slow))
        .route(
            "/big",
            get(|| async {
                // 1 MiB chunks, 64 of them: far more than the socket buffers hold.
                let chunks =
                    futures_util::stream::iter((0..64).map(|_| {
                        Ok::<_, std::convert::Infallible>(Bytes::from(vec![b'x'; 1 << 20]))
                    }));
                Body::from_stream(chunks)
            }),
        )
}

struct FaultServer {
    addr: std::net::SocketAddr,
    registry: ConnectionRegistry,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

async fn fault_server(mode: Mode, counts: Arc<Counts>) -> FaultServer {
    let listener = HygienicListener::builder()
        .name("faults")
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = listener.local_addr();
    let registry = listener.registry().clone();
    let (stop, rx) = oneshot::channel::<()>();
    let signal = async move {
        let _ = rx.await;
    };
    let app = fault_app(counts);
    let task = match mode {
        Mode::Axum => {
            let registry = registry.clone();
            tokio::spawn(async move {
                axum::serve(listener, MakeTrackConnection::new(app))
                    .with_graceful_shutdown(registry.graceful_shutdown(signal))
                    .await
                    .unwrap();
            })
        }
        Mode::Hyper => tokio::spawn(async move {
            Server::new()
                .serve_with_shutdown(listener, app, signal)
                .await;
        }),
    };
    FaultServer {
        addr,
        registry,
        stop,
        task,
    }
}

/// Closes with a reset: `SO_LINGER` 0, then drop.
fn reset(s: TcpStream) {
    SockRef::from(&s).set_linger(Some(Duration::ZERO)).unwrap();
    drop(s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resets_and_half_close_are_counted_and_leave_nothing_behind() {
    let _serial = SERIAL.lock().await;
    for mode in MODES {
        let counts = Arc::new(Counts::default());
        let server = fault_server(mode, counts.clone()).await;
        let reg = server.registry.clone();
        let fds = open_fds();

        // A reset in the middle of a request body.
        let mut c = TcpStream::connect(server.addr).await.unwrap();
        c.write_all(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n")
            .await
            .unwrap();
        c.write_all(&[b'y'; 64 * 1024]).await.unwrap();
        support::eventually("upload handler started", LONG, || {
            counts.started.load(Ordering::SeqCst) == 1
        })
        .await;
        // The baseline of tasks is taken now that the server runs (axum's graceful shutdown
        // spawns its signal task on the serve loop's first poll), minus this connection's task.
        let tasks = alive_tasks() - 1;
        reset(c);
        support::wait_totals(&reg, |t| t.closed == 1).await;
        assert_eq!(
            reg.totals().closed_for(CloseReason::PeerReset),
            1,
            "{mode:?}: {:?}",
            reg.totals()
        );

        // A reset in the middle of a response.
        let mut c = TcpStream::connect(server.addr).await.unwrap();
        c.write_all(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let mut got = 0;
        let mut buf = vec![0u8; 64 * 1024];
        while got < 256 * 1024 {
            let n = c.read(&mut buf).await.unwrap();
            assert!(n > 0, "response ended early");
            got += n;
        }
        reset(c);
        support::wait_totals(&reg, |t| t.closed == 2).await;
        assert_eq!(
            reg.totals().closed_for(CloseReason::PeerReset),
            2,
            "{mode:?}: {:?}",
            reg.totals()
        );
        assert_eq!(reg.totals().closed_by(Closer::Reset), 2, "{mode:?}");

        // A half-close with a request in flight: the response is still delivered (the
        // default `HalfClose::Finish`), then the connection closes.
        let mut c = TcpStream::connect(server.addr).await.unwrap();
        c.write_all(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        support::eventually("slow handler started", LONG, || {
            counts.started.load(Ordering::SeqCst) == 2
        })
        .await;
        c.shutdown().await.unwrap();
        let res = support::read_response(&mut c).await.unwrap();
        assert_eq!(res.status, 200);
        assert_eq!(support::read_until_closed(&mut c, LONG).await.unwrap(), 0);
        drop(c);
        support::wait_totals(&reg, |t| t.closed == 3).await;
        let t = reg.totals();
        assert_eq!(t.half_closed_in_flight, 1, "{mode:?}: {t:?}");
        assert_eq!(t.closed_by(Closer::Peer), 1, "{mode:?}: {t:?}");

        // Nothing left behind: handlers ended, connections, descriptors and tasks released.
        support::eventually("upload handler ended", LONG, || {
            counts.finished.load(Ordering::SeqCst) + counts.dropped.load(Ordering::SeqCst) == 2
        })
        .await;
        assert_eq!(reg.live(), 0);
        support::eventually("descriptors back", LONG, || open_fds() <= fds).await;
        support::eventually("tasks back", LONG, || alive_tasks() <= tasks).await;
        println!(
            "{mode:?}: resets and half-close: {:?}; fds {} (before {fds}), tasks {} (before {tasks})",
            reg.totals(),
            open_fds(),
            alive_tasks()
        );
        let _ = server.stop.send(());
        tokio::time::timeout(LONG, server.task)
            .await
            .unwrap()
            .unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// Graceful shutdown under load.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_under_load_loses_no_accepted_request() {
    let _serial = SERIAL.lock().await;
    const LOADERS: usize = 8;
    const STUCK: usize = 3;
    let deadline = Duration::from_millis(800);
    for mode in MODES {
        let limits = ConnectionLimits::builder()
            .shutdown_deadline(deadline)
            .build()
            .unwrap();
        let mut server = support::start(
            mode,
            HygienicListener::builder().name("drain").limits(limits),
        )
        .await;
        let state = server.state.clone();
        let registry = server.registry.clone();
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<http_body_util::Empty<Bytes>>();
        let ok = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let mut loaders = Vec::new();
        for w in 0..LOADERS {
            let client = client.clone();
            let url = server.url("");
            let ok = ok.clone();
            let failed = failed.clone();
            loaders.push(tokio::spawn(async move {
                for i in 0..400 {
                    let uri: http::Uri = format!("{url}/slow?ms={}", (w * 7 + i * 13) % 40)
                        .parse()
                        .unwrap();
                    let res = async {
                        let res = client.get(uri).await?;
                        let status = res.status();
                        let body = http_body_util::BodyExt::collect(res.into_body()).await?;
                        Ok::<_, Box<dyn std::error::Error + Send + Sync>>((status, body))
                    }
                    .await;
                    match res {
                        Ok((status, body)) => {
                            assert_eq!(status, 200);
                            assert!(body.to_bytes().starts_with(b"slept"));
                            ok.fetch_add(1, Ordering::SeqCst);
                        }
                        // Refused or closed before the server took the request: the server
                        // has stopped accepting. Stop this loader.
                        Err(_) => {
                            failed.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                    }
                }
            }));
        }
        // Requests that cannot finish before the deadline, each on its own connection.
        let mut stuck = Vec::new();
        for _ in 0..STUCK {
            let mut s = TcpStream::connect(server.addr).await.unwrap();
            s.write_all(b"GET /slow?ms=60000 HTTP/1.1\r\nHost: t\r\n\r\n")
                .await
                .unwrap();
            stuck.push(s);
        }
        let st = state.clone();
        support::eventually("load running", LONG, || {
            st.finished.load(Ordering::SeqCst) >= 100
        })
        .await;
        server.trigger_stop();
        let report: Option<ShutdownReport> = server.join().await;
        for l in loaders {
            l.await.unwrap();
        }
        for mut s in stuck {
            let _ = support::read_until_closed(&mut s, LONG).await;
        }
        let st = state.clone();
        support::eventually("every handler ended", LONG, || {
            st.started.load(Ordering::SeqCst)
                == st.finished.load(Ordering::SeqCst) + st.cancelled.load(Ordering::SeqCst)
        })
        .await;
        let started = state.started.load(Ordering::SeqCst);
        let finished = state.finished.load(Ordering::SeqCst);
        let cancelled = state.cancelled.load(Ordering::SeqCst);
        let ok = ok.load(Ordering::SeqCst);
        let t = registry.totals();
        let lost = started - ok - t.shutdown_cut as usize;
        println!(
            "{mode:?}: {started} requests accepted, {ok} answered, {} cut at the {deadline:?} \
             deadline, {} client requests not accepted (listener closed), lost: {lost}",
            t.shutdown_cut,
            failed.load(Ordering::SeqCst)
        );
        // Every accepted request was answered, except those cut at the deadline, counted.
        assert_eq!(
            ok, finished,
            "{mode:?}: a finished request's response was lost"
        );
        assert_eq!(cancelled, STUCK, "{mode:?}");
        assert_eq!(t.shutdown_cut, STUCK as u64, "{mode:?}: {t:?}");
        assert_eq!(t.closed_for(CloseReason::ShutdownDeadline), STUCK as u64);
        assert_eq!(lost, 0);
        assert_eq!(registry.live(), 0);
        if let Some(r) = report {
            assert_eq!(r.cut, STUCK, "{mode:?}: {r:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The registry's hard bound.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_tracking_bound_connections_are_served_counted_and_cut_at_shutdown() {
    let _serial = SERIAL.lock().await;
    const BOUND: usize = 4;
    const OPEN: usize = 10;
    for mode in MODES {
        let limits = ConnectionLimits::builder()
            .max_tracked(BOUND)
            .shutdown_deadline(Duration::from_millis(300))
            .build()
            .unwrap();
        let mut server = support::start(
            mode,
            HygienicListener::builder().name("bounded").limits(limits),
        )
        .await;
        let mut conns = Vec::new();
        for _ in 0..OPEN {
            let mut c = TcpStream::connect(server.addr).await.unwrap();
            assert_eq!(support::get(&mut c, "/").await.unwrap().status, 200);
            conns.push(c);
        }
        let reg = server.registry.clone();
        assert_eq!(reg.live(), OPEN);
        let snap = reg.snapshot();
        assert_eq!(snap.connections.len(), BOUND, "{mode:?}");
        assert_eq!(snap.totals.untracked, (OPEN - BOUND) as u64, "{mode:?}");
        // The last connection is untracked: a request stuck on it must still be cut at the
        // shutdown deadline, and the idle ones closed.
        let last = conns.last_mut().unwrap();
        last.write_all(b"GET /slow?ms=60000 HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let st = server.state.clone();
        support::eventually("stuck request started", LONG, || {
            st.started.load(Ordering::SeqCst) == 1
        })
        .await;
        server.trigger_stop();
        let report = tokio::time::timeout(Duration::from_secs(5), server.join())
            .await
            .expect("shutdown ends by its deadline, untracked connections included");
        let t = reg.totals();
        assert_eq!(t.shutdown_cut, 1, "{mode:?}: {t:?}");
        assert_eq!(t.closed, OPEN as u64, "{mode:?}: {t:?}");
        assert_eq!(reg.live(), 0);
        if let Some(r) = report {
            assert_eq!((r.open_at_start, r.cut), (OPEN, 1), "{mode:?}");
        }
    }
}
