//! Framing of requests and responses however the reads split them.
use std::collections::VecDeque;

use super::*;

/// Feeds `input` to both sides in every split: whole, byte by byte, and cut at each byte.
fn splits(input: &[u8]) -> Vec<Vec<&[u8]>> {
    let mut all = vec![vec![input], input.chunks(1).collect()];
    for cut in 1..input.len() {
        all.push(vec![&input[..cut], &input[cut..]]);
    }
    all
}

fn requests(h: &mut H1, input: &[u8]) {
    h.requests(input);
}

#[test]
fn requests_are_framed_however_reads_split_them() {
    let input: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n\
        POST /x HTTP/1.1\r\nContent-Length: 5\r\nCONTENT-TYPE: t\r\n\r\nhello\
        PUT /c HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3;ext=1\r\nabc\r\n0\r\nX-T: 1\r\n\r\n\
        HEAD / HTTP/1.0\n\n";
    for parts in splits(input) {
        let mut h = H1::default();
        for p in &parts {
            requests(&mut h, p);
        }
        assert_eq!(h.request_heads, 4, "{parts:?}");
        assert_eq!(h.requests_complete, 4, "{parts:?}");
        assert!(h.requests.is_idle());
        assert_eq!(h.unanswered(), 4);
        assert_eq!(h.framing(), Framing::Known);
    }
}

#[test]
fn a_partial_request_is_not_a_boundary() {
    let full: &[u8] = b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc";
    for cut in 1..full.len() {
        let mut h = H1::default();
        h.requests(&full[..cut]);
        assert!(!h.at_boundary(), "cut at {cut}");
        let head_done = cut >= full.len() - 3;
        assert_eq!(h.requests.in_head(), !head_done, "cut at {cut}");
    }
    // Leading empty lines are not a request.
    let mut h = H1::default();
    h.requests(b"\r\n\r\n");
    assert!(h.at_boundary() && h.requests.is_idle());
}

#[test]
fn responses_end_where_their_framing_says() {
    let mut h = H1::default();
    h.requests(b"GET /a HTTP/1.1\r\n\r\nHEAD /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\n\r\nGET /d HTTP/1.1\r\n\r\n");
    assert_eq!(h.unanswered(), 4);
    let out: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n\
        HTTP/1.1 200 OK\r\ncontent-length: 5\r\nkeep-alive: timeout=75\r\n\r\nhello\
        HTTP/1.1 200 OK\r\ncontent-length: 500\r\n\r\n\
        HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n\
        HTTP/1.1 304 Not Modified\r\ncontent-length: 9\r\n\r\n";
    for parts in splits(out) {
        let mut h = h.clone();
        for p in &parts {
            h.responses(p);
        }
        assert_eq!(h.responses_complete, 4, "{parts:?}");
        assert!(h.at_boundary(), "{parts:?}");
    }
}

#[test]
fn a_response_without_length_runs_until_close() {
    let mut h = H1::default();
    h.requests(b"GET / HTTP/1.0\r\n\r\n");
    h.responses(b"HTTP/1.0 200 OK\r\n\r\nsome body");
    assert_eq!(h.responses_complete, 0);
    assert_eq!(h.unanswered(), 1);
    assert!(!h.at_boundary());
}

#[test]
fn upgrades_and_connect_turn_into_a_tunnel() {
    let mut h = H1::default();
    h.requests(b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n");
    h.responses(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n");
    assert_eq!(h.framing(), Framing::Tunnel);
    assert_eq!(h.unanswered(), 0);
    h.requests(b"\x81\x05hello");
    assert_eq!(h.request_heads, 1);

    let mut h = H1::default();
    h.requests(b"CONNECT a:443 HTTP/1.1\r\n\r\n");
    h.responses(b"HTTP/1.1 200 OK\r\n\r\n");
    assert_eq!(h.framing(), Framing::Tunnel);

    // A refused CONNECT stays HTTP.
    let mut h = H1::default();
    h.requests(b"CONNECT a:443 HTTP/1.1\r\n\r\n");
    h.responses(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n");
    assert_eq!(h.framing(), Framing::Known);
    assert!(h.at_boundary());
}

#[test]
fn what_cannot_be_framed_is_lost_never_a_boundary() {
    for bad in [
        &b"POST / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n",
        b"GET / HTTP/1.1\r\n\rX",
    ] {
        let mut h = H1::default();
        h.requests(bad);
        assert_eq!(
            h.framing(),
            Framing::Lost,
            "{:?}",
            String::from_utf8_lossy(bad)
        );
        assert!(!h.at_boundary());
    }
    let mut h = H1::default();
    h.requests(b"GET / HTTP/1.1\r\n\r\n");
    h.responses(b"HTTP/1.1 2x0 OK\r\n\r\n");
    assert_eq!(h.framing(), Framing::Lost);
}

#[test]
fn a_long_header_name_or_value_costs_nothing_extra() {
    let mut req = b"GET / HTTP/1.1\r\n".to_vec();
    req.extend(b"Content-Lengthy-And-Much-Longer: 7\r\n");
    req.extend(b"Transfer-Encoding: chunked, but-then-something-else\r\n");
    req.extend(b"X: ".iter().chain(&[b'a'; 10_000]));
    req.extend(b"\r\n\r\n");
    let mut h = H1::default();
    h.requests(&req);
    // The last encoding is not chunked: no body.
    assert_eq!(h.requests_complete, 1);
    assert!(h.requests.is_idle());
}

/// What a scan left behind, to compare two ways of feeding the same bytes.
fn outcome(h: &H1) -> (Framing, u64, u64, u64, bool, bool, bool) {
    (
        h.framing(),
        h.request_heads,
        h.requests_complete,
        h.responses_complete,
        h.requests.is_idle(),
        h.requests.in_head(),
        h.responses.is_idle(),
    )
}

#[test]
fn whole_lines_and_single_bytes_frame_mutated_input_alike() {
    let requests: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc\
        POST /x HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
        HEAD / HTTP/1.0\n\n\r\nGET /y HTTP/1.1\r\nConnection: close\r\n\r\n";
    let responses: &[u8] =
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabc\
        HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n\
        HTTP/1.1 204 No Content\r\n\r\n";
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let alphabet = b"\r\n :0123456789aAcCtT-;,xHTP/.";
    for round in 0..3000 {
        let (mut req, mut res) = (requests.to_vec(), responses.to_vec());
        for _ in 0..(next() % 4) {
            let v = if next() % 2 == 0 { &mut req } else { &mut res };
            let at = (next() as usize) % v.len();
            match next() % 3 {
                0 => v[at] = alphabet[(next() as usize) % alphabet.len()],
                1 => {
                    v.remove(at);
                }
                _ => v.insert(at, alphabet[(next() as usize) % alphabet.len()]),
            }
        }
        let (mut whole, mut bytes) = (H1::default(), H1::default());
        whole.requests(&req);
        whole.responses(&res);
        for b in &req {
            bytes.requests(std::slice::from_ref(b));
        }
        for b in &res {
            bytes.responses(std::slice::from_ref(b));
        }
        assert_eq!(
            outcome(&whole),
            outcome(&bytes),
            "round {round}: {:?} / {:?}",
            String::from_utf8_lossy(&req),
            String::from_utf8_lossy(&res)
        );
    }
}

#[test]
fn runs_of_empty_lines_and_partial_lines_are_framed_in_one_pass() {
    // A megabyte of carriage returns between messages, then a request: linear work, same
    // framing whether it arrives whole or in pieces.
    let mut input = vec![b'\r'; 1 << 20];
    input.extend_from_slice(b"\nGET / HTTP/1.1\r\n\r\n");
    let mut whole = H1::default();
    whole.requests(&input);
    let mut pieces = H1::default();
    for chunk in input.chunks(4096) {
        pieces.requests(chunk);
    }
    assert_eq!(outcome(&whole), outcome(&pieces));
    assert_eq!(whole.request_heads, 1);
    // A megabyte header line with no newline yet: still in the head, nothing framed.
    let mut h = H1::default();
    h.requests(b"GET / HTTP/1.1\r\nX-Long: ");
    h.requests(&vec![b'a'; 1 << 20]);
    assert!(h.requests.in_head());
    h.requests(b"\r\n\r\n");
    assert_eq!(h.request_heads, 1);
}

#[test]
fn chunk_sizes_may_have_leading_zeros_only_overflow_is_lost() {
    // hyper takes any number of leading zeros (18 hex digits here) and refuses only a size
    // that overflows 64 bits.
    let input: &[u8] = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
        000000000000000005\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n";
    for parts in splits(input) {
        let mut h = H1::default();
        for p in &parts {
            h.requests(p);
        }
        assert_eq!(h.framing(), Framing::Known, "{parts:?}");
        assert_eq!((h.request_heads, h.requests_complete), (2, 2), "{parts:?}");
    }
    let mut h = H1::default();
    h.requests(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n");
    assert_eq!(
        h.framing(),
        Framing::Lost,
        "17 significant hex digits overflow"
    );
}

#[test]
fn lines_end_at_every_place_in_a_word_alike_whole_and_byte_by_byte() {
    // Header values of every length move each newline through every place of the eight-byte
    // words newlines are searched in; the bytes around them have bit patterns next to a
    // newline's (a carry between bytes would show). Short buffers are padded to a word.
    for len in 0..40 {
        let value: Vec<u8> = (0..len).map(|i| [b'x', 0x0b, 0x8a, 0x09][i % 4]).collect();
        let mut req = b"GET / HTTP/1.1\r\nX: ".to_vec();
        req.extend(&value);
        req.extend(b"\r\nContent-Length: 2\r\n\r\nabHEAD /");
        req.extend(&value);
        req.extend(b" HTTP/1.1\n\n");
        let mut bytes = H1::default();
        for b in &req {
            bytes.requests(std::slice::from_ref(b));
        }
        assert_eq!((bytes.request_heads, bytes.requests_complete), (2, 2));
        for piece in 1..=req.len() {
            let mut whole = H1::default();
            for p in req.chunks(piece) {
                whole.requests(p);
            }
            assert_eq!(
                outcome(&whole),
                outcome(&bytes),
                "len {len}, pieces of {piece}"
            );
        }
    }
}

#[test]
fn header_names_match_in_any_case_and_nothing_else() {
    use lines::{starts_with_name, CONTENT_LENGTH, TRANSFER_ENCODING};
    type Matches<'a> = &'a dyn Fn(&[u8]) -> bool;
    let names: [(&[u8], Matches<'_>); 2] = [
        (b"content-length", &|l| starts_with_name(l, &CONTENT_LENGTH)),
        (b"transfer-encoding", &|l| {
            starts_with_name(l, &TRANSFER_ENCODING)
        }),
    ];
    for (name, matches) in names {
        assert!(matches(name));
        assert!(matches(&name.to_ascii_uppercase()));
        assert!(!matches(&name[..name.len() - 1]), "too short");
        for at in 0..name.len() {
            for b in 0..=255u8 {
                let mut other = name.to_vec();
                other[at] = b;
                other.extend(b": 1");
                assert_eq!(
                    matches(&other),
                    other[..name.len()].eq_ignore_ascii_case(name),
                    "{:?}",
                    String::from_utf8_lossy(&other)
                );
            }
        }
    }
}

#[test]
fn whole_lines_and_every_split_frame_pipelined_mutated_input_alike() {
    // As above, with the bytes cut at every place instead of fed one by one: a line split
    // anywhere continues on the byte path from where the whole-line path left it.
    let requests: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc\
        POST /x HTTP/1.1\r\nTRANSFER-Encoding: gzip, chunked\r\ncontent-LENGTH: 12\r\n\r\n\
        3;x=y\r\nabc\r\n0\r\nTrailer: t\r\n\r\n\r\n\nHEAD / HTTP/1.0\n\nCONNECT a:1 HTTP/1.1\r\n\r\n";
    let responses: &[u8] =
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc\
        HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\nx: y\r\n\r\n\
        HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\nHTTP/1.1 200 Connected\r\n\r\n";
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let alphabet = b"\r\n :0123456789aAcCtT-;,xHTP/.";
    for round in 0..300 {
        let (mut req, mut res) = (requests.to_vec(), responses.to_vec());
        for _ in 0..(next() % 4) {
            let v = if next() % 2 == 0 { &mut req } else { &mut res };
            let at = (next() as usize) % v.len();
            match next() % 3 {
                0 => v[at] = alphabet[(next() as usize) % alphabet.len()],
                1 => {
                    v.remove(at);
                }
                _ => v.insert(at, alphabet[(next() as usize) % alphabet.len()]),
            }
        }
        let mut bytes = H1::default();
        for b in &req {
            bytes.requests(std::slice::from_ref(b));
        }
        for b in &res {
            bytes.responses(std::slice::from_ref(b));
        }
        for cut in 0..=req.len().max(res.len()) {
            let mut split = H1::default();
            let (r1, r2) = req.split_at(cut.min(req.len()));
            split.requests(r1);
            split.requests(r2);
            let (s1, s2) = res.split_at(cut.min(res.len()));
            split.responses(s1);
            split.responses(s2);
            assert_eq!(
                outcome(&split),
                outcome(&bytes),
                "round {round}, cut {cut}: {:?} / {:?}",
                String::from_utf8_lossy(&req),
                String::from_utf8_lossy(&res)
            );
        }
    }
}

#[test]
fn generated_heads_with_long_lines_frame_alike_whole_split_and_byte_by_byte() {
    // Heads of random lines, some far longer than the 64 bytes a mask covers, so that lines
    // that matter and lines skipped unread start and end at every place of a block and span
    // several; names that start like the two that matter; bodies in between.
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let names: [&[u8]; 10] = [
        b"Host",
        b"content-length",
        b"Content-Type",
        b"TRANSFER-ENCODING",
        b"te",
        b"Cookie",
        b"x-long",
        b"transfer-encodings",
        b"content-lengthy",
        b"Trailer",
    ];
    for round in 0..2000 {
        let mut input = Vec::new();
        for _ in 0..1 + next(3) {
            input.extend_from_slice(if next(2) == 0 { b"GET /" } else { b"POST /" });
            input.extend(std::iter::repeat_n(b'p', next(90) as usize));
            input.extend_from_slice(b" HTTP/1.1\r\n");
            let mut body = 0;
            for _ in 0..next(6) {
                let name = names[next(names.len() as u64) as usize];
                input.extend_from_slice(name);
                input.extend_from_slice(b": ");
                if name.eq_ignore_ascii_case(b"content-length") {
                    body = next(40);
                    input.extend_from_slice(body.to_string().as_bytes());
                } else {
                    input.extend(std::iter::repeat_n(b'v', next(150) as usize));
                }
                input.extend_from_slice(if next(4) == 0 { b"\n" } else { b"\r\n" });
            }
            match next(10) {
                0 => input.extend_from_slice(b"\rx\r\n"),
                1 => input.extend_from_slice(b"\n"),
                _ => input.extend_from_slice(b"\r\n"),
            }
            input.extend(std::iter::repeat_n(b'b', body as usize));
        }
        let mut whole = H1::default();
        whole.requests(&input);
        let mut bytes = H1::default();
        for b in &input {
            bytes.requests(std::slice::from_ref(b));
        }
        let cut = next(input.len() as u64 + 1) as usize;
        let cut2 = cut + next((input.len() - cut) as u64 + 1) as usize;
        let mut split = H1::default();
        for part in [&input[..cut], &input[cut..cut2], &input[cut2..]] {
            split.requests(part);
        }
        let text = String::from_utf8_lossy(&input);
        assert_eq!(outcome(&whole), outcome(&bytes), "round {round}: {text:?}");
        assert_eq!(
            outcome(&split),
            outcome(&bytes),
            "round {round} at {cut}, {cut2}: {text:?}"
        );
    }
}

#[test]
fn the_asked_queue_gives_back_what_a_queue_of_every_entry_would() {
    let kinds = [
        Asked::default(),
        Asked {
            head: true,
            connect: false,
        },
        Asked {
            head: false,
            connect: true,
        },
    ];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for round in 0..200 {
        let mut queue = AskedQueue::default();
        let mut every = VecDeque::new();
        for step in 0..200 {
            if next(2) == 0 {
                // Mostly plain requests, as on the wire.
                let asked = kinds[if next(4) == 0 {
                    1 + next(2) as usize
                } else {
                    0
                }];
                queue.push(asked);
                every.push_back(asked);
            } else {
                let want = every.pop_front().unwrap_or_default();
                assert_eq!(queue.pop(), want, "round {round}, step {step}");
            }
            assert_eq!(
                queue.len(),
                every.len() as u64,
                "round {round}, step {step}"
            );
        }
    }
}

#[test]
fn the_first_bytes_of_a_line_that_matter_are_the_head_end_and_the_initials_of_two_names() {
    for b in 0..=255u8 {
        assert_eq!(
            lines::LINE_MATTERS[usize::from(b)],
            matches!(b, b'\n' | b'\r' | b'c' | b'C' | b't' | b'T'),
            "{b:#04x}"
        );
    }
}
