//! Polling a condition with a deadline, blocking or async.

use std::{fmt::Debug, time::Duration};

/// First pause between two polls; it doubles up to the cap.
const FIRST_PAUSE: Duration = Duration::from_micros(200);
/// Longest pause between two blocking polls: what they poll (a netlink walk, `ss`) costs.
const SYNC_PAUSE_CAP: Duration = Duration::from_millis(20);
/// Longest pause between two async polls. Under paused time each pause is a step of the
/// clock, so this is also how late a timed event can be seen.
const ASYNC_PAUSE_CAP: Duration = Duration::from_millis(10);

/// What a polled condition returns: whether it holds, with the value to hand back when it
/// does, or what was seen instead, for the timeout message.
///
/// - `bool`: holds when `true`; nothing to hand back or report.
/// - `Option<T>`: holds when `Some(value)`, handing back `value`.
/// - `Result<T, E>`: holds when `Ok(value)`, handing back `value`; the last `Err` is reported
///   (`Debug`) when the wait times out.
/// - [`Satisfies<T>`], from [`satisfies`]: holds when the value satisfied the predicate,
///   handing it back; the last value is reported (`Debug`) when the wait times out.
pub trait Outcome {
    /// What the wait returns once the condition holds.
    type Value;

    /// `Ok` with the value when the condition holds; otherwise what was seen, if anything
    /// worth reporting.
    fn into_result(self) -> Result<Self::Value, Option<String>>;
}

impl Outcome for bool {
    type Value = ();

    fn into_result(self) -> Result<(), Option<String>> {
        if self {
            Ok(())
        } else {
            Err(None)
        }
    }
}

impl<T> Outcome for Option<T> {
    type Value = T;

    fn into_result(self) -> Result<T, Option<String>> {
        self.ok_or(None)
    }
}

impl<T, E: Debug> Outcome for Result<T, E> {
    type Value = T;

    fn into_result(self) -> Result<T, Option<String>> {
        self.map_err(|seen| Some(format!("{seen:?}")))
    }
}

/// `value`, and whether `pred` holds for it: a condition for [`wait_until`] or
/// [`eventually`] that hands the value back when it holds, and names it (`Debug`) when the
/// wait times out.
pub fn satisfies<T>(value: T, pred: impl FnOnce(&T) -> bool) -> Satisfies<T> {
    let holds = pred(&value);
    Satisfies { value, holds }
}

/// A value and whether it satisfied a predicate; made by [`satisfies`].
#[derive(Debug)]
pub struct Satisfies<T> {
    value: T,
    holds: bool,
}

impl<T: Debug> Outcome for Satisfies<T> {
    type Value = T;

    fn into_result(self) -> Result<T, Option<String>> {
        if self.holds {
            Ok(self.value)
        } else {
            Err(Some(format!("{:?}", self.value)))
        }
    }
}

fn timed_out(what: &str, limit: Duration, last: Option<String>) -> ! {
    match last {
        Some(last) => panic!("timed out after {limit:?} waiting for {what}; last seen: {last}"),
        None => panic!("timed out after {limit:?} waiting for {what}"),
    }
}

/// Polls `cond` until it holds, blocking the thread between polls, and returns what it hands
/// back. Checks at least once, and once more after `limit`; then panics naming `what`,
/// `limit` and the last thing `cond` saw.
pub fn wait_until<O: Outcome>(what: &str, limit: Duration, cond: impl FnMut() -> O) -> O::Value {
    poll_blocking(limit, cond).unwrap_or_else(|last| timed_out(what, limit, last))
}

/// [`wait_until`] without the panic: `Err` with the last thing seen after `limit`.
pub(crate) fn poll_blocking<O: Outcome>(
    limit: Duration,
    mut cond: impl FnMut() -> O,
) -> Result<O::Value, Option<String>> {
    let deadline = std::time::Instant::now() + limit;
    let mut pause = FIRST_PAUSE;
    loop {
        let last = match cond().into_result() {
            Ok(value) => return Ok(value),
            Err(last) => last,
        };
        if std::time::Instant::now() >= deadline {
            return Err(last);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(SYNC_PAUSE_CAP);
    }
}

/// Polls `cond` until it holds, sleeping on Tokio's clock between polls, and returns what it
/// hands back. Checks at least once, and once more after `limit`; then panics naming `what`,
/// `limit` and the last thing `cond` saw.
///
/// Under paused time (`#[tokio::test(start_paused = true)]`) the deadline is on the paused
/// clock: each pause lets the clock run to the next timer, so a condition that never holds
/// fails after `limit` of test time instead of hanging.
pub async fn eventually<O: Outcome>(
    what: &str,
    limit: Duration,
    mut cond: impl FnMut() -> O,
) -> O::Value {
    let deadline = tokio::time::Instant::now() + limit;
    let mut pause = FIRST_PAUSE;
    loop {
        let last = match cond().into_result() {
            Ok(value) => return value,
            Err(last) => last,
        };
        if tokio::time::Instant::now() >= deadline {
            timed_out(what, limit, last);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(ASYNC_PAUSE_CAP);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn panic_message(f: impl FnOnce() + std::panic::UnwindSafe) -> String {
        let err = std::panic::catch_unwind(f).expect_err("the wait must fail");
        err.downcast_ref::<String>()
            .cloned()
            .expect("a formatted panic message")
    }

    #[test]
    fn wait_until_hands_back_what_the_condition_found() {
        let mut n = 0;
        let v = wait_until("n to reach 4", Duration::from_secs(5), || {
            n += 1;
            satisfies(n, |n| *n == 4)
        });
        assert_eq!(v, 4);
        let mut n = 0;
        let v = wait_until("a value", Duration::from_secs(5), || {
            n += 1;
            (n == 2).then_some("found")
        });
        assert_eq!(v, "found");
    }

    #[test]
    fn wait_until_fails_naming_what_how_long_and_the_last_value() {
        let msg = panic_message(|| {
            wait_until("the impossible", Duration::from_millis(30), || false);
        });
        assert_eq!(msg, "timed out after 30ms waiting for the impossible");
        let msg = panic_message(|| {
            let mut n = 0;
            wait_until("n to reach 1000", Duration::from_millis(30), || {
                n += 1;
                satisfies(n.min(7), |n| *n == 1000)
            });
        });
        assert_eq!(
            msg,
            "timed out after 30ms waiting for n to reach 1000; last seen: 7"
        );
    }

    #[test]
    fn wait_until_checks_once_even_with_no_time() {
        wait_until("a condition already true", Duration::ZERO, || true);
    }

    #[tokio::test(start_paused = true)]
    async fn eventually_fails_on_the_paused_clock_instead_of_hanging() {
        let start = tokio::time::Instant::now();
        let waited = tokio::spawn(async {
            eventually("the impossible", Duration::from_secs(60), || false).await;
        })
        .await
        .expect_err("the wait must fail");
        let msg = waited.into_panic();
        assert_eq!(
            msg.downcast_ref::<String>().map(String::as_str),
            Some("timed out after 60s waiting for the impossible")
        );
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_secs(60)
                && elapsed <= Duration::from_secs(60) + ASYNC_PAUSE_CAP,
            "{elapsed:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn eventually_sees_a_timer_within_the_pause_cap() {
        let start = tokio::time::Instant::now();
        let at = Duration::from_secs(74);
        let fired = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let set = fired.clone();
        tokio::spawn(async move {
            tokio::time::sleep(at).await;
            set.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        eventually("the timer", Duration::from_secs(100), || {
            fired.load(std::sync::atomic::Ordering::SeqCst)
        })
        .await;
        let elapsed = start.elapsed();
        assert!(
            elapsed >= at && elapsed <= at + ASYNC_PAUSE_CAP,
            "{elapsed:?}"
        );
    }
}
