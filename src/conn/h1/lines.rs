//! Whole lines: the start line and header lines taken at once when the buffer holds them (the
//! usual case), exactly as the byte path would take them; the whole-line and byte-by-byte scans
//! are tested to agree.

use super::{
    newlines,
    scanner::{Scanner, St},
    Asked, Kind, Seen,
};

impl Scanner {
    /// Takes the lines at the start of `buf` while the scanner is between messages or at the
    /// start of a header line, each as [`byte`](Self::byte) would take it byte by byte: whole
    /// when the buffer holds its newline, else its first byte on the byte path. Stops at the
    /// end of a head, where lines no longer start (a body, the next message, lost framing): the
    /// caller goes on from there. Returns the bytes taken: at least one, when called at a line
    /// start with bytes left (between messages, not at an empty line, which `scan` skips).
    ///
    /// The newlines are found in one pass over the buffer, a mask of 64 bytes at a time
    /// ([`newlines`](super::newlines)): each byte is looked at once however many lines it holds.
    pub(super) fn lines<A, H>(
        &mut self,
        buf: &[u8],
        seen: &mut Seen,
        answering: &mut A,
        on_head: &mut H,
    ) -> usize
    where
        A: FnMut() -> Asked,
        H: FnMut(Asked),
    {
        let mut ends = LineEnds::new(buf);
        let mut start = 0;
        if matches!(self.st, St::Idle) {
            let Some(end) = ends.next() else {
                self.byte(buf[0], seen, answering, on_head);
                return 1;
            };
            self.start_line(&buf[..end], seen, answering);
            start = end + 1;
            if !matches!(self.st, St::LineStart) {
                return start;
            }
        }
        // Header lines, until the head ends or framing is lost. Only a line's first byte
        // decides whether it can matter: most lines are passed over on it alone.
        while let Some(&first) = buf.get(start) {
            let Some(end) = ends.next() else {
                // The line goes on past the buffer: byte by byte from here.
                self.byte(first, seen, answering, on_head);
                return start + 1;
            };
            if LINE_MATTERS[usize::from(first)] {
                self.header_line(&buf[start..end], seen, on_head);
                if !matches!(self.st, St::LineStart) {
                    return end + 1;
                }
            }
            start = end + 1;
        }
        start
    }

    /// A whole start line (not empty, not starting with `\r`).
    fn start_line<A: FnMut() -> Asked>(&mut self, line: &[u8], seen: &mut Seen, answering: &mut A) {
        self.start_message(seen, answering);
        match self.kind {
            // The method: up to the first space.
            Kind::Request => match line.iter().position(|&b| b == b' ') {
                Some(sp) => {
                    // Its first eight bytes, zero-padded, in one word.
                    let word = match line.first_chunk::<8>() {
                        Some(w) => u64::from_le_bytes(*w),
                        None => {
                            let mut pad = [0u8; 8];
                            pad[..line.len()].copy_from_slice(line);
                            u64::from_le_bytes(pad)
                        }
                    };
                    let keep = u64::MAX.checked_shr(64 - 8 * sp.min(8) as u32).unwrap_or(0);
                    self.method = (word & keep).to_le_bytes();
                    self.st = St::LineStart;
                }
                None => self.lost(),
            },
            // "HTTP/1.1 200 ...": the status is bytes 9 to 11.
            Kind::Response => match line.get(9..12) {
                Some(&[a, b, c])
                    if a.is_ascii_digit() && b.is_ascii_digit() && c.is_ascii_digit() =>
                {
                    self.status =
                        u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0');
                    self.st = St::LineStart;
                }
                _ => self.lost(),
            },
        }
    }

    /// A whole header line, or the empty line that ends the head.
    fn header_line<H: FnMut(Asked)>(&mut self, line: &[u8], seen: &mut Seen, on_head: &mut H) {
        match line {
            [] | [b'\r'] => self.head_done(seen, on_head),
            [b'\r', ..] => self.lost(),
            // Only two names matter, and the byte path takes a name as what precedes the first
            // colon: look at the colon's place for each.
            [b'c' | b'C', ..]
                if line.get(14) == Some(&b':') && starts_with_name(line, &CONTENT_LENGTH) =>
            {
                self.content_length_value(&line[15..]);
            }
            [b't' | b'T', ..]
                if line.get(17) == Some(&b':') && starts_with_name(line, &TRANSFER_ENCODING) =>
            {
                self.transfer_encoding_value(&line[18..]);
            }
            _ => {}
        }
    }

    /// A whole `Content-Length` value, as the byte path takes it: digits, with blanks and
    /// carriage returns ignored; anything else, an overflow, or a second different value is lost.
    fn content_length_value(&mut self, value: &[u8]) {
        let mut n: u64 = 0;
        let mut digits = false;
        for &b in value {
            match b {
                b'0'..=b'9' => {
                    match n
                        .checked_mul(10)
                        .and_then(|v| v.checked_add(u64::from(b - b'0')))
                    {
                        Some(v) => n = v,
                        None => return self.lost(),
                    }
                    digits = true;
                }
                b' ' | b'\t' | b'\r' => {}
                _ => return self.lost(),
            }
        }
        if digits && self.content_length.is_none_or(|old| old == n) {
            self.content_length = Some(n);
        } else {
            self.lost();
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
    }
}

/// The first bytes of a header line that can matter: the end of the head (`\n`, `\r`) and the
/// initials of `Content-Length` and `Transfer-Encoding` in either case. One load per line
/// where a `match` on six bytes compiles to two range tests.
pub(super) const LINE_MATTERS: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    let first = *b"\n\rcCtT";
    while i < first.len() {
        t[first[i] as usize] = true;
        i += 1;
    }
    t
};

/// A header name as eight-byte words to compare a line's first bytes with: where each word
/// starts, its bytes, and bit 5 of each byte that is a letter. Setting those bits in a line's
/// bytes makes an uppercase letter lowercase and no other byte that letter, so a line matches
/// exactly when it starts with the name in any case (as the byte path lowercases the name).
pub(super) type Name<const N: usize> = [(usize, u64, u64); N];

const fn name_word(name: &[u8], at: usize) -> (usize, u64, u64) {
    let mut word = 0;
    let mut case = 0;
    let mut i = 0;
    while i < 8 {
        let b = name[at + i];
        word |= (b as u64) << (8 * i);
        if b.is_ascii_lowercase() {
            case |= 0x20 << (8 * i);
        }
        i += 1;
    }
    (at, word, case)
}

pub(super) const CONTENT_LENGTH: Name<2> = [
    name_word(b"content-length", 0),
    name_word(b"content-length", 6),
];
pub(super) const TRANSFER_ENCODING: Name<3> = [
    name_word(b"transfer-encoding", 0),
    name_word(b"transfer-encoding", 8),
    name_word(b"transfer-encoding", 9),
];

/// `line` starts with `name` in any case.
pub(super) fn starts_with_name<const N: usize>(line: &[u8], name: &Name<N>) -> bool {
    name.iter().all(|&(at, word, case)| {
        line.get(at..)
            .and_then(|w| w.first_chunk::<8>())
            .is_some_and(|w| u64::from_le_bytes(*w) | case == word)
    })
}

/// The newlines of a buffer in order, found a mask of 64 bytes at a time.
struct LineEnds<'a> {
    buf: &'a [u8],
    /// Where the block of 64 bytes starts whose newlines not taken yet are in `found`.
    block: usize,
    found: u64,
}

impl<'a> LineEnds<'a> {
    #[inline(always)]
    fn new(buf: &'a [u8]) -> Self {
        Self {
            buf,
            block: 0,
            found: newlines::mask(buf, 0),
        }
    }

    /// Where the next newline is.
    #[inline(always)]
    fn next(&mut self) -> Option<usize> {
        while self.found == 0 {
            self.block += 64;
            if self.block >= self.buf.len() {
                return None;
            }
            self.found = newlines::mask(self.buf, self.block);
        }
        let at = self.block + self.found.trailing_zeros() as usize;
        self.found &= self.found - 1;
        Some(at)
    }
}
