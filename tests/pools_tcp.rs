//! The deadpool and bb8 adapters over raw TCP connections to a loopback server: each checkout
//! a lease at its line with its socket listed; `into_inner` ends the lease; a checkout that
//! times out is counted; the pools' own statistics exported; and a connection held when the
//! server closes is the `CLOSE_WAIT` socket the census traces to its line.
#![cfg(all(feature = "deadpool", feature = "bb8", feature = "census"))]

use std::{
    collections::HashMap,
    io,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use conn_hygiene::{
    census::{Owner, Sampler},
    lease::LeaseTracker,
    metrics::names,
    pools::{TrackedBb8, TrackedDeadpool},
    testing::assert_no_leases,
};
use conn_hygiene_test_support::{eventually, satisfies};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tokio::net::{TcpListener, TcpStream};

const SETTLE: Duration = Duration::from_secs(10);

/// Accepts connections and holds them open until [`close_all`](Self::close_all).
struct HoldingServer {
    addr: SocketAddr,
    held: Arc<Mutex<Vec<TcpStream>>>,
}

impl HoldingServer {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let held = Arc::new(Mutex::new(Vec::new()));
        let keep = held.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                keep.lock().unwrap().push(stream);
            }
        });
        HoldingServer { addr, held }
    }

    fn close_all(&self) {
        self.held.lock().unwrap().clear();
    }
}

struct Tcp(SocketAddr);

impl deadpool::managed::Manager for Tcp {
    type Type = TcpStream;
    type Error = io::Error;

    async fn create(&self) -> io::Result<TcpStream> {
        TcpStream::connect(self.0).await
    }

    async fn recycle(
        &self,
        _: &mut TcpStream,
        _: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<io::Error> {
        Ok(())
    }
}

impl bb8::ManageConnection for Tcp {
    type Connection = TcpStream;
    type Error = io::Error;

    async fn connect(&self) -> io::Result<TcpStream> {
        TcpStream::connect(self.0).await
    }

    async fn is_valid(&self, _: &mut TcpStream) -> io::Result<()> {
        Ok(())
    }

    fn has_broken(&self, _: &mut TcpStream) -> bool {
        false
    }
}

/// Collects metrics, then reads the series labelled `pool` once (reading a debugging
/// recorder's snapshot resets what it read).
fn pool_series(snapshotter: &Snapshotter, pool: &str) -> HashMap<String, f64> {
    conn_hygiene::metrics::collect();
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, _, _, value)| {
            let labels: Vec<_> = key.key().labels().collect();
            if labels.len() != 1 || labels[0].key() != "pool" || labels[0].value() != pool {
                return None;
            }
            let v = match value {
                DebugValue::Gauge(v) => v.into_inner(),
                DebugValue::Counter(v) => v as f64,
                DebugValue::Histogram(_) => return None,
            };
            Some((key.key().name().to_owned(), v))
        })
        .collect()
}

static HELD_AT: AtomicU32 = AtomicU32::new(0);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadpool_checkouts_are_leases_with_their_sockets() {
    let server = HoldingServer::start().await;
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let pool = metrics::with_local_recorder(&recorder, || {
        let pool = deadpool::managed::Pool::builder(Tcp(server.addr))
            .max_size(2)
            .runtime(deadpool::Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_millis(200)))
            .build()
            .unwrap();
        TrackedDeadpool::new(pool, LeaseTracker::new("tcp-deadpool"))
    });

    let a = pool.get().await.unwrap();
    let a_line = line!() - 1;
    let b = pool.get().await.unwrap();
    let listed = pool.view().checkouts();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].lease_id, a.lease().id());
    assert_eq!(listed[0].site.line(), a_line);
    assert_eq!(listed[0].site.file(), file!());
    assert_eq!(listed[0].local, Some(a.local_addr().unwrap()));
    assert_eq!(listed[1].local, Some(b.local_addr().unwrap()));
    assert_eq!(listed[1].peer, Some(server.addr));
    assert_eq!(pool.view().destinations(), vec![server.addr]);

    // A third checkout waits (deadpool counts it), then times out (the adapter counts it).
    let waiter = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.get().await.map(drop) })
    };
    eventually("one checkout waiting", SETTLE, || {
        pool.status().waiting == 1
    })
    .await;
    let stats = pool_series(&snapshotter, "tcp-deadpool");
    assert_eq!(stats.get(names::POOL_WAITERS), Some(&1.0), "{stats:?}");
    let err = waiter.await.unwrap().unwrap_err();
    assert!(
        matches!(err, deadpool::managed::PoolError::Timeout(_)),
        "{err:?}"
    );
    let stats = pool_series(&snapshotter, "tcp-deadpool");
    let s = |name: &str| stats.get(name).copied();
    assert_eq!(s(names::POOL_GET_TIMEOUTS_TOTAL), Some(1.0));
    assert_eq!(s(names::POOL_WAITERS), Some(0.0));
    assert_eq!(s(names::POOL_CONNECTIONS), Some(2.0));
    assert_eq!(s(names::POOL_IDLE_CONNECTIONS), Some(0.0));
    assert_eq!(s(names::POOL_MAX_CONNECTIONS), Some(2.0));

    // `into_inner` ends the lease and hands deadpool's object over.
    let object = a.into_inner();
    assert_eq!(pool.tracker().outstanding(), 1);
    assert_eq!(pool.view().checkouts().len(), 1);
    drop(object);
    drop(b);
    assert_no_leases(pool.tracker());
    assert!(pool.view().checkouts().is_empty());
    let stats = pool_series(&snapshotter, "tcp-deadpool");
    assert_eq!(stats.get(names::POOL_IDLE_CONNECTIONS), Some(&2.0));

    // One connection held while the server closes every connection: the census finds the
    // two in CLOSE_WAIT (one idle in the pool, one held) and traces the held one to its line.
    let census = Sampler::builder()
        .interval(Duration::from_millis(200))
        .source(pool.view())
        .spawn()
        .unwrap();
    let held = pool.get().await.unwrap();
    HELD_AT.store(line!() - 1, Ordering::Relaxed);
    server.close_all();
    let close_wait = loop_census(&census, server.addr, 2).await;
    let traced: Vec<_> = close_wait
        .iter()
        .filter(|cw| cw.lease_site.is_some())
        .collect();
    assert_eq!(traced.len(), 1, "{close_wait:?}");
    assert_eq!(traced[0].local, held.local_addr().unwrap());
    assert_eq!(traced[0].owner, Owner::Upstream("tcp-deadpool".into()));
    let site = traced[0].lease_site.unwrap();
    assert_eq!(
        (site.file(), site.line()),
        (file!(), HELD_AT.load(Ordering::Relaxed))
    );
    drop(held);
}

/// Samples until `n` of this process's sockets toward `addr` are in CLOSE_WAIT.
async fn loop_census(
    census: &Sampler,
    addr: SocketAddr,
    n: usize,
) -> Vec<conn_hygiene::census::CloseWaitEntry> {
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        let snap = census.sample_now().await;
        let seen: Vec<_> = snap
            .close_wait
            .iter()
            .filter(|cw| cw.remote == addr)
            .cloned()
            .collect();
        if seen.len() == n {
            return seen;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {SETTLE:?} waiting for {n} CLOSE_WAIT toward {addr}: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bb8_checkouts_are_leases_with_their_sockets() {
    let server = HoldingServer::start().await;
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let pool = bb8::Pool::builder()
        .max_size(2)
        .connection_timeout(Duration::from_millis(200))
        .build(Tcp(server.addr))
        .await
        .unwrap();
    let tracker = LeaseTracker::builder("tcp-bb8")
        .leak_threshold(Some(Duration::from_millis(100)))
        .build()
        .unwrap();
    let pool = metrics::with_local_recorder(&recorder, || TrackedBb8::new(pool, tracker));

    let a = pool.get().await.unwrap();
    let b = pool.get_owned().await.unwrap();
    let b_line = line!() - 1;
    let listed = pool.view().checkouts();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[1].site.line(), b_line);
    assert_eq!(listed[0].local, Some(a.local_addr().unwrap()));
    assert_eq!(listed[1].local, Some(b.local_addr().unwrap()));

    // bb8 counts the checkout that timed out itself.
    let err = pool.get().await.unwrap_err();
    assert!(matches!(err, bb8::RunError::TimedOut), "{err:?}");
    let stats = pool_series(&snapshotter, "tcp-bb8");
    let s = |name: &str| stats.get(name).copied();
    assert_eq!(s(names::POOL_GET_TIMEOUTS_TOTAL), Some(1.0));
    assert_eq!(s(names::POOL_CONNECTIONS), Some(2.0));
    assert_eq!(s(names::POOL_IDLE_CONNECTIONS), Some(0.0));
    assert_eq!(s(names::POOL_MAX_CONNECTIONS), Some(2.0));
    assert_eq!(s(names::POOL_WAITERS), Some(0.0));

    // Held past the threshold: both reported, the owned one at its line.
    eventually("two leaks reported", SETTLE, || {
        satisfies(pool.tracker().totals().leaks_detected, |&n| n == 2)
    })
    .await;
    let snapshot = pool.tracker().snapshot();
    assert!(snapshot.leases.iter().any(|l| l.site.line() == b_line));
    drop((a, b));
    assert_no_leases(pool.tracker());
    assert_eq!(pool.tracker().totals().leaked_returned, 2);
    let stats = pool_series(&snapshotter, "tcp-bb8");
    assert_eq!(stats.get(names::POOL_IDLE_CONNECTIONS), Some(&2.0));
}

/// A bb8 pool whose one connection is held, and a checkout of it that timed out (bb8 counts
/// it).
async fn bb8_with_one_timeout(
    server: &HoldingServer,
    recorder: &DebuggingRecorder,
    name: &str,
) -> (
    TrackedBb8<Tcp>,
    conn_hygiene::pools::Bb8Checkout<'static, Tcp>,
) {
    let pool = bb8::Pool::builder()
        .max_size(1)
        .connection_timeout(Duration::from_millis(100))
        .build(Tcp(server.addr))
        .await
        .unwrap();
    let pool = metrics::with_local_recorder(recorder, || {
        TrackedBb8::new(pool, LeaseTracker::new(name.to_owned()))
    });
    let held = pool.get_owned().await.unwrap();
    let err = pool.get().await.unwrap_err();
    assert!(matches!(err, bb8::RunError::TimedOut), "{err:?}");
    (pool, held)
}

/// Two bb8 pools of one name make one counter of timed-out checkouts, their sum; a pool
/// dropped keeps what it counted, whether collected before or not: the series never goes
/// back (a Prometheus `rate` would read a counter reset).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_of_pools_of_one_name_add_up_and_stay() {
    let server = HoldingServer::start().await;
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let name = "tcp-bb8-twins";
    let (first, first_held) = bb8_with_one_timeout(&server, &recorder, name).await;
    let (second, second_held) = bb8_with_one_timeout(&server, &recorder, name).await;
    // The debugging recorder hands over a counter's growth since the last look.
    let grown = || {
        pool_series(&snapshotter, name)
            .get(names::POOL_GET_TIMEOUTS_TOTAL)
            .copied()
            .unwrap_or(0.0)
    };
    assert_eq!(grown(), 2.0, "one timeout in each pool");
    assert_eq!(grown(), 0.0, "nothing new");

    // The first pool goes, collected already: nothing is taken back.
    drop(first_held);
    drop(first);
    assert_eq!(grown(), 0.0);

    // A timeout of the second pool, then one of a third, dropped before any collection.
    assert!(matches!(
        second.get().await.unwrap_err(),
        bb8::RunError::TimedOut
    ));
    let (third, third_held) = bb8_with_one_timeout(&server, &recorder, name).await;
    drop(third_held);
    drop(third);
    assert_eq!(grown(), 2.0, "the second pool's, and the dropped third's");
    drop(second_held);
}
