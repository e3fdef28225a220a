//! An open-loop load at a fixed rate, for latency below saturation.
//!
//! Under a closed-loop load that saturates the server (wrk: each connection sends its next
//! request as soon as the previous one ends), latency is the queue: by Little's law it is the
//! connection count over the throughput, so its p99 says what the throughput says, plus the
//! scheduler's timeslices. Here each of `connections` threads sends one request per `interval`
//! on its own keep-alive connection, at times fixed in advance (start + offset + k·interval,
//! offsets spread over the interval), whatever the server does: the server is loaded at
//! `connections / interval` requests per second, and its latency at that load is what is
//! measured.
//!
//! A request's latency runs from the moment it is written to the end of its response body.
//! A send that starts more than [`LATE`] after its time is counted as late: either its
//! thread waited for a CPU (about one send in a hundred on a 2-core machine that also runs
//! the server), or the previous
//! response ended after it (the server fell behind the rate, and latencies from the write
//! understate the wait: coordinated omission). Many late sends mean the rate is too high.
//!
//! Plain blocking sockets on OS threads, one request at a time per connection, the request a
//! fixed `GET /` and the response read by its `Content-Length`: the generator adds as little
//! and as steady a cost as it can, the same for every server.

use std::{
    io::{self, Read, Write},
    net::{SocketAddr, TcpStream},
    thread,
    time::{Duration, Instant},
};

/// The request every connection sends.
const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n";

/// A send later than this after its scheduled time counts as late.
pub(crate) const LATE: Duration = Duration::from_millis(1);

/// What one fixed-rate run measured.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Latencies {
    /// Every completed request's latency, sorted.
    pub(crate) sorted: Vec<Duration>,
    /// Sends that started more than [`LATE`] after their time.
    pub(crate) late: u64,
    /// Failed requests: socket errors, and answers other than 200.
    pub(crate) errors: u64,
}

impl Latencies {
    /// The `q` quantile (0..=1) of the latencies; zero when there are none.
    pub(crate) fn quantile(&self, q: f64) -> Duration {
        if self.sorted.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.sorted.len() - 1) as f64 * q).round() as usize;
        self.sorted[i.min(self.sorted.len() - 1)]
    }
}

/// Loads `addr` with `rate` requests per second over `connections` connections for `duration`.
pub(crate) fn run(
    addr: SocketAddr,
    rate: f64,
    connections: usize,
    duration: Duration,
) -> Latencies {
    let connections = connections.max(1);
    let interval = Duration::from_secs_f64(connections as f64 / rate.max(1.0));
    // Time for every thread to start and connect before the schedule does.
    let start = Instant::now() + Duration::from_millis(50);
    let end = start + duration;
    let threads: Vec<_> = (0..connections)
        .map(|i| {
            let offset = interval.mul_f64(i as f64 / connections as f64);
            thread::spawn(move || paced(addr, start + offset, interval, end))
        })
        .collect();
    let mut all = Latencies {
        sorted: Vec::new(),
        late: 0,
        errors: 0,
    };
    for t in threads {
        match t.join() {
            Ok(one) => {
                all.sorted.extend(one.sorted);
                all.late += one.late;
                all.errors += one.errors;
            }
            Err(_) => all.errors += 1,
        }
    }
    all.sorted.sort_unstable();
    all
}

/// One connection's schedule: a request at `first`, then one per `interval`, until `end`. A
/// connection that fails is opened again at its next time; each failure counts one error.
fn paced(addr: SocketAddr, first: Instant, interval: Duration, end: Instant) -> Latencies {
    let mut out = Latencies {
        sorted: Vec::with_capacity(
            (end - first)
                .as_secs_f64()
                .div_euclid(interval.as_secs_f64()) as usize
                + 1,
        ),
        late: 0,
        errors: 0,
    };
    // Connected ahead of the first time; a failure here is retried at it.
    let mut conn = Connection::open(addr).ok();
    let mut at = first;
    while at < end {
        let now = Instant::now();
        if at > now {
            thread::sleep(at - now);
        } else if now - at > LATE {
            out.late += 1;
        }
        if conn.is_none() {
            match Connection::open(addr) {
                Ok(c) => conn = Some(c),
                Err(_) => {
                    out.errors += 1;
                    at += interval;
                    continue;
                }
            }
        }
        let sent = Instant::now();
        match conn.as_mut().map(Connection::exchange) {
            Some(Ok(200)) => out.sorted.push(sent.elapsed()),
            Some(Ok(_)) => out.errors += 1,
            _ => {
                out.errors += 1;
                conn = None;
            }
        }
        at += interval;
    }
    out
}

/// A keep-alive connection with its read buffer.
struct Connection {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Connection {
    fn open(addr: SocketAddr) -> io::Result<Self> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        Ok(Self {
            stream,
            buf: Vec::with_capacity(4096),
        })
    }

    /// Sends the request and reads its whole response; returns its status.
    fn exchange(&mut self) -> io::Result<u16> {
        self.stream.write_all(REQUEST)?;
        self.buf.clear();
        let mut chunk = [0u8; 4096];
        let (head_len, status, body_len) = loop {
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
            if let Some(head) = parse_head(&self.buf)? {
                break head;
            }
            if self.buf.len() > 64 * 1024 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "response head over 64 KiB",
                ));
            }
        };
        while self.buf.len() < head_len + body_len {
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
        if self.buf.len() > head_len + body_len {
            // One request at a time: nothing may follow the response.
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "bytes past the response",
            ));
        }
        Ok(status)
    }
}

/// A complete response head in `buf`: its length, the status and the `Content-Length`; `None`
/// while the head is incomplete.
pub(crate) fn parse_head(buf: &[u8]) -> io::Result<Option<(usize, u16, usize)>> {
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| invalid("response head not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.strip_prefix("HTTP/1.1 "))
        .and_then(|l| l.get(..3))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid("no HTTP/1.1 status line"))?;
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(invalid("header line without a colon"));
        };
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .trim()
                    .parse()
                    .map_err(|_| invalid("bad Content-Length"))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(invalid("chunked responses are not read here"));
        }
    }
    Ok(Some((end + 4, status, length.unwrap_or(0))))
}
