//! bb8 (0.9): every checkout a lease with its call site.

use std::{
    fmt,
    future::Future,
    net::SocketAddr,
    ops::{Deref, DerefMut},
    panic::Location,
    sync::Arc,
};

use bb8::{ManageConnection, Pool, PooledConnection, RunError};

use super::{
    stats::{stats_source, PoolStats, ReadStats, StatsExport},
    view::{ConnectionSocket, PoolView, Seat},
};
use crate::lease::{Lease, LeaseTracker};

/// A bb8 [`Pool`] whose every checkout is a tracked lease: [`get`](Self::get) and
/// [`get_owned`](Self::get_owned) record the line that called them, and the checkout's socket
/// when its connection shows it ([`ConnectionSocket`]). See the [module docs](super).
///
/// Cheap to clone. bb8's own state and statistics (connections, idle connections, pending
/// gets, gets timed out, `max_size`) are exported as `conn_hygiene_pool_*{pool}` when metrics
/// are collected.
pub struct TrackedBb8<M: ManageConnection> {
    pool: Pool<M>,
    view: PoolView,
    stats: Arc<StatsExport<State<M>>>,
}

/// Reads bb8's state, statistics and configuration.
struct State<M: ManageConnection>(Pool<M>);

impl<M: ManageConnection> ReadStats for State<M> {
    fn read(&self) -> PoolStats {
        let s = self.0.state();
        PoolStats {
            size: u64::from(s.connections),
            idle: u64::from(s.idle_connections),
            max_size: u64::from(self.0.config().max_size),
            // `get_started` is counted before a get waits, the others once it is done.
            waiters: s
                .statistics
                .get_started
                .saturating_sub(s.statistics.completed_gets()),
            timeouts: Some(s.statistics.get_timed_out),
        }
    }
}

impl<M: ManageConnection> TrackedBb8<M> {
    /// Tracks the checkouts of `pool` with `tracker`, whose name names the pool in leak
    /// reports, metrics and the census.
    pub fn new(pool: Pool<M>, tracker: LeaseTracker) -> Self {
        let stats = StatsExport::register(tracker.pool(), State(pool.clone()));
        TrackedBb8 {
            pool,
            view: PoolView::with_stats(tracker, Some(stats_source(&stats))),
            stats,
        }
    }

    /// Claims `addr` as a destination of the pool before any checkout shows it. Destinations
    /// of checked-out connections are added as they are seen.
    pub fn destination(self, addr: SocketAddr) -> Self {
        self.view.add_destination(addr);
        self
    }

    /// `host:port` as the pool reaches its service, shown as the upstream's authority in the
    /// census. Default: the first destination.
    pub fn authority(self, authority: impl Into<String>) -> Self {
        self.view.set_authority(authority.into());
        self
    }

    /// Checks a connection out, as [`Pool::get`] does, and takes a lease recorded at the
    /// caller's line; the lease ends when the [`Bb8Checkout`] is dropped, after the connection
    /// went back to the pool.
    #[track_caller]
    pub fn get(&self) -> impl Future<Output = Result<Bb8Checkout<'_, M>, RunError<M::Error>>> + '_
    where
        M::Connection: ConnectionSocket,
    {
        let site = Location::caller();
        async move {
            let conn = self.pool.get().await?;
            let seat = self.view.seat(site, conn.socket_addrs());
            Ok(Bb8Checkout { inner: conn, seat })
        }
    }

    /// [`get`](Self::get) for a checkout that does not borrow the pool, as
    /// [`Pool::get_owned`] does.
    #[track_caller]
    pub fn get_owned(
        &self,
    ) -> impl Future<Output = Result<Bb8Checkout<'static, M>, RunError<M::Error>>> + '_
    where
        M::Connection: ConnectionSocket,
    {
        let site = Location::caller();
        async move {
            let conn = self.pool.get_owned().await?;
            let seat = self.view.seat(site, conn.socket_addrs());
            Ok(Bb8Checkout { inner: conn, seat })
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

    /// bb8's state of the pool, with its statistics.
    pub fn state(&self) -> bb8::State {
        self.pool.state()
    }

    /// The pool. Checkouts made on it directly are not tracked.
    pub fn get_ref(&self) -> &Pool<M> {
        &self.pool
    }

    /// The pool, no longer tracked (checkouts still out keep their leases until dropped).
    pub fn into_inner(self) -> Pool<M> {
        self.pool
    }
}

impl<M: ManageConnection> Clone for TrackedBb8<M> {
    fn clone(&self) -> Self {
        TrackedBb8 {
            pool: self.pool.clone(),
            view: self.view.clone(),
            stats: self.stats.clone(),
        }
    }
}

impl<M: ManageConnection> fmt::Debug for TrackedBb8<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrackedBb8")
            .field("view", &self.view)
            .field("state", &self.stats.read())
            .finish()
    }
}

/// A connection checked out of a [`TrackedBb8`]: bb8's [`PooledConnection`] and its lease.
///
/// Derefs to the connection. Dropping it gives the connection back to the pool first, then
/// ends the lease; [`into_inner`](Self::into_inner) ends the lease and hands bb8's guard over.
pub struct Bb8Checkout<'a, M: ManageConnection> {
    // Field order is drop order: back in the pool before the lease ends.
    inner: PooledConnection<'a, M>,
    seat: Seat,
}

impl<'a, M: ManageConnection> Bb8Checkout<'a, M> {
    /// The lease: its id, site and age.
    pub fn lease(&self) -> &Lease {
        self.seat.lease()
    }

    /// bb8's guard.
    pub fn get_ref(&self) -> &PooledConnection<'a, M> {
        &self.inner
    }

    /// bb8's guard, mutably.
    pub fn get_mut(&mut self) -> &mut PooledConnection<'a, M> {
        &mut self.inner
    }

    /// Ends the lease and returns bb8's guard: giving it back is no longer tracked.
    pub fn into_inner(self) -> PooledConnection<'a, M> {
        self.inner
    }
}

impl<M: ManageConnection> Deref for Bb8Checkout<'_, M> {
    type Target = M::Connection;

    fn deref(&self) -> &M::Connection {
        &self.inner
    }
}

impl<M: ManageConnection> DerefMut for Bb8Checkout<'_, M> {
    fn deref_mut(&mut self) -> &mut M::Connection {
        &mut self.inner
    }
}

impl<M: ManageConnection> fmt::Debug for Bb8Checkout<'_, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bb8Checkout")
            .field("lease", self.seat.lease())
            .finish_non_exhaustive()
    }
}
