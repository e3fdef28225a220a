//! One direction's framing, byte by byte: the state machine, and the lines that start a message
//! or a header taken whole when the buffer holds them ([`lines`](super::lines)).

use super::{Asked, Framing, Kind, Seen};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Header {
    ContentLength,
    TransferEncoding,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum St {
    /// Between messages: empty lines are skipped (RFC 9112 section 2.2).
    Idle,
    /// The start line; `pos` bytes of it so far.
    StartLine {
        pos: u8,
    },
    /// The rest of the start line does not matter.
    StartLineRest,
    /// The first byte of a header line.
    LineStart,
    /// A `\r` at the start of a line: the head ends at the `\n`.
    HeadEnd,
    Name {
        len: u8,
    },
    Value(Header),
    SkipLine,
    Body {
        left: u64,
    },
    ChunkSize {
        size: u64,
        digits: u8,
    },
    ChunkExt {
        size: u64,
    },
    ChunkData {
        left: u64,
    },
    ChunkDataEnd,
    TrailerLineStart,
    TrailerEnd,
    TrailerSkip,
    /// A response body that ends when the connection does.
    UntilClose,
    Done(Framing),
}

pub(super) const NAME_MAX: usize = 17; // "transfer-encoding"
pub(super) const TOKEN_MAX: usize = 8;

/// Follows the framing of the messages one side of a connection sends.
#[derive(Debug, Clone)]
pub(crate) struct Scanner {
    pub(super) kind: Kind,
    pub(super) st: St,
    // Per message.
    pub(super) method: [u8; 8],
    pub(super) status: u16,
    pub(super) content_length: Option<u64>,
    pub(super) chunked: bool,
    pub(super) asked: Asked,
    /// The response in progress follows an interim (1xx) one: it answers the same request.
    pub(super) after_interim: bool,
    pub(super) name: [u8; NAME_MAX],
    pub(super) token: [u8; TOKEN_MAX],
    pub(super) token_len: u8,
    pub(super) length_digits: Option<u64>,
}

impl Scanner {
    pub(crate) fn new(kind: Kind) -> Self {
        Self {
            kind,
            st: St::Idle,
            method: [0; 8],
            status: 0,
            content_length: None,
            chunked: false,
            asked: Asked::default(),
            after_interim: false,
            name: [0; NAME_MAX],
            token: [0; TOKEN_MAX],
            token_len: 0,
            length_digits: None,
        }
    }

    /// True between messages: no byte of a next message has been seen.
    #[inline]
    pub(crate) fn is_idle(&self) -> bool {
        matches!(self.st, St::Idle)
    }

    /// True while a head is being read (its first byte seen, its end not yet).
    #[inline]
    pub(crate) fn in_head(&self) -> bool {
        matches!(
            self.st,
            St::StartLine { .. }
                | St::StartLineRest
                | St::LineStart
                | St::HeadEnd
                | St::Name { .. }
                | St::Value(_)
                | St::SkipLine
        )
    }

    #[inline]
    pub(crate) fn framing(&self) -> Framing {
        match self.st {
            St::Done(f) => f,
            _ => Framing::Known,
        }
    }

    pub(crate) fn tunnel(&mut self) {
        if !matches!(self.st, St::Done(Framing::Lost)) {
            self.st = St::Done(Framing::Tunnel);
        }
    }

    pub(super) fn lost(&mut self) {
        self.st = St::Done(Framing::Lost);
    }

    /// The first byte of a message: a response learns what its request asked (a final response
    /// after an interim one answers the same request).
    #[inline]
    pub(super) fn start_message<A: FnMut() -> Asked>(
        &mut self,
        seen: &mut Seen,
        answering: &mut A,
    ) {
        seen.started += 1;
        self.method = [0; 8];
        self.status = 0;
        self.content_length = None;
        self.chunked = false;
        self.st = St::StartLine { pos: 0 };
        if self.kind == Kind::Response && !self.after_interim {
            self.asked = answering();
        }
        self.after_interim = false;
    }

    /// Follows `buf`. `answering` is called when a response starts (not after an interim one)
    /// and gives what the request it answers asked; `on_head` is called with each completed
    /// request head's [`Asked`].
    #[inline]
    pub(crate) fn scan<A, H>(&mut self, buf: &[u8], answering: &mut A, on_head: &mut H) -> Seen
    where
        A: FnMut() -> Asked,
        H: FnMut(Asked),
    {
        // A chunk of body only (a response's body written apart from its head): no call.
        if let St::Body { left } = self.st {
            let n = buf.len() as u64;
            if n <= left {
                let mut seen = Seen::default();
                if n == left {
                    self.message_done(&mut seen);
                } else {
                    self.st = St::Body { left: left - n };
                }
                return seen;
            }
        }
        self.scan_all(buf, answering, on_head)
    }

    fn scan_all<A, H>(&mut self, mut buf: &[u8], answering: &mut A, on_head: &mut H) -> Seen
    where
        A: FnMut() -> Asked,
        H: FnMut(Asked),
    {
        let mut seen = Seen::default();
        while !buf.is_empty() {
            match self.st {
                St::Done(_) => break,
                St::UntilClose => break,
                St::Body { left } => {
                    let n = (buf.len() as u64).min(left);
                    buf = &buf[n as usize..];
                    if n == left {
                        self.message_done(&mut seen);
                    } else {
                        self.st = St::Body { left: left - n };
                    }
                }
                St::ChunkData { left } => {
                    let n = (buf.len() as u64).min(left);
                    buf = &buf[n as usize..];
                    self.st = if n == left {
                        St::ChunkDataEnd
                    } else {
                        St::ChunkData { left: left - n }
                    };
                }
                St::SkipLine | St::StartLineRest | St::ChunkExt { .. } | St::TrailerSkip => {
                    match memchr::memchr(b'\n', buf) {
                        None => buf = &[],
                        Some(i) => {
                            buf = &buf[i + 1..];
                            self.st = match self.st {
                                St::ChunkExt { size } => chunk_size_done(size),
                                St::TrailerSkip => St::TrailerLineStart,
                                _ => St::LineStart,
                            };
                        }
                    }
                }
                // Empty lines between messages are skipped in one pass (as the byte path skips
                // them one by one): a line that starts with them is never searched again from
                // each of its bytes, which would make a run of them cost quadratic time.
                St::Idle if matches!(buf[0], b'\r' | b'\n') => {
                    let n = buf
                        .iter()
                        .position(|b| !matches!(b, b'\r' | b'\n'))
                        .unwrap_or(buf.len());
                    buf = &buf[n..];
                }
                // Whole lines in the buffer (the usual case) are taken at once, their newlines
                // found in one pass; a line split across reads goes byte by byte. `lines` takes
                // at least one byte.
                St::Idle | St::LineStart => {
                    let n = self.lines(buf, &mut seen, answering, on_head);
                    buf = &buf[n..];
                }
                _ => {
                    let b = buf[0];
                    buf = &buf[1..];
                    self.byte(b, &mut seen, answering, on_head);
                }
            }
        }
        seen
    }

    pub(super) fn byte<A, H>(&mut self, b: u8, seen: &mut Seen, answering: &mut A, on_head: &mut H)
    where
        A: FnMut() -> Asked,
        H: FnMut(Asked),
    {
        match self.st {
            St::Idle => {
                if b != b'\r' && b != b'\n' {
                    self.start_message(seen, answering);
                    self.start_line_byte(b, 0);
                }
            }
            St::StartLine { pos } => self.start_line_byte(b, pos),
            St::LineStart => match b {
                b'\r' => self.st = St::HeadEnd,
                b'\n' => self.head_done(seen, on_head),
                b'c' | b'C' | b't' | b'T' => {
                    self.name[0] = b.to_ascii_lowercase();
                    self.st = St::Name { len: 1 };
                }
                _ => self.st = St::SkipLine,
            },
            St::HeadEnd => {
                if b == b'\n' {
                    self.head_done(seen, on_head);
                } else {
                    self.lost();
                }
            }
            St::Name { len } => {
                let len = usize::from(len);
                if b == b':' {
                    let name = &self.name[..len];
                    self.st = if name.eq_ignore_ascii_case(b"content-length") {
                        self.length_digits = None;
                        St::Value(Header::ContentLength)
                    } else if name == b"transfer-encoding" {
                        self.token_len = 0;
                        St::Value(Header::TransferEncoding)
                    } else {
                        St::SkipLine
                    };
                } else if b == b'\n' {
                    self.st = St::LineStart;
                } else if len < NAME_MAX {
                    self.name[len] = b.to_ascii_lowercase();
                    self.st = St::Name { len: len as u8 + 1 };
                } else {
                    self.st = St::SkipLine;
                }
            }
            St::Value(Header::ContentLength) => match b {
                b'0'..=b'9' => {
                    let d = u64::from(b - b'0');
                    match self
                        .length_digits
                        .unwrap_or(0)
                        .checked_mul(10)
                        .and_then(|v| v.checked_add(d))
                    {
                        Some(v) => self.length_digits = Some(v),
                        None => self.lost(),
                    }
                }
                b' ' | b'\t' | b'\r' => {}
                b'\n' => match self.length_digits {
                    Some(v) if self.content_length.is_none_or(|old| old == v) => {
                        self.content_length = Some(v);
                        self.st = St::LineStart;
                    }
                    _ => self.lost(),
                },
                _ => self.lost(),
            },
            St::Value(Header::TransferEncoding) => match b {
                b',' => self.token_len = 0,
                b' ' | b'\t' | b'\r' => {}
                b'\n' => {
                    let len = usize::from(self.token_len);
                    self.chunked = self.token.get(..len) == Some(&b"chunked"[..]);
                    self.st = St::LineStart;
                }
                _ => {
                    let len = usize::from(self.token_len);
                    if len < TOKEN_MAX {
                        self.token[len] = b.to_ascii_lowercase();
                    }
                    self.token_len = self.token_len.saturating_add(1);
                }
            },
            St::ChunkSize { size, digits } => {
                let d = match b {
                    b'0'..=b'9' => Some(b - b'0'),
                    b'a'..=b'f' => Some(b - b'a' + 10),
                    b'A'..=b'F' => Some(b - b'A' + 10),
                    _ => None,
                };
                // Bounded by the value, not the digits: leading zeros are valid, and the HTTP
                // stack refuses only a size that overflows.
                match d.and_then(|d| {
                    size.checked_mul(16)?
                        .checked_add(u64::from(d))
                        .map(|v| (d, v))
                }) {
                    Some((_, v)) => {
                        self.st = St::ChunkSize {
                            size: v,
                            digits: digits.saturating_add(1),
                        }
                    }
                    None if d.is_some() => self.lost(),
                    None if digits == 0 => self.lost(),
                    None if b == b'\n' => self.st = chunk_size_done(size),
                    None => self.st = St::ChunkExt { size },
                }
            }
            St::ChunkDataEnd => match b {
                b'\r' => {}
                b'\n' => self.st = St::ChunkSize { size: 0, digits: 0 },
                _ => self.lost(),
            },
            St::TrailerLineStart => match b {
                b'\r' => self.st = St::TrailerEnd,
                b'\n' => self.message_done(seen),
                _ => self.st = St::TrailerSkip,
            },
            St::TrailerEnd => {
                if b == b'\n' {
                    self.message_done(seen);
                } else {
                    self.lost();
                }
            }
            // Handled in bulk by `scan`.
            St::StartLineRest
            | St::SkipLine
            | St::Body { .. }
            | St::ChunkExt { .. }
            | St::ChunkData { .. }
            | St::TrailerSkip
            | St::UntilClose
            | St::Done(_) => {}
        }
    }

    pub(super) fn start_line_byte(&mut self, b: u8, pos: u8) {
        match self.kind {
            // The method: up to the first space.
            Kind::Request => {
                if b == b' ' {
                    self.st = St::StartLineRest;
                } else if b == b'\n' {
                    self.lost();
                } else {
                    if let Some(slot) = self.method.get_mut(usize::from(pos)) {
                        *slot = b;
                    }
                    self.st = St::StartLine {
                        pos: pos.saturating_add(1),
                    };
                }
            }
            // "HTTP/1.1 200 ...": the status is bytes 9 to 11.
            Kind::Response => {
                match pos {
                    9..=11 if b.is_ascii_digit() => {
                        self.status = self.status * 10 + u16::from(b - b'0');
                    }
                    0..=11 if b == b'\n' => return self.lost(),
                    9..=11 => return self.lost(),
                    _ => {}
                }
                self.st = if pos >= 11 {
                    St::StartLineRest
                } else {
                    St::StartLine { pos: pos + 1 }
                };
            }
        }
    }

    #[inline(always)]
    pub(super) fn head_done<H: FnMut(Asked)>(&mut self, seen: &mut Seen, on_head: &mut H) {
        match self.kind {
            Kind::Request => {
                seen.heads += 1;
                let method = &self.method;
                self.asked = Asked {
                    head: method.starts_with(b"HEAD\0"),
                    connect: method.starts_with(b"CONNECT\0"),
                };
                on_head(self.asked);
                if self.chunked {
                    self.st = St::ChunkSize { size: 0, digits: 0 };
                } else {
                    match self.content_length {
                        Some(n) if n > 0 => self.st = St::Body { left: n },
                        _ => self.message_done(seen),
                    }
                }
            }
            Kind::Response => {
                let status = self.status;
                if (100..200).contains(&status) && status != 101 {
                    // Interim: the final response to the same request follows.
                    self.after_interim = true;
                    self.st = St::Idle;
                    return;
                }
                seen.heads += 1;
                if status == 101 || (self.asked.connect && (200..300).contains(&status)) {
                    seen.completed += 1;
                    self.st = St::Done(Framing::Tunnel);
                } else if self.asked.head || status == 204 || status == 304 {
                    self.message_done(seen);
                } else if self.chunked {
                    self.st = St::ChunkSize { size: 0, digits: 0 };
                } else {
                    match self.content_length {
                        Some(0) => self.message_done(seen),
                        Some(n) => self.st = St::Body { left: n },
                        None => self.st = St::UntilClose,
                    }
                }
            }
        }
    }

    pub(super) fn message_done(&mut self, seen: &mut Seen) {
        seen.completed += 1;
        self.st = St::Idle;
    }
}

/// After a chunk-size line: the chunk's data, or the trailer after the last chunk.
pub(super) fn chunk_size_done(size: u64) -> St {
    if size == 0 {
        St::TrailerLineStart
    } else {
        St::ChunkData { left: size }
    }
}
