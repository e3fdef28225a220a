//! Lease tracking for any connection pool: where each lease was taken, how long it has been
//! held, and which ones leaked.
//!
//! A *lease* is a connection (or any pooled resource) taken from a pool until it is given back.
//! A lease that is never given back is a leak: the pool shrinks by one, and when the peer
//! closes its end the socket sits in `CLOSE_WAIT` forever, since nobody will ever read the
//! end of stream or close it. [`LeaseTracker`] finds such leases the way HikariCP's
//! `leakDetectionThreshold` does, and names the line of code that took them.
//!
//! - [`LeaseTracker::lease`] takes a [`Lease`], a guard recording the caller's file, line and
//!   column ([`#[track_caller]`](https://doc.rust-lang.org/reference/attributes/codegen.html#the-track_caller-attribute))
//!   and the time; dropping it returns it. [`LeaseTracker::wrap`] does the same around a pool's
//!   own guard (bb8's `PooledConnection`, deadpool's `Object`, …) and gives both back on drop.
//! - A lease held longer than the leak threshold (default 30 s) is reported once: a `WARN`
//!   event with the pool, call site, age (and backtrace, when [captured](LeaseTrackerBuilder::backtraces)),
//!   `conn_hygiene_lease_leaks_total` += 1, and `leaked: true` in [snapshots](LeaseSnapshot).
//!   When it is finally returned, an `INFO` event says after how long, and
//!   `conn_hygiene_lease_leaks_returned_total` += 1.
//! - An HTTP client's lease waits for its response first: while it waits, the application's
//!   code holds nothing, so a slow response is never a leak. A wait longer than the threshold
//!   is reported once apart (an `INFO` event, `conn_hygiene_lease_slow_waits_total` += 1,
//!   [`LeaseTotals::slow_waits`]; `awaiting: true` in snapshots), and the leak threshold counts
//!   from the response head. A pool's checkout is held from the start.
//! - Detection runs in a background tokio task started by the first lease taken inside a
//!   runtime; it ticks every half threshold on tokio's clock (so paused time drives it in tests)
//!   and ends when the last clone of the tracker is dropped. Without a runtime, call
//!   [`LeaseTracker::check_leaks`] (a [`snapshot`](LeaseTracker::snapshot) calls it too).
//! - Taking and returning a lease costs one short lock each and no allocation; at most
//!   [`max_tracked`](LeaseTrackerBuilder::max_tracked) leases are listed, further ones are
//!   counted as untracked, so memory stays bounded.
//!
//! Metrics (names in [`crate::metrics::names`], labels `pool` and `kind`: `pool`, or
//! `upstream` for an HTTP client's upstream, so the two never share a series): `conn_hygiene_leases_outstanding`,
//! `conn_hygiene_leases_acquired_total`, `conn_hygiene_lease_duration_seconds`,
//! `conn_hygiene_lease_leaks_total`, `conn_hygiene_lease_leaks_returned_total`,
//! `conn_hygiene_lease_slow_waits_total`, `conn_hygiene_leases_untracked_total`. Their handles are resolved once, when the tracker is
//! built (before a recorder is installed, they are bound to it once it is).
//!
//! For tests, [`crate::testing`] asserts that no lease is left outstanding.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use conn_hygiene::lease::LeaseTracker;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let tracker = LeaseTracker::builder("db")
//!     .leak_threshold(Some(Duration::from_secs(5)))
//!     .build()
//!     .unwrap();
//!
//! // Any pool's guard; a Vec stands in for a connection here.
//! let mut conn = tracker.wrap(Vec::<u8>::new());
//! let line = line!() - 1;
//! conn.extend_from_slice(b"SELECT 1"); // Deref to the guard
//! assert_eq!(tracker.outstanding(), 1);
//!
//! // Held for 10 s (of paused time): the background task reports it once.
//! tokio::time::sleep(Duration::from_secs(10)).await;
//! let snapshot = tracker.snapshot();
//! let lease = &snapshot.leases[0];
//! assert!(lease.leaked);
//! assert_eq!((lease.site.file(), lease.site.line()), (file!(), line));
//! assert_eq!(lease.age, Duration::from_secs(10));
//! assert_eq!(snapshot.totals.leaks_detected, 1);
//!
//! drop(conn); // back to the pool, lease ended
//! assert_eq!(tracker.outstanding(), 0);
//! assert_eq!(tracker.totals().leaked_returned, 1);
//! # }
//! ```
//!
//! With a real pool the only change is the guard: `let conn = tracker.wrap(pool.get().await?);`
//! (see `examples/pool_leak.rs`, which leaks a bb8 connection on purpose and shows the report).

mod detector;
mod error;
mod guard;
mod metrics;
mod slab;
mod snapshot;
mod tracker;

pub use error::LeaseConfigError;
pub use guard::{Lease, Leased};
pub use snapshot::{LeaseInfo, LeaseSnapshot, LeaseTotals};
#[cfg(feature = "client")]
pub(crate) use tracker::RawLease;
pub use tracker::{LeaseTracker, LeaseTrackerBuilder, DEFAULT_LEAK_THRESHOLD, DEFAULT_MAX_TRACKED};
