//! Whole lines: the start line and header lines taken at once when the buffer holds them (the
//! usual case), exactly as the byte path would take them; the whole-line and byte-by-byte scans
//! are tested to agree.

use super::{
    scanner::{Scanner, St},
    Asked, Kind, Seen,
};

impl Scanner {
    /// Takes one whole line (without its `\n`) at the start of a message or of a header line,
    /// as [`byte`](Self::byte) would take it byte by byte. False leaves it to the byte path.
    pub(super) fn whole_line(
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
}

/// The first `\n` in `buf`, eight bytes at a time: lines are short, and a call through memchr's
/// dispatch costs more than the search.
pub(super) fn find_newline(buf: &[u8]) -> Option<usize> {
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
