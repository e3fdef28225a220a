//! Pools of Redis connections through the crate's `RedisManager`, against a real redis-server
//! that closes clients idle for one second (`--timeout 1`).
//!
//! A handler keeps its connection on its error path. The lease tracker reports each such
//! checkout with the handler's line; Redis closes the idle connections, and each leaked one
//! stays in `CLOSE_WAIT` in this process, which the census joins, by its local address, to the
//! checkout and so to the line. Given back, the pool finds them closed and replaces them.
//! With deadpool (and the pool's statistics read by a debugging recorder) and with bb8.
#![cfg(all(
    feature = "redis",
    feature = "deadpool",
    feature = "bb8",
    feature = "census"
))]

#[path = "support/redis.rs"]
mod redis_server;

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use conn_hygiene::{
    census::{CensusSnapshot, CloseWaitEntry, Owner, Sampler},
    lease::LeaseTracker,
    metrics::names,
    pools::{
        redis::{RedisConnection, RedisManager},
        Bb8Checkout, DeadpoolCheckout, TrackedBb8, TrackedDeadpool,
    },
    testing::assert_no_leases,
};
use conn_hygiene_test_support::{eventually, satisfies};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use redis::AsyncCommands;
use redis_server::RedisServer;

/// Connections the handlers leak.
const LEAKS: usize = 3;
const THRESHOLD: Duration = Duration::from_millis(300);
const SETTLE: Duration = Duration::from_secs(10);

static DEADPOOL_GET_LINE: AtomicU32 = AtomicU32::new(0);
static BB8_GET_LINE: AtomicU32 = AtomicU32::new(0);

/// The application's handler, with the classic bug: on its error path it keeps the
/// connection "to retry later", and nothing ever retries.
async fn deadpool_handler(
    pool: &TrackedDeadpool<RedisManager>,
    retry_later: &mut Vec<DeadpoolCheckout<RedisManager>>,
    key: &str,
) -> Result<String, String> {
    let mut conn = pool.get().await.map_err(|e| e.to_string())?;
    DEADPOOL_GET_LINE.store(line!() - 1, Ordering::Relaxed);
    let _: () = conn.set(key, "busy").await.map_err(|e| e.to_string())?;
    let state: String = conn.get(key).await.map_err(|e| e.to_string())?;
    if state == "busy" {
        retry_later.push(conn);
        return Err(format!("{key} busy, will retry later"));
    }
    Ok(state)
}

async fn bb8_handler<'p>(
    pool: &'p TrackedBb8<RedisManager>,
    retry_later: &mut Vec<Bb8Checkout<'p, RedisManager>>,
    key: &str,
) -> Result<String, String> {
    let mut conn = pool.get().await.map_err(|e| e.to_string())?;
    BB8_GET_LINE.store(line!() - 1, Ordering::Relaxed);
    let _: () = conn.set(key, "busy").await.map_err(|e| e.to_string())?;
    let state: String = conn.get(key).await.map_err(|e| e.to_string())?;
    if state == "busy" {
        retry_later.push(conn);
        return Err(format!("{key} busy, will retry later"));
    }
    Ok(state)
}

/// This process's `CLOSE_WAIT` sockets toward `redis`.
fn close_wait_toward(snap: &CensusSnapshot, redis: SocketAddr) -> Vec<CloseWaitEntry> {
    snap.close_wait
        .iter()
        .filter(|cw| cw.remote == redis)
        .cloned()
        .collect()
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadpool_leaks_are_reported_and_their_close_wait_traced_to_the_line() {
    let redis = RedisServer::start(1);
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let pool = metrics::with_local_recorder(&recorder, || {
        let manager = RedisManager::new(redis.url()).expect("redis url");
        let pool = deadpool::managed::Pool::builder(manager)
            .max_size(8)
            .runtime(deadpool::Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(5)))
            .build()
            .expect("deadpool");
        let tracker = LeaseTracker::builder("cache")
            .leak_threshold(Some(THRESHOLD))
            .build()
            .unwrap();
        TrackedDeadpool::new(pool, tracker).authority(redis.addr().to_string())
    });
    let census = Sampler::builder()
        .interval(Duration::from_millis(200))
        .source(pool.view())
        .spawn()
        .expect("sampler");

    // A request that succeeds gives its connection back; the failing ones keep theirs (the
    // first reuses the one given back): exactly LEAKS connections, all leaked.
    let mut retry_later = Vec::new();
    let _: () = {
        let mut conn = pool.get().await.expect("checkout");
        conn.set("fine", "done").await.expect("SET")
    };
    for i in 0..LEAKS {
        let err = deadpool_handler(&pool, &mut retry_later, &format!("job:{i}"))
            .await
            .unwrap_err();
        assert!(err.ends_with("busy, will retry later"), "{err}");
    }
    assert_eq!(pool.tracker().outstanding(), LEAKS);
    assert_eq!(pool.status().size, LEAKS);
    let site = format!("{}:{}:", file!(), DEADPOOL_GET_LINE.load(Ordering::Relaxed));

    // Each is reported once, naming the handler's line.
    eventually("the leaks reported", SETTLE, || {
        satisfies(pool.tracker().totals().leaks_detected, |&n| {
            n == LEAKS as u64
        })
    })
    .await;
    let snapshot = pool.tracker().snapshot();
    assert_eq!(snapshot.leases.len(), LEAKS);
    for lease in &snapshot.leases {
        assert!(lease.leaked, "{lease}");
        assert!(lease.site.to_string().starts_with(&site), "{lease}");
    }

    // The checkouts list their sockets: what the census joins on.
    let checkouts = pool.view().checkouts();
    assert_eq!(checkouts.len(), LEAKS);
    let mut locals: Vec<SocketAddr> = checkouts.iter().filter_map(|c| c.local).collect();
    locals.sort();
    assert_eq!(locals.len(), LEAKS);
    assert!(checkouts.iter().all(|c| c.peer == Some(redis.addr())));
    assert_eq!(pool.view().destinations(), vec![redis.addr()]);

    // Redis closes the idle connections after a second: each leaked one is left in
    // CLOSE_WAIT, every one joined to the handler's line.
    let close_wait = close_wait_until(&census, redis.addr(), "LEAKS in CLOSE_WAIT", |cw| {
        cw.len() == LEAKS
    })
    .await;
    let mut cw_locals: Vec<SocketAddr> = close_wait.iter().map(|cw| cw.local).collect();
    cw_locals.sort();
    assert_eq!(cw_locals, locals);
    for cw in &close_wait {
        assert_eq!(cw.owner, Owner::Upstream("cache".into()), "{cw:?}");
        let traced = cw.lease_site.expect("traced to the checkout's site");
        assert!(traced.to_string().starts_with(&site), "{cw:?}");
        assert!(cw.connection_id.is_some(), "{cw:?}");
    }
    let snap = census.sample_now().await;
    assert_eq!(
        snap.upstream("cache").expect("claimed").close_wait,
        LEAKS as u64
    );

    // The pool's own statistics, beside the lease metrics.
    let stats = pool_series(&snapshotter, "cache");
    let stat = |name: &str| stats.get(name).copied();
    assert_eq!(stat(names::POOL_CONNECTIONS), Some(LEAKS as f64));
    assert_eq!(stat(names::POOL_IDLE_CONNECTIONS), Some(0.0));
    assert_eq!(stat(names::POOL_MAX_CONNECTIONS), Some(8.0));
    assert_eq!(stat(names::POOL_WAITERS), Some(0.0));
    assert_eq!(stat(names::POOL_GET_TIMEOUTS_TOTAL), Some(0.0));
    // Beside the lease series of the same pool.
    assert_eq!(
        stat(names::LEASES_OUTSTANDING),
        None,
        "labelled pool and kind"
    );

    // The fix: give them back. The pool finds them closed when it recycles them, and opens a
    // fresh one.
    retry_later.clear();
    assert_no_leases(pool.tracker());
    assert_eq!(pool.tracker().totals().leaked_returned, LEAKS as u64);
    let value: String = {
        let mut conn = pool.get().await.expect("a fresh connection");
        let _: () = conn.set("after", "fixed").await.expect("SET");
        conn.get("after").await.expect("GET")
    };
    assert_eq!(value, "fixed");
    drop(pool);
    close_wait_until(&census, redis.addr(), "no CLOSE_WAIT left", <[_]>::is_empty).await;
}

/// Takes census samples until this process's `CLOSE_WAIT` sockets toward `redis` satisfy
/// `done`, for at most [`SETTLE`]; returns them, or fails with the last ones seen.
async fn close_wait_until(
    census: &Sampler,
    redis: SocketAddr,
    what: &str,
    done: impl Fn(&[CloseWaitEntry]) -> bool,
) -> Vec<CloseWaitEntry> {
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        let seen = close_wait_toward(&*census.sample_now().await, redis);
        if done(&seen) {
            return seen;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {SETTLE:?} waiting for {what}; last seen: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bb8_leaks_are_reported_and_their_close_wait_traced_to_the_line() {
    const N: usize = 2;
    let redis = RedisServer::start(1);
    let manager = RedisManager::new(redis.url()).expect("redis url");
    let pool = bb8::Pool::builder()
        .max_size(4)
        .connection_timeout(Duration::from_secs(5))
        .build(manager)
        .await
        .expect("bb8");
    let tracker = LeaseTracker::builder("sessions")
        .leak_threshold(Some(THRESHOLD))
        .build()
        .unwrap();
    let pool = TrackedBb8::new(pool, tracker).destination(redis.addr());
    let census = Sampler::builder()
        .interval(Duration::from_millis(200))
        .source(pool.view())
        .spawn()
        .expect("sampler");

    let mut retry_later = Vec::new();
    for i in 0..N {
        bb8_handler(&pool, &mut retry_later, &format!("session:{i}"))
            .await
            .unwrap_err();
    }
    let site = format!("{}:{}:", file!(), BB8_GET_LINE.load(Ordering::Relaxed));
    eventually("the leaks reported", SETTLE, || {
        satisfies(pool.tracker().totals().leaks_detected, |&n| n == N as u64)
    })
    .await;
    assert!(pool
        .tracker()
        .snapshot()
        .leases
        .iter()
        .all(|l| l.leaked && l.site.to_string().starts_with(&site)));

    // bb8 holds no idle connection here (every one it made is leaked): the CLOSE_WAIT
    // sockets toward Redis are exactly the leaked ones, traced to the line.
    assert_eq!(pool.state().idle_connections, 0);
    let close_wait =
        close_wait_until(&census, redis.addr(), "N in CLOSE_WAIT", |cw| cw.len() == N).await;
    for cw in &close_wait {
        assert_eq!(cw.owner, Owner::Upstream("sessions".into()), "{cw:?}");
        let traced = cw.lease_site.expect("traced");
        assert!(traced.to_string().starts_with(&site), "{cw:?}");
    }

    // A leaked connection, used again, finds the server gone: its next command fails and
    // the connection says it is closed (bb8 then drops it as broken).
    let mut conn = retry_later.pop().expect("a kept connection");
    let err = redis::cmd("PING")
        .query_async::<String>(&mut conn)
        .await
        .expect_err("the server closed it");
    assert!(err.is_connection_dropped() || err.is_io_error(), "{err:?}");
    assert!(RedisConnection::is_closed(&mut conn));
    drop(conn);
    retry_later.clear();
    assert_no_leases(pool.tracker());
    let pong: String = {
        let mut conn = pool.get().await.expect("a fresh connection");
        redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .expect("PING")
    };
    assert_eq!(pong, "PONG");
    // Both kept connections, given back, were found closed and dropped: the pool holds only
    // the fresh one.
    let state = pool.state();
    assert_eq!(state.connections, 1);
    assert_eq!(state.statistics.connections_created, N as u64 + 1);
}

#[tokio::test]
async fn the_manager_refuses_what_it_cannot_connect() {
    let unix = RedisManager::new("redis+unix:///run/redis.sock").unwrap_err();
    assert!(
        unix.to_string().contains("unix socket /run/redis.sock"),
        "{unix}"
    );
    let invalid = RedisManager::new("http://nowhere").unwrap_err();
    assert!(
        invalid
            .to_string()
            .starts_with("invalid redis connection info"),
        "{invalid}"
    );
    // Nothing listens on a port we just released: a typed, named error, no panic.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let manager = RedisManager::new(format!("redis://127.0.0.1:{port}/0")).unwrap();
    let err = manager.connect().await.unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("connecting to redis at 127.0.0.1:{port}")),
        "{err}"
    );
}
