//! What the pooled [`HygienicClient`] costs over bare hyper-util, measured against it in the
//! same run.
//!
//! - `bare`: hyper-util's `Client` as a user sets it up to pool the same way without this
//!   crate: `Client::builder(TokioExecutor::new()).pool_timer(TokioTimer::new())
//!   .pool_max_idle_per_host(C).build_http()` (the pool timer is what makes hyper-util's idle
//!   timeout fire at all; the hygienic client sets one too);
//! - `hygienic`: `HygienicClient` with its defaults (`client-first`, tracked connections,
//!   leases, socket policy). It keys hyper-util's pool by a four-byte key per upstream rather
//!   than the request's authority (the bytes on the wire are the same), which saves hyper-util
//!   work on every request: this is the client as users get it, and the target applies to it;
//! - `by-authority`: the same client with `upstream_pool_keys(false)`, so hyper-util keys its
//!   pool by each request's authority as it does alone: what the crate adds per request,
//!   without what the short keys save.
//!
//! All three load the same local server: a minimal hyper HTTP/1 server answering `ok\n`, on a
//! current-thread runtime of its own OS thread. With `--tls` the server speaks HTTPS (a
//! certificate made at start-up, HTTP/1.1 by ALPN), the bare client connects through
//! hyper-rustls's `HttpsConnector` as a user without this crate would, and the hygienic ones
//! through their own TLS (`ClientTls::from_config`, the same rustls configuration). Each client runs on one current-thread runtime
//! (like `wrk -t1`) with C tasks sending GETs back to back over keep-alive connections, every
//! body read to its end. No metrics recorder is installed (the bare client has none either).
//! The clients are built once and warmed up; each round then loads each, back to back, the
//! order rotated from round to round. Many short rounds: a round's loads see nearly the
//! same machine, so the ratio taken within each round is little disturbed by other work that
//! comes and goes (on a shared machine, loads minutes apart differ by far more than the
//! clients do). The ratio reported is the median of the per-round ratios, with the lowest,
//! highest and the middle half (quartiles), for each client against `bare`; a client's own
//! figures are the medians of its rounds. Target: hygienic throughput at least 0.98x bare. The client thread's CPU time per
//! request (from `/proc/thread-self/schedstat`) is printed too.
//!
//! ```text
//! cargo bench --bench client_overhead [-- --rounds N] [--secs S] [--concurrency C] [--tls]
//!                                        [--only bare|hygienic|by-authority]
//! ```
//!
//! `--only` loads one client alone (under a profiler, say) and prints no ratio, but how many
//! connections the server accepted.
//!
//! Defaults: 100 rounds of 0.2 s, concurrency 16; the run takes about 65 s. Under `cargo test
//! --benches` (no `--bench` flag) each client sends a few requests and nothing is measured.

use std::{
    future::Future,
    net::SocketAddr,
    pin::Pin,
    time::{Duration, Instant},
};

use bytes::Bytes;
use conn_hygiene::client::{HygienicClient, UpstreamConfig};
use http_body_util::{BodyExt, Empty, Full};
use hyper::{body::Incoming, Request, Response};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::{TokioExecutor, TokioIo, TokioTimer},
};
use tokio::sync::oneshot;

const THROUGHPUT_TARGET: f64 = 0.98;
const WARM_UP: Duration = Duration::from_millis(500);
/// Bound on one request; a request slower than this counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

struct Options {
    rounds: usize,
    duration: Duration,
    concurrency: usize,
    /// Load only this client (for a profiler); no ratio is printed.
    only: Option<String>,
    /// HTTPS instead of plain HTTP.
    tls: bool,
}

/// What one client did in one round.
#[derive(Debug, Clone, Copy)]
struct Measurement {
    requests: u64,
    requests_per_sec: f64,
    p99: Duration,
    errors: u64,
    /// CPU time of the client's thread per completed request, which other work on the machine
    /// disturbs far less than throughput; `None` without `/proc/thread-self/schedstat`.
    cpu_per_request: Option<Duration>,
}

type Outcome = Result<(), String>;

/// The two clients behind one call: a GET whose body is read to its end.
#[derive(Clone)]
// Not boxed: each request clones its client, and a box would add an allocation to the bare
// baseline's requests.
#[allow(clippy::large_enum_variant)]
enum Variant {
    Bare(Client<HttpConnector, Empty<Bytes>>),
    /// hyper-util's client over hyper-rustls, for `--tls`.
    BareTls(Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>),
    /// The client's name, and the client.
    Hygienic(&'static str, HygienicClient<Empty<Bytes>>),
}

impl Variant {
    fn name(&self) -> &'static str {
        match self {
            Variant::Bare(_) | Variant::BareTls(_) => "bare",
            Variant::Hygienic(name, _) => name,
        }
    }

    fn get(&self, uri: http::Uri) -> Pin<Box<dyn Future<Output = Outcome> + Send>> {
        match self.clone() {
            Variant::Bare(c) => Box::pin(async move {
                let res = c.get(uri).await.map_err(|e| e.to_string())?;
                check(res.status())?;
                res.into_body().collect().await.map_err(|e| e.to_string())?;
                Ok(())
            }),
            Variant::BareTls(c) => Box::pin(async move {
                let res = c.get(uri).await.map_err(|e| e.to_string())?;
                check(res.status())?;
                res.into_body().collect().await.map_err(|e| e.to_string())?;
                Ok(())
            }),
            Variant::Hygienic(_, c) => Box::pin(async move {
                let res = c.get(uri).await.map_err(|e| e.to_string())?;
                check(res.status())?;
                res.into_body().collect().await.map_err(|e| e.to_string())?;
                Ok(())
            }),
        }
    }
}

fn check(status: http::StatusCode) -> Outcome {
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("status {status}"))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let measure = args.iter().any(|a| a == "--bench");
    let options = parse_options(&args).unwrap_or_else(|e| {
        eprintln!("client_overhead: {e}");
        std::process::exit(2);
    });
    let tls = options.tls.then(tls::Tls::new);
    let server = ServerThread::start(tls.as_ref().map(|t| t.acceptor.clone()));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    rt.block_on(async {
        let builder = || {
            let b = HygienicClient::builder()
                .default_upstream(UpstreamConfig::new().max_idle(options.concurrency));
            match &tls {
                Some(t) => b.tls(conn_hygiene::client::ClientTls::from_config(
                    t.client.clone(),
                )),
                None => b,
            }
        };
        let hygienic = builder().build::<Empty<Bytes>>().expect("client config");
        // The same client with hyper-util's pool keyed by each request's authority, as
        // hyper-util does alone: what the crate adds, without what the short keys save.
        let by_authority = builder()
            .upstream_pool_keys(false)
            .build::<Empty<Bytes>>()
            .expect("client config");
        let mut bare = Client::builder(TokioExecutor::new());
        bare.pool_timer(TokioTimer::new())
            .pool_max_idle_per_host(options.concurrency);
        let bare = match &tls {
            None => Variant::Bare(bare.build_http()),
            Some(t) => Variant::BareTls(
                bare.build(
                    // The same configuration, but for ALPN, which hyper-rustls sets itself
                        // (`http/1.1` alone, from `enable_http1`).
                    hyper_rustls::HttpsConnectorBuilder::new()
                        .with_tls_config({
                            let mut c = (*t.client).clone();
                            c.alpn_protocols.clear();
                            c
                        })
                        .https_only()
                        .enable_http1()
                        .build(),
                ),
            ),
        };
        let variants = [
            bare,
            Variant::Hygienic("hygienic", hygienic.clone()),
            Variant::Hygienic("by-authority", by_authority),
        ];
        let scheme = if tls.is_some() { "https" } else { "http" };
        let uri: http::Uri = format!("{scheme}://{}/", server.addr)
            .parse()
            .expect("uri");
        if !measure {
            // `cargo test --benches`: a smoke run only.
            assert_eq!(
                parse_schedstat("1234567 89 10\n"),
                Some(Duration::from_nanos(1_234_567))
            );
            for v in &variants {
                for _ in 0..10 {
                    v.get(uri.clone()).await.expect("smoke request");
                }
            }
            println!(
                "client_overhead: both clients answered; run `cargo bench --bench client_overhead` to measure"
            );
            return;
        }
        run(&options, &variants, &uri).await;
        let snap = hygienic.view().snapshot();
        let connects: u64 = snap.iter().map(|u| u.totals.connects).sum();
        let outstanding: u64 = snap.iter().map(|u| u.leases.outstanding()).sum();
        println!("hygienic client: {connects} connections opened, {outstanding} leases outstanding");
    });
    drop(rt);
    server.stop();
}

fn parse_options(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        rounds: 100,
        duration: Duration::from_millis(200),
        concurrency: 16,
        only: None,
        tls: false,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--rounds" => {
                let v = value()?;
                options.rounds = v
                    .parse()
                    .ok()
                    .filter(|&n| (1..=200).contains(&n))
                    .ok_or_else(|| format!("--rounds: {v:?} is not a whole number in 1..=200"))?;
            }
            "--secs" => {
                let v = value()?;
                options.duration = v
                    .parse::<f64>()
                    .ok()
                    .filter(|s| (0.1..=10.0).contains(s))
                    .map(Duration::from_secs_f64)
                    .ok_or_else(|| format!("--secs: {v:?} is not a number in 0.1..=10"))?;
            }
            "--concurrency" => {
                let v = value()?;
                options.concurrency = v
                    .parse()
                    .ok()
                    .filter(|&n| (1..=1024).contains(&n))
                    .ok_or_else(|| {
                        format!("--concurrency: {v:?} is not a whole number in 1..=1024")
                    })?;
            }
            "--tls" => options.tls = true,
            "--only" => {
                let v = value()?;
                if !["bare", "hygienic", "by-authority"].contains(&v.as_str()) {
                    return Err(format!(
                        "--only: {v:?} is none of `bare`, `hygienic`, `by-authority`"
                    ));
                }
                options.only = Some(v.clone());
            }
            // `cargo bench` adds `--bench`, and a filter when one is given on its command line.
            _ => {}
        }
    }
    Ok(options)
}

async fn run(options: &Options, variants: &[Variant; 3], uri: &http::Uri) {
    println!(
        "client_overhead: cargo bench --bench client_overhead -- --rounds {} --secs {} --concurrency {}{}",
        options.rounds,
        options.duration.as_secs_f64(),
        options.concurrency,
        if options.tls { " --tls" } else { "" }
    );
    println!(
        "  {} keep-alive GETs in flight on one current-thread runtime; server: hyper HTTP/1{} on its own thread",
        options.concurrency,
        if options.tls {
            " over TLS (rustls, HTTP/1.1 by ALPN; bare client: hyper-rustls)"
        } else {
            ""
        }
    );
    if let Some(only) = &options.only {
        let v = variants
            .iter()
            .find(|v| v.name() == only)
            .expect("a known client");
        let mut total = load(v, uri, options.concurrency, WARM_UP).await.requests;
        for round in 0..options.rounds {
            let m = load(v, uri, options.concurrency, options.duration).await;
            total += m.requests;
            println!(
                "round {}/{}  {:<9} {:>9.0} req/s  cpu {:>6.2} us/req",
                round + 1,
                options.rounds,
                v.name(),
                m.requests_per_sec,
                m.cpu_per_request.map_or(f64::NAN, micros),
            );
        }
        println!("{total} requests in all, warm-up included");
        println!(
            "the server accepted {} connections",
            ACCEPTED.load(std::sync::atomic::Ordering::Relaxed)
        );
        return;
    }
    for v in variants {
        load(v, uri, options.concurrency, WARM_UP).await;
    }
    // results[variant][round]
    let mut results: [Vec<Measurement>; 3] = Default::default();
    for round in 0..options.rounds {
        // Each client goes first, second and third in turn.
        for k in 0..3 {
            let i = (round + k) % 3;
            let v = &variants[i];
            let m = load(v, uri, options.concurrency, options.duration).await;
            println!(
                "round {}/{}  {:<9} {:>9.0} req/s  p99 {:>7.3} ms  cpu {:>6.2} us/req{}",
                round + 1,
                options.rounds,
                v.name(),
                m.requests_per_sec,
                m.p99.as_secs_f64() * 1e3,
                m.cpu_per_request.map_or(f64::NAN, micros),
                if m.errors > 0 {
                    format!("  ({} errors)", m.errors)
                } else {
                    String::new()
                }
            );
            results[i].push(m);
        }
    }

    let rps = |r: &Measurement| r.requests_per_sec;
    let p99 = |r: &Measurement| r.p99.as_secs_f64() * 1e3;
    let cpu = |r: &Measurement| r.cpu_per_request.map_or(f64::NAN, micros);
    println!();
    println!(
        "{:<13} {:>10} {:>10} {:>12} {:>7}",
        "client", "req/s", "p99 ms", "cpu us/req", "errors"
    );
    for (i, v) in variants.iter().enumerate() {
        println!(
            "{:<13} {:>10.0} {:>10.3} {:>12.2} {:>7}",
            v.name(),
            median(results[i].iter().map(rps).collect()),
            median(results[i].iter().map(p99).collect()),
            median(results[i].iter().map(cpu).collect()),
            results[i].iter().map(|r| r.errors).sum::<u64>()
        );
    }
    for (j, v) in variants.iter().enumerate().skip(1) {
        let ratio = |f: &dyn Fn(&Measurement) -> f64| {
            PerRound::of(results[j].iter().zip(&results[0]).map(|(h, b)| f(h) / f(b)))
        };
        let (rps, p99, cpu) = (ratio(&rps), ratio(&p99), ratio(&cpu));
        let name = format!("{}/bare", v.name());
        // The target is the client's as users get it; the other is there to be read.
        let target = if v.name() == "hygienic" {
            format!(
                " (target >= {THROUGHPUT_TARGET:.2}x {})",
                if rps.median >= THROUGHPUT_TARGET {
                    "ok"
                } else {
                    "MISS"
                }
            )
        } else {
            String::new()
        };
        println!();
        println!(
            "{name}  req/s {:.3}x{target}   per round: {rps}",
            rps.median
        );
        println!("{name}  p99   {:.3}x   per round: {p99}", p99.median);
        println!("{name}  cpu   {:.3}x   per round: {cpu}", cpu.median);
    }
}

/// The ratios taken within each round (both clients load the server back to back, so a
/// round's ratio is little disturbed by other work that comes and goes on the machine).
struct PerRound {
    median: f64,
    lowest: f64,
    highest: f64,
    /// The middle half: first and third quartiles.
    middle: (f64, f64),
}

impl PerRound {
    fn of(ratios: impl Iterator<Item = f64>) -> Self {
        let mut v: Vec<f64> = ratios.collect();
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        Self {
            median: median(v.clone()),
            lowest: v[0],
            highest: v[v.len() - 1],
            middle: (at(0.25), at(0.75)),
        }
    }
}

impl std::fmt::Display for PerRound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "median {:.3}, lowest {:.3}, highest {:.3}, middle half [{:.3}..{:.3}]",
            self.median, self.lowest, self.highest, self.middle.0, self.middle.1
        )
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// `concurrency` tasks sending GETs back to back until `duration` has passed.
async fn load(v: &Variant, uri: &http::Uri, concurrency: usize, duration: Duration) -> Measurement {
    let started = Instant::now();
    let cpu_before = thread_cpu();
    let deadline = tokio::time::Instant::now() + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (v, uri) = (v.clone(), uri.clone());
        tasks.spawn(async move {
            let mut latencies = Vec::with_capacity(1 << 14);
            let mut errors = 0u64;
            while tokio::time::Instant::now() < deadline {
                let t = Instant::now();
                match tokio::time::timeout(REQUEST_TIMEOUT, v.get(uri.clone())).await {
                    Ok(Ok(())) => latencies.push(t.elapsed()),
                    Ok(Err(e)) => {
                        errors += 1;
                        if errors == 1 {
                            eprintln!("{}: {e}", v.name());
                        }
                    }
                    Err(_) => errors += 1,
                }
            }
            (latencies, errors)
        });
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    while let Some(done) = tasks.join_next().await {
        let (l, e) = done.expect("load task");
        latencies.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed();
    let cpu_per_request = match (cpu_before, thread_cpu()) {
        (Some(before), Some(after)) if !latencies.is_empty() => {
            Some(after.saturating_sub(before) / latencies.len() as u32)
        }
        _ => None,
    };
    latencies.sort_unstable();
    let p99 = match latencies.len() {
        0 => Duration::ZERO,
        n => latencies[(n * 99).div_ceil(100) - 1],
    };
    Measurement {
        requests: latencies.len() as u64,
        requests_per_sec: latencies.len() as f64 / elapsed.as_secs_f64(),
        p99,
        errors,
        cpu_per_request,
    }
}

/// CPU time of the calling thread so far: the first field of `/proc/thread-self/schedstat`, in
/// nanoseconds. The client runtime is current-thread, so this is all of the client's work.
fn thread_cpu() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    parse_schedstat(&text)
}

/// The run time (first field, nanoseconds) of a `schedstat` line.
fn parse_schedstat(text: &str) -> Option<Duration> {
    text.split_whitespace()
        .next()?
        .parse()
        .ok()
        .map(Duration::from_nanos)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

// ---- the server ----

/// Connections the server accepted.
static ACCEPTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A minimal hyper HTTP/1 server on a current-thread runtime of its own thread; stopped and
/// joined by [`ServerThread::stop`] (or on drop).
struct ServerThread {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ServerThread {
    fn start(tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("local_addr");
        let (tx, mut rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("server".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("server runtime");
                rt.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                    loop {
                        let (stream, _) = tokio::select! {
                            _ = &mut rx => return,
                            accepted = listener.accept() => match accepted {
                                Ok(a) => a,
                                Err(_) => continue,
                            },
                        };
                        let _ = stream.set_nodelay(true);
                        ACCEPTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let tls = tls.clone();
                        tokio::spawn(async move {
                            let service =
                                hyper::service::service_fn(|_req: Request<Incoming>| async {
                                    Ok::<_, std::convert::Infallible>(Response::new(Full::new(
                                        Bytes::from_static(b"ok\n"),
                                    )))
                                });
                            let http = hyper::server::conn::http1::Builder::new();
                            let _ = match tls {
                                None => http.serve_connection(TokioIo::new(stream), service).await,
                                Some(acceptor) => match acceptor.accept(stream).await {
                                    Ok(tls) => {
                                        http.serve_connection(TokioIo::new(tls), service).await
                                    }
                                    Err(_) => return,
                                },
                            };
                        });
                    }
                });
            })
            .expect("spawn the server thread");
        Self {
            addr,
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        self.shutdown();
    }
}

// ---- TLS for `--tls` ----

mod tls {
    use std::sync::Arc;

    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

    /// A certificate for 127.0.0.1 made at start-up, the server's acceptor, and a client
    /// configuration trusting it; HTTP/1.1 by ALPN on both sides.
    pub(crate) struct Tls {
        pub(crate) acceptor: tokio_rustls::TlsAcceptor,
        pub(crate) client: Arc<rustls::ClientConfig>,
    }

    impl Tls {
        pub(crate) fn new() -> Self {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let key = rcgen::KeyPair::generate().expect("key");
            let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".into()])
                .expect("certificate parameters")
                .self_signed(&key)
                .expect("self-signed certificate");
            let der = CertificateDer::from(cert.der().to_vec());
            let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
            let mut server = rustls::ServerConfig::builder()
                .with_no_client_auth()
                .with_single_cert(vec![der.clone()], key)
                .expect("server configuration");
            server.alpn_protocols = vec![b"http/1.1".to_vec()];
            let mut roots = rustls::RootCertStore::empty();
            roots.add(der).expect("the certificate as a root");
            let mut client = rustls::ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth();
            client.alpn_protocols = vec![b"http/1.1".to_vec()];
            Self {
                acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
                client: Arc::new(client),
            }
        }
    }
}
