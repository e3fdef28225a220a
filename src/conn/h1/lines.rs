//! Whole lines: the start line and header lines taken at once when the buffer holds them (the
//! usual case), exactly as the byte path would take them; the whole-line and byte-by-byte scans
//! are tested to agree.

use super::{
    scanner::{Scanner, St},
    Asked, Kind, Seen,
};

impl Scanner {
    /// Takes the lines at the start of `buf` while the scanner is between messages or at the
    /// start of a header line, each as [`byte`](Self::byte) would take it byte by byte: whole
    /// when the buffer holds its newline, else its first byte on the byte path. Stops where
    /// lines no longer start (a body, lost framing) and before empty lines between messages,
    /// which `scan` skips. Returns the bytes taken: at least one, when called at a line start
    /// with bytes left (between messages, not at an empty line).
    ///
    /// The newlines are found in one pass over the buffer, eight bytes at a time: each word is
    /// read once however many lines it holds.
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
        // A buffer shorter than a word is looked at padded with zeros (never a newline).
        let mut pad = [0u8; 8];
        let words = match buf.len() {
            0..8 => {
                pad[..buf.len()].copy_from_slice(buf);
                &pad[..]
            }
            _ => buf,
        };
        let mut start = 0;
        // Where the next word to look at starts, and the newlines in the word before it not
        // used yet (the top bit of each such byte).
        let mut looked = 0;
        let mut found = 0u64;
        let last = words.len() - 8;
        while start < buf.len() {
            match self.st {
                St::LineStart => {}
                St::Idle if !matches!(buf[start], b'\r' | b'\n') => {}
                _ => break,
            }
            // The next newline ends the line at `start`: looked for two words at a time.
            while found == 0 {
                if looked + 8 <= last {
                    let pair = &words[looked..looked + 16];
                    let (a, b) = (newline_bits(&pair[..8]), newline_bits(&pair[8..]));
                    // A newline in the second word only is found again from there.
                    (found, looked) = match (a, b) {
                        (0, 0) => (0, looked + 16),
                        (0, b) => (b, looked + 16),
                        (a, _) => (a, looked + 8),
                    };
                } else if looked <= last {
                    found = newline_bits(&words[looked..looked + 8]);
                    looked += 8;
                } else if looked < words.len() {
                    // The last bytes: the last word, less the bytes already looked at.
                    let again = 8 - (words.len() - looked);
                    found = newline_bits(&words[last..]) & (u64::MAX << (8 * again));
                    looked = words.len();
                } else {
                    // The line goes on past the buffer: byte by byte from here.
                    self.byte(buf[start], seen, answering, on_head);
                    return start + 1;
                }
            }
            let end = looked - 8 + (found.trailing_zeros() / 8) as usize;
            found &= found - 1;
            let line = &buf[start..end];
            if self.st == St::Idle {
                self.start_line(line, seen, answering);
            } else {
                self.header_line(line, seen, on_head);
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
                    // Its first eight bytes (a short copy: no call).
                    for (m, &b) in self.method.iter_mut().zip(&line[..sp]) {
                        *m = b;
                    }
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

/// The top bit of each of the eight bytes of `word` that is a newline, exactly (no carry
/// between bytes).
#[inline(always)]
fn newline_bits(word: &[u8]) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let word = u64::from_le_bytes(word.try_into().unwrap_or_default());
    let x = word ^ 0x0a0a_0a0a_0a0a_0a0a;
    // A byte's top bit ends up set unless the byte is zero.
    !(((x & LOW7) + LOW7) | x | LOW7)
}
