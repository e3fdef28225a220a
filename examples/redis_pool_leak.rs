//! A Redis pool leak, traced from the kernel's socket table to the line that holds it.
//!
//! A deadpool of Redis connections through the crate's `RedisManager` (no per-guard wrapping:
//! `TrackedDeadpool::get` makes every checkout a lease at its line). A handler keeps its
//! connection on its error path "to retry later", N times. The lease tracker (threshold 1 s)
//! reports each leak with the handler's line; Redis, started with `--timeout 1`, closes the
//! idle connections, and each leaked socket stays in `CLOSE_WAIT` here; the census joins each
//! to the checkout holding it, and so to the line. The process keeps no other connection to
//! Redis. Exits by itself in a few seconds; its last stdout line is one JSON object:
//! `{"leaks_detected":N,"close_wait":N,"close_wait_traced":N,"sites":["file:line"]}`.
//!
//! ```text
//! redis-server --port 6399 --timeout 1 --save '' --appendonly no &
//! cargo run --example redis_pool_leak --features redis,deadpool,census -- \
//!     --redis 127.0.0.1:6399 --leaks 3
//! ```

use std::{
    collections::BTreeSet,
    io,
    net::{SocketAddr, ToSocketAddrs},
    time::{Duration, Instant},
};

use conn_hygiene::{
    census::{CensusSnapshot, CloseWaitEntry, Sampler},
    lease::LeaseTracker,
    pools::{redis::RedisManager, DeadpoolCheckout, TrackedDeadpool},
};
use redis::AsyncCommands;

type Error = Box<dyn std::error::Error + Send + Sync>;

const LEAK_THRESHOLD: Duration = Duration::from_secs(1);
/// How long Redis may take to close the idle connections (its `timeout` plus its client
/// checks), and the detector to report.
const DEADLINE: Duration = Duration::from_secs(15);

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let (redis_addr, leaks) = parse_args()?;
    tracing_subscriber::fmt()
        .with_target(false)
        .with_writer(io::stdout)
        .with_ansi(false)
        .init();

    let manager = RedisManager::new(format!("redis://{redis_addr}/0"))?;
    let pool = deadpool::managed::Pool::builder(manager)
        .max_size(leaks + 1)
        .build()?;
    let tracker = LeaseTracker::builder("redis")
        .leak_threshold(Some(LEAK_THRESHOLD))
        .build()?;
    let pool = TrackedDeadpool::new(pool, tracker).authority(redis_addr.to_string());
    let census = Sampler::builder()
        .interval(Duration::from_millis(500))
        .source(pool.view())
        .spawn()?;

    println!("{leaks} jobs on {redis_addr}; each finds its key busy");
    let mut retry_later = Vec::new();
    for job in 0..leaks {
        match handle(&pool, &mut retry_later, job).await {
            Ok(state) => println!("job {job}: {state}"),
            Err(e) => println!("job {job}: {e}"),
        }
    }
    println!(
        "leases outstanding: {}; connections in the pool: {}",
        pool.tracker().outstanding(),
        pool.status().size
    );

    // The detector reports each leak once, a WARN line above, between 1 and 1.5 s on.
    let leaks_detected = wait_for("the leak reports", || {
        let n = pool.tracker().totals().leaks_detected;
        (n >= leaks as u64).then_some(n)
    })
    .await
    .unwrap_or_else(|| pool.tracker().totals().leaks_detected);
    println!("\nleak reports of pool `redis`:");
    let leased = pool.tracker().snapshot();
    for lease in leased.leaked() {
        println!("  {lease}");
    }

    // Redis closes the connections idle for a second: the leaked sockets stay in CLOSE_WAIT.
    let deadline = Instant::now() + DEADLINE;
    let last = loop {
        let seen = close_wait_toward(&*census.sample_now().await, redis_addr);
        if seen.len() >= leaks || Instant::now() >= deadline {
            break seen;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!("\nCLOSE_WAIT sockets of this process toward {redis_addr}:");
    for cw in &last {
        match cw.lease_site {
            Some(site) => println!("  {} -> {} held at {site}", cw.local, cw.remote),
            None => println!("  {} -> {} (not traced)", cw.local, cw.remote),
        }
    }
    let traced: Vec<&CloseWaitEntry> = last.iter().filter(|cw| cw.lease_site.is_some()).collect();
    let sites: BTreeSet<String> = traced
        .iter()
        .filter_map(|cw| cw.lease_site)
        .chain(leased.leaked().map(|l| l.site))
        .map(|site| format!("{}:{}", site.file(), site.line()))
        .collect();

    println!("\nthe fix: give the connections back");
    retry_later.clear();
    let totals = pool.tracker().totals();
    println!(
        "leases outstanding: {}; leaked leases returned: {}",
        totals.outstanding(),
        totals.leaked_returned
    );

    let report = serde_json::json!({
        "leaks_detected": leaks_detected,
        "close_wait": last.len(),
        "close_wait_traced": traced.len(),
        "sites": sites,
    });
    println!("{report}");
    if leaks_detected != leaks as u64 || traced.len() != leaks {
        return Err(format!(
            "expected {leaks} leaks reported and {leaks} CLOSE_WAIT sockets traced, saw \
             {leaks_detected} and {} (is redis-server running with --timeout 1?)",
            traced.len()
        )
        .into());
    }
    Ok(())
}

/// The application's handler, with the classic bug: a job whose key is busy keeps its
/// connection "to retry later", and nothing ever retries.
async fn handle(
    pool: &TrackedDeadpool<RedisManager>,
    retry_later: &mut Vec<DeadpoolCheckout<RedisManager>>,
    job: usize,
) -> Result<String, Error> {
    let mut conn = pool.get().await.map_err(|e| e.to_string())?;
    let key = format!("job:{job}");
    let _: () = conn.set(&key, "busy").await?;
    let state: String = conn.get(&key).await?;
    if state == "busy" {
        retry_later.push(conn);
        return Err(format!("{key} busy, will retry later").into());
    }
    Ok(state)
}

fn close_wait_toward(snap: &CensusSnapshot, redis: SocketAddr) -> Vec<CloseWaitEntry> {
    snap.close_wait
        .iter()
        .filter(|cw| cw.remote == redis)
        .cloned()
        .collect()
}

/// Polls `done` every 20 ms until it gives a value, for at most [`DEADLINE`].
async fn wait_for<T>(what: &str, mut done: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = done() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            eprintln!("gave up waiting for {what} after {DEADLINE:?}");
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn parse_args() -> Result<(SocketAddr, usize), Error> {
    let usage = "usage: redis_pool_leak --redis HOST:PORT [--leaks N]";
    let mut redis = None;
    let mut leaks = 3;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().ok_or(usage)?;
        match arg.as_str() {
            "--redis" => {
                let addr = value
                    .to_socket_addrs()
                    .map_err(|e| format!("--redis {value}: {e}"))?
                    .next()
                    .ok_or_else(|| format!("--redis {value}: no address"))?;
                redis = Some(addr);
            }
            "--leaks" => {
                leaks = value
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("--leaks {value}: expected a positive number"))?;
            }
            _ => return Err(format!("unknown argument {arg}; {usage}").into()),
        }
    }
    Ok((redis.ok_or(usage)?, leaks))
}
