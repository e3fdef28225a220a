//! The write timeout's watch: output pending for a peer that makes no progress for the timeout
//! is a stall. Pending means bytes in the socket's send queue, a write the kernel refused for
//! lack of room, or (HTTP/2) a response whose body has no flow-control window; progress means
//! bytes acknowledged or written, or DATA sent.
//!
//! The watch starts with the first write and looks at the send queue four times per timeout
//! while anything is pending, so a stall is cut between one and one and a quarter timeouts
//! after its last progress; with nothing pending it stops until the next write. Shared by the
//! server's connections and the client's.

use std::time::Duration;

use tokio::time::Instant;

use crate::sys::SendQueue;

/// The write timeout by default: pending output that makes no progress for this long is cut.
/// Long enough for a congested mobile link to recover from a stall of several RTOs, short
/// enough that a peer that stopped reading does not pin send buffers for minutes (nginx's
/// `send_timeout` is 60 s, HAProxy's `timeout client`/`server` commonly 30 s).
pub(crate) const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy)]
struct Watching {
    next_check: Instant,
    /// Send-queue progress (bytes acknowledged plus bytes written) when it last moved, and when.
    sock: (u64, Instant),
    /// Flow progress (HTTP/2 DATA bytes sent) when it last moved, and when.
    flow: (u64, Instant),
}

/// Pending output and its progress, for one connection.
#[derive(Debug, Clone)]
pub(crate) struct WriteWatch {
    limit: Option<Duration>,
    written: u64,
    blocked: bool,
    wanted: bool,
    watching: Option<Watching>,
}

impl WriteWatch {
    /// A watch for `limit` (`None`: no write timeout, nothing is watched).
    pub(crate) fn new(limit: Option<Duration>) -> Self {
        Self {
            limit,
            written: 0,
            blocked: false,
            wanted: false,
            watching: None,
        }
    }

    /// `n` bytes were written. True when the watch must start: the owner arms its timer
    /// again ([`start`](Self::start), then [`next_check`](Self::next_check)).
    #[inline]
    pub(crate) fn wrote(&mut self, n: usize) -> bool {
        self.written += n as u64;
        self.blocked = false;
        self.want()
    }

    /// A write found the send buffer full. True as for [`wrote`](Self::wrote).
    pub(crate) fn blocked(&mut self) -> bool {
        self.blocked = true;
        self.want()
    }

    #[inline]
    fn want(&mut self) -> bool {
        if self.limit.is_some() && self.watching.is_none() && !self.wanted {
            self.wanted = true;
            return true;
        }
        false
    }

    /// Starts the watch if a write asked for it; `flow` is the flow progress now.
    pub(crate) fn start(&mut self, now: Instant, flow: u64) {
        if !std::mem::take(&mut self.wanted) {
            return;
        }
        if let Some(limit) = self.limit {
            self.watching = Some(Watching {
                next_check: now + check_interval(limit),
                sock: (self.written, now),
                flow: (flow, now),
            });
        }
    }

    /// When the send queue is to be looked at next.
    pub(crate) fn next_check(&self) -> Option<Instant> {
        self.watching.map(|w| w.next_check)
    }

    /// Looks at the send queue (`None` where the kernel does not say) and the flow progress
    /// (`None` where there is no flow control: HTTP/1); true when pending output made no
    /// progress for the timeout.
    pub(crate) fn check(
        &mut self,
        now: Instant,
        queue: Option<SendQueue>,
        flow: Option<(u64, bool)>,
    ) -> bool {
        let (Some(limit), Some(w)) = (self.limit, self.watching.as_mut()) else {
            return false;
        };
        let sock_now = queue.map_or(0, |q| q.acked) + self.written;
        if sock_now != w.sock.0 {
            w.sock = (sock_now, now);
        }
        let (flow_now, flow_pending) = flow.unwrap_or((0, false));
        if flow_now != w.flow.0 {
            w.flow = (flow_now, now);
        }
        let sock_pending = self.blocked || queue.is_some_and(|q| q.queued > 0);
        if (sock_pending && now.duration_since(w.sock.1) >= limit)
            || (flow_pending && now.duration_since(w.flow.1) >= limit)
        {
            return true;
        }
        if sock_pending || flow_pending {
            w.next_check = now + check_interval(limit);
        } else {
            self.watching = None;
        }
        false
    }
}

/// Four looks per timeout while output is pending.
fn check_interval(limit: Duration) -> Duration {
    (limit / 4).max(Duration::from_millis(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_queue_that_stops_draining_is_a_stall_one_that_drains_slowly_is_not() {
        let t0 = Instant::now();
        let limit = Duration::from_secs(8);
        let mut w = WriteWatch::new(Some(limit));
        assert!(w.wrote(100));
        assert!(!w.wrote(100), "already asked for");
        w.start(t0, 0);
        let q = |queued, acked| Some(SendQueue { queued, acked });
        let mut t = w.next_check().unwrap();
        assert_eq!(t, t0 + Duration::from_secs(2));
        // Slow but steady: never a stall.
        for i in 0..20 {
            assert!(!w.check(t, q(1000, i), None));
            t = w.next_check().unwrap();
        }
        // Stuck from here: cut once a whole timeout passed since the last progress.
        let stuck_since = t;
        assert!(!w.check(t, q(1000, 20), None));
        let mut cut = None;
        for _ in 0..10 {
            t = w.next_check().unwrap();
            if w.check(t, q(1000, 20), None) {
                cut = Some(t);
                break;
            }
        }
        assert_eq!(cut, Some(stuck_since + limit));
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_pending_stops_the_watch_and_no_limit_watches_nothing() {
        let t0 = Instant::now();
        let mut w = WriteWatch::new(Some(Duration::from_secs(4)));
        w.wrote(10);
        w.start(t0, 0);
        assert!(!w.check(
            t0 + Duration::from_secs(1),
            Some(SendQueue {
                queued: 0,
                acked: 10
            }),
            None
        ));
        assert_eq!(w.next_check(), None);
        assert!(w.wrote(10), "the next write starts it again");

        let mut off = WriteWatch::new(None);
        assert!(!off.wrote(10) && !off.blocked());
        off.start(t0, 0);
        assert_eq!(off.next_check(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_flow_control_stall_ignores_other_traffic() {
        let t0 = Instant::now();
        let limit = Duration::from_secs(4);
        let mut w = WriteWatch::new(Some(limit));
        w.wrote(10);
        w.start(t0, 500);
        // Pings keep the socket busy, but no DATA moves while a response is blocked.
        let mut acked = 0;
        let mut cut = None;
        for _ in 0..10 {
            let t = w.next_check().unwrap();
            acked += 17;
            w.wrote(17);
            if w.check(t, Some(SendQueue { queued: 0, acked }), Some((500, true))) {
                cut = Some(t);
                break;
            }
        }
        assert_eq!(cut, Some(t0 + limit));
    }
}
