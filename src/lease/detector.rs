//! The background leak detector: one tokio task per tracker, started by the first lease taken
//! inside a runtime.

use std::{
    future::Future,
    panic::AssertUnwindSafe,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Weak,
    },
    time::Duration,
};

use tokio::time::MissedTickBehavior;

use super::tracker::Shared;

/// Shortest period between two checks, whatever the threshold.
const MIN_PERIOD: Duration = Duration::from_millis(5);
/// Longest period between two checks: keeps huge thresholds from overflowing the timer.
const MAX_PERIOD: Duration = Duration::from_secs(3600);

/// Checks every half threshold, so a leak is reported between 1 and 1.5 thresholds after the
/// lease was taken.
pub(super) fn period(threshold: Duration) -> Duration {
    (threshold / 2).clamp(MIN_PERIOD, MAX_PERIOD)
}

/// Clears the tracker's "detector running" flag when the task ends, however it ends (its
/// tracker gone, aborted, or dropped with its runtime), so that a later lease can start
/// another one.
struct ClearOnDrop(Option<Arc<AtomicBool>>);

impl ClearOnDrop {
    /// Keeps the flag set for good.
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        if let Some(running) = self.0.take() {
            running.store(false, Ordering::Release);
        }
    }
}

/// The detector task. The flag guard is made outside the `async` block so that it clears the
/// flag even if the task is dropped before its first poll (its runtime shut down first).
pub(super) fn run(
    tracker: Weak<Shared>,
    period: Duration,
    running: Arc<AtomicBool>,
) -> impl Future<Output = ()> + Send + 'static {
    let mut clear = ClearOnDrop(Some(running));
    async move {
        // A runtime built without `enable_time` has no timer, and creating one panics. Catch
        // it and stay "running" (no respawn on every lease): leaks are then found by
        // `check_leaks` and `snapshot` only.
        let ticks = std::panic::catch_unwind(AssertUnwindSafe(|| tokio::time::interval(period)));
        let Ok(mut ticks) = ticks else {
            clear.disarm();
            tracing::warn!(
                target: "conn_hygiene::lease",
                "this tokio runtime has no timer: leaks are found only by check_leaks() and \
                 snapshot()"
            );
            return;
        };
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // The first tick completes at once.
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let Some(shared) = tracker.upgrade() else {
                break;
            };
            shared.core.check_leaks();
        }
        drop(clear);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn period_is_half_the_threshold_within_bounds() {
        assert_eq!(period(Duration::from_secs(30)), Duration::from_secs(15));
        assert_eq!(period(Duration::from_millis(2)), MIN_PERIOD);
        assert_eq!(period(Duration::MAX), MAX_PERIOD);
    }
}
