//! The core from a client's side, without sockets: requests are written and responses read,
//! and the connection is at a message boundary only once the last response was read whole.

use std::time::Duration;

use tokio::time::Instant;

use super::{
    h2::PREFACE,
    lifecycle::{Due, Lifecycle, Limits, GOAWAY_GRACE},
    wire::Wire,
};

fn limits() -> Limits {
    Limits {
        header: None,
        idle: Some(Duration::from_secs(90)),
        max_age: None,
        max_requests: None,
        write: Some(Duration::from_secs(30)),
        finish_half_closed: false,
        goaway_grace: GOAWAY_GRACE,
    }
}

fn client(http2: bool, limits: Limits) -> Lifecycle {
    Lifecycle::new(Wire::client(http2), limits, Instant::now())
}

/// The deadline once the write watch has seen its pending output go (nothing queued).
fn settled(l: &mut Lifecycle, now: Instant) -> Option<(Instant, Due)> {
    if let Some((at, Due::WriteCheck)) = l.next(now, false) {
        assert!(!l.check_write(at, None));
    }
    l.next(now, false)
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
const HEAD: &[u8] = b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n";
const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

#[tokio::test(start_paused = true)]
async fn leased_from_the_first_request_byte_until_the_response_is_read_whole() {
    let mut l = client(false, limits());
    let t0 = Instant::now();
    assert!(l.wire.at_boundary());
    assert_eq!(
        settled(&mut l, t0),
        Some((t0 + Duration::from_secs(90), Due::Idle))
    );

    l.sent(&GET[..3]);
    assert!(!l.wire.at_boundary(), "a request started");
    l.sent(&GET[3..]);
    assert_eq!(l.wire.requests(), 1);
    assert_eq!(
        settled(&mut l, t0),
        None,
        "waiting for the response: no idle timeout"
    );

    // The head, then the body a byte at a time.
    let head = OK.len() - 2;
    l.received(&OK[..head]);
    assert!(!l.wire.at_boundary(), "the body is still to come");
    l.received(&OK[head..head + 1]);
    assert!(!l.wire.at_boundary());
    tokio::time::advance(Duration::from_secs(5)).await;
    l.received(&OK[head + 1..]);
    assert!(l.wire.at_boundary());
    assert!(
        l.take_moved(),
        "the idle timeout starts: the owner computes again"
    );
    let t1 = Instant::now();
    assert_eq!(
        settled(&mut l, t1),
        Some((t1 + Duration::from_secs(90), Due::Idle))
    );
}

#[tokio::test(start_paused = true)]
async fn a_head_response_has_no_body_and_pipelined_responses_each_count() {
    let mut l = client(false, limits());
    l.sent(HEAD);
    l.sent(GET);
    // Both answers in one read: the HEAD's has a length but no body.
    let mut both = b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n".to_vec();
    both.extend_from_slice(OK);
    l.received(&both[..40]);
    assert_eq!(
        l.wire.unanswered(),
        1,
        "the HEAD response ended at its head"
    );
    l.received(&both[40..]);
    assert!(l.wire.at_boundary());
    assert_eq!(l.wire.answered(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_shorter_idle_timeout_learned_moves_the_deadline() {
    let mut l = client(false, limits());
    let t0 = Instant::now();
    assert_eq!(
        settled(&mut l, t0),
        Some((t0 + Duration::from_secs(90), Due::Idle))
    );
    l.set_idle(Some(Duration::from_secs(4)));
    assert!(l.take_moved());
    assert_eq!(
        l.next(t0, false),
        Some((t0 + Duration::from_secs(4), Due::Idle))
    );
    l.set_idle(Some(Duration::from_secs(4)));
    assert!(!l.take_moved(), "unchanged: nothing to compute");
}

#[tokio::test(start_paused = true)]
async fn max_age_and_max_requests_retire_only_at_the_boundary() {
    let mut l = client(
        false,
        Limits {
            max_age: Some(Duration::from_secs(60)),
            max_requests: Some(1),
            ..limits()
        },
    );
    let t0 = Instant::now();
    l.sent(GET);
    assert!(l.max_requests_reached(), "counted from the request written");
    assert_eq!(
        settled(&mut l, t0),
        Some((t0 + Duration::from_secs(60), Due::MaxAge))
    );
    assert_eq!(
        l.next(t0, true),
        None,
        "retiring, but the response is not read yet"
    );
    l.received(OK);
    assert_eq!(l.next(t0, true), Some((t0, Due::Retire)));
}

#[tokio::test(start_paused = true)]
async fn a_body_that_runs_until_close_or_cannot_be_framed_is_never_a_boundary() {
    let mut l = client(false, limits());
    l.sent(GET);
    l.received(b"HTTP/1.0 200 OK\r\n\r\nsome bytes");
    assert!(
        !l.wire.at_boundary(),
        "the body ends when the server closes"
    );

    // A length that cannot be framed: never a boundary, the idle timeout runs from the last
    // byte.
    let mut l = client(false, limits());
    l.sent(GET);
    l.received(b"HTTP/1.1 200 OK\r\ncontent-length: 1x\r\n\r\n");
    assert!(!l.wire.at_boundary());
    let t0 = Instant::now();
    assert_eq!(
        settled(&mut l, t0),
        Some((t0 + Duration::from_secs(90), Due::Idle))
    );
}

/// One HTTP/2 frame.
pub(crate) fn frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, ty, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

#[tokio::test(start_paused = true)]
async fn http2_streams_we_open_keep_the_connection_leased_until_they_end() {
    const HEADERS: u8 = 1;
    const DATA: u8 = 0;
    const SETTINGS: u8 = 4;
    const GOAWAY: u8 = 7;
    let mut l = client(true, limits());
    let mut start = PREFACE.to_vec();
    start.extend(frame(SETTINGS, 0, 0, &[]));
    l.sent(&start);
    l.received(&frame(SETTINGS, 0, 0, &[]));
    assert!(l.wire.at_boundary(), "no stream yet");
    // Two requests, END_HEADERS | END_STREAM.
    let change = l.sent(&frame(HEADERS, 5, 1, &[0x82]));
    assert!(change.messages, "a stream opened is a change");
    l.sent(&frame(HEADERS, 5, 3, &[0x82]));
    assert_eq!(l.wire.unanswered(), 2);
    // The first answered by HEADERS + DATA(END_STREAM), the second reset.
    l.received(&frame(HEADERS, 4, 1, &[0x88]));
    l.received(&frame(DATA, 1, 1, b"ok"));
    assert!(!l.wire.at_boundary());
    l.received(&frame(3, 0, 3, &[0, 0, 0, 8]));
    assert!(l.wire.at_boundary());
    assert!(
        l.take_moved(),
        "a reset ending the last stream starts the idle timeout"
    );
    // A GOAWAY from the server before ours: the server closed first.
    l.received(&frame(GOAWAY, 0, 0, &[0, 0, 0, 3, 0, 0, 0, 0]));
    assert!(l.wire.h2().is_some_and(|h| h.peer_goaway_first));
}
