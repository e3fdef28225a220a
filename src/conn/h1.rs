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

use std::collections::VecDeque;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Header {
    ContentLength,
    TransferEncoding,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
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

const NAME_MAX: usize = 17; // "transfer-encoding"
const TOKEN_MAX: usize = 8;

/// Follows the framing of the messages one side of a connection sends.
#[derive(Debug, Clone)]
pub(crate) struct Scanner {
    kind: Kind,
    st: St,
    // Per message.
    method: [u8; 8],
    status: u16,
    content_length: Option<u64>,
    chunked: bool,
    asked: Asked,
    /// The response in progress follows an interim (1xx) one: it answers the same request.
    after_interim: bool,
    name: [u8; NAME_MAX],
    token: [u8; TOKEN_MAX],
    token_len: u8,
    length_digits: Option<u64>,
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
    pub(crate) fn is_idle(&self) -> bool {
        self.st == St::Idle
    }

    /// True while a head is being read (its first byte seen, its end not yet).
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

    fn lost(&mut self) {
        self.st = St::Done(Framing::Lost);
    }

    fn start_message(&mut self) {
        self.method = [0; 8];
        self.status = 0;
        self.content_length = None;
        self.chunked = false;
        self.st = St::StartLine { pos: 0 };
    }

    /// Follows `buf`. `answering` is called when a response starts (not after an interim one)
    /// and gives what the request it answers asked; `on_head` is called with each completed
    /// request head's [`Asked`].
    pub(crate) fn scan(
        &mut self,
        mut buf: &[u8],
        answering: &mut dyn FnMut() -> Asked,
        on_head: &mut dyn FnMut(Asked),
    ) -> Seen {
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
                // A whole line in the buffer (the usual case) is taken at once; a line split
                // across reads goes byte by byte.
                St::Idle | St::LineStart => match find_newline(buf) {
                    Some(i) if self.whole_line(&buf[..i], &mut seen, answering, on_head) => {
                        buf = &buf[i + 1..];
                    }
                    _ => {
                        let b = buf[0];
                        buf = &buf[1..];
                        self.byte(b, &mut seen, answering, on_head);
                    }
                },
                _ => {
                    let b = buf[0];
                    buf = &buf[1..];
                    self.byte(b, &mut seen, answering, on_head);
                }
            }
        }
        seen
    }

    fn byte(
        &mut self,
        b: u8,
        seen: &mut Seen,
        answering: &mut dyn FnMut() -> Asked,
        on_head: &mut dyn FnMut(Asked),
    ) {
        match self.st {
            St::Idle => {
                if b != b'\r' && b != b'\n' {
                    seen.started += 1;
                    self.start_message();
                    if self.kind == Kind::Response && !self.after_interim {
                        self.asked = answering();
                    }
                    self.after_interim = false;
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
                match d {
                    Some(d) if digits < 15 => {
                        self.st = St::ChunkSize {
                            size: size << 4 | u64::from(d),
                            digits: digits + 1,
                        }
                    }
                    Some(_) => self.lost(),
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

    /// Takes one whole line (without its `\n`) at the start of a message or of a header line,
    /// as [`byte`](Self::byte) would take it byte by byte. False leaves it to the byte path.
    fn whole_line(
        &mut self,
        line: &[u8],
        seen: &mut Seen,
        answering: &mut dyn FnMut() -> Asked,
        on_head: &mut dyn FnMut(Asked),
    ) -> bool {
        if self.st == St::Idle {
            match line {
                [] | [b'\r'] => return true,
                [b'\r', ..] => return false,
                _ => {}
            }
            seen.started += 1;
            self.start_message();
            if self.kind == Kind::Response && !self.after_interim {
                self.asked = answering();
            }
            self.after_interim = false;
            match self.kind {
                Kind::Request => match line.iter().position(|&b| b == b' ') {
                    Some(sp) => {
                        let method = &line[..sp.min(self.method.len())];
                        self.method[..method.len()].copy_from_slice(method);
                        self.st = St::LineStart;
                    }
                    None => self.lost(),
                },
                Kind::Response => match line.get(9..12) {
                    Some(d) if d.iter().all(u8::is_ascii_digit) => {
                        self.status = d.iter().fold(0, |n, b| n * 10 + u16::from(b - b'0'));
                        self.st = St::LineStart;
                    }
                    _ => self.lost(),
                },
            }
            return true;
        }
        match line {
            [] | [b'\r'] => {
                self.head_done(seen, on_head);
                return true;
            }
            [b'\r', ..] => {
                self.lost();
                return true;
            }
            [b'c' | b'C' | b't' | b'T', ..] => {}
            _ => return true,
        }
        // Only two names matter, and the byte path takes a name as what precedes the first
        // colon: look at the colon's place for each.
        if line.get(14) == Some(&b':') && line[..14].eq_ignore_ascii_case(b"content-length") {
            self.content_length_value(&line[15..]);
        } else if line.get(17) == Some(&b':')
            && line[..17].eq_ignore_ascii_case(b"transfer-encoding")
        {
            self.transfer_encoding_value(&line[18..]);
        }
        true
    }

    /// A whole `Content-Length` value, as the byte path takes it: digits, with blanks and
    /// carriage returns ignored; anything else, an overflow, or a second different value is lost.
    fn content_length_value(&mut self, value: &[u8]) {
        let mut n: Option<u64> = None;
        for &b in value {
            match b {
                b'0'..=b'9' => {
                    match n
                        .unwrap_or(0)
                        .checked_mul(10)
                        .and_then(|v| v.checked_add(u64::from(b - b'0')))
                    {
                        Some(v) => n = Some(v),
                        None => return self.lost(),
                    }
                }
                b' ' | b'\t' | b'\r' => {}
                _ => return self.lost(),
            }
        }
        match n {
            Some(v) if self.content_length.is_none_or(|old| old == v) => {
                self.content_length = Some(v);
                self.st = St::LineStart;
            }
            _ => self.lost(),
        }
    }

    /// A whole `Transfer-Encoding` value: chunked when its last coding is.
    fn transfer_encoding_value(&mut self, value: &[u8]) {
        let last = value
            .rsplit(|&b| b == b',')
            .next()
            .unwrap_or_default()
            .iter()
            .filter(|&&b| !matches!(b, b' ' | b'\t' | b'\r'));
        let mut len = 0;
        let mut chunked = true;
        for (i, &b) in last.enumerate() {
            chunked &= b"chunked"
                .get(i)
                .is_some_and(|c| c.eq_ignore_ascii_case(&b));
            len = i + 1;
        }
        self.chunked = chunked && len == 7;
        self.st = St::LineStart;
    }

    fn start_line_byte(&mut self, b: u8, pos: u8) {
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

    fn head_done(&mut self, seen: &mut Seen, on_head: &mut dyn FnMut(Asked)) {
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

    fn message_done(&mut self, seen: &mut Seen) {
        seen.completed += 1;
        self.st = St::Idle;
    }
}

/// The first `\n` in `buf`, eight bytes at a time: lines are short, and a call through memchr's
/// dispatch costs more than the search.
fn find_newline(buf: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let mut i = 0;
    while i + 8 <= buf.len() {
        let word = u64::from_le_bytes(buf[i..i + 8].try_into().unwrap_or_default());
        let x = word ^ (LO * u64::from(b'\n'));
        let found = x.wrapping_sub(LO) & !x & HI;
        if found != 0 {
            return Some(i + (found.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    buf[i..].iter().position(|&b| b == b'\n').map(|p| i + p)
}

/// After a chunk-size line: the chunk's data, or the trailer after the last chunk.
fn chunk_size_done(size: u64) -> St {
    if size == 0 {
        St::TrailerLineStart
    } else {
        St::ChunkData { left: size }
    }
}

/// The most requests that can wait for their responses before framing gives up (a peer that
/// pipelines more than this in the stack's read buffer).
const MAX_UNANSWERED: usize = 1 << 16;

/// Both directions of one HTTP/1 connection.
#[derive(Debug, Clone)]
pub(crate) struct H1 {
    /// Requests (read by a server, written by a client).
    pub(crate) requests: Scanner,
    /// Responses (written by a server, read by a client).
    pub(crate) responses: Scanner,
    /// What each request whose response has not completed asked, oldest first.
    unanswered: VecDeque<Asked>,
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
            unanswered: VecDeque::new(),
            request_heads: 0,
            requests_complete: 0,
            responses_complete: 0,
            overflow: false,
        }
    }
}

impl H1 {
    /// Follows request bytes.
    pub(crate) fn requests(&mut self, buf: &[u8]) -> Seen {
        let unanswered = &mut self.unanswered;
        let overflow = &mut self.overflow;
        let seen = self.requests.scan(buf, &mut Asked::default, &mut |asked| {
            if unanswered.len() < MAX_UNANSWERED {
                unanswered.push_back(asked);
            } else {
                *overflow = true;
            }
        });
        self.request_heads += u64::from(seen.heads);
        self.requests_complete += u64::from(seen.completed);
        seen
    }

    /// Follows response bytes.
    pub(crate) fn responses(&mut self, buf: &[u8]) -> Seen {
        let unanswered = &mut self.unanswered;
        let seen = self.responses.scan(
            buf,
            &mut || unanswered.pop_front().unwrap_or_default(),
            &mut |_| {},
        );
        self.responses_complete += u64::from(seen.completed);
        if self.responses.framing() == Framing::Tunnel {
            self.requests.tunnel();
        }
        seen
    }

    /// Requests whose head was seen and whose response has not completed.
    pub(crate) fn unanswered(&self) -> u64 {
        self.request_heads.saturating_sub(self.responses_complete)
    }

    /// How far the connection can be framed: lost when either direction is, or when a peer
    /// pipelined more requests than are remembered.
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
    pub(crate) fn at_boundary(&self) -> bool {
        self.framing() == Framing::Known
            && self.unanswered() == 0
            && self.requests.is_idle()
            && self.responses.is_idle()
    }
}

#[cfg(test)]
mod tests;
