//! The sqlx adapter against a real PostgreSQL server started by the test (`initdb`, `pg_ctl`):
//! a connection leaked by a handler is reported with its line; the `testing` helpers fail
//! while it is out and pass once it is given back; the pool's statistics are exported; the
//! census claims the server's address for the pool (sqlx does not show the socket, so the
//! checkout is listed without it).
#![cfg(all(feature = "sqlx", feature = "census"))]

#[path = "support/postgres.rs"]
mod postgres;

use std::{
    collections::HashMap,
    panic::{catch_unwind, AssertUnwindSafe},
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use conn_hygiene::{
    census::{AttributionSource, Claim},
    lease::LeaseTracker,
    metrics::names,
    pools::{PgCheckout, TrackedPgPool},
    testing::{assert_no_leases, LeakCheck},
};
use conn_hygiene_test_support::{eventually, satisfies};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use postgres::Postgres;
use sqlx::{postgres::PgPoolOptions, Row};

static ACQUIRED_AT: AtomicU32 = AtomicU32::new(0);

/// The handler, with the bug: on an unexpected answer it keeps the connection.
async fn count_orders(
    pool: &TrackedPgPool,
    kept: &mut Vec<PgCheckout>,
) -> Result<i64, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    ACQUIRED_AT.store(line!() - 1, Ordering::Relaxed);
    let n: i64 = sqlx::query("SELECT count(*) FROM generate_series(1, 3)")
        .fetch_one(&mut *conn)
        .await?
        .get(0);
    if n != 0 {
        kept.push(conn); // "to look at it later"
    }
    Ok(n)
}

/// Collects metrics, then reads the `orders-db` series once (reading a debugging recorder's
/// snapshot resets what it read).
fn pool_series(snapshotter: &Snapshotter) -> HashMap<String, f64> {
    conn_hygiene::metrics::collect();
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| key.key().labels().any(|l| l.value() == "orders-db"))
        .filter_map(|(key, _, _, value)| {
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
async fn a_leaked_sqlx_connection_is_reported_with_its_line() {
    let pg = Postgres::start();
    let pool = PgPoolOptions::new()
        .max_connections(3)
        .acquire_timeout(Duration::from_millis(500))
        .connect(&pg.url())
        .await
        .unwrap_or_else(|e| panic!("connect to {}: {e}\n{}", pg.url(), pg.log()));
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let pool = metrics::with_local_recorder(&recorder, || {
        let tracker = LeaseTracker::builder("orders-db")
            .leak_threshold(Some(Duration::from_millis(200)))
            .build()
            .unwrap();
        TrackedPgPool::new(pool, tracker)
    });

    // The census claims the server's address for the pool.
    let view = pool.view();
    assert_eq!(
        view.claims(),
        vec![Claim::upstream(
            "orders-db",
            pg.addr().to_string(),
            [pg.addr()]
        )]
    );

    let mut kept = Vec::new();
    assert_eq!(count_orders(&pool, &mut kept).await.unwrap(), 3);
    let site = format!("{}:{}:", file!(), ACQUIRED_AT.load(Ordering::Relaxed));
    eventually("the leak reported", Duration::from_secs(10), || {
        satisfies(pool.tracker().totals().leaks_detected, |&n| n == 1)
    })
    .await;
    let leak = &pool.tracker().snapshot().leases[0];
    assert!(
        leak.leaked && leak.site.to_string().starts_with(&site),
        "{leak}"
    );
    let listed = view.checkouts();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].local, listed[0].peer),
        (None, None),
        "sqlx hides it"
    );

    // The pool's statistics: one connection, checked out.
    let stats = pool_series(&snapshotter);
    assert_eq!(stats.get(names::POOL_CONNECTIONS), Some(&1.0), "{stats:?}");
    assert_eq!(stats.get(names::POOL_IDLE_CONNECTIONS), Some(&0.0));
    assert_eq!(stats.get(names::POOL_MAX_CONNECTIONS), Some(&3.0));

    // The testing helpers fail a test that leaks, naming the line...
    let failed = catch_unwind(AssertUnwindSafe(|| assert_no_leases(pool.tracker())));
    let message = *failed.unwrap_err().downcast::<String>().unwrap();
    assert!(
        message.starts_with("1 lease outstanding in pool `orders-db`:"),
        "{message}"
    );
    assert!(
        message.contains(&format!("lease #1 taken at {site}")),
        "{message}"
    );
    let failed = catch_unwind(AssertUnwindSafe(|| drop(LeakCheck::new(pool.tracker()))));
    assert!(failed.is_err(), "LeakCheck fails while the lease is out");

    // ...and pass once it is given back.
    kept.clear();
    assert_no_leases(pool.tracker());
    {
        let _check = LeakCheck::new(pool.tracker());
        let mut conn = pool.acquire().await.unwrap();
        let one: i32 = sqlx::query("SELECT 1")
            .fetch_one(&mut *conn)
            .await
            .unwrap()
            .get(0);
        assert_eq!(one, 1);
    }
    assert_eq!(pool.tracker().totals().leaked_returned, 1);

    // All three held: the fourth acquisition times out, counted by the adapter.
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(pool.acquire().await.unwrap());
    }
    let err = pool.acquire().await.unwrap_err();
    assert!(matches!(err, sqlx::Error::PoolTimedOut), "{err:?}");
    let stats = pool_series(&snapshotter);
    assert_eq!(stats.get(names::POOL_GET_TIMEOUTS_TOTAL), Some(&1.0));
    assert_eq!(stats.get(names::POOL_WAITERS), Some(&0.0));
    assert_eq!(stats.get(names::POOL_CONNECTIONS), Some(&3.0));
    drop(held);
    assert_no_leases(pool.tracker());
    pool.get_ref().close().await;
}
