//! The lifecycle driven by scripted bytes and paused time.
use super::*;
use crate::conn::h2::PREFACE;

fn limits() -> Limits {
    Limits {
        header: Some(Duration::from_secs(10)),
        idle: Some(Duration::from_secs(75)),
        max_age: None,
        max_requests: None,
        write: Some(Duration::from_secs(30)),
        finish_half_closed: true,
        goaway_grace: Duration::from_secs(5),
    }
}

fn server(limits: Limits) -> Lifecycle {
    Lifecycle::new(Wire::server(), limits, Instant::now())
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

#[tokio::test(start_paused = true)]
async fn header_then_idle_then_header_again() {
    let mut l = server(limits());
    let t0 = Instant::now();
    // Nothing read: the header timeout runs from accept.
    assert_eq!(
        l.next(t0, false),
        Some((t0 + Duration::from_secs(10), Due::Header))
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    l.received(GET);
    let t1 = Instant::now();
    assert_eq!(
        l.next(t1, false),
        None,
        "a request in flight has no deadline"
    );
    tokio::time::advance(Duration::from_secs(3)).await;
    l.sent(OK);
    let t2 = Instant::now();
    assert_eq!(l.next(t2, false).map(|(_, d)| d), Some(Due::WriteCheck));
    assert!(!l.check_write(t2 + Duration::from_secs(8), None));
    // Nothing pending: the write watch is gone, the idle timeout runs from the response.
    assert_eq!(
        l.next(t2 + Duration::from_secs(8), false),
        Some((t2 + Duration::from_secs(75), Due::Idle))
    );
    // The first byte of the next head starts the header timeout.
    tokio::time::advance(Duration::from_secs(20)).await;
    l.received(b"GE");
    let t3 = Instant::now();
    assert_eq!(
        l.next(t3, false),
        Some((t3 + Duration::from_secs(10), Due::Header))
    );
}

#[tokio::test(start_paused = true)]
async fn the_idle_shortcut_agrees_with_the_full_computation_and_steps_aside_otherwise() {
    let mut l = server(limits());
    // The first request: its response starts the write watch, so the full computation runs.
    l.received(GET);
    l.sent(OK);
    let t0 = Instant::now();
    assert_eq!(l.idle_restarted(t0), None, "the write watch started");
    l.next(t0, false);
    // Keep-alive requests with the watch running: only the idle timeout restarts.
    for _ in 0..3 {
        tokio::time::advance(Duration::from_secs(1)).await;
        l.received(GET);
        l.sent(OK);
        let now = Instant::now();
        let mut full = l.clone();
        assert_eq!(
            l.idle_restarted(now),
            Some(Some(now + Duration::from_secs(75)))
        );
        // What `next` computes from the same bytes: the idle deadline at the same instant,
        // or an earlier recheck of the write watch.
        let (at, due) = full.next(now, false).expect("a deadline");
        assert!(due == Due::WriteCheck || (due, at) == (Due::Idle, now + Duration::from_secs(75)));
        assert!(at <= now + Duration::from_secs(75));
        // Stamped: the full computation later finds the same idle start.
        assert_eq!(l.idle_since, Stamp::At(now));
    }
    // A head that starts and stays incomplete can bring the header timeout earlier.
    l.received(b"GET / HT");
    assert_eq!(l.idle_restarted(Instant::now()), None);
    l.next(Instant::now(), false);
    l.received(b"TP/1.1\r\n\r\n");
    l.peer_eof();
    l.sent(OK);
    assert_eq!(
        l.idle_restarted(Instant::now()),
        None,
        "a held FIN was released"
    );

    // No idle timeout: nothing to stamp a deadline for.
    let mut l = server(Limits {
        idle: None,
        write: None,
        ..limits()
    });
    l.received(GET);
    l.sent(OK);
    assert_eq!(l.idle_restarted(Instant::now()), Some(None));
}

#[tokio::test(start_paused = true)]
async fn a_fin_after_complete_requests_is_held_until_they_are_answered() {
    let mut l = server(limits());
    let mut pipelined = GET.to_vec();
    pipelined.extend_from_slice(GET);
    l.received(&pipelined);
    assert_eq!(l.peer_eof(), PeerEof::Hold);
    assert!(l.eof_held());
    l.sent(OK);
    assert!(l.eof_held(), "one response of two");
    l.sent(OK);
    assert!(!l.eof_held() && l.held_eof_due());

    // The policy cancels instead.
    let mut l = server(Limits {
        finish_half_closed: false,
        ..limits()
    });
    l.received(GET);
    assert_eq!(l.peer_eof(), PeerEof::Cancel(1));

    // A request cut short cannot be answered.
    let mut l = server(limits());
    l.received(b"POST / HTTP/1.1\r\nContent-Length: 9\r\n\r\nabc");
    assert_eq!(l.peer_eof(), PeerEof::Truncated);

    // At a boundary the FIN goes through at once.
    let mut l = server(limits());
    l.received(GET);
    l.sent(OK);
    assert_eq!(l.peer_eof(), PeerEof::Deliver);
}

#[tokio::test(start_paused = true)]
async fn http2_has_no_half_close() {
    let mut l = server(limits());
    l.received(PREFACE);
    // HEADERS, END_HEADERS | END_STREAM, stream 1.
    l.received(&[0, 0, 1, 1, 5, 0, 0, 0, 1, 0x82]);
    assert_eq!(l.wire.unanswered(), 1);
    assert_eq!(l.peer_eof(), PeerEof::Cancel(1));
}

#[tokio::test(start_paused = true)]
async fn an_http2_preface_does_not_escape_the_header_timeout() {
    let mut l = server(limits());
    let t0 = Instant::now();
    l.received(&PREFACE[..10]);
    assert_eq!(
        l.next(t0, false),
        Some((t0 + Duration::from_secs(10), Due::Header))
    );
    l.received(&PREFACE[10..]);
    // SETTINGS: still no request head.
    l.received(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(
        l.next(Instant::now(), false),
        Some((t0 + Duration::from_secs(10), Due::Header))
    );
    l.received(&[0, 0, 1, 1, 5, 0, 0, 0, 1, 0x82]);
    assert_eq!(l.next(Instant::now(), false), None);
}

#[tokio::test(start_paused = true)]
async fn retirement_waits_for_the_boundary_and_a_request_read_before_it() {
    let mut l = server(limits());
    l.received(GET);
    let now = Instant::now();
    assert_eq!(l.next(now, true), None, "in flight: not yet");
    l.sent(OK);
    l.received(b"GET /next HTTP/1.1\r\n");
    assert_eq!(
        l.next(now, true).map(|(_, d)| d),
        Some(Due::WriteCheck),
        "bytes of the next request were read: it is served first"
    );
    l.received(b"\r\n");
    l.sent(OK);
    assert_eq!(l.next(now, true), Some((now, Due::Retire)));
}

#[tokio::test(start_paused = true)]
async fn bytes_that_cannot_be_framed_still_meet_the_idle_timeout() {
    let mut l = server(limits());
    l.received(b"POST / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n");
    let t0 = Instant::now();
    assert_eq!(
        l.next(t0, false),
        Some((t0 + Duration::from_secs(75), Due::Idle))
    );
    tokio::time::advance(Duration::from_secs(30)).await;
    l.received(b"more");
    let t1 = Instant::now();
    assert_eq!(
        l.next(t1, false),
        Some((t1 + Duration::from_secs(75), Due::Idle))
    );
}

#[tokio::test(start_paused = true)]
async fn max_age_and_max_requests() {
    let mut l = server(Limits {
        max_age: Some(Duration::from_secs(60)),
        max_requests: Some(2),
        ..limits()
    });
    let t0 = Instant::now();
    l.received(GET);
    l.sent(OK);
    assert!(!l.max_requests_reached());
    let _ = l.next(t0, false);
    let _ = l.check_write(t0, None);
    assert_eq!(
        l.next(t0, false),
        Some((t0 + Duration::from_secs(60), Due::MaxAge))
    );
    l.received(GET);
    assert!(l.max_requests_reached());
}

#[tokio::test(start_paused = true)]
async fn a_stalled_send_queue_is_cut_after_the_write_timeout() {
    let mut l = server(limits());
    l.received(GET);
    l.sent(OK);
    let t0 = Instant::now();
    let (at, due) = l.next(t0, false).unwrap();
    assert_eq!(
        (at, due),
        (t0 + Duration::from_millis(7500), Due::WriteCheck)
    );
    let stuck = SendQueue {
        queued: 100_000,
        acked: 10,
    };
    // Progress, then none.
    assert!(!l.check_write(at, Some(stuck)));
    let mut t = at;
    let mut cut_at = None;
    for _ in 0..10 {
        t += Duration::from_millis(7500);
        if l.check_write(t, Some(stuck)) {
            cut_at = Some(t);
            break;
        }
    }
    // The last progress was seen at `at`: cut one timeout later, to the check.
    assert_eq!(cut_at, Some(at + Duration::from_secs(30)));

    // A slow reader that keeps acknowledging is never cut.
    let mut l = server(limits());
    l.received(GET);
    l.sent(OK);
    let _ = l.next(t0, false);
    for i in 1..20u64 {
        let q = SendQueue {
            queued: 100_000,
            acked: 10 + i,
        };
        assert!(!l.check_write(t0 + Duration::from_secs(10 * i), Some(q)));
    }
}

#[tokio::test(start_paused = true)]
async fn an_http2_response_stalled_on_flow_control_is_cut() {
    let mut l = server(limits());
    l.received(PREFACE);
    // SETTINGS_INITIAL_WINDOW_SIZE = 0, then a request.
    l.received(&[0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0]);
    l.received(&[0, 0, 1, 1, 5, 0, 0, 0, 1, 0x82]);
    // Response HEADERS, then an empty DATA frame: the stream has no window.
    l.sent(&[0, 0, 1, 1, 4, 0, 0, 0, 1, 0x88]);
    l.sent(&[0, 0, 0, 0, 0, 0, 0, 0, 1]);
    let t0 = Instant::now();
    let (at, _) = l.next(t0, false).unwrap();
    assert!(!l.check_write(at, None));
    assert!(l.check_write(t0 + Duration::from_secs(31), None));
}

#[tokio::test(start_paused = true)]
async fn goaway_then_grace_once_no_stream_is_open() {
    let mut l = server(limits());
    l.received(PREFACE);
    l.received(&[0, 0, 1, 1, 5, 0, 0, 0, 1, 0x82]);
    // GOAWAY while the stream is open: no grace yet.
    l.sent(&[0, 0, 8, 7, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]);
    let t0 = Instant::now();
    assert_eq!(l.next(t0, true).map(|(_, d)| d), Some(Due::WriteCheck));
    l.sent(&[0, 0, 1, 1, 5, 0, 0, 0, 1, 0x88]);
    let _ = l.check_write(t0, None);
    assert_eq!(
        l.next(t0, true),
        Some((t0 + Duration::from_secs(5), Due::GoawayGrace))
    );
}

#[tokio::test(start_paused = true)]
async fn a_vectored_write_is_followed_as_its_slices_one_by_one() {
    // Pipelined requests answered in one write; and a response at the boundary followed in
    // the same write by one the stack sends on its own (the boundary reached mid-write).
    let pipelined: (&[u8], &[u8]) = (
        b"GET /a HTTP/1.1\r\n\r\nHEAD /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok\
        HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n\
        HTTP/1.1 204 No Content\r\n\r\n",
    );
    let past_boundary: (&[u8], &[u8]) = (
        GET,
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok\
        HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\n\r\nHTTP/1.1 200 OK\r\n",
    );
    let state = |l: &mut Lifecycle, now: Instant| {
        (
            l.wire.at_boundary(),
            l.wire.unanswered(),
            l.wire.answered(),
            l.wire.framing(),
            l.take_moved(),
            l.next(now, false),
        )
    };
    let no_watch = Limits {
        write: None,
        ..limits()
    };
    for ((reqs, out), lim) in [pipelined, past_boundary]
        .into_iter()
        .flat_map(|case| [(case, limits()), (case, no_watch)])
    {
        for cut in 0..=out.len() {
            for cut2 in (cut..=out.len()).step_by(7).chain([out.len()]) {
                // The whole write, and one the kernel took only part of.
                for n in [out.len(), cut2] {
                    let mut one_by_one = server(lim);
                    let mut vectored = server(lim);
                    one_by_one.received(reqs);
                    vectored.received(reqs);
                    let now = Instant::now();
                    one_by_one.next(now, false);
                    vectored.next(now, false);
                    let slices = [&out[..cut], &out[cut..cut2], &out[cut2..]];
                    let mut left = n;
                    let mut change = Change::default();
                    for s in slices {
                        let take = left.min(s.len());
                        change = change.or(one_by_one.sent(&s[..take]));
                        left -= take;
                    }
                    let bufs = slices.map(IoSlice::new);
                    assert_eq!(vectored.sent_vectored(&bufs, n), change, "{cut} {cut2} {n}");
                    assert_eq!(
                        state(&mut vectored, now),
                        state(&mut one_by_one, now),
                        "cut at {cut} and {cut2}, {n} bytes written"
                    );
                }
            }
        }
    }
}
