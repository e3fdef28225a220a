//! The accepted stream without an HTTP stack: a scripted peer on a loopback socket sends
//! requests, FINs and prefaces byte by byte, the test answers in place of the stack, with
//! paused time for the deadlines.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use super::{
    connection::{CloseReason, Closer, ConnShared, ConnState},
    io::TrackedStream,
    limits::ConnectionLimits,
    observer::{ConnConfig, ConnObserver},
};
use crate::{conn::h2::PREFACE, policy::SocketPolicy};

/// A listener that records what its connection reports.
#[derive(Default)]
struct Recorder {
    states: Mutex<Vec<ConnState>>,
    closed: Mutex<Vec<(Closer, CloseReason, u64)>>,
    half_closed_in_flight: Mutex<u32>,
}

impl ConnObserver for Recorder {
    fn transition(&self, _: &ConnShared, _: ConnState, to: ConnState) {
        self.states.lock().unwrap().push(to);
    }
    fn closed(
        &self,
        _: &ConnShared,
        closer: Closer,
        reason: CloseReason,
        _: bool,
        unanswered: u64,
    ) {
        self.closed
            .lock()
            .unwrap()
            .push((closer, reason, unanswered));
    }
    fn half_closed_in_flight(&self) {
        *self.half_closed_in_flight.lock().unwrap() += 1;
    }
    fn goaway_grace_expired(&self) {}
    fn served_without_layer(&self) {}
    fn is_shutting_down(&self) -> bool {
        false
    }
}

struct Pair {
    stream: TrackedStream,
    peer: TcpStream,
    conn: Arc<ConnShared>,
    recorder: Arc<Recorder>,
}

async fn pair(limits: ConnectionLimits) -> Pair {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let peer = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (accepted, _) = listener.accept().await.unwrap();
    let recorder = Arc::new(Recorder::default());
    let conn = Arc::new(ConnShared::new(
        1,
        accepted.local_addr().unwrap(),
        accepted.peer_addr().unwrap(),
        Arc::new(ConnConfig::new(limits, SocketPolicy::default())),
        recorder.clone(),
    ));
    Pair {
        stream: TrackedStream::new(accepted, conn.clone(), None),
        peer,
        conn,
        recorder,
    }
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nhost: a\r\n\r\n";
const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

async fn read_exactly(stream: &mut TrackedStream, n: usize) -> Vec<u8> {
    let mut got = vec![0; n];
    stream.read_exact(&mut got).await.unwrap();
    got
}

#[tokio::test(start_paused = true)]
async fn a_fin_right_after_the_request_waits_for_the_response() {
    let mut p = pair(ConnectionLimits::default()).await;
    p.peer.write_all(GET).await.unwrap();
    p.peer.shutdown().await.unwrap();
    read_exactly(&mut p.stream, GET.len()).await;
    assert_eq!(p.conn.state(), ConnState::Active, "in flight from its head");
    // The FIN is held back while the response is owed: the read waits, whatever the time.
    let mut byte = [0u8; 1];
    let held = tokio::time::timeout(Duration::from_secs(5), p.stream.read(&mut byte)).await;
    assert!(held.is_err(), "the FIN reached the stack early: {held:?}");
    assert_eq!(*p.recorder.half_closed_in_flight.lock().unwrap(), 1);
    assert_eq!(p.conn.state(), ConnState::HalfClosed);
    // Answered: the FIN goes through.
    p.stream.write_all(OK).await.unwrap();
    assert_eq!(p.stream.read(&mut byte).await.unwrap(), 0);
    let mut answer = vec![0; OK.len()];
    p.peer.read_exact(&mut answer).await.unwrap();
    assert_eq!(answer, OK);
    drop(p.stream);
    assert_eq!(
        *p.recorder.closed.lock().unwrap(),
        [(Closer::Peer, CloseReason::PeerClosed, 0)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_fin_that_cuts_a_request_short_goes_through_at_once() {
    let mut p = pair(ConnectionLimits::default()).await;
    p.peer.write_all(&GET[..10]).await.unwrap();
    p.peer.shutdown().await.unwrap();
    read_exactly(&mut p.stream, 10).await;
    let mut byte = [0u8; 1];
    assert_eq!(p.stream.read(&mut byte).await.unwrap(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_partial_http2_preface_meets_the_header_timeout() {
    let limits = ConnectionLimits::builder()
        .header_timeout(Some(Duration::from_secs(3)))
        .build()
        .unwrap();
    let mut p = pair(limits).await;
    p.peer.write_all(&PREFACE[..7]).await.unwrap();
    read_exactly(&mut p.stream, 7).await;
    let from = tokio::time::Instant::now();
    let mut byte = [0u8; 1];
    let err = p.stream.read(&mut byte).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    assert_eq!(from.elapsed(), Duration::from_secs(3));
    drop(p.stream);
    assert_eq!(
        p.recorder.closed.lock().unwrap()[0].1,
        CloseReason::HeaderTimeout
    );
}

#[tokio::test(start_paused = true)]
async fn a_retirement_waits_for_the_response_of_a_request_already_read() {
    let mut p = pair(ConnectionLimits::default()).await;
    p.peer.write_all(GET).await.unwrap();
    read_exactly(&mut p.stream, GET.len()).await;
    p.conn.retire(CloseReason::MaxAge);
    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_secs(5), p.stream.read(&mut byte)).await;
    assert!(early.is_err(), "ended before the response: {early:?}");
    p.stream.write_all(OK).await.unwrap();
    assert_eq!(p.stream.read(&mut byte).await.unwrap(), 0, "then at once");
    drop(p.stream);
    assert_eq!(
        *p.recorder.closed.lock().unwrap(),
        [(Closer::Local, CloseReason::MaxAge, 0)]
    );
}
