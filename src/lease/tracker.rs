use std::{
    backtrace::Backtrace,
    fmt,
    panic::Location,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, MutexGuard, Weak,
    },
    time::{Duration, SystemTime},
};

use tokio::time::Instant;

use super::{
    detector,
    guard::{Lease, Leased},
    metrics::{LeaseMetrics, PoolKind},
    slab::{Entry, Slot, State},
    LeaseConfigError, LeaseInfo, LeaseSnapshot, LeaseTotals,
};
use crate::metrics::Collect;

/// Default [`leak_threshold`](LeaseTrackerBuilder::leak_threshold): 30 seconds.
pub const DEFAULT_LEAK_THRESHOLD: Duration = Duration::from_secs(30);
/// Default [`max_tracked`](LeaseTrackerBuilder::max_tracked): 65 536 listed leases.
pub const DEFAULT_MAX_TRACKED: usize = 65_536;

/// Counts and lists the leases taken from one pool, and reports those held too long.
///
/// Cheap to clone (an `Arc` inside); every clone sees the same leases. Build one per pool
/// (per upstream for an HTTP client), named after it: the name is the `pool` label of every
/// lease metric. See the [module docs](super) for an example.
#[derive(Clone)]
pub struct LeaseTracker {
    shared: Arc<Shared>,
}

/// Builds a [`LeaseTracker`]; made by [`LeaseTracker::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct LeaseTrackerBuilder {
    pool: Arc<str>,
    kind: PoolKind,
    config: Config,
}

#[derive(Debug, Clone, Copy)]
struct Config {
    leak_threshold: Option<Duration>,
    backtraces: bool,
    max_tracked: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            leak_threshold: Some(DEFAULT_LEAK_THRESHOLD),
            backtraces: false,
            max_tracked: DEFAULT_MAX_TRACKED,
        }
    }
}

impl LeaseTrackerBuilder {
    /// How long a lease may be held before it is reported as leaked.
    ///
    /// Default: `Some(30 s)`. `None` turns leak detection off (leases are still counted and
    /// listed). A zero duration is refused by [`build`](Self::build).
    pub fn leak_threshold(mut self, threshold: impl Into<Option<Duration>>) -> Self {
        self.config.leak_threshold = threshold.into();
        self
    }

    /// Whether to capture a backtrace ([`Backtrace::force_capture`]) when each lease is taken,
    /// shown in leak reports and snapshots.
    ///
    /// Default: `false`. Capturing costs microseconds and an allocation per lease: turn it on
    /// while hunting a leak whose call site alone does not tell enough.
    pub fn backtraces(mut self, on: bool) -> Self {
        self.config.backtraces = on;
        self
    }

    /// How many outstanding leases are listed (and checked for leaks) at most.
    ///
    /// Default: 65 536. Beyond it, leases still work and are counted (as `untracked` and in
    /// `conn_hygiene_leases_untracked_total`), but are not listed: memory stays bounded
    /// whatever the code using the pool does. Zero is refused by [`build`](Self::build).
    pub fn max_tracked(mut self, max: usize) -> Self {
        self.config.max_tracked = max;
        self
    }

    /// Checks the settings and builds the tracker.
    ///
    /// Metric handles are resolved here, once, from the recorder current at this call (with
    /// none installed yet, they are bound to the one installed later).
    pub fn build(self) -> Result<LeaseTracker, LeaseConfigError> {
        if let Some(value) = self
            .config
            .leak_threshold
            .filter(|t| *t < Duration::from_millis(1))
        {
            return Err(LeaseConfigError::LeakThreshold { value });
        }
        if self.config.max_tracked == 0 {
            return Err(LeaseConfigError::MaxTracked { value: 0 });
        }
        Ok(LeaseTracker::from_config(self.pool, self.kind, self.config))
    }
}

impl LeaseTracker {
    /// A tracker for the pool `pool`, with default settings (leak threshold 30 s, no
    /// backtraces, at most 65 536 leases listed).
    pub fn new(pool: impl Into<Arc<str>>) -> Self {
        Self::from_config(pool.into(), PoolKind::Pool, Config::default())
    }

    /// A builder for a tracker of the pool `pool`.
    pub fn builder(pool: impl Into<Arc<str>>) -> LeaseTrackerBuilder {
        LeaseTrackerBuilder {
            pool: pool.into(),
            kind: PoolKind::Pool,
            config: Config::default(),
        }
    }

    /// A builder for the tracker of an HTTP client's upstream.
    #[cfg_attr(not(feature = "client"), allow(dead_code))]
    pub(crate) fn upstream_builder(upstream: Arc<str>) -> LeaseTrackerBuilder {
        LeaseTrackerBuilder {
            pool: upstream,
            kind: PoolKind::Upstream,
            config: Config::default(),
        }
    }

    fn from_config(pool: Arc<str>, kind: PoolKind, config: Config) -> Self {
        let metrics = crate::metrics::resolve(|| LeaseMetrics::new(&pool, kind));
        let core = Arc::new(Core {
            pool,
            config,
            metrics,
            state: Mutex::new(State::default()),
        });
        crate::metrics::register_collector(Arc::downgrade(&core) as Weak<dyn Collect>);
        LeaseTracker {
            shared: Arc::new(Shared {
                core,
                detector: Mutex::new(None),
                detector_running: Arc::new(AtomicBool::new(false)),
            }),
        }
    }

    /// Takes a lease, recording the caller's location and the time. Dropping the [`Lease`]
    /// returns it.
    ///
    /// Takes one short lock and allocates nothing (unless backtraces are on). The first lease
    /// taken inside a tokio runtime starts the background leak detector.
    #[track_caller]
    pub fn lease(&self) -> Lease {
        let site = Location::caller();
        let lease = self.shared.core.acquire(site);
        self.shared.ensure_detector();
        lease
    }

    /// Takes a lease recorded at `site`: for a wrapper that takes the lease after an `await`,
    /// having read its caller's location before it (the pool adapters' checkouts).
    #[cfg_attr(
        not(any(feature = "deadpool", feature = "bb8", feature = "sqlx")),
        allow(dead_code)
    )]
    pub(crate) fn lease_at(&self, site: &'static Location<'static>) -> Lease {
        let lease = self.shared.core.acquire(site);
        self.shared.ensure_detector();
        lease
    }

    #[cfg_attr(not(feature = "client"), allow(dead_code))]
    /// Takes a lease at `site` that the caller must end with [`release`](Self::release),
    /// exactly once. It starts awaiting (a request waiting for its response, which is not a
    /// leak however long it takes) until [`holding`](Self::holding). `taken` is now, read by
    /// the caller (which has a use for the same reading).
    pub(crate) fn lease_raw(&self, site: &'static Location<'static>, taken: Instant) -> RawLease {
        let lease = self.shared.core.acquire_raw(site, false, taken);
        self.shared.ensure_detector();
        lease
    }

    #[cfg_attr(not(feature = "client"), allow(dead_code))]
    /// The lease's response arrived at `now`: from here the application holds it, and holding
    /// it longer than the leak threshold is a leak.
    pub(crate) fn holding(&self, lease: &RawLease, now: Instant) {
        self.shared.core.holding(lease, now);
    }

    #[cfg_attr(not(feature = "client"), allow(dead_code))]
    /// Ends a lease taken by [`lease_raw`](Self::lease_raw) at `now`.
    pub(crate) fn release(&self, lease: RawLease, now: Instant) {
        self.shared
            .core
            .release(lease.id, lease.slot, lease.site, lease.taken, now);
    }

    /// Wraps a pool's guard (bb8's `PooledConnection`, deadpool's `Object`, …) in a lease taken
    /// at the caller's location.
    ///
    /// Dropping the [`Leased`] gives the guard back to its pool, then ends the lease.
    #[track_caller]
    pub fn wrap<T>(&self, inner: T) -> Leased<T> {
        Leased::new(inner, self.lease())
    }

    /// The pool's name.
    pub fn pool(&self) -> &str {
        &self.shared.core.pool
    }

    /// The leak threshold; `None` when leak detection is off.
    pub fn leak_threshold(&self) -> Option<Duration> {
        self.shared.core.config.leak_threshold
    }

    /// Leases outstanding, tracked or not.
    pub fn outstanding(&self) -> usize {
        let totals = self.shared.core.lock().totals;
        usize::try_from(totals.outstanding()).unwrap_or(usize::MAX)
    }

    /// Cumulative counters.
    pub fn totals(&self) -> LeaseTotals {
        self.shared.core.lock().totals
    }

    #[cfg_attr(not(feature = "client"), allow(dead_code))]
    /// Where the listed lease `id` in `slot` was taken; `None` once it ended (or when it was
    /// never listed).
    pub(crate) fn site_of(&self, slot: usize, id: u64) -> Option<&'static Location<'static>> {
        match self.shared.core.lock().slots.get(slot) {
            Some(Slot::Occupied(entry)) if entry.id == id => Some(entry.site),
            _ => None,
        }
    }

    /// Checks for leaks (see [`check_leaks`](Self::check_leaks)), then lists the outstanding
    /// leases, oldest first, with the totals.
    pub fn snapshot(&self) -> LeaseSnapshot {
        self.shared.core.check_leaks();
        self.shared.core.snapshot()
    }

    /// Reports every listed lease held longer than the leak threshold and not yet reported;
    /// returns how many were newly reported.
    ///
    /// Each lease is reported once: a `WARN` event (target `conn_hygiene::lease`) with the pool,
    /// lease id, call site, age and backtrace if captured, and
    /// `conn_hygiene_lease_leaks_total` += 1. The background detector calls this every half
    /// threshold when a tokio runtime is available; call it yourself otherwise (or take a
    /// [`snapshot`](Self::snapshot), which does). Returns 0 when leak detection is off.
    pub fn check_leaks(&self) -> usize {
        self.shared.core.check_leaks()
    }
}

impl fmt::Debug for LeaseTracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let core = &self.shared.core;
        f.debug_struct("LeaseTracker")
            .field("pool", &core.pool)
            .field("leak_threshold", &core.config.leak_threshold)
            .field("backtraces", &core.config.backtraces)
            .field("max_tracked", &core.config.max_tracked)
            .finish_non_exhaustive()
    }
}

/// What the tracker clones share. The detector holds only a `Weak` to it, so it ends when the
/// last clone is dropped, even while leases (which hold the [`Core`]) are still out.
pub(super) struct Shared {
    pub(super) core: Arc<Core>,
    detector: Mutex<Option<tokio::task::AbortHandle>>,
    /// Set while a detector task exists; cleared by the task when it ends (for instance when
    /// its runtime shuts down), so that the next lease starts a new one.
    detector_running: Arc<AtomicBool>,
}

impl Shared {
    fn ensure_detector(self: &Arc<Self>) {
        // Fast path on every lease: one relaxed load.
        if self.detector_running.load(Ordering::Relaxed) {
            return;
        }
        let Some(threshold) = self.core.config.leak_threshold else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut detector = self.detector.lock().unwrap_or_else(|e| e.into_inner());
        if self.detector_running.load(Ordering::Acquire) {
            return;
        }
        self.detector_running.store(true, Ordering::Release);
        let task = runtime.spawn(detector::run(
            Arc::downgrade(self),
            detector::period(threshold),
            self.detector_running.clone(),
        ));
        *detector = Some(task.abort_handle());
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let detector = self.detector.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(task) = detector.take() {
            task.abort();
        }
    }
}

/// How long a lease was held, in seconds, for the duration histogram: worked out only when a
/// recorder takes the value.
struct Held {
    taken: Instant,
    now: Instant,
}

impl metrics::IntoF64 for Held {
    fn into_f64(self) -> f64 {
        self.now.saturating_duration_since(self.taken).as_secs_f64()
    }
}

/// What leases hold: configuration, metric handles and the table of listed leases.
pub(super) struct Core {
    pub(super) pool: Arc<str>,
    config: Config,
    pub(super) metrics: LeaseMetrics,
    state: Mutex<State>,
}

/// A lease without a handle on its tracker (see [`LeaseTracker::lease_raw`]). Neither `Clone`
/// nor `Copy`: it is ended by moving it into [`LeaseTracker::release`], once.
#[derive(Debug)]
#[cfg_attr(not(feature = "client"), allow(dead_code))]
pub(crate) struct RawLease {
    pub(crate) id: u64,
    pub(crate) slot: usize,
    pub(crate) site: &'static Location<'static>,
    pub(crate) taken: Instant,
}

/// Slot index of a lease that is counted but not listed.
pub(super) const UNTRACKED: usize = usize::MAX;

impl Core {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding this lock; recover anyway rather than spread a panic.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn acquire(self: &Arc<Self>, site: &'static Location<'static>) -> Lease {
        let raw = self.acquire_raw(site, true, Instant::now());
        Lease::new(self.clone(), raw.id, raw.slot, site, raw.taken)
    }

    /// Takes a lease without a handle on the tracker: the caller ends it with
    /// [`release`](Self::release) (the HTTP client, whose response holds its upstream, and
    /// so its tracker, already).
    pub(super) fn acquire_raw(
        &self,
        site: &'static Location<'static>,
        held: bool,
        taken: Instant,
    ) -> RawLease {
        let backtrace = self
            .config
            .backtraces
            .then(|| Arc::new(Backtrace::force_capture()));
        let (id, slot, first_untracked) = {
            let mut state = self.lock();
            state.totals.acquired += 1;
            let id = state.totals.acquired;
            if state.tracked < self.config.max_tracked {
                let slot = state.insert(Entry {
                    id,
                    site,
                    taken,
                    held_since: held.then_some(taken),
                    leaked: false,
                    slow_reported: false,
                    backtrace,
                });
                (id, slot, false)
            } else {
                state.totals.untracked += 1;
                let first = !state.bound_reported;
                state.bound_reported = true;
                (id, UNTRACKED, first)
            }
        };
        self.metrics.acquired.increment(1);
        if slot == UNTRACKED {
            self.metrics.untracked.increment(1);
            if first_untracked {
                tracing::warn!(
                    target: "conn_hygiene::lease",
                    pool = %self.pool,
                    max_tracked = self.config.max_tracked,
                    "lease tracking bound reached: further leases are counted but not listed \
                     or checked for leaks"
                );
            }
        }
        RawLease {
            id,
            slot,
            site,
            taken,
        }
    }

    fn holding(&self, lease: &RawLease, now: Instant) {
        let mut state = self.lock();
        if let Some(Slot::Occupied(entry)) = state.slots.get_mut(lease.slot) {
            if entry.id == lease.id && entry.held_since.is_none() {
                entry.held_since = Some(now);
            }
        }
    }

    /// Ends a lease; called once, by the lease's `Drop`.
    pub(super) fn release(
        &self,
        id: u64,
        slot: usize,
        site: &'static Location<'static>,
        taken: Instant,
        now: Instant,
    ) {
        let entry = {
            let mut state = self.lock();
            state.totals.returned += 1;
            let entry = state.remove(slot, id);
            if entry.as_ref().is_some_and(|e| e.leaked) {
                state.totals.leaked_returned += 1;
            }
            entry
        };
        // Computed only by a recorder that records it.
        self.metrics.duration.record(Held { taken, now });
        if entry.is_some_and(|e| e.leaked) {
            let held = now.saturating_duration_since(taken);
            self.metrics.leaks_returned.increment(1);
            tracing::info!(
                target: "conn_hygiene::lease",
                pool = %self.pool,
                lease = id,
                site = %site,
                held = %Secs(held),
                "leaked lease returned after {}",
                Secs(held)
            );
        }
    }

    pub(super) fn check_leaks(&self) -> usize {
        let Some(threshold) = self.config.leak_threshold else {
            return 0;
        };
        let now = Instant::now();
        let mut found = Vec::new();
        let mut slow = Vec::new();
        {
            let mut state = self.lock();
            for slot in &mut state.slots {
                let Slot::Occupied(entry) = slot else {
                    continue;
                };
                match entry.held_since {
                    // Only a lease held (its response handed over) can leak, counted from
                    // when it was handed over.
                    Some(since) => {
                        let held = now.saturating_duration_since(since);
                        if !entry.leaked && held > threshold {
                            entry.leaked = true;
                            found.push((entry.id, entry.site, held, entry.backtrace.clone()));
                        }
                    }
                    // Still waiting for its response: a slow peer, reported on its own.
                    None => {
                        let waited = now.saturating_duration_since(entry.taken);
                        if !entry.slow_reported && waited > threshold {
                            entry.slow_reported = true;
                            slow.push((entry.id, entry.site, waited));
                        }
                    }
                }
            }
            state.totals.leaks_detected += found.len() as u64;
            state.totals.slow_waits += slow.len() as u64;
        }
        slow.sort_unstable_by_key(|&(id, ..)| id);
        for (id, site, waited) in &slow {
            self.metrics.slow_waits.increment(1);
            tracing::info!(
                target: "conn_hygiene::lease",
                pool = %self.pool,
                lease = id,
                site = %site,
                waited = %Secs(*waited),
                threshold = %Secs(threshold),
                "slow response: lease #{} has waited {} for its response (longer than the leak \
                 threshold of {}, but a wait is not a leak), taken at {}",
                id,
                Secs(*waited),
                Secs(threshold),
                site
            );
        }
        found.sort_unstable_by_key(|&(id, ..)| id);
        for (id, site, age, backtrace) in &found {
            self.metrics.leaks.increment(1);
            tracing::warn!(
                target: "conn_hygiene::lease",
                pool = %self.pool,
                lease = id,
                site = %site,
                age = %Secs(*age),
                threshold = %Secs(threshold),
                backtrace = backtrace.as_ref().map(tracing::field::display),
                "possible leak: lease #{} held for {} (longer than the leak threshold of {}), \
                 taken at {}",
                id,
                Secs(*age),
                Secs(threshold),
                site
            );
        }
        found.len()
    }

    fn snapshot(&self) -> LeaseSnapshot {
        let now = Instant::now();
        let wall_now = SystemTime::now();
        let (mut listed, totals) = {
            let state = self.lock();
            let mut listed = Vec::with_capacity(state.tracked);
            for slot in &state.slots {
                if let Slot::Occupied(entry) = slot {
                    listed.push((
                        entry.id,
                        entry.site,
                        now.saturating_duration_since(entry.taken),
                        entry.leaked,
                        entry.held_since.is_none(),
                        entry.backtrace.clone(),
                    ));
                }
            }
            (listed, state.totals)
        };
        // Oldest first; ids break ties (several leases taken at one instant of paused time).
        listed.sort_unstable_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
        let leases = listed
            .into_iter()
            .map(|(id, site, age, leaked, awaiting, backtrace)| LeaseInfo {
                id,
                site,
                taken_at: wall_now.checked_sub(age).unwrap_or(SystemTime::UNIX_EPOCH),
                age,
                leaked,
                awaiting,
                backtrace: backtrace.map(|b| b.to_string()),
            })
            .collect();
        LeaseSnapshot {
            pool: self.pool.to_string(),
            leak_threshold: self.config.leak_threshold,
            leases,
            totals,
        }
    }
}

/// Displays a duration as seconds with millisecond precision: `1.234s`.
pub(super) struct Secs(pub(super) Duration);

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.3}s", self.0.as_secs_f64())
    }
}

#[cfg(test)]
#[path = "tracker_tests.rs"]
mod tests;
