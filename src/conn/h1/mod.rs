//! HTTP/1 message framing, followed byte by byte without buffering: where each request and
//! response starts and ends in a stream, as RFC 9112 section 6 frames them.
//!
//! [`Scanner`] follows one direction (requests or responses). [`H1`] pairs the two directions of
//! one connection, so that a response knows what it answers (a `HEAD` response has no body, a
//! `CONNECT` answered 2xx and a `101` turn the connection into a tunnel).
//!
//! The scanner keeps only what framing needs: the method of each unanswered request, the status
//! of the response in progress, `Content-Length` and whether `Transfer-Encoding` ends in
//! `chunked`. Bytes it cannot frame (a malformed length, a chunk size that overflows) make the
//! connection [`Framing::Lost`]: the HTTP stack will reject them and close, and until then the
//! connection is never taken to be at a message boundary.

mod lines;
mod newlines;
mod scanner;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;

pub(crate) use self::scanner::Scanner;

/// Which kind of message a [`Scanner`] follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Request,
    Response,
}

/// What a request means for the framing of its response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Asked {
    pub(crate) head: bool,
    pub(crate) connect: bool,
}

/// Counts of what one call to [`Scanner::scan`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Seen {
    /// Messages whose first byte was in this chunk.
    pub(crate) started: u32,
    /// Heads completed (for responses, final heads only: 1xx interim heads are not counted).
    pub(crate) heads: u32,
    /// Messages completed, body included.
    pub(crate) completed: u32,
}

/// Whether the stream can still be framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// Every byte so far was framed.
    Known,
    /// After a `101 Switching Protocols` or a successful `CONNECT`: the bytes are no longer
    /// HTTP/1.
    Tunnel,
    /// Bytes that cannot be framed; the stack will reject them.
    Lost,
}

/// The most requests that can wait for their responses before framing gives up (a peer that
/// pipelines more than this in the stack's read buffer).
const MAX_UNANSWERED: u64 = 1 << 16;

/// A queue of [`Asked`], oldest first, that stores only what is not the default: most
/// requests ask nothing of their response's framing (not `HEAD`, not `CONNECT`), and those are
/// only counted. Each entry kept carries its place in the queue.
#[derive(Debug, Clone, Default)]
struct AskedQueue {
    /// Entries pushed and popped so far.
    pushed: u64,
    popped: u64,
    /// The entries that are not the default, with their place.
    kept: VecDeque<(u64, Asked)>,
}

impl AskedQueue {
    fn len(&self) -> u64 {
        self.pushed - self.popped
    }

    #[inline]
    fn push(&mut self, asked: Asked) {
        if asked != Asked::default() {
            self.kept.push_back((self.pushed, asked));
        }
        self.pushed += 1;
    }

    /// The oldest entry, removed (the default when the queue is empty).
    #[inline]
    fn pop(&mut self) -> Asked {
        if self.popped == self.pushed {
            return Asked::default();
        }
        let place = self.popped;
        self.popped += 1;
        match self.kept.front() {
            Some(&(at, asked)) if at == place => {
                self.kept.pop_front();
                asked
            }
            _ => Asked::default(),
        }
    }
}

/// Both directions of one HTTP/1 connection.
#[derive(Debug, Clone)]
pub(crate) struct H1 {
    /// Requests (read by a server, written by a client).
    pub(crate) requests: Scanner,
    /// Responses (written by a server, read by a client).
    pub(crate) responses: Scanner,
    /// What each request whose response has not started asked, oldest first.
    unanswered: AskedQueue,
    /// Request heads seen.
    pub(crate) request_heads: u64,
    /// Requests seen whole, body included.
    pub(crate) requests_complete: u64,
    /// Final responses completed.
    pub(crate) responses_complete: u64,
    overflow: bool,
}

impl Default for H1 {
    fn default() -> Self {
        Self {
            requests: Scanner::new(Kind::Request),
            responses: Scanner::new(Kind::Response),
            unanswered: AskedQueue::default(),
            request_heads: 0,
            requests_complete: 0,
            responses_complete: 0,
            overflow: false,
        }
    }
}

impl H1 {
    /// Follows request bytes.
    #[inline]
    pub(crate) fn requests(&mut self, buf: &[u8]) -> Seen {
        let unanswered = &mut self.unanswered;
        let overflow = &mut self.overflow;
        let seen = self.requests.scan(buf, &mut Asked::default, &mut |asked| {
            if unanswered.len() < MAX_UNANSWERED {
                unanswered.push(asked);
            } else {
                *overflow = true;
            }
        });
        self.request_heads += u64::from(seen.heads);
        self.requests_complete += u64::from(seen.completed);
        seen
    }

    /// Follows response bytes.
    #[inline]
    pub(crate) fn responses(&mut self, buf: &[u8]) -> Seen {
        let unanswered = &mut self.unanswered;
        let seen = self
            .responses
            .scan(buf, &mut || unanswered.pop(), &mut |_| {});
        self.responses_complete += u64::from(seen.completed);
        if self.responses.framing() == Framing::Tunnel {
            self.requests.tunnel();
        }
        seen
    }

    /// The status of the latest response started (0 before any).
    #[inline]
    pub(crate) fn response_status(&self) -> u16 {
        self.responses.status
    }

    /// Requests whose head was seen and whose response has not completed.
    #[inline]
    pub(crate) fn unanswered(&self) -> u64 {
        self.request_heads.saturating_sub(self.responses_complete)
    }

    /// How far the connection can be framed: lost when either direction is, or when a peer
    /// pipelined more requests than are remembered.
    #[inline]
    pub(crate) fn framing(&self) -> Framing {
        match (self.requests.framing(), self.responses.framing()) {
            (Framing::Lost, _) | (_, Framing::Lost) => Framing::Lost,
            _ if self.overflow => Framing::Lost,
            (Framing::Tunnel, _) | (_, Framing::Tunnel) => Framing::Tunnel,
            _ => Framing::Known,
        }
    }

    /// At a message boundary: every request seen was answered and no byte of a next request or
    /// response has been seen.
    #[inline]
    pub(crate) fn at_boundary(&self) -> bool {
        self.framing() == Framing::Known
            && self.unanswered() == 0
            && self.requests.is_idle()
            && self.responses.is_idle()
    }
}
