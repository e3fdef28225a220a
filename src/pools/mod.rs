//! Pools of other libraries, tracked without wrapping each guard: every checkout a lease that
//! records the line that took it, its socket recorded where the pool lets us see it, and the
//! pool's own statistics exported beside ours.
//!
//! | feature | pool | adapter | checkout | socket recorded |
//! |---|---|---|---|---|
//! | `deadpool` | deadpool 0.12 `managed::Pool<M>` | [`TrackedDeadpool`] | [`DeadpoolCheckout`] | when `M::Type` shows it ([`ConnectionSocket`]) |
//! | `bb8` | bb8 0.9 `Pool<M>` | [`TrackedBb8`] | [`Bb8Checkout`] | when `M::Connection` shows it |
//! | `sqlx` | sqlx 0.8 `PgPool` | [`TrackedPgPool`] | [`PgCheckout`] | never: sqlx keeps it private (the destination is claimed) |
//! | `redis` | redis 0.32 over deadpool or bb8 | [`redis::RedisManager`] | [`redis::RedisConnection`] | always: the manager opens the socket itself |
//!
//! Each adapter's checkout (`get`, `get_owned`, `acquire`) is `#[track_caller]`: the lease it
//! takes names the application's line, not the adapter's. Dropping the checkout gives the
//! connection back to its pool, then ends the lease, exactly as
//! [`LeaseTracker::wrap`](crate::lease::LeaseTracker::wrap) does for any guard. So leak
//! reports, [`LeaseTracker::snapshot`](crate::lease::LeaseTracker::snapshot) and the
//! [`testing`](crate::testing) helpers work on the adapter's tracker unchanged.
//!
//! Each adapter's [`PoolView`] lists its checkouts with their sockets and is, with the feature
//! `census`, an attribution source: the census claims the sockets toward the pool's
//! destinations as the upstream named after the pool, and joins a `CLOSE_WAIT` socket of ours
//! to the checkout that holds its connection
//! ([`CloseWaitEntry::lease_site`](crate::census::CloseWaitEntry::lease_site)), as it does for
//! the crate's own client.
//!
//! The pool's own statistics are read when metrics are collected (each render of the crate's
//! exporter, each census sampler tick, [`crate::metrics::collect`]) and exported labelled with
//! the pool's name only: `conn_hygiene_pool_connections`, `conn_hygiene_pool_idle_connections`,
//! `conn_hygiene_pool_max_connections`, `conn_hygiene_pool_waiters` and
//! `conn_hygiene_pool_get_timeouts_total` (see [`crate::metrics::names`]). Pools of one name
//! make one series: their gauges and their timed-out checkouts add up, and a dropped pool's
//! count of those stays in the counter.
//!
//! # Example
//!
//! A bb8 pool of TCP connections; the checkout at one line is kept, and reported.
//!
//! ```
//! # #[cfg(feature = "bb8")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::{io, time::Duration};
//! use conn_hygiene::{lease::LeaseTracker, pools::TrackedBb8};
//! use tokio::net::{TcpListener, TcpStream};
//!
//! struct Tcp(std::net::SocketAddr);
//!
//! impl bb8::ManageConnection for Tcp {
//!     type Connection = TcpStream;
//!     type Error = io::Error;
//!     async fn connect(&self) -> io::Result<TcpStream> {
//!         TcpStream::connect(self.0).await
//!     }
//!     async fn is_valid(&self, _: &mut TcpStream) -> io::Result<()> {
//!         Ok(())
//!     }
//!     fn has_broken(&self, _: &mut TcpStream) -> bool {
//!         false
//!     }
//! }
//!
//! let server = TcpListener::bind("127.0.0.1:0").await?;
//! let addr = server.local_addr()?;
//! let pool = bb8::Pool::builder().max_size(2).build(Tcp(addr)).await?;
//! let tracker = LeaseTracker::builder("upstream")
//!     .leak_threshold(Some(Duration::from_millis(50)))
//!     .build()?;
//! let pool = TrackedBb8::new(pool, tracker);
//!
//! let kept = pool.get().await?;
//! let line = line!() - 1;
//! let (local, peer) = (kept.local_addr()?, kept.peer_addr()?);
//!
//! let checkouts = pool.view().checkouts();
//! assert_eq!(checkouts.len(), 1);
//! assert_eq!((checkouts[0].site.file(), checkouts[0].site.line()), (file!(), line));
//! assert_eq!((checkouts[0].local, checkouts[0].peer), (Some(local), Some(peer)));
//!
//! // Held past the threshold: reported once, naming the line.
//! let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
//! while pool.tracker().totals().leaks_detected == 0 {
//!     assert!(tokio::time::Instant::now() < deadline, "no leak reported");
//!     tokio::time::sleep(Duration::from_millis(10)).await;
//! }
//! drop(kept);
//! assert_eq!(pool.tracker().outstanding(), 0);
//! assert!(pool.view().checkouts().is_empty());
//! # Ok(()) }
//! # #[cfg(not(feature = "bb8"))]
//! # fn main() {}
//! ```

#[cfg(feature = "bb8")]
mod bb8;
#[cfg(feature = "deadpool")]
mod deadpool;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(feature = "sqlx")]
mod sqlx;
#[cfg(any(feature = "deadpool", feature = "bb8", feature = "sqlx"))]
mod stats;
// With the feature `redis` alone, no adapter records checkouts.
#[cfg_attr(
    not(any(feature = "deadpool", feature = "bb8", feature = "sqlx")),
    allow(dead_code)
)]
mod view;

#[cfg(feature = "bb8")]
pub use self::bb8::{Bb8Checkout, TrackedBb8};
#[cfg(feature = "deadpool")]
pub use self::deadpool::{DeadpoolCheckout, TrackedDeadpool};
#[cfg(feature = "sqlx")]
pub use self::sqlx::{PgCheckout, TrackedPgPool};
pub use self::view::{CheckoutInfo, ConnectionSocket, PoolStats, PoolView, MAX_DESTINATIONS};
