//! deadpool (0.12, `deadpool::managed`): every checkout a lease with its call site.

use std::{
    fmt,
    future::Future,
    net::SocketAddr,
    ops::{Deref, DerefMut},
    panic::Location,
    sync::Arc,
};

use deadpool::managed::{Manager, Object, Pool, PoolError};

use super::{
    stats::{stats_source, PoolStats, ReadStats, StatsExport},
    view::{ConnectionSocket, PoolView, Seat},
};
use crate::lease::{Lease, LeaseTracker};

/// A deadpool [`Pool`] whose every checkout is a tracked lease: [`get`](Self::get) records the
/// line that called it, and the checkout's socket when its connection shows it
/// ([`ConnectionSocket`]). See the [module docs](super) for an example.
///
/// Cheap to clone (the pool and the tracking are shared). Its pool's statistics (`size`,
/// `available`, `waiting`, `max_size`) are exported as `conn_hygiene_pool_*{pool}` when
/// metrics are collected, and checkouts that time out are counted.
pub struct TrackedDeadpool<M: Manager> {
    pool: Pool<M>,
    view: PoolView,
    stats: Arc<StatsExport<Status<M>>>,
}

/// Reads deadpool's status.
struct Status<M: Manager>(Pool<M>);

impl<M: Manager + 'static> ReadStats for Status<M> {
    fn read(&self) -> PoolStats {
        let s = self.0.status();
        PoolStats {
            size: s.size as u64,
            idle: s.available as u64,
            max_size: s.max_size as u64,
            waiters: s.waiting as u64,
            timeouts: None,
        }
    }
}

impl<M: Manager + 'static> TrackedDeadpool<M> {
    /// Tracks the checkouts of `pool` with `tracker`, whose name names the pool in leak
    /// reports, metrics and the census.
    pub fn new(pool: Pool<M>, tracker: LeaseTracker) -> Self {
        let stats = StatsExport::register(tracker.pool(), Status(pool.clone()));
        TrackedDeadpool {
            pool,
            view: PoolView::with_stats(tracker, Some(stats_source(&stats))),
            stats,
        }
    }

    /// Claims `addr` as a destination of the pool before any checkout shows it (the census
    /// then attributes the sockets toward it, `TIME_WAIT` included, to the pool from the
    /// start). Destinations of checked-out connections are added as they are seen.
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
    /// caller's line; the lease ends when the [`DeadpoolCheckout`] is dropped, after the
    /// object went back to the pool.
    #[track_caller]
    pub fn get(&self) -> impl Future<Output = Result<DeadpoolCheckout<M>, PoolError<M::Error>>> + '_
    where
        M::Type: ConnectionSocket,
    {
        let site = Location::caller();
        async move {
            match self.pool.get().await {
                Ok(object) => {
                    let seat = self.view.seat(site, object.socket_addrs());
                    Ok(DeadpoolCheckout {
                        inner: object,
                        seat,
                    })
                }
                Err(e) => {
                    if matches!(e, PoolError::Timeout(_)) {
                        self.stats.timed_out();
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

    /// deadpool's status of the pool.
    pub fn status(&self) -> deadpool::Status {
        self.pool.status()
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

impl<M: Manager> Clone for TrackedDeadpool<M> {
    fn clone(&self) -> Self {
        TrackedDeadpool {
            pool: self.pool.clone(),
            view: self.view.clone(),
            stats: self.stats.clone(),
        }
    }
}

impl<M: Manager + 'static> fmt::Debug for TrackedDeadpool<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrackedDeadpool")
            .field("view", &self.view)
            .field("status", &self.stats.read())
            .finish()
    }
}

/// A connection checked out of a [`TrackedDeadpool`]: deadpool's [`Object`] and its lease.
///
/// Derefs to the connection. Dropping it gives the object back to the pool first, then ends
/// the lease; [`into_inner`](Self::into_inner) ends the lease and hands the object over.
pub struct DeadpoolCheckout<M: Manager> {
    // Field order is drop order: back in the pool before the lease ends.
    inner: Object<M>,
    seat: Seat,
}

impl<M: Manager> DeadpoolCheckout<M> {
    /// The lease: its id, site and age.
    pub fn lease(&self) -> &Lease {
        self.seat.lease()
    }

    /// deadpool's object.
    pub fn get_ref(&self) -> &Object<M> {
        &self.inner
    }

    /// deadpool's object, mutably.
    pub fn get_mut(&mut self) -> &mut Object<M> {
        &mut self.inner
    }

    /// Ends the lease and returns the object: giving it back is no longer tracked.
    pub fn into_inner(self) -> Object<M> {
        self.inner
    }
}

impl<M: Manager> Deref for DeadpoolCheckout<M> {
    type Target = M::Type;

    fn deref(&self) -> &M::Type {
        &self.inner
    }
}

impl<M: Manager> DerefMut for DeadpoolCheckout<M> {
    fn deref_mut(&mut self) -> &mut M::Type {
        &mut self.inner
    }
}

impl<M: Manager> fmt::Debug for DeadpoolCheckout<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadpoolCheckout")
            .field("object", &Object::id(&self.inner))
            .field("lease", self.seat.lease())
            .finish()
    }
}
