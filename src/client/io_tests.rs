//! The outbound stream without an HTTP stack: a scripted server on a loopback socket writes
//! responses byte by byte, and the test drives the stream's reads and writes, with paused time
//! for its deadlines.

use std::{
    panic::Location,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use super::{
    config::UpstreamConfig,
    conn::{ClientConn, CloseReason, ConnState},
    io::UpstreamStream,
    observer::ConnObserver,
};
use crate::{close::Closer, conn::client_tests::frame, policy::SocketPolicy};

/// An upstream that records what its connection reports.
struct Recorder {
    config: UpstreamConfig,
    policy: SocketPolicy,
    idle: Duration,
    closed: Mutex<Vec<(Closer, CloseReason, bool)>>,
}

impl ConnObserver for Recorder {
    fn name(&self) -> &str {
        "test"
    }
    fn config(&self) -> &UpstreamConfig {
        &self.config
    }
    fn policy(&self) -> &SocketPolicy {
        &self.policy
    }
    fn idle_timeout(&self) -> Duration {
        self.idle
    }
    fn idle_count(&self) -> usize {
        0
    }
    fn lease_site(&self, _: usize, _: u64) -> Option<&'static Location<'static>> {
        None
    }
    fn transition(&self, _: ConnState, _: ConnState) {}
    fn closed(&self, _: &ClientConn, closer: Closer, reason: CloseReason, aborted: bool) {
        self.closed.lock().unwrap().push((closer, reason, aborted));
    }
}

struct Pair {
    stream: UpstreamStream<TcpStream>,
    server: TcpStream,
    conn: Arc<ClientConn>,
    recorder: Arc<Recorder>,
}

async fn pair(config: UpstreamConfig) -> Pair {
    pair_with(config, false).await
}

async fn pair_with(config: UpstreamConfig, http2: bool) -> Pair {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (server, _) = listener.accept().await.unwrap();
    let recorder = Arc::new(Recorder {
        config,
        policy: SocketPolicy::default(),
        idle: Duration::from_secs(10),
        closed: Mutex::new(Vec::new()),
    });
    let conn = Arc::new(ClientConn::new(
        1,
        recorder.clone(),
        client.local_addr().unwrap(),
        client.peer_addr().unwrap(),
        http2,
        false,
    ));
    Pair {
        stream: UpstreamStream::new(client, conn.clone(), None),
        server,
        conn,
        recorder,
    }
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nhost: a\r\n\r\n";
const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

/// Reads from the stream until `n` bytes arrived.
async fn read_exactly(stream: &mut UpstreamStream<TcpStream>, n: usize) -> Vec<u8> {
    let mut got = vec![0; n];
    stream.read_exact(&mut got).await.unwrap();
    got
}

#[tokio::test(start_paused = true)]
async fn leased_from_the_request_until_the_last_response_byte_is_read() {
    let mut p = pair(UpstreamConfig::new()).await;
    assert_eq!(p.conn.state(), ConnState::Idle);
    p.stream.write_all(GET).await.unwrap();
    assert_eq!(p.conn.state(), ConnState::Leased);
    // Everything but the last body byte.
    p.server.write_all(&OK[..OK.len() - 1]).await.unwrap();
    read_exactly(&mut p.stream, OK.len() - 1).await;
    assert_eq!(p.conn.state(), ConnState::Leased);
    p.server.write_all(&OK[OK.len() - 1..]).await.unwrap();
    read_exactly(&mut p.stream, 1).await;
    assert_eq!(
        p.conn.state(),
        ConnState::Idle,
        "read whole, with no lease involved"
    );
}

#[tokio::test(start_paused = true)]
async fn the_idle_timeout_ends_the_stream_at_a_boundary_and_never_inside_a_response() {
    let mut p = pair(UpstreamConfig::new()).await;
    p.stream.write_all(GET).await.unwrap();
    let head = OK.len() - 2;
    p.server.write_all(&OK[..head]).await.unwrap();
    read_exactly(&mut p.stream, head).await;
    // The body is late, far past the idle timeout: the connection is not idle.
    let mut byte = [0u8; 1];
    let late = tokio::time::timeout(Duration::from_secs(60), p.stream.read(&mut byte)).await;
    assert!(
        late.is_err(),
        "a response in progress is never cut: {late:?}"
    );
    p.server.write_all(&OK[head..]).await.unwrap();
    read_exactly(&mut p.stream, 2).await;
    // Idle from here: the stream answers an end at 10 s, before the server would close.
    let from = tokio::time::Instant::now();
    assert_eq!(p.stream.read(&mut byte).await.unwrap(), 0);
    let after = from.elapsed();
    assert!(
        after >= Duration::from_secs(10) && after < Duration::from_secs(11),
        "{after:?}"
    );
    drop(p.stream);
    assert_eq!(
        *p.recorder.closed.lock().unwrap(),
        [(Closer::Local, CloseReason::IdleTimeout, false)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_retirement_from_outside_wakes_an_idle_stream_and_ends_it() {
    let mut p = pair(UpstreamConfig::new()).await;
    p.stream.write_all(GET).await.unwrap();
    p.server.write_all(OK).await.unwrap();
    read_exactly(&mut p.stream, OK.len()).await;
    let conn = p.conn.clone();
    let reader = tokio::spawn(async move {
        let mut byte = [0u8; 1];
        let n = p.stream.read(&mut byte).await.unwrap();
        (n, tokio::time::Instant::now(), p.stream)
    });
    tokio::task::yield_now().await;
    let at = tokio::time::Instant::now();
    conn.retire(CloseReason::MaxAge);
    let (n, ended, stream) = reader.await.unwrap();
    assert_eq!(n, 0);
    assert_eq!(ended, at, "at once, not at the idle timeout");
    drop(stream);
    assert_eq!(
        *p.recorder.closed.lock().unwrap(),
        [(Closer::Local, CloseReason::MaxAge, false)]
    );
}

#[tokio::test(start_paused = true)]
async fn the_servers_fin_is_the_server_closing_first() {
    let mut p = pair(UpstreamConfig::new()).await;
    p.stream.write_all(GET).await.unwrap();
    p.server.write_all(OK).await.unwrap();
    p.server.shutdown().await.unwrap();
    read_exactly(&mut p.stream, OK.len()).await;
    let mut byte = [0u8; 1];
    assert_eq!(p.stream.read(&mut byte).await.unwrap(), 0);
    drop(p.stream);
    assert_eq!(
        *p.recorder.closed.lock().unwrap(),
        [(Closer::Peer, CloseReason::ServerClosed, false)]
    );
}

#[tokio::test(start_paused = true)]
async fn abort_on_idle_resets_at_a_boundary_but_not_mid_request() {
    use super::config::CloseOrder;
    let config = UpstreamConfig::new().close_order(CloseOrder::AbortOnIdle);
    let mut p = pair(config.clone()).await;
    p.stream.write_all(GET).await.unwrap();
    p.server.write_all(OK).await.unwrap();
    read_exactly(&mut p.stream, OK.len()).await;
    p.stream.shutdown().await.unwrap();
    drop(p.stream);
    assert_eq!(
        *p.recorder.closed.lock().unwrap(),
        [(Closer::Local, CloseReason::Discarded, true)]
    );
    let mut req = vec![0u8; GET.len()];
    p.server.read_exact(&mut req).await.unwrap();
    let mut buf = [0u8; 1];
    let reset = p.server.read(&mut buf).await;
    assert!(reset.is_err(), "the server sees a reset: {reset:?}");

    // A request whose response was not read: a plain close, never a reset that could lose it.
    let mut p = pair(config).await;
    p.stream.write_all(GET).await.unwrap();
    p.stream.shutdown().await.unwrap();
    drop(p.stream);
    assert!(!p.recorder.closed.lock().unwrap()[0].2);
    p.server.read_exact(&mut req).await.unwrap();
    assert_eq!(p.server.read(&mut buf).await.unwrap(), 0, "a FIN");
}

#[tokio::test(start_paused = true)]
async fn http2_a_goaway_from_the_server_first_is_the_server_closing_even_if_our_fin_leads() {
    let mut p = pair_with(UpstreamConfig::new(), true).await;
    let mut start = crate::conn::h2::PREFACE.to_vec();
    start.extend(frame(4, 0, 0, &[]));
    // A request stream, END_HEADERS | END_STREAM.
    start.extend(frame(1, 5, 1, &[0x82]));
    p.stream.write_all(&start).await.unwrap();
    assert_eq!(p.conn.state(), ConnState::Leased, "a stream is open");
    // The server answers it, then sends GOAWAY and keeps its side open.
    let mut answer = frame(4, 0, 0, &[]);
    answer.extend(frame(1, 5, 1, &[0x88]));
    answer.extend(frame(7, 0, 0, &[0, 0, 0, 1, 0, 0, 0, 0]));
    p.server.write_all(&answer).await.unwrap();
    read_exactly(&mut p.stream, answer.len()).await;
    assert_eq!(p.conn.state(), ConnState::Idle, "the stream ended");
    // The stack closes: our FIN goes out first, after the server's GOAWAY.
    p.stream.shutdown().await.unwrap();
    drop(p.stream);
    assert_eq!(
        *p.recorder.closed.lock().unwrap(),
        [(Closer::Peer, CloseReason::ServerClosed, false)]
    );
}
