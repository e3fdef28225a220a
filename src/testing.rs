//! Test helpers: fail a test that leaves leases outstanding.
//!
//! They work in plain `#[test]`s and under `#[tokio::test]` (paused time included), and panic
//! with one line per offending lease, naming the pool, the lease, where it was taken and for
//! how long it has been held:
//!
//! ```text
//! 1 lease outstanding in pool `db`:
//! db: lease #3 taken at src/repo.rs:42:17, held for 1.234s
//! ```
//!
//! followed by the backtrace of each lease when the tracker captures them
//! ([`backtraces(true)`](crate::lease::LeaseTrackerBuilder::backtraces)).
//!
//! - [`assert_no_leases`]: nothing outstanding right now.
//! - [`assert_no_leases_older_than`]: nothing held longer than a bound (leases of requests
//!   still in flight are fine).
//! - [`LeakCheck`]: a guard that runs [`assert_no_leases`] at the end of the test, for one
//!   tracker or for every upstream of a client ([`LeakCheck::client`]).
//! - [`assert_no_client_leases`]: [`assert_no_leases`] over every upstream of a client.
//!
//! # Example
//!
//! ```
//! use conn_hygiene::{lease::LeaseTracker, testing::LeakCheck};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let tracker = LeaseTracker::new("db");
//! let _check = LeakCheck::new(&tracker);
//! let conn = tracker.wrap(String::from("a connection"));
//! assert_eq!(conn.len(), 12);
//! drop(conn); // without this line, the test fails when `_check` is dropped
//! # }
//! ```

use std::{fmt::Write, time::Duration};

use crate::lease::{LeaseInfo, LeaseSnapshot, LeaseTracker};

/// Panics if any lease of `tracker` is outstanding, listing each one.
///
/// Leases beyond the tracker's `max_tracked` bound are not listed but still counted: the
/// message then says how many more are outstanding.
///
/// # Example
///
/// ```
/// use std::panic::{catch_unwind, AssertUnwindSafe};
/// use conn_hygiene::{lease::LeaseTracker, testing::assert_no_leases};
///
/// let tracker = LeaseTracker::new("db");
/// let lease = tracker.lease();
/// let line = line!() - 1;
///
/// let panic = catch_unwind(AssertUnwindSafe(|| assert_no_leases(&tracker))).unwrap_err();
/// let message = panic.downcast_ref::<String>().unwrap();
/// assert!(message.contains(&format!("db: lease #1 taken at {}:{line}:", file!())), "{message}");
/// assert!(message.contains("held for 0."), "{message}");
///
/// drop(lease);
/// assert_no_leases(&tracker); // passes
/// ```
#[track_caller]
pub fn assert_no_leases(tracker: &LeaseTracker) {
    let snapshot = tracker.snapshot();
    let outstanding = snapshot.totals.outstanding();
    if outstanding == 0 {
        return;
    }
    let mut message = format!(
        "{outstanding} {} outstanding in pool `{}`:",
        plural(outstanding),
        snapshot.pool
    );
    list(&mut message, &snapshot, snapshot.leases.iter());
    let unlisted = outstanding.saturating_sub(snapshot.leases.len() as u64);
    if unlisted > 0 {
        let _ = write!(
            message,
            "\n{}: and {unlisted} untracked {} (beyond max_tracked, not listed)",
            snapshot.pool,
            plural(unlisted)
        );
    }
    panic!("{message}");
}

/// Panics if any lease of `tracker` has been held longer than `age`, listing each one.
///
/// Leases taken and still in use by work in flight pass, as long as they are younger than
/// `age`. Untracked leases (beyond `max_tracked`) are not checked. Ages follow tokio's clock,
/// so under paused time they advance only with the test's virtual time.
///
/// # Example
///
/// ```
/// use std::{panic::{catch_unwind, AssertUnwindSafe}, time::Duration};
/// use conn_hygiene::{lease::LeaseTracker, testing::assert_no_leases_older_than};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let tracker = LeaseTracker::new("cache");
/// let old = tracker.lease();
/// tokio::time::sleep(Duration::from_secs(2)).await;
/// let _young = tracker.lease();
///
/// let panic = catch_unwind(AssertUnwindSafe(|| {
///     assert_no_leases_older_than(&tracker, Duration::from_secs(1))
/// }))
/// .unwrap_err();
/// let message = panic.downcast_ref::<String>().unwrap();
/// assert!(message.contains("cache: lease #1 taken at "), "{message}");
/// assert!(message.contains(", held for 2.000s"), "{message}");
/// assert!(!message.contains("lease #2"), "{message}");
///
/// drop(old);
/// assert_no_leases_older_than(&tracker, Duration::from_secs(1)); // passes: #2 is young
/// # }
/// ```
#[track_caller]
pub fn assert_no_leases_older_than(tracker: &LeaseTracker, age: Duration) {
    let snapshot = tracker.snapshot();
    let old: Vec<&LeaseInfo> = snapshot.older_than(age).collect();
    if old.is_empty() {
        return;
    }
    let mut message = format!(
        "{} {} held longer than {:.3}s in pool `{}`:",
        old.len(),
        plural(old.len() as u64),
        age.as_secs_f64(),
        snapshot.pool
    );
    list(&mut message, &snapshot, old.into_iter());
    panic!("{message}");
}

/// A guard asserting, when dropped, that its tracker has no outstanding lease (or, with
/// [`older_than`](Self::older_than), none held longer than a bound).
///
/// Create it at the start of a test and keep it to the end. It skips the assertion when the
/// test is already panicking, so the first failure is the one reported.
///
/// # Example
///
/// ```
/// use std::panic::{catch_unwind, AssertUnwindSafe};
/// use conn_hygiene::{lease::LeaseTracker, testing::LeakCheck};
///
/// let tracker = LeaseTracker::new("db");
///
/// // A test that returns its lease passes.
/// {
///     let _check = LeakCheck::new(&tracker);
///     let lease = tracker.lease();
///     drop(lease);
/// }
///
/// // A test that keeps one fails when its check is dropped.
/// let mut kept = Vec::new();
/// let failed = catch_unwind(AssertUnwindSafe(|| {
///     let _check = LeakCheck::new(&tracker);
///     kept.push(tracker.lease());
/// }));
/// let message = failed.unwrap_err().downcast::<String>().unwrap();
/// assert!(message.starts_with("1 lease outstanding in pool `db`:\ndb: lease #2 taken at "));
/// ```
#[derive(Debug)]
#[must_use = "the check runs when the guard is dropped; bind it with `let _check = ...`"]
pub struct LeakCheck {
    of: Checked,
    older_than: Option<Duration>,
}

#[derive(Debug)]
enum Checked {
    Tracker(LeaseTracker),
    /// Every upstream of a client, as they are when the check runs (upstreams made after the
    /// guard included).
    #[cfg(feature = "client")]
    Client(crate::client::ClientView),
}

impl LeakCheck {
    /// Checks, when dropped, that `tracker` has no outstanding lease.
    pub fn new(tracker: &LeaseTracker) -> Self {
        Self {
            of: Checked::Tracker(tracker.clone()),
            older_than: None,
        }
    }

    /// Checks, when dropped, that `tracker` has no lease held longer than `age`.
    pub fn older_than(tracker: &LeaseTracker, age: Duration) -> Self {
        Self {
            of: Checked::Tracker(tracker.clone()),
            older_than: Some(age),
        }
    }

    /// Checks, when dropped, that no upstream of `client` has an outstanding lease (every
    /// upstream it has then, those made after the guard included). A test's one line:
    /// `let _check = LeakCheck::client(&client);`.
    #[cfg(feature = "client")]
    pub fn client<B>(client: &crate::client::HygienicClient<B>) -> Self {
        Self {
            of: Checked::Client(client.view()),
            older_than: None,
        }
    }

    /// Like [`client`](Self::client), for leases held longer than `age` only.
    #[cfg(feature = "client")]
    pub fn client_older_than<B>(client: &crate::client::HygienicClient<B>, age: Duration) -> Self {
        Self {
            of: Checked::Client(client.view()),
            older_than: Some(age),
        }
    }
}

impl Drop for LeakCheck {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let trackers = match &self.of {
            Checked::Tracker(t) => vec![t.clone()],
            #[cfg(feature = "client")]
            Checked::Client(view) => view.lease_trackers(),
        };
        for tracker in &trackers {
            match self.older_than {
                None => assert_no_leases(tracker),
                Some(age) => assert_no_leases_older_than(tracker, age),
            }
        }
    }
}

/// [`assert_no_leases`] over every upstream of `client`: panics listing the outstanding leases
/// of the first upstream that has any.
#[cfg(feature = "client")]
#[track_caller]
pub fn assert_no_client_leases<B>(client: &crate::client::HygienicClient<B>) {
    for tracker in client.view().lease_trackers() {
        assert_no_leases(&tracker);
    }
}

fn list<'a>(
    message: &mut String,
    snapshot: &LeaseSnapshot,
    leases: impl Iterator<Item = &'a LeaseInfo>,
) {
    for lease in leases {
        let _ = write!(message, "\n{}: {lease}", snapshot.pool);
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        "lease"
    } else {
        "leases"
    }
}
