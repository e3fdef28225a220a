//! What the bytes of one connection say about its messages, whatever its protocol and side: a
//! server finds the protocol from the first bytes it reads (the HTTP/2 client preface, or
//! HTTP/1), a client knows it from the connect (ALPN or configuration); then [`H1`] or [`H2`]
//! follows both directions. A server reads requests and writes responses, a client the reverse.

use super::{
    h1::{Framing, H1},
    h2::{Role, H2, PREFACE},
};

#[derive(Debug, Clone)]
enum Proto {
    /// A server that has read fewer bytes than the HTTP/2 preface, all of them a prefix of it.
    Detecting {
        buf: [u8; 24],
        len: u8,
    },
    H1(Box<H1>),
    H2(Box<H2>),
}

/// What a chunk of bytes changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Change {
    /// The first byte of a request (HTTP/1) or of the preface (HTTP/2) arrived.
    pub(crate) request_started: bool,
    /// Request heads or response ends were seen: counts and the boundary may have moved.
    pub(crate) messages: bool,
}

impl Change {
    /// What two chunks in a row changed.
    pub(crate) fn or(self, other: Change) -> Change {
        Change {
            request_started: self.request_started || other.request_started,
            messages: self.messages || other.messages,
        }
    }
}

/// The message view of one connection's bytes.
#[derive(Debug, Clone)]
pub(crate) struct Wire {
    proto: Proto,
    /// The client's side of the connection: requests are written, responses read.
    client: bool,
}

impl Wire {
    /// A server's connection, protocol not yet known.
    pub(crate) fn server() -> Self {
        Self {
            proto: Proto::Detecting {
                buf: [0; 24],
                len: 0,
            },
            client: false,
        }
    }

    /// A client's connection in a known protocol.
    pub(crate) fn client(http2: bool) -> Self {
        Self {
            proto: if http2 {
                Proto::H2(Box::new(H2::new(Role::Client)))
            } else {
                Proto::H1(Box::default())
            },
            client: true,
        }
    }

    #[inline]
    pub(crate) fn is_h2(&self) -> bool {
        matches!(self.proto, Proto::H2(_))
    }

    #[inline]
    pub(crate) fn h2(&self) -> Option<&H2> {
        match &self.proto {
            Proto::H2(h) => Some(h),
            _ => None,
        }
    }

    /// Follows bytes read from the peer. HTTP/1, the usual case, is a call to the scanner; the
    /// rest goes out of line.
    #[inline]
    pub(crate) fn received(&mut self, buf: &[u8]) -> Change {
        match &mut self.proto {
            Proto::H1(h) if self.client => h1_responses(h, buf),
            Proto::H1(h) => h1_requests(h, buf),
            Proto::H2(h) => h2_received(h, buf),
            Proto::Detecting { .. } => self.detect(buf),
        }
    }

    /// A server's first bytes: the HTTP/2 preface, or HTTP/1.
    #[cold]
    #[inline(never)]
    fn detect(&mut self, buf: &[u8]) -> Change {
        let Proto::Detecting { buf: seen, len } = &mut self.proto else {
            return self.received(buf);
        };
        let have = usize::from(*len);
        let n = buf.len().min(PREFACE.len() - have);
        seen[have..have + n].copy_from_slice(&buf[..n]);
        let have = have + n;
        if seen[..have] != PREFACE[..have] {
            let first = seen[..have].to_vec();
            self.proto = Proto::H1(Box::default());
            let change = self.received(&first);
            return change.or(self.received(&buf[n..]));
        }
        *len = have as u8;
        let started = have == n && n > 0;
        if have == PREFACE.len() {
            let mut h2 = H2::new(Role::Server);
            h2.received(PREFACE);
            self.proto = Proto::H2(Box::new(h2));
            let rest = self.received(&buf[n..]);
            return Change {
                request_started: started,
                messages: rest.messages,
            };
        }
        Change {
            request_started: started,
            messages: false,
        }
    }

    /// Follows bytes written to the peer.
    #[inline(always)]
    pub(crate) fn sent(&mut self, buf: &[u8]) -> Change {
        match &mut self.proto {
            Proto::H1(h) if self.client => h1_requests(h, buf),
            Proto::H1(h) => h1_responses(h, buf),
            Proto::H2(h) => h2_sent(h, buf),
            // Nothing is written before the protocol is known.
            Proto::Detecting { .. } => Change::default(),
        }
    }

    /// Request heads read (a server) or written (a client) so far.
    #[inline]
    pub(crate) fn requests(&self) -> u64 {
        match &self.proto {
            Proto::H1(h) => h.request_heads,
            Proto::H2(h) => h.request_heads,
            Proto::Detecting { .. } => 0,
        }
    }

    /// Requests whose response has not ended.
    #[inline]
    pub(crate) fn unanswered(&self) -> u64 {
        match &self.proto {
            Proto::H1(h) => h.unanswered(),
            Proto::H2(h) => h.open_streams() as u64,
            Proto::Detecting { .. } => 0,
        }
    }

    /// Responses ended (HTTP/2: streams ended, by their response or a reset).
    #[inline]
    pub(crate) fn answered(&self) -> u64 {
        match &self.proto {
            Proto::H1(h) => h.responses_complete,
            Proto::H2(h) => h.streams_ended,
            Proto::Detecting { .. } => 0,
        }
    }

    /// HTTP/1: the status of the latest response started.
    #[inline]
    pub(crate) fn h1_response_status(&self) -> Option<u16> {
        match &self.proto {
            Proto::H1(h) => Some(h.response_status()),
            _ => None,
        }
    }

    #[inline]
    pub(crate) fn framing(&self) -> Framing {
        match &self.proto {
            Proto::H1(h) => h.framing(),
            _ => Framing::Known,
        }
    }

    /// No request is unanswered and no byte of a next message has been read or written.
    #[inline]
    pub(crate) fn at_boundary(&self) -> bool {
        match &self.proto {
            Proto::H1(h) => h.at_boundary(),
            Proto::H2(h) => h.at_boundary(),
            Proto::Detecting { len, .. } => *len == 0,
        }
    }

    /// The header timeout applies: bytes of a request head are being read, or (HTTP/2, or a
    /// connection that has read nothing yet) no request head has completed.
    #[inline]
    pub(crate) fn awaiting_head(&self) -> bool {
        match &self.proto {
            Proto::H1(h) => {
                h.framing() == Framing::Known
                    && (h.requests.in_head() || (h.request_heads == 0 && h.requests.is_idle()))
            }
            Proto::H2(h) => h.awaiting_first_head(),
            Proto::Detecting { .. } => true,
        }
    }

    /// An HTTP/1 request is partly read (a server) or written (a client): its head or body is
    /// incomplete.
    pub(crate) fn request_incomplete(&self) -> bool {
        match &self.proto {
            Proto::H1(h) => h.framing() == Framing::Known && !h.requests.is_idle(),
            Proto::Detecting { len, .. } => *len > 0,
            Proto::H2(_) => false,
        }
    }
}

/// Request bytes of an HTTP/1 connection.
#[inline]
fn h1_requests(h: &mut H1, buf: &[u8]) -> Change {
    let before = h.request_heads;
    let idle = h.requests.is_idle();
    let seen = h.requests(buf);
    Change {
        request_started: idle && (seen.started > 0 || !h.requests.is_idle()),
        messages: h.request_heads != before || seen.completed > 0,
    }
}

/// Response bytes of an HTTP/1 connection.
#[inline]
fn h1_responses(h: &mut H1, buf: &[u8]) -> Change {
    let seen = h.responses(buf);
    Change {
        request_started: false,
        messages: seen.completed > 0,
    }
}

/// Bytes read on an HTTP/2 connection.
#[inline(never)]
fn h2_received(h: &mut H2, buf: &[u8]) -> Change {
    let before = h.request_heads + h.streams_ended;
    h.received(buf);
    Change {
        request_started: false,
        messages: h.request_heads + h.streams_ended != before,
    }
}

/// Bytes written on an HTTP/2 connection (a client's request heads are written).
#[inline(never)]
fn h2_sent(h: &mut H2, buf: &[u8]) -> Change {
    let before = h.request_heads + h.streams_ended;
    h.sent(buf);
    Change {
        request_started: false,
        messages: h.request_heads + h.streams_ended != before,
    }
}
