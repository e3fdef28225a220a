//! The classic pool leak, with a real pool (bb8) over real TCP connections to a loopback
//! server: an error path keeps its connection "to retry later" and never gives it back. The
//! lease tracker reports it with the line that took it, and once the server closes its end,
//! that connection is the one left in CLOSE_WAIT while the ones given back are closed by the
//! pool.

use std::{
    collections::BTreeSet,
    io,
    net::SocketAddr,
    process::Command,
    sync::{
        atomic::{AtomicU32, Ordering},
        Mutex,
    },
    time::Duration,
};

use bb8::{ManageConnection, Pool, PooledConnection};
use conn_hygiene::{
    lease::{LeaseTracker, Leased},
    metrics::names,
    testing::LeakCheck,
};
use conn_hygiene_test_support::{eventually, satisfies};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
    sync::{watch, Barrier},
    time::timeout,
};

type Error = Box<dyn std::error::Error + Send + Sync>;

// ---- The upstream: a line protocol server on loopback ----------------------------------------

/// Answers `ping` with `pong`, `work` with `done` and `work busy` with `busy`, one line each.
/// `close_all` closes every connection accepted so far (as an upstream's idle timeout would);
/// connections accepted afterwards are served normally.
struct Upstream {
    addr: SocketAddr,
    close_all: watch::Sender<u64>,
}

impl Upstream {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (close_all, rx) = watch::channel(0);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let mut closed = rx.clone();
                closed.borrow_and_update();
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let mut lines = BufReader::new(read).lines();
                    loop {
                        tokio::select! {
                            _ = closed.changed() => break,
                            line = lines.next_line() => {
                                let reply: &[u8] = match line {
                                    Ok(Some(l)) if l == "ping" => b"pong\n",
                                    Ok(Some(l)) if l == "work" => b"done\n",
                                    Ok(Some(l)) if l == "work busy" => b"busy\n",
                                    _ => break,
                                };
                                if write.write_all(reply).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                });
            }
        });
        Upstream { addr, close_all }
    }

    fn close_all(&self) {
        self.close_all.send_modify(|generation| *generation += 1);
    }
}

// ---- The client side: a bb8 pool of TCP connections -------------------------------------------

struct LineManager {
    addr: SocketAddr,
}

impl ManageConnection for LineManager {
    type Connection = TcpStream;
    type Error = io::Error;

    async fn connect(&self) -> io::Result<TcpStream> {
        TcpStream::connect(self.addr).await
    }

    /// Checked on every checkout: a connection the upstream closed fails here and is dropped
    /// (closed) by the pool.
    async fn is_valid(&self, conn: &mut TcpStream) -> io::Result<()> {
        match request(conn, "ping").await?.as_str() {
            "pong" => Ok(()),
            other => Err(io::Error::other(format!("unexpected reply {other:?}"))),
        }
    }

    fn has_broken(&self, _: &mut TcpStream) -> bool {
        false
    }
}

async fn request(conn: &mut TcpStream, line: &str) -> io::Result<String> {
    conn.write_all(format!("{line}\n").as_bytes()).await?;
    let mut reply = [0u8; 5];
    timeout(Duration::from_secs(5), conn.read_exact(&mut reply))
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
    Ok(String::from_utf8_lossy(&reply[..4]).into_owned())
}

type Conn<'p> = Leased<PooledConnection<'p, LineManager>>;

/// Where `call` takes its connection, for the assertions.
static ACQUIRED_AT: AtomicU32 = AtomicU32::new(0);

/// The application code, with the classic bug: when the upstream is busy, it keeps the
/// connection "to retry on it later", and nothing ever retries.
async fn call<'p>(
    pool: &'p Pool<LineManager>,
    tracker: &LeaseTracker,
    retry_later: &Mutex<Vec<Conn<'p>>>,
    together: Option<&Barrier>,
    busy: bool,
) -> Result<(), Error> {
    let mut conn = tracker.wrap(pool.get().await?);
    ACQUIRED_AT.store(line!() - 1, Ordering::Relaxed);
    if let Some(barrier) = together {
        barrier.wait().await; // requests in flight together: one connection each
    }
    let reply = request(&mut conn, if busy { "work busy" } else { "work" }).await?;
    if reply == "busy" {
        retry_later.lock().unwrap().push(conn); // the leak
        return Err("upstream busy, will retry later".into());
    }
    assert_eq!(reply, "done");
    Ok(())
}

// ---- Kernel view ----------------------------------------------------------------------------

/// Local ports of the sockets in CLOSE_WAIT whose peer is `port`, from `ss`.
fn close_wait_ports(port: u16) -> BTreeSet<u16> {
    let out = Command::new("ss")
        .args(["-tanH", "state", "close-wait"])
        .arg(format!("( dport = :{port} )"))
        .output()
        .expect("ss (iproute2) is needed for this test");
    assert!(out.status.success(), "{out:?}");
    parse_ss(&String::from_utf8_lossy(&out.stdout), port)
}

/// Parses `ss -tanH state <one state>` lines: `Recv-Q Send-Q Local:Port Peer:Port`.
fn parse_ss(text: &str, peer_port: u16) -> BTreeSet<u16> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let peer = fields
                .iter()
                .position(|f| f.ends_with(&format!(":{peer_port}")))?;
            let local = fields.get(peer.checked_sub(1)?)?;
            local.rsplit_once(':')?.1.parse().ok()
        })
        .collect()
}

#[test]
fn ss_lines_parse() {
    let sample = "0      0      127.0.0.1:41234 127.0.0.1:8080\n\
                  1      0      127.0.0.1:41236 127.0.0.1:8080\n\
                  0      0      [::1]:41238 [::1]:9090\n";
    assert_eq!(parse_ss(sample, 8080), BTreeSet::from([41234, 41236]));
}

/// Log output of a `tracing` subscriber installed for the current thread.
#[derive(Clone, Default)]
struct Logs(std::sync::Arc<Mutex<Vec<u8>>>);

impl io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn capture() -> (Self, tracing::subscriber::DefaultGuard) {
        let logs = Logs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    fn lines_containing(&self, needle: &str) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_owned)
            .collect()
    }
}

fn counter(recorder_values: &[(String, u64)], name: &str) -> u64 {
    recorder_values
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v)
        .sum()
}

#[tokio::test]
async fn leaked_pool_connection_is_reported_and_is_the_one_left_in_close_wait() {
    // The detector runs on this (current-thread) runtime, so it logs to this subscriber.
    let (logs, _logging) = Logs::capture();
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let tracker = metrics::with_local_recorder(&recorder, || {
        LeaseTracker::builder("upstream-a")
            .leak_threshold(Some(Duration::from_millis(200)))
            .build()
            .unwrap()
    });
    let mut counters = Vec::new();
    let mut read_counters = || {
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            if let DebugValue::Counter(v) = value {
                counters.push((key.key().name().to_owned(), v));
            }
        }
        counters.clone()
    };

    let upstream = Upstream::start().await;
    let port = upstream.addr.port();
    let pool = Pool::builder()
        .max_size(4)
        .connection_timeout(Duration::from_secs(5))
        .build(LineManager {
            addr: upstream.addr,
        })
        .await
        .unwrap();
    let retry_later = Mutex::new(Vec::new());
    let check = LeakCheck::new(&tracker);

    // Three requests in flight together; the third finds the upstream busy.
    let together = Barrier::new(3);
    let (a, b, c) = tokio::join!(
        call(&pool, &tracker, &retry_later, Some(&together), false),
        call(&pool, &tracker, &retry_later, Some(&together), false),
        call(&pool, &tracker, &retry_later, Some(&together), true),
    );
    assert!(a.is_ok() && b.is_ok(), "{a:?} {b:?}");
    assert_eq!(
        c.unwrap_err().to_string(),
        "upstream busy, will retry later"
    );
    let state = pool.state();
    assert_eq!((state.connections, state.idle_connections), (3, 2));
    assert_eq!(tracker.outstanding(), 1);
    let leaked_port = retry_later.lock().unwrap()[0].local_addr().unwrap().port();

    // The background detector reports it, naming the line that took it.
    eventually("the leak reported", Duration::from_secs(5), || {
        satisfies(tracker.totals().leaks_detected, |&n| n == 1)
    })
    .await;
    let site = format!("{}:{}:", file!(), ACQUIRED_AT.load(Ordering::Relaxed));
    let snapshot = tracker.snapshot();
    assert_eq!(snapshot.leases.len(), 1);
    let leak = &snapshot.leases[0];
    assert!(leak.leaked);
    assert!(leak.site.to_string().starts_with(&site), "{leak:?}");
    assert!(leak.age >= Duration::from_millis(200), "{leak:?}");
    assert_eq!(counter(&read_counters(), names::LEASE_LEAKS_TOTAL), 1);
    let reports = logs.lines_containing("longer than the leak threshold");
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert!(reports[0].contains(" WARN "), "{reports:?}");
    assert!(reports[0].contains("pool=upstream-a"), "{reports:?}");
    assert!(
        reports[0].contains(&format!("taken at {site}")),
        "{reports:?}"
    );
    assert_eq!(snapshot.totals.acquired, 3);
    assert_eq!(snapshot.totals.returned, 2);

    // Nothing in CLOSE_WAIT while the upstream keeps its end open.
    assert_eq!(close_wait_ports(port), BTreeSet::new());

    // The upstream closes every connection. All three client sockets see the FIN...
    upstream.close_all();
    eventually(
        "three sockets in CLOSE_WAIT",
        Duration::from_secs(5),
        || satisfies(close_wait_ports(port), |ports| ports.len() == 3),
    )
    .await;

    // ...the application goes on: the pool checks its idle connections on checkout, finds the
    // two given back closed, and closes them. The leaked one is out of its reach.
    call(&pool, &tracker, &retry_later, None, false)
        .await
        .unwrap();
    let left = eventually(
        "one socket left in CLOSE_WAIT",
        Duration::from_secs(5),
        || satisfies(close_wait_ports(port), |ports| ports.len() == 1),
    )
    .await;
    assert_eq!(left, BTreeSet::from([leaked_port]), "the leaked connection");
    assert_eq!(tracker.outstanding(), 1);

    // Giving it back ends the lease (reported as a leak returned); the connection is the
    // pool's again, and closed with it.
    retry_later.lock().unwrap().clear();
    assert_eq!(tracker.outstanding(), 0);
    assert_eq!(tracker.totals().leaked_returned, 1);
    assert_eq!(
        counter(&read_counters(), names::LEASE_LEAKS_RETURNED_TOTAL),
        1
    );
    let returned = logs.lines_containing("leaked lease returned after");
    assert_eq!(returned.len(), 1, "{returned:?}");
    assert!(returned[0].contains(&site), "{returned:?}");
    drop(retry_later);
    drop(pool);
    eventually(
        "no socket left in CLOSE_WAIT",
        Duration::from_secs(5),
        || satisfies(close_wait_ports(port), BTreeSet::is_empty),
    )
    .await;
    drop(check); // no lease outstanding
    assert_eq!(counter(&read_counters(), names::LEASES_ACQUIRED_TOTAL), 4);
}
