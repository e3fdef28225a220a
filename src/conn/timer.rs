//! One timer per connection, pointed at its next deadline, cheap to keep on the request path.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, Waker},
};

use tokio::time::{Instant, Sleep};

/// A timer for the earliest of a connection's deadlines.
///
/// Moving a deadline later does not touch the timer wheel while the armed instant is still
/// ahead: the timer fires early and its owner recomputes. Polling is skipped while this task's
/// waker is registered and the timer has not fired.
#[derive(Debug, Default)]
pub(crate) struct Timer {
    sleep: Option<Pin<Box<Sleep>>>,
    armed: Option<Instant>,
    /// The waker the sleep holds, when it was polled pending since it was last armed.
    registered: Option<Waker>,
}

impl Timer {
    /// Points the timer at `at` (`None`: nothing due). Returns the instant it is armed for.
    pub(crate) fn set(&mut self, at: Option<Instant>, now: Instant) -> Option<Instant> {
        let Some(at) = at else {
            self.armed = None;
            return None;
        };
        if let Some(armed) = self.armed {
            // An earlier instant still ahead serves as a recheck.
            if armed <= at && armed > now {
                return Some(armed);
            }
        }
        match &mut self.sleep {
            Some(s) => s.as_mut().reset(at),
            None => self.sleep = Some(Box::pin(tokio::time::sleep_until(at))),
        }
        self.armed = Some(at);
        self.registered = None;
        Some(at)
    }

    /// The timer as armed still serves for a next deadline at `at` (`None`: nothing due): it
    /// fires no later than that (early is a recheck), and has not fired yet.
    #[inline]
    pub(crate) fn serves(&self, at: Option<Instant>, now: Instant) -> bool {
        match (self.armed, at) {
            (Some(armed), Some(at)) => armed > now && armed <= at,
            (Some(armed), None) => armed > now,
            (None, at) => at.is_none(),
        }
    }

    /// True when the armed instant has passed (no clock read: the timer wheel's flag).
    #[inline]
    pub(crate) fn is_elapsed(&self) -> bool {
        self.armed.is_some() && self.sleep.as_ref().is_some_and(|s| s.is_elapsed())
    }

    /// `Ready` once the armed instant has passed; the timer is then disarmed.
    ///
    /// The usual look, an armed timer that has not fired polled again by the task it already
    /// holds the waker of, is a few compares here; anything else goes the slow way.
    #[inline]
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.armed.is_none() {
            return Poll::Pending;
        }
        let Some(sleep) = self.sleep.as_ref() else {
            return Poll::Pending;
        };
        if !sleep.is_elapsed()
            && self
                .registered
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
        {
            return Poll::Pending;
        }
        self.poll_sleep(cx)
    }

    /// Polls the armed sleep: it fired, or the waker it holds is not this task's.
    #[inline(never)]
    fn poll_sleep(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(sleep) = self.sleep.as_mut() else {
            return Poll::Pending;
        };
        // Unconstrained: a `Pending` from an exhausted task budget would not register the waker.
        match Pin::new(&mut tokio::task::unconstrained(sleep.as_mut())).poll(cx) {
            Poll::Pending => {
                self.registered = Some(cx.waker().clone());
                Poll::Pending
            }
            Poll::Ready(()) => {
                self.armed = None;
                self.registered = None;
                Poll::Ready(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_armed_timer_serves_for_a_later_deadline_until_it_fires() {
        let mut t = Timer::default();
        let now = Instant::now();
        let s = Duration::from_secs(1);
        assert!(t.serves(None, now), "nothing armed, nothing due");
        assert!(
            !t.serves(Some(now + s), now),
            "nothing armed, something due"
        );
        t.set(Some(now + 2 * s), now);
        assert!(t.serves(Some(now + 3 * s), now), "fires early: a recheck");
        assert!(t.serves(Some(now + 2 * s), now));
        assert!(t.serves(None, now));
        assert!(!t.serves(Some(now + s), now), "would fire late");
        assert!(!t.serves(Some(now + 3 * s), now + 2 * s), "already due");
    }
}
