use std::{
    fmt,
    ops::{Deref, DerefMut},
    panic::Location,
    sync::Arc,
    time::Duration,
};

use tokio::time::Instant;

use super::tracker::{Core, Secs, UNTRACKED};

/// One lease: taken by [`LeaseTracker::lease`](super::LeaseTracker::lease), returned when
/// dropped.
///
/// Keep it alive exactly as long as the pooled resource is out of its pool (for an HTTP
/// connection: until the response body ends, not until the response future resolves). See the
/// [module docs](super).
#[must_use = "a lease is returned as soon as it is dropped"]
pub struct Lease {
    core: Arc<Core>,
    id: u64,
    slot: usize,
    site: &'static Location<'static>,
    taken: Instant,
    ended: bool,
}

impl Lease {
    pub(super) fn new(
        core: Arc<Core>,
        id: u64,
        slot: usize,
        site: &'static Location<'static>,
        taken: Instant,
    ) -> Self {
        Self {
            core,
            id,
            slot,
            site,
            taken,
            ended: false,
        }
    }

    /// The lease id, unique within its tracker, counting from 1.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Where the lease was taken. Displays as `file:line:column`.
    pub fn site(&self) -> &'static Location<'static> {
        self.site
    }

    /// How long the lease has been held, on tokio's clock.
    pub fn age(&self) -> Duration {
        Instant::now().saturating_duration_since(self.taken)
    }

    /// The name of the pool the lease was taken from.
    pub fn pool(&self) -> &str {
        &self.core.pool
    }

    /// Whether the lease is listed in snapshots and checked for leaks; `false` when it was
    /// taken while the tracker's `max_tracked` bound was reached.
    pub fn is_tracked(&self) -> bool {
        self.slot != UNTRACKED
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if !self.ended {
            self.core
                .release(self.id, self.slot, self.site, self.taken, Instant::now());
        }
    }
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("pool", &self.core.pool)
            .field("id", &self.id)
            .field("site", &format_args!("{}", self.site))
            .field("age", &format_args!("{}", Secs(self.age())))
            .field("tracked", &self.is_tracked())
            .finish()
    }
}

/// A pool's guard (bb8's `PooledConnection`, deadpool's `Object`, …) together with the
/// [`Lease`] taken for it; made by [`LeaseTracker::wrap`](super::LeaseTracker::wrap).
///
/// Derefs to the guard. Dropping it first gives the guard back to its pool, then ends the
/// lease; [`into_inner`](Self::into_inner) ends the lease and hands the guard over.
pub struct Leased<T> {
    // Field order is drop order: the guard goes back to its pool before the lease ends, so
    // "returned" in the tracker always means "back in the pool".
    inner: T,
    lease: Lease,
}

impl<T> Leased<T> {
    pub(super) fn new(inner: T, lease: Lease) -> Self {
        Self { inner, lease }
    }

    /// The guard.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// The guard, mutably.
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.inner
    }

    /// Ends the lease and returns the guard: from now on, returning it to its pool is the
    /// caller's business and is no longer tracked.
    pub fn into_inner(self) -> T {
        self.inner
    }

    /// The lease.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// Splits into the guard and the lease, both still live.
    pub fn into_parts(self) -> (T, Lease) {
        (self.inner, self.lease)
    }
}

impl<T> Deref for Leased<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.inner
    }
}

impl<T> DerefMut for Leased<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.inner
    }
}

impl<T: fmt::Debug> fmt::Debug for Leased<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Leased")
            .field("inner", &self.inner)
            .field("lease", &self.lease)
            .finish()
    }
}
