//! The life of one connection, decided from what its bytes say and the time: when the peer's
//! FIN may reach the HTTP stack, which limit is due next, and when pending output has stalled.
//!
//! Sans I/O: the stream that owns a [`Lifecycle`] feeds it the bytes it reads and writes, the
//! peer's FIN, the send queue the kernel reports, and the time; the lifecycle answers. Its
//! tests drive it with scripted bytes and paused time.

use std::{io::IoSlice, time::Duration};

use tokio::time::Instant;

use super::{
    h1::Framing,
    timer::Timer,
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
    #[inline]
    pub(crate) fn take_moved(&mut self) -> bool {
        std::mem::take(&mut self.moved)
    }

    /// A deadline may have started or come earlier.
    #[inline]
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
    #[inline]
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

    /// The first `n` bytes of `bufs` written to the peer in one vectored write, followed as
    /// [`sent`](Self::sent) follows each slice in turn, with what needs doing only once per
    /// write done once: the write watch told of `n` bytes, GOAWAY and unframed bytes looked for
    /// at the end (each is kept once seen), and the deadlines looked at only after a slice
    /// that changed something (a head's end mid-write, the usual first slice, changes nothing).
    #[inline]
    pub(crate) fn sent_vectored(&mut self, bufs: &[IoSlice<'_>], mut n: usize) -> Change {
        if self.watch.wrote(n) {
            self.mark();
        }
        let goaway = self.wire.h2().map(|h| h.goaway_sent);
        let mut change = Change::default();
        for b in bufs {
            if n == 0 {
                break;
            }
            let take = n.min(b.len());
            let slice = self.wire.sent(&b[..take]);
            if slice != Change::default() {
                self.follow_change(slice);
            }
            change = change.or(slice);
            n -= take;
        }
        if goaway == Some(false) && self.wire.h2().is_some_and(|h| h.goaway_sent) {
            self.goaway_at = Stamp::Pending;
            self.mark();
        }
        self.note_unframed();
        change
    }

    /// What a chunk either way changed: a request started (the header timeout), the last
    /// message ended (the idle timeout; a server's response is written, a client's read, and a
    /// reset can end an HTTP/2 stream either way).
    #[inline(always)]
    fn follow(&mut self, change: Change) {
        self.follow_change(change);
        self.note_unframed();
    }

    /// What [`follow`](Self::follow) does with a chunk's [`Change`] (a chunk that changed
    /// nothing only keeps the time of unframed activity).
    #[inline(always)]
    fn follow_change(&mut self, change: Change) {
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
    #[inline]
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
    #[inline]
    pub(crate) fn held_eof_due(&self) -> bool {
        self.eof_held && self.wire.unanswered() == 0
    }

    /// The peer's FIN arrived (passed on or held).
    #[inline]
    pub(crate) fn peer_closed(&self) -> bool {
        self.peer_eof
    }

    /// The peer's FIN is held back.
    pub(crate) fn eof_held(&self) -> bool {
        self.eof_held && !self.held_eof_due()
    }

    /// Requests read so far reached the maximum.
    #[inline]
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

    /// Points `timer` at the next deadline and returns what is due now, if anything (the
    /// caller acts on it, then asks again). After a response, when only the idle timeout
    /// restarted and the armed timer fires no later, the full computation is skipped.
    pub(crate) fn arm(&mut self, timer: &mut Timer, now: Instant, retiring: bool) -> Option<Due> {
        let shortcut = !retiring
            && self
                .idle_restarted(now)
                .is_some_and(|at| timer.serves(at, now));
        if shortcut {
            return None;
        }
        let next = self.next(now, retiring);
        if let Some((at, due)) = next {
            if at <= now {
                return Some(due);
            }
        }
        timer.set(next.map(|(at, _)| at), now);
        None
    }

    /// Looks at the send queue (`None` where the kernel does not say); true when pending output
    /// made no progress for the write timeout: the connection is to be closed.
    pub(crate) fn check_write(&mut self, now: Instant, queue: Option<SendQueue>) -> bool {
        let flow = self.wire.h2().map(|h| (h.data_sent, h.flow_blocked()));
        self.watch.check(now, queue, flow)
    }
}

#[cfg(test)]
#[path = "lifecycle_tests.rs"]
mod tests;
