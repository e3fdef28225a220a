//! Memory per tracked connection: 10k concurrent connections accepted through the hygienic
//! listener versus a bare tokio listener, counted by a global allocator in this test binary.
//! Everything is released after close.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicIsize, Ordering},
};

use conn_hygiene::server::HygienicListener;
use conn_hygiene_test_support::{helper_env, rerun_args};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator and only counts bytes.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` was allocated by `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const N: usize = 10_000;

/// How long the client holder may take to connect its `N` clients.
const CONNECT_LIMIT: std::time::Duration = std::time::Duration::from_secs(120);

#[allow(unsafe_code)]
fn raise_nofile() {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid rlimit struct for getrlimit/setrlimit.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl), 0);
        // One end of each connection lives in this process, the other in a child.
        let want = N as u64 + 1024;
        rl.rlim_cur = rl.rlim_cur.max(want).min(rl.rlim_max);
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &rl), 0);
        assert!(
            rl.rlim_cur >= want,
            "RLIMIT_NOFILE hard limit {} is below the {want} this test needs",
            rl.rlim_max
        );
    }
}

const CLIENT_ENV: &str = "CONN_HYGIENE_MEMORY_CLIENTS";

/// Runs only as the child of the test below: connects `N` clients to the address in the
/// environment, says so, and holds them until its stdin closes. Fails when run on its own.
#[test]
#[ignore = "the client process of tracking_costs_at_most_2_kib_per_connection_and_is_released"]
fn client_holder() {
    let addr = helper_env(
        "client_holder",
        CLIENT_ENV,
        "tracking_costs_at_most_2_kib_per_connection_and_is_released",
    );
    raise_nofile();
    let mut clients = Vec::with_capacity(N);
    for _ in 0..N {
        clients.push(std::net::TcpStream::connect(&addr).expect("connect"));
    }
    println!("connected {N}");
    let mut sink = String::new();
    let _ = std::io::stdin().read_line(&mut sink);
}

/// Starts a child that opens `N` connections to `addr`; they close when the child is killed.
fn connect_from_child(addr: std::net::SocketAddr) -> std::process::Child {
    std::process::Command::new(std::env::current_exe().unwrap())
        .args(rerun_args("client_holder"))
        .env(CLIENT_ENV, addr.to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn the client holder")
}

/// Runs `accepting`, a loop accepting the client holder's `N` connections, failing when they
/// do not all arrive within [`CONNECT_LIMIT`] (the holder failed: its stderr says why).
async fn accept_within_limit(accepting: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(CONNECT_LIMIT, accepting)
        .await
        .unwrap_or_else(|_| {
            panic!("the client holder did not connect {N} clients within {CONNECT_LIMIT:?}")
        });
}

/// Waits until the child says all its connections are up.
fn wait_connected(child: &mut std::process::Child) {
    use std::io::BufRead;
    let out = child.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(out).lines();
    assert!(
        lines.any(|l| l
            .map(|l| l.contains(&format!("connected {N}")))
            .unwrap_or(false)),
        "client holder failed"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn tracking_costs_at_most_2_kib_per_connection_and_is_released() {
    raise_nofile();
    let policy = conn_hygiene::policy::SocketPolicy::builder()
        .backlog(4096)
        .build()
        .unwrap();

    // Baseline: a bare tokio listener, twice: the first round warms tokio's registration slab
    // so that both measured rounds reuse it.
    let bare = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bare_addr = bare.local_addr().unwrap();
    let mut bare_per = 0;
    for _round in 0..2 {
        let mut streams = Vec::with_capacity(N);
        let before = LIVE.load(Ordering::Relaxed);
        let mut child = connect_from_child(bare_addr);
        accept_within_limit(async {
            for _ in 0..N {
                streams.push(bare.accept().await.unwrap().0);
            }
        })
        .await;
        wait_connected(&mut child);
        bare_per = (LIVE.load(Ordering::Relaxed) - before) / N as isize;
        drop(streams);
        let _ = child.kill();
        let _ = child.wait();
    }

    // Tracked.
    let mut listener = HygienicListener::builder()
        .policy(policy)
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let registry = listener.registry().clone();
    let addr = listener.local_addr();
    let mut streams = Vec::with_capacity(N);
    let baseline = LIVE.load(Ordering::Relaxed);
    let mut clients = connect_from_child(addr);
    accept_within_limit(async {
        for _ in 0..N {
            streams.push(listener.accept().await.0);
        }
    })
    .await;
    wait_connected(&mut clients);
    let tracked_per = (LIVE.load(Ordering::Relaxed) - baseline) / N as isize;
    assert_eq!(registry.live(), N);
    assert_eq!(registry.snapshot().connections.len(), N);
    let overhead = tracked_per - bare_per;
    println!(
        "bytes per accepted connection: bare tokio {bare_per}, tracked {tracked_per}, tracking overhead {overhead}"
    );
    assert!(overhead > 0, "the measurement must see the tracking state");
    assert!(
        overhead <= 2048,
        "tracking overhead {overhead} bytes per connection"
    );

    // Every one is released after close: what remains is the clients' own memory and the
    // registry map's capacity, not per-connection state.
    drop(streams);
    assert_eq!(registry.live(), 0);
    assert_eq!(registry.totals().closed, N as u64);
    assert!(registry.snapshot().connections.is_empty());
    let _ = clients.kill();
    let _ = clients.wait();
    let leftover = LIVE.load(Ordering::Relaxed) - baseline;
    println!("bytes still allocated after every connection closed: {leftover}");
    assert!(
        leftover < (N as isize) * 64,
        "{leftover} bytes left after close: per-connection state was not released"
    );
}
