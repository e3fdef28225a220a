//! The life of one connection, decided from what its bytes say and the time: when the peer's
//! FIN may reach the HTTP stack, which limit is due next, and when pending output has stalled.
//!
//! Sans I/O: the stream that owns a [`Lifecycle`] feeds it the bytes it reads and writes, the
//! peer's FIN, the send queue the kernel reports, and the time; the lifecycle answers. Its
//! tests drive it with scripted bytes and paused time.

use std::time::Duration;

use tokio::time::Instant;

use super::{
    h1::Framing,
    wire::{Change, Wire},
    write_watch::WriteWatch,
};
use crate::sys::SendQueue;

/// How long an HTTP/2 connection that sent GOAWAY stays open once no stream is open, unless
/// set otherwise.
pub(crate) const GOAWAY_GRACE: Duration = Duration::from_secs(5);

/// The limits one connection is held to; `None` turns a limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub(crate) header: Option<Duration>,
    pub(crate) idle: Option<Duration>,
    pub(crate) max_age: Option<Duration>,
    pub(crate) max_requests: Option<u64>,
    pub(crate) write: Option<Duration>,
    /// A peer's FIN after complete requests waits until they are answered (else it cancels
    /// them).
    pub(crate) finish_half_closed: bool,
    /// How long an HTTP/2 connection that sent GOAWAY stays open once no stream is open.
    pub(crate) goaway_grace: Duration,
}

/// What to do with the peer's FIN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PeerEof {
    /// Pass it on now: no request read is unanswered.
    Deliver,
    /// Hold it back until the requests read are answered.
    Hold,
    /// Pass it on now; this many requests read are cancelled (HTTP/2 has no half-close, or
    /// the half-close policy cancels).
    Cancel(u64),
    /// Pass it on now: it cut a request short (head or body incomplete).
    Truncated,
}

/// The next thing due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Due {
    /// A request head (or, on a new connection, the first one) took too long.
    Header,
    /// Idle at a message boundary for too long.
    Idle,
    /// Old enough to retire.
    MaxAge,
    /// Retiring and at a message boundary: close now (HTTP/2 with a driver: send GOAWAY).
    Retire,
    /// GOAWAY sent, no stream open, and the grace is over.
    GoawayGrace,
    /// Time to look at the send queue.
    WriteCheck,
}

/// A time taken lazily: events mark it pending, the next deadline computation stamps it, so
/// the request path reads the clock at most once per wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stamp {
    Unset,
    Pending,
    At(Instant),
}

impl Stamp {
    fn resolve(&mut self, now: Instant) -> Option<Instant> {
        match *self {
            Stamp::Unset => None,
            Stamp::Pending => {
                *self = Stamp::At(now);
                Some(now)
            }
            Stamp::At(t) => Some(t),
        }
    }
}

/// One connection's state, limits and deadlines.
#[derive(Debug, Clone)]
pub(crate) struct Lifecycle {
    pub(crate) wire: Wire,
    limits: Limits,
    opened: Instant,
    head_started: Stamp,
    idle_since: Stamp,
    goaway_at: Stamp,
    /// The last byte either way, while the bytes cannot be framed.
    unframed_activity: Stamp,
    peer_eof: bool,
    eof_held: bool,
    watch: WriteWatch,
    /// A deadline may have moved since [`next`](Self::next) last ran.
    moved: bool,
    /// A deadline other than the idle timeout may have started or come earlier since
    /// [`next`](Self::next) last ran.
    earlier: bool,
}

impl Lifecycle {
    pub(crate) fn new(wire: Wire, limits: Limits, opened: Instant) -> Self {
        Self {
            wire,
            limits,
            opened,
            head_started: Stamp::Unset,
            idle_since: Stamp::At(opened),
            goaway_at: Stamp::Unset,
            unframed_activity: Stamp::Unset,
            peer_eof: false,
            eof_held: false,
            watch: WriteWatch::new(limits.write),
            moved: false,
            earlier: false,
        }
    }

    /// True (once) when a deadline may have started or come earlier since [`next`](Self::next)
    /// last ran: a request head started (header timeout), the connection reached a message
    /// boundary (idle timeout), GOAWAY went out (grace), output began (write watch). The owner
    /// computes them again before it waits. A change that only ends a deadline (a head
    /// completed) does not count: the timer armed for it fires early and is recomputed then.
    pub(crate) fn take_moved(&mut self) -> bool {
        std::mem::take(&mut self.moved)
    }

    /// A deadline may have started or come earlier.
    fn mark(&mut self) {
        self.moved = true;
        self.earlier = true;
    }

    /// The request path's shortcut past [`next`](Self::next): when all that moved since it last
    /// ran is the idle timeout, restarted by the end of the last message (nothing can have come
    /// earlier), stamps the idle start with `now` and returns the idle deadline (inner `None`:
    /// no idle timeout). The timer armed for the earlier result still serves when it is due no
    /// later than that. Outer `None`: anything else moved, and `next` must run. The caller has
    /// checked that the connection is not retiring.
    pub(crate) fn idle_restarted(&mut self, now: Instant) -> Option<Option<Instant>> {
        let simple = !self.earlier
            && self.idle_since == Stamp::Pending
            && self.goaway_at == Stamp::Unset
            && !self.eof_held
            && self.wire.framing() == Framing::Known
            && self.wire.at_boundary()
            && !self.wire.awaiting_head();
        if !simple {
            return None;
        }
        self.idle_since = Stamp::At(now);
        Some(self.limits.idle.map(|t| now + t))
    }

    /// Bytes read from the peer.
    #[inline]
    pub(crate) fn received(&mut self, buf: &[u8]) -> Change {
        let change = self.wire.received(buf);
        self.follow(change);
        change
    }

    /// Bytes written to the peer.
    #[inline]
    pub(crate) fn sent(&mut self, buf: &[u8]) -> Change {
        if self.watch.wrote(buf.len()) {
            self.mark();
        }
        let change = match self.wire.h2() {
            // Only HTTP/2 sends GOAWAY (the protocol of bytes written is known and never
            // changes: a server writes nothing before it knows it).
            Some(h) => {
                let goaway = h.goaway_sent;
                let change = self.wire.sent(buf);
                if !goaway && self.wire.h2().is_some_and(|h| h.goaway_sent) {
                    self.goaway_at = Stamp::Pending;
                    self.mark();
                }
                change
            }
            None => self.wire.sent(buf),
        };
        self.follow(change);
        change
    }

    /// What a chunk either way changed: a request started (the header timeout), the last
    /// message ended (the idle timeout; a server's response is written, a client's read, and a
    /// reset can end an HTTP/2 stream either way).
    #[inline]
    fn follow(&mut self, change: Change) {
        if change.request_started {
            self.head_started = Stamp::Pending;
            // A start moves a deadline only when the header timeout then runs: one is set, and
            // the head is still incomplete (a head that started and completed within these
            // bytes started and ended it; without a header timeout a start only ends the idle
            // deadline).
            if self.limits.header.is_some() && self.wire.awaiting_head() {
                self.mark();
            }
        }
        if change.messages && self.wire.at_boundary() {
            self.idle_since = Stamp::Pending;
            self.moved = true;
        }
        self.note_unframed();
    }

    /// The idle timeout changed (a client learned a shorter keep-alive from its server).
    pub(crate) fn set_idle(&mut self, idle: Option<Duration>) {
        if self.limits.idle != idle {
            self.limits.idle = idle;
            self.mark();
        }
    }

    /// Bytes that cannot be framed keep no message boundary: the idle timeout then counts from
    /// the last byte either way, so that no input can turn the limits off.
    #[inline]
    fn note_unframed(&mut self) {
        if self.wire.framing() == Framing::Lost {
            self.unframed_activity = Stamp::Pending;
            self.mark();
        }
    }

    /// A write could not go on: the send buffer is full.
    pub(crate) fn write_blocked(&mut self) {
        if self.watch.blocked() {
            self.mark();
        }
    }

    /// The peer's FIN arrived.
    pub(crate) fn peer_eof(&mut self) -> PeerEof {
        self.peer_eof = true;
        let unanswered = self.wire.unanswered();
        if self.wire.is_h2() || self.wire.framing() != Framing::Known {
            return if unanswered > 0 {
                PeerEof::Cancel(unanswered)
            } else {
                PeerEof::Deliver
            };
        }
        if self.wire.request_incomplete() {
            return PeerEof::Truncated;
        }
        if unanswered == 0 {
            PeerEof::Deliver
        } else if self.limits.finish_half_closed {
            self.eof_held = true;
            PeerEof::Hold
        } else {
            PeerEof::Cancel(unanswered)
        }
    }

    /// The peer's FIN is held back and may now be passed on.
    pub(crate) fn held_eof_due(&self) -> bool {
        self.eof_held && self.wire.unanswered() == 0
    }

    /// The peer's FIN arrived (passed on or held).
    pub(crate) fn peer_closed(&self) -> bool {
        self.peer_eof
    }

    /// The peer's FIN is held back.
    pub(crate) fn eof_held(&self) -> bool {
        self.eof_held && !self.held_eof_due()
    }

    /// Requests read so far reached the maximum.
    pub(crate) fn max_requests_reached(&self) -> bool {
        self.limits
            .max_requests
            .is_some_and(|max| self.wire.requests() >= max)
    }

    /// The next thing due, given whether the connection is retiring and whether a driver sends
    /// GOAWAY for it. Stamps the times taken lazily with `now`.
    pub(crate) fn next(&mut self, now: Instant, retiring: bool) -> Option<(Instant, Due)> {
        self.moved = false;
        self.earlier = false;
        self.watch
            .start(now, self.wire.h2().map_or(0, |h| h.data_sent));
        let head_started = self.head_started.resolve(now);
        let idle_since = self.idle_since.resolve(now);
        let goaway_at = self.goaway_at.resolve(now);
        let unframed_activity = self.unframed_activity.resolve(now);
        let wire = &self.wire;
        let mut best: Option<(Instant, Due)> = None;
        let mut consider = |at: Instant, due: Due| {
            if best.is_none_or(|(b, _)| at < b) {
                best = Some((at, due));
            }
        };
        if let Some(at) = self.watch.next_check() {
            consider(at, Due::WriteCheck);
        }
        match wire.framing() {
            Framing::Known => {}
            // An upgraded connection's protocol is the application's.
            Framing::Tunnel => return best,
            Framing::Lost => {
                if let (Some(t), Some(last)) = (self.limits.idle, unframed_activity) {
                    consider(last + t, Due::Idle);
                }
                return best;
            }
        }
        let boundary = wire.at_boundary() && !self.eof_held;
        if let Some(at) = goaway_at {
            if boundary {
                consider(at + self.limits.goaway_grace, Due::GoawayGrace);
            }
            return best;
        }
        if retiring && boundary {
            consider(now, Due::Retire);
            return best;
        }
        let header = self.limits.header.filter(|_| wire.awaiting_head());
        if let Some(t) = header {
            let start = match head_started {
                Some(s) if wire.requests() > 0 && !wire.is_h2() => s,
                _ => self.opened,
            };
            consider(start + t, Due::Header);
        } else if let (Some(t), true) = (self.limits.idle, boundary) {
            consider(idle_since.unwrap_or(self.opened) + t, Due::Idle);
        }
        if let (Some(age), false) = (self.limits.max_age, retiring) {
            consider(self.opened + age, Due::MaxAge);
        }
        best
    }

    /// Looks at the send queue (`None` where the kernel does not say); true when pending output
    /// made no progress for the write timeout: the connection is to be closed.
    pub(crate) fn check_write(&mut self, now: Instant, queue: Option<SendQueue>) -> bool {
        let flow = self.wire.h2().map(|h| (h.data_sent, h.flow_blocked()));
        self.watch.check(now, queue, flow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::h2::PREFACE;

    fn limits() -> Limits {
        Limits {
            header: Some(Duration::from_secs(10)),
            idle: Some(Duration::from_secs(75)),
            max_age: None,
            max_requests: None,
            write: Some(Duration::from_secs(30)),
            finish_half_closed: true,
            goaway_grace: Duration::from_secs(5),
        }
    }

    fn server(limits: Limits) -> Lifecycle {
        Lifecycle::new(Wire::server(), limits, Instant::now())
    }

    const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

    #[tokio::test(start_paused = true)]
    async fn header_then_idle_then_header_again() {
        let mut l = server(limits());
        let t0 = Instant::now();
        // Nothing read: the header timeout runs from accept.
        assert_eq!(
            l.next(t0, false),
            Some((t0 + Duration::from_secs(10), Due::Header))
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        l.received(GET);
        let t1 = Instant::now();
        assert_eq!(
            l.next(t1, false),
            None,
            "a request in flight has no deadline"
        );
        tokio::time::advance(Duration::from_secs(3)).await;
        l.sent(OK);
        let t2 = Instant::now();
        assert_eq!(l.next(t2, false).map(|(_, d)| d), Some(Due::WriteCheck));
        assert!(!l.check_write(t2 + Duration::from_secs(8), None));
        // Nothing pending: the write watch is gone, the idle timeout runs from the response.
        assert_eq!(
            l.next(t2 + Duration::from_secs(8), false),
            Some((t2 + Duration::from_secs(75), Due::Idle))
        );
        // The first byte of the next head starts the header timeout.
        tokio::time::advance(Duration::from_secs(20)).await;
        l.received(b"GE");
        let t3 = Instant::now();
        assert_eq!(
            l.next(t3, false),
            Some((t3 + Duration::from_secs(10), Due::Header))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_idle_shortcut_agrees_with_the_full_computation_and_steps_aside_otherwise() {
        let mut l = server(limits());
        // The first request: its response starts the write watch, so the full computation runs.
        l.received(GET);
        l.sent(OK);
        let t0 = Instant::now();
        assert_eq!(l.idle_restarted(t0), None, "the write watch started");
        l.next(t0, false);
        // Keep-alive requests with the watch running: only the idle timeout restarts.
        for _ in 0..3 {
            tokio::time::advance(Duration::from_secs(1)).await;
            l.received(GET);
            l.sent(OK);
            let now = Instant::now();
            let mut full = l.clone();
            assert_eq!(
                l.idle_restarted(now),
                Some(Some(now + Duration::from_secs(75)))
            );
            // What `next` computes from the same bytes: the idle deadline at the same instant,
            // or an earlier recheck of the write watch.
            let (at, due) = full.next(now, false).expect("a deadline");
            assert!(
                due == Due::WriteCheck || (due, at) == (Due::Idle, now + Duration::from_secs(75))
            );
            assert!(at <= now + Duration::from_secs(75));
            // Stamped: the full computation later finds the same idle start.
            assert_eq!(l.idle_since, Stamp::At(now));
        }
        // A head that starts and stays incomplete can bring the header timeout earlier.
        l.received(b"GET / HT");
        assert_eq!(l.idle_restarted(Instant::now()), None);
        l.next(Instant::now(), false);
        l.received(b"TP/1.1\r\n\r\n");
        l.peer_eof();
        l.sent(OK);
        assert_eq!(
            l.idle_restarted(Instant::now()),
            None,
            "a held FIN was released"
        );

        // No idle timeout: nothing to stamp a deadline for.
        let mut l = server(Limits {
            idle: None,
            write: None,
            ..limits()
        });
        l.received(GET);
        l.sent(OK);
        assert_eq!(l.idle_restarted(Instant::now()), Some(None));
    }

    #[tokio::test(start_paused = true)]
    async fn a_fin_after_complete_requests_is_held_until_they_are_answered() {
        let mut l = server(limits());
        let mut pipelined = GET.to_vec();
        pipelined.extend_from_slice(GET);
        l.received(&pipelined);
        assert_eq!(l.peer_eof(), PeerEof::Hold);
        assert!(l.eof_held());
        l.sent(OK);
        assert!(l.eof_held(), "one response of two");
        l.sent(OK);
        assert!(!l.eof_held() && l.held_eof_due());

        // The policy cancels instead.
        let mut l = server(Limits {
            finish_half_closed: false,
            ..limits()
        });
        l.received(GET);
        assert_eq!(l.peer_eof(), PeerEof::Cancel(1));

        // A request cut short cannot be answered.
        let mut l = server(limits());
        l.received(b"POST / HTTP/1.1\r\nContent-Length: 9\r\n\r\nabc");
        assert_eq!(l.peer_eof(), PeerEof::Truncated);

        // At a boundary the FIN goes through at once.
        let mut l = server(limits());
        l.received(GET);
        l.sent(OK);
        assert_eq!(l.peer_eof(), PeerEof::Deliver);
    }

    #[tokio::test(start_paused = true)]
    async fn http2_has_no_half_close() {
        let mut l = server(limits());
        l.received(PREFACE);
        // HEADERS, END_HEADERS | END_STREAM, stream 1.
        l.received(&[0, 0, 1, 1, 5, 0, 0, 0, 1, 0x82]);
        assert_eq!(l.wire.unanswered(), 1);
        assert_eq!(l.peer_eof(), PeerEof::Cancel(1));
    }

    #[tokio::test(start_paused = true)]
    async fn an_http2_preface_does_not_escape_the_header_timeout() {
        let mut l = server(limits());
        let t0 = Instant::now();
        l.received(&PREFACE[..10]);
        assert_eq!(
            l.next(t0, false),
            Some((t0 + Duration::from_secs(10), Due::Header))
        );
        l.received(&PREFACE[10..]);
        // SETTINGS: still no request head.
        l.received(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(
            l.next(Instant::now(), false),
            Some((t0 + Duration::from_secs(10), Due::Header))
        );
        l.received(&[0, 0, 1, 1, 5, 0, 0, 0, 1, 0x82]);
        assert_eq!(l.next(Instant::now(), false), None);
    }

    #[tokio::test(start_paused = true)]
    async fn retirement_waits_for_the_boundary_and_a_request_read_before_it() {
        let mut l = server(limits());
        l.received(GET);
        let now = Instant::now();
        assert_eq!(l.next(now, true), None, "in flight: not yet");
        l.sent(OK);
        l.received(b"GET /next HTTP/1.1\r\n");
        assert_eq!(
            l.next(now, true).map(|(_, d)| d),
            Some(Due::WriteCheck),
            "bytes of the next request were read: it is served first"
        );
        l.received(b"\r\n");
        l.sent(OK);
        assert_eq!(l.next(now, true), Some((now, Due::Retire)));
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_that_cannot_be_framed_still_meet_the_idle_timeout() {
        let mut l = server(limits());
        l.received(b"POST / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n");
        let t0 = Instant::now();
        assert_eq!(
            l.next(t0, false),
            Some((t0 + Duration::from_secs(75), Due::Idle))
        );
        tokio::time::advance(Duration::from_secs(30)).await;
        l.received(b"more");
        let t1 = Instant::now();
        assert_eq!(
            l.next(t1, false),
            Some((t1 + Duration::from_secs(75), Due::Idle))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn max_age_and_max_requests() {
        let mut l = server(Limits {
            max_age: Some(Duration::from_secs(60)),
            max_requests: Some(2),
            ..limits()
        });
        let t0 = Instant::now();
        l.received(GET);
        l.sent(OK);
        assert!(!l.max_requests_reached());
        let _ = l.next(t0, false);
        let _ = l.check_write(t0, None);
        assert_eq!(
            l.next(t0, false),
            Some((t0 + Duration::from_secs(60), Due::MaxAge))
        );
        l.received(GET);
        assert!(l.max_requests_reached());
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_send_queue_is_cut_after_the_write_timeout() {
        let mut l = server(limits());
        l.received(GET);
        l.sent(OK);
        let t0 = Instant::now();
        let (at, due) = l.next(t0, false).unwrap();
        assert_eq!(
            (at, due),
            (t0 + Duration::from_millis(7500), Due::WriteCheck)
        );
        let stuck = SendQueue {
            queued: 100_000,
            acked: 10,
        };
        // Progress, then none.
        assert!(!l.check_write(at, Some(stuck)));
        let mut t = at;
        let mut cut_at = None;
        for _ in 0..10 {
            t += Duration::from_millis(7500);
            if l.check_write(t, Some(stuck)) {
                cut_at = Some(t);
                break;
            }
        }
        // The last progress was seen at `at`: cut one timeout later, to the check.
        assert_eq!(cut_at, Some(at + Duration::from_secs(30)));

        // A slow reader that keeps acknowledging is never cut.
        let mut l = server(limits());
        l.received(GET);
        l.sent(OK);
        let _ = l.next(t0, false);
        for i in 1..20u64 {
            let q = SendQueue {
                queued: 100_000,
                acked: 10 + i,
            };
            assert!(!l.check_write(t0 + Duration::from_secs(10 * i), Some(q)));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_http2_response_stalled_on_flow_control_is_cut() {
        let mut l = server(limits());
        l.received(PREFACE);
        // SETTINGS_INITIAL_WINDOW_SIZE = 0, then a request.
        l.received(&[0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0]);
        l.received(&[0, 0, 1, 1, 5, 0, 0, 0, 1, 0x82]);
        // Response HEADERS, then an empty DATA frame: the stream has no window.
        l.sent(&[0, 0, 1, 1, 4, 0, 0, 0, 1, 0x88]);
        l.sent(&[0, 0, 0, 0, 0, 0, 0, 0, 1]);
        let t0 = Instant::now();
        let (at, _) = l.next(t0, false).unwrap();
        assert!(!l.check_write(at, None));
        assert!(l.check_write(t0 + Duration::from_secs(31), None));
    }

    #[tokio::test(start_paused = true)]
    async fn goaway_then_grace_once_no_stream_is_open() {
        let mut l = server(limits());
        l.received(PREFACE);
        l.received(&[0, 0, 1, 1, 5, 0, 0, 0, 1, 0x82]);
        // GOAWAY while the stream is open: no grace yet.
        l.sent(&[0, 0, 8, 7, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]);
        let t0 = Instant::now();
        assert_eq!(l.next(t0, true).map(|(_, d)| d), Some(Due::WriteCheck));
        l.sent(&[0, 0, 1, 1, 5, 0, 0, 0, 1, 0x88]);
        let _ = l.check_write(t0, None);
        assert_eq!(
            l.next(t0, true),
            Some((t0 + Duration::from_secs(5), Due::GoawayGrace))
        );
    }
}
