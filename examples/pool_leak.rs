//! The classic pool leak, caught by a [`LeaseTracker`].
//!
//! A bb8 pool of TCP connections to a small loopback server. One request finds the upstream
//! busy and keeps its connection "to retry later"; nothing ever retries. With a leak threshold
//! of 200 ms the tracker's background task reports it, naming the line that took it. Then the
//! upstream closes its connections: the pool closes the ones it got back, and the leaked one
//! stays in CLOSE_WAIT (shown with `ss` when it is installed). Exits by itself in about a
//! second.
//!
//! ```text
//! cargo run --example pool_leak
//! ```

use std::{
    io,
    net::SocketAddr,
    process::Command,
    sync::Mutex,
    time::{Duration, Instant},
};

use bb8::{ManageConnection, Pool, PooledConnection};
use conn_hygiene::lease::{LeaseTracker, Leased};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
    sync::{watch, Barrier},
    time::{sleep, timeout},
};

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .with_target(false)
        .with_writer(io::stdout)
        .with_ansi(io::IsTerminal::is_terminal(&io::stdout()))
        .init();

    let (addr, close_all) = start_upstream().await?;
    let pool = Pool::builder()
        .max_size(4)
        .connection_timeout(Duration::from_secs(2))
        .build(LineManager { addr })
        .await?;
    let tracker = LeaseTracker::builder("upstream-a")
        .leak_threshold(Some(Duration::from_millis(200)))
        .build()?;
    let retry_later = Mutex::new(Vec::new());

    println!("three requests in flight to {addr}; the upstream is busy for the third");
    let together = Barrier::new(3);
    let (a, b, c) = tokio::join!(
        call(&pool, &tracker, &retry_later, Some(&together), false),
        call(&pool, &tracker, &retry_later, Some(&together), false),
        call(&pool, &tracker, &retry_later, Some(&together), true),
    );
    println!("results: {a:?}, {b:?}, {c:?}");
    println!("leases outstanding: {}", tracker.outstanding());

    // The detector checks every 100 ms: the report comes 200 to 300 ms after the lease.
    wait_for("the leak report", || tracker.totals().leaks_detected == 1).await?;
    println!("\nsnapshot of pool `{}`:", tracker.pool());
    for lease in tracker.snapshot().leases {
        println!("  {lease}{}", if lease.leaked { " [leaked]" } else { "" });
    }

    println!("\nthe upstream closes its connections");
    let _ = close_all.send(());
    sleep(Duration::from_millis(50)).await; // let the FINs arrive before the pool checks
    call(&pool, &tracker, &retry_later, None, false).await?;
    let leaked_port = retry_later.lock().unwrap()[0].local_addr()?.port();
    match close_wait(addr.port()) {
        Some(lines) => {
            println!("sockets in CLOSE_WAIT towards {addr} (the leaked one is local port {leaked_port}):");
            for line in lines {
                println!("  {line}");
            }
        }
        None => println!("(install iproute2's `ss` to see the leaked socket in CLOSE_WAIT)"),
    }

    println!("\nthe fix: give the connection back");
    retry_later.lock().unwrap().clear();
    println!("leases outstanding: {}", tracker.outstanding());
    let totals = tracker.totals();
    println!(
        "totals: {} acquired, {} returned, {} leak(s) reported, {} leaked returned",
        totals.acquired, totals.returned, totals.leaks_detected, totals.leaked_returned
    );
    Ok(())
}

/// The application code, with the classic bug.
async fn call<'p>(
    pool: &'p Pool<LineManager>,
    tracker: &LeaseTracker,
    retry_later: &Mutex<Vec<Leased<PooledConnection<'p, LineManager>>>>,
    together: Option<&Barrier>,
    busy: bool,
) -> Result<(), Error> {
    let mut conn = tracker.wrap(pool.get().await?);
    if let Some(barrier) = together {
        barrier.wait().await;
    }
    let reply = request(&mut conn, if busy { "work busy" } else { "work" }).await?;
    if reply == "busy" {
        // "Keep it to retry on it later": the connection never goes back to the pool.
        retry_later.lock().unwrap().push(conn);
        return Err("upstream busy, will retry later".into());
    }
    Ok(())
}

struct LineManager {
    addr: SocketAddr,
}

impl ManageConnection for LineManager {
    type Connection = TcpStream;
    type Error = io::Error;

    async fn connect(&self) -> io::Result<TcpStream> {
        TcpStream::connect(self.addr).await
    }

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
    timeout(Duration::from_secs(2), conn.read_exact(&mut reply))
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
    Ok(String::from_utf8_lossy(&reply[..4]).into_owned())
}

/// A loopback line server: `ping` → `pong`, `work` → `done`, `work busy` → `busy`. Sending on
/// the returned channel closes every connection accepted so far.
async fn start_upstream() -> io::Result<(SocketAddr, watch::Sender<()>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (close_all, rx) = watch::channel(());
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
    Ok((addr, close_all))
}

/// `ss` lines of the sockets in CLOSE_WAIT towards `port`; `None` without `ss`.
fn close_wait(port: u16) -> Option<Vec<String>> {
    let out = Command::new("ss")
        .args(["-tanH", "state", "close-wait"])
        .arg(format!("( dport = :{port} )"))
        .output()
        .ok()?;
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect()
    })
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) -> Result<(), Error> {
    let deadline = Instant::now() + Duration::from_secs(3);
    while !done() {
        if Instant::now() > deadline {
            return Err(format!("no {what} after 3 s").into());
        }
        sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}
