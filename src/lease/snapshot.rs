use std::{
    fmt,
    panic::Location,
    time::{Duration, SystemTime},
};

/// Cumulative counters of a [`LeaseTracker`](super::LeaseTracker) since it was built.
///
/// Kept under the same lock as the list of leases, so a [`LeaseSnapshot`] is consistent:
/// `acquired - returned` is the number of leases outstanding at that moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeaseTotals {
    /// Leases taken, tracked or not.
    pub acquired: u64,
    /// Leases returned (their guard dropped), tracked or not.
    pub returned: u64,
    /// Leases reported as leaked: held longer than the leak threshold. Each lease is reported
    /// at most once.
    pub leaks_detected: u64,
    /// Leases whose request waited for its response longer than the leak threshold (an HTTP
    /// client's leases, before the response head arrives): reported once each, and never
    /// counted as leaks, which only a lease holding its response can be.
    pub slow_waits: u64,
    /// Leases reported as leaked that were returned afterwards.
    pub leaked_returned: u64,
    /// Leases taken while `max_tracked` leases were already listed: counted and returned
    /// correctly, but not listed and not checked for leaks.
    pub untracked: u64,
}

impl LeaseTotals {
    /// Leases outstanding: taken and not yet returned, tracked or not.
    pub fn outstanding(&self) -> u64 {
        self.acquired.saturating_sub(self.returned)
    }

    /// Leases reported as leaked that are still outstanding.
    pub fn leaked_outstanding(&self) -> u64 {
        self.leaks_detected.saturating_sub(self.leaked_returned)
    }
}

/// One outstanding lease, as listed in a [`LeaseSnapshot`].
///
/// No `Default`: a listed lease always has a real call site, and a made-up
/// `&'static Location` would only mislead.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LeaseInfo {
    /// The lease id, unique within its tracker, counting from 1 in the order leases were taken.
    pub id: u64,
    /// Where the lease was taken: the caller of [`LeaseTracker::lease`](super::LeaseTracker::lease)
    /// or [`LeaseTracker::wrap`](super::LeaseTracker::wrap). Displays as `file:line:column`.
    pub site: &'static Location<'static>,
    /// Wall-clock time the lease was taken, derived as "now minus [`age`](Self::age)".
    pub taken_at: SystemTime,
    /// How long the lease has been held, on tokio's clock (which follows paused time in tests).
    pub age: Duration,
    /// Whether it was reported as leaked (held longer than the leak threshold).
    pub leaked: bool,
    /// Whether its request is still waiting for the response (an HTTP client's lease before
    /// the response head arrives). A lease that waits is not held by the application's code,
    /// so it never counts as a leak; one that waits longer than the leak threshold is counted
    /// in [`LeaseTotals::slow_waits`].
    pub awaiting: bool,
    /// The backtrace captured when the lease was taken, when backtraces are on.
    pub backtrace: Option<String>,
}

impl fmt::Display for LeaseInfo {
    /// `lease #7 taken at src/db.rs:42:17, held for 1.234s` (`awaiting its response for`
    /// while it waits), then the backtrace, if any, on the following lines.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "lease #{} taken at {}, {} {:.3}s",
            self.id,
            self.site,
            if self.awaiting {
                "awaiting its response for"
            } else {
                "held for"
            },
            self.age.as_secs_f64()
        )?;
        if let Some(backtrace) = &self.backtrace {
            for line in backtrace.lines() {
                write!(f, "\n    {line}")?;
            }
        }
        Ok(())
    }
}

/// The leases of one [`LeaseTracker`](super::LeaseTracker) at one moment: plain data, detached
/// from the tracker.
///
/// Taken with [`LeaseTracker::snapshot`](super::LeaseTracker::snapshot). See the
/// [module docs](super) for an example.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct LeaseSnapshot {
    /// The pool's name, as given to the tracker.
    pub pool: String,
    /// The leak threshold in force; `None` when leak detection is off.
    pub leak_threshold: Option<Duration>,
    /// Outstanding tracked leases, oldest first.
    pub leases: Vec<LeaseInfo>,
    /// Cumulative counters, consistent with `leases`.
    pub totals: LeaseTotals,
}

impl LeaseSnapshot {
    /// Leases outstanding, tracked or not (may exceed `leases.len()` when the tracking bound was
    /// reached).
    pub fn outstanding(&self) -> u64 {
        self.totals.outstanding()
    }

    /// Listed leases reported as leaked.
    pub fn leaked(&self) -> impl Iterator<Item = &LeaseInfo> + '_ {
        self.leases.iter().filter(|l| l.leaked)
    }

    /// Listed leases held longer than `age`.
    pub fn older_than(&self, age: Duration) -> impl Iterator<Item = &LeaseInfo> + '_ {
        self.leases.iter().filter(move |l| l.age > age)
    }
}
