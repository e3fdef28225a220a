//! sqlx (0.8, PostgreSQL, tokio): every checkout a lease with its call site.
//!
//! sqlx does not show a connection's socket: `PgConnection` keeps its stream private, and
//! `PgConnectOptions` takes no stream of the caller's. So a checkout of a [`TrackedPgPool`] is
//! tracked without its socket: leak reports and [`testing`](crate::testing) name its line, the
//! census attributes the sockets toward the server's address to the pool (`TIME_WAIT`,
//! `CLOSE_WAIT` counts, port use), but cannot tell which checkout holds a given `CLOSE_WAIT`
//! socket.

use std::{
    fmt,
    future::Future,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    ops::{Deref, DerefMut},
    panic::Location,
    sync::Arc,
};

use sqlx::{pool::PoolConnection, PgPool, Postgres};

use super::{
    stats::{stats_source, PoolStats, ReadStats, StatsExport, WaitCount},
    view::{PoolView, Seat},
};
use crate::lease::{Lease, LeaseTracker};

/// A sqlx [`PgPool`] whose every checkout is a tracked lease: [`acquire`](Self::acquire)
/// records the line that called it.
///
/// sqlx does not show a connection's socket (`PgConnection` keeps its stream private, and
/// `PgConnectOptions` takes no stream of the caller's), so checkouts are listed without it:
/// leak reports and [`testing`](crate::testing) name their lines, and the census attributes
/// the sockets toward the server's address to the pool (`TIME_WAIT`, `CLOSE_WAIT` counts, port
/// use), but cannot tell which checkout holds a given `CLOSE_WAIT` socket.
///
/// Cheap to clone. The pool's size, idle connections and `max_connections` are exported as
/// `conn_hygiene_pool_*{pool}` when metrics are collected, with the acquisitions waiting in
/// [`acquire`](Self::acquire) and those that timed out.
#[derive(Clone)]
pub struct TrackedPgPool {
    pool: PgPool,
    view: PoolView,
    waiting: WaitCount,
    stats: Arc<StatsExport<Sizes>>,
}

/// Reads sqlx's counts, and the acquisitions waiting through the adapter.
struct Sizes {
    pool: PgPool,
    waiting: WaitCount,
}

impl ReadStats for Sizes {
    fn read(&self) -> PoolStats {
        PoolStats {
            size: u64::from(self.pool.size()),
            idle: self.pool.num_idle() as u64,
            max_size: u64::from(self.pool.options().get_max_connections()),
            waiters: self.waiting.get(),
            timeouts: None,
        }
    }
}

impl TrackedPgPool {
    /// Tracks the checkouts of `pool` with `tracker`, whose name names the pool in leak
    /// reports, metrics and the census.
    ///
    /// The server's address is claimed as the pool's destination when its host is an IP
    /// address or `localhost`; for another host name, give its addresses with
    /// [`destination`](Self::destination).
    pub fn new(pool: PgPool, tracker: LeaseTracker) -> Self {
        let waiting = WaitCount::default();
        let stats = StatsExport::register(
            tracker.pool(),
            Sizes {
                pool: pool.clone(),
                waiting: waiting.clone(),
            },
        );
        let view = PoolView::with_stats(tracker, Some(stats_source(&stats)));
        let options = pool.connect_options();
        if options.get_socket().is_none() {
            let (host, port) = (options.get_host(), options.get_port());
            view.set_authority(format!("{host}:{port}"));
            for ip in literal_or_localhost(host) {
                view.add_destination(SocketAddr::new(ip, port));
            }
        }
        TrackedPgPool {
            pool,
            view,
            waiting,
            stats,
        }
    }

    /// Claims `addr` as a destination of the pool (the server's address when its host is a
    /// name other than `localhost`).
    pub fn destination(self, addr: SocketAddr) -> Self {
        self.view.add_destination(addr);
        self
    }

    /// Checks a connection out, as [`PgPool::acquire`] does, and takes a lease recorded at the
    /// caller's line; the lease ends when the [`PgCheckout`] is dropped, after the connection
    /// went back to the pool.
    #[track_caller]
    pub fn acquire(&self) -> impl Future<Output = Result<PgCheckout, sqlx::Error>> + 'static {
        let site = Location::caller();
        let acquire = self.pool.acquire();
        let waiting = self.waiting.enter();
        let (view, stats) = (self.view.clone(), self.stats.clone());
        async move {
            let result = acquire.await;
            drop(waiting);
            match result {
                Ok(conn) => Ok(PgCheckout {
                    inner: conn,
                    seat: view.seat(site, None),
                }),
                Err(e) => {
                    if matches!(e, sqlx::Error::PoolTimedOut) {
                        stats.timed_out();
                    }
                    Err(e)
                }
            }
        }
    }

    /// The pool's tracking: its lease tracker, destinations and checkouts; an attribution
    /// source for the census (feature `census`).
    pub fn view(&self) -> PoolView {
        self.view.clone()
    }

    /// The lease tracker.
    pub fn tracker(&self) -> &LeaseTracker {
        self.view.tracker()
    }

    /// The pool. Checkouts made on it directly (including queries run on `&PgPool`) are not
    /// tracked.
    pub fn get_ref(&self) -> &PgPool {
        &self.pool
    }

    /// The pool, no longer tracked (checkouts still out keep their leases until dropped).
    pub fn into_inner(self) -> PgPool {
        self.pool
    }
}

impl fmt::Debug for TrackedPgPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrackedPgPool")
            .field("view", &self.view)
            .field("stats", &self.stats.read())
            .finish()
    }
}

/// The addresses of `host` when it is an IP address or `localhost` (both loopbacks), without
/// asking a resolver.
fn literal_or_localhost(host: &str) -> Vec<IpAddr> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        vec![ip]
    } else if host.eq_ignore_ascii_case("localhost") {
        vec![Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()]
    } else {
        Vec::new()
    }
}

/// A connection checked out of a [`TrackedPgPool`]: sqlx's [`PoolConnection`] and its lease.
///
/// Derefs to the `PgConnection` (run queries on `&mut *checkout`). Dropping it gives the
/// connection back to the pool first, then ends the lease; [`into_inner`](Self::into_inner)
/// ends the lease and hands sqlx's guard over.
pub struct PgCheckout {
    // Field order is drop order: handed back to the pool before the lease ends.
    inner: PoolConnection<Postgres>,
    seat: Seat,
}

impl PgCheckout {
    /// The lease: its id, site and age.
    pub fn lease(&self) -> &Lease {
        self.seat.lease()
    }

    /// sqlx's guard.
    pub fn get_ref(&self) -> &PoolConnection<Postgres> {
        &self.inner
    }

    /// sqlx's guard, mutably.
    pub fn get_mut(&mut self) -> &mut PoolConnection<Postgres> {
        &mut self.inner
    }

    /// Ends the lease and returns sqlx's guard: giving it back is no longer tracked.
    pub fn into_inner(self) -> PoolConnection<Postgres> {
        self.inner
    }
}

impl Deref for PgCheckout {
    type Target = sqlx::PgConnection;

    fn deref(&self) -> &sqlx::PgConnection {
        &self.inner
    }
}

impl DerefMut for PgCheckout {
    fn deref_mut(&mut self) -> &mut sqlx::PgConnection {
        &mut self.inner
    }
}

impl fmt::Debug for PgCheckout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgCheckout")
            .field("lease", self.seat.lease())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_claimed_without_a_resolver() {
        assert_eq!(
            literal_or_localhost("127.0.0.1"),
            vec![IpAddr::from([127, 0, 0, 1])]
        );
        assert_eq!(
            literal_or_localhost("[::1]"),
            vec![IpAddr::from(Ipv6Addr::LOCALHOST)]
        );
        assert_eq!(literal_or_localhost("LocalHost").len(), 2);
        assert!(literal_or_localhost("db.internal").is_empty());
    }
}
