//! Where the newlines of a buffer are, 64 bytes at a time: one bit per byte, so the lines of a
//! head are walked with `trailing_zeros` on a mask computed once per 64 bytes, whatever their
//! number. On x86_64 each 16 bytes take one SSE2 compare (part of the architecture's baseline:
//! no detection at run time); elsewhere eight bytes at a time in a word.

/// The newlines among the (up to) 64 bytes of `buf` from `at`: bit `i` is set when
/// `buf[at + i]` is `\n`. Bits past the end of `buf` are clear.
#[inline]
pub(super) fn mask(buf: &[u8], at: usize) -> u64 {
    let block = buf.get(at..).unwrap_or_default();
    // A whole block: four compares, no length to look at.
    if let Some(b) = block.first_chunk::<64>() {
        let (b0, rest) = b.split_at(16);
        let (b1, rest) = rest.split_at(16);
        let (b2, b3) = rest.split_at(16);
        return chunk(first16(b0))
            | chunk(first16(b1)) << 16
            | chunk(first16(b2)) << 32
            | chunk(first16(b3)) << 48;
    }
    // The last bytes, fewer than 64: 16 at a time, then the 16 that end the buffer less those
    // looked at already (when the buffer is at least 16 long), else the bytes padded with zeros.
    let len = block.len();
    let mut bits = 0;
    let mut off = 0;
    while let Some(b) = block.get(off..).and_then(|b| b.first_chunk::<16>()) {
        bits |= chunk(b) << off;
        off += 16;
    }
    let left = len - off;
    if left > 0 {
        let end = at + len;
        let tail = if end >= 16 {
            chunk(first16(&buf[end - 16..])) >> (16 - left)
        } else {
            let mut pad = [0u8; 16];
            pad[..left].copy_from_slice(&block[off..]);
            chunk(&pad)
        };
        bits |= tail << off;
    }
    bits
}

#[inline(always)]
fn first16(b: &[u8]) -> &[u8; 16] {
    b.first_chunk::<16>().expect("16 bytes")
}

/// The newlines of 16 bytes, one bit each, with one SSE2 compare.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
#[allow(unsafe_code)]
fn chunk(b: &[u8; 16]) -> u64 {
    use std::arch::x86_64::{_mm_cmpeq_epi8, _mm_movemask_epi8, _mm_set1_epi8, _mm_set_epi64x};

    let (lo, hi) = b.split_at(8);
    let word = |w: &[u8]| i64::from_le_bytes(w.try_into().unwrap_or_default());
    // SAFETY: the intrinsics need SSE2, which this code is compiled only with (it is part of
    // every x86_64 target's baseline); they read nothing but their arguments.
    let bits = unsafe {
        let v = _mm_set_epi64x(word(hi), word(lo));
        _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(b'\n' as i8)))
    };
    u64::from(bits as u16)
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
#[inline(always)]
fn chunk(b: &[u8; 16]) -> u64 {
    portable(b)
}

/// The newlines of 16 bytes, eight at a time in a word.
#[cfg(any(test, not(all(target_arch = "x86_64", target_feature = "sse2"))))]
#[inline(always)]
fn portable(b: &[u8; 16]) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let (lo, hi) = b.split_at(8);
    let half = |w: &[u8]| {
        let word = u64::from_le_bytes(w.try_into().unwrap_or_default());
        let x = word ^ 0x0a0a_0a0a_0a0a_0a0a;
        // The top bit of each byte that is a newline, exactly (no carry between bytes)...
        let top = !(((x & LOW7) + LOW7) | x | LOW7);
        // ...gathered into the low eight bits, in byte order.
        (top >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56
    };
    half(lo) | half(hi) << 8
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(buf: &[u8], at: usize) -> u64 {
        buf.iter()
            .enumerate()
            .skip(at)
            .take(64)
            .filter(|(_, &b)| b == b'\n')
            .fold(0, |m, (i, _)| m | 1 << (i - at))
    }

    #[test]
    fn masks_match_a_byte_by_byte_look_at_every_length_and_offset() {
        // Bytes next to a newline in value (0x0a ^ each bit) and high bytes, which a carry
        // between bytes would confuse.
        let alphabet = [b'\n', b'\r', 0x0b, 0x08, 0x8a, 0xff, 0x00, b'a', 0x0e, 0x1a];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for len in 0..200 {
            for _ in 0..8 {
                let buf: Vec<u8> = (0..len)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        alphabet[(seed % alphabet.len() as u64) as usize]
                    })
                    .collect();
                for at in 0..=len {
                    assert_eq!(mask(&buf, at), naive(&buf, at), "{buf:?} at {at}");
                }
                for c in buf.chunks_exact(16) {
                    let c = first16(c);
                    assert_eq!(portable(c), chunk(c), "{c:?}");
                    assert_eq!(portable(c), naive(c, 0), "{c:?}");
                }
            }
        }
    }
}
