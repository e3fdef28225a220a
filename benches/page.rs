//! What serving the live connections page costs, at 10 000 connections, measured against
//! rendering the `/metrics` page of the same process in the same run.
//!
//! One process holds a hygienic listener with N connections open to it (half of them idle
//! after one request, half never sent a byte), the census sampler over it (a full sample taken,
//! then its ticks stopped so they do not run alongside the measurement), a Prometheus recorder,
//! and the page over the listener. Each round renders the HTML page, its JSON twin and the
//! metrics page, in an order rotated from round to round, each `--calls` times, and keeps the
//! CPU time of the calling thread per call (`CLOCK_THREAD_CPUTIME_ID`: the work of serving,
//! minus the HTTP framing, which does not grow with the connections). A variant's figure is the
//! median of its rounds, with the lowest and highest round; the ratio to `/metrics` is taken
//! within each round.
//!
//! ```text
//! cargo bench --bench page [-- --connections N] [--rounds N] [--calls N]
//! ```
//!
//! Defaults: 10 000 connections, 30 rounds of 20 calls; about 20 s. The peers' ends of the
//! connections are held by a child process (this bench run with `--hold`), so each process
//! needs a descriptor limit of the connections and a few more. Loopback only. Target: the HTML page under 5 ms of CPU per render at 10 000 connections.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use axum::{routing::get, Router};
use conn_hygiene::{
    census::Sampler,
    exporter::PrometheusExporter,
    page::ConnectionsPage,
    server::{ConnectionLimits, HygienicListener, MakeTrackConnection},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

struct Args {
    /// Set in the child that holds the peers' ends.
    hold: Option<SocketAddr>,
    connections: usize,
    rounds: usize,
    calls: usize,
}

fn parse_args() -> Args {
    let mut args = Args {
        hold: None,
        connections: 10_000,
        rounds: 30,
        calls: 20,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| -> usize {
            it.next()
                .and_then(|v| v.parse().ok())
                .filter(|v| *v > 0)
                .unwrap_or_else(|| {
                    eprintln!("page bench: {name} takes a positive whole number");
                    std::process::exit(2)
                })
        };
        match flag.as_str() {
            "--connections" => args.connections = value("--connections"),
            "--rounds" => args.rounds = value("--rounds"),
            "--calls" => args.calls = value("--calls"),
            "--hold" => {
                args.hold = Some(it.next().and_then(|a| a.parse().ok()).unwrap_or_else(|| {
                    eprintln!("page bench: --hold takes an address");
                    std::process::exit(2)
                }))
            }
            // What `cargo bench` passes to every bench target.
            "--bench" => {}
            other => {
                eprintln!("page bench: unknown argument {other}");
                std::process::exit(2)
            }
        }
    }
    args
}

/// CPU time of this thread (`CLOCK_THREAD_CPUTIME_ID`).
fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// The soft limit on descriptors, from `/proc/self/limits`.
fn nofile_limit() -> Option<u64> {
    std::fs::read_to_string("/proc/self/limits")
        .ok()?
        .lines()
        .find(|l| l.starts_with("Max open files"))?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()
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

fn spread(v: &[f64]) -> (f64, f64, f64) {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (median(v.to_vec()), lo, hi)
}

/// The child's part: opens `n` connections to `addr` (every other one sends a request and
/// reads its answer), says `ready`, and holds them until its stdin closes.
fn hold(addr: SocketAddr, n: usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let conns = open_connections(addr, n).await;
        println!("ready");
        let mut rest = Vec::new();
        let _ = tokio::io::stdin().read_to_end(&mut rest).await;
        drop(conns);
    });
}

async fn open_connections(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut conns = Vec::with_capacity(n);
    for k in 0..n {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        if k % 2 == 0 {
            s.write_all(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
                .await
                .expect("write");
            let mut buf = [0u8; 256];
            let got = s.read(&mut buf).await.expect("read");
            assert!(buf[..got].starts_with(b"HTTP/1.1 200"), "answered");
        }
        conns.push(s);
    }
    conns
}

fn main() {
    let args = parse_args();
    if let Some(addr) = args.hold {
        return hold(addr, args.connections);
    }
    // The peers' ends live in a child process: this one holds only the server's.
    let need = args.connections as u64 + 256;
    let limit = nofile_limit().unwrap_or(0);
    if limit < need {
        eprintln!(
            "page bench: {} connections need {need} descriptors, the limit is {limit}: \
             raise it (`ulimit -n {need}`) or give fewer --connections",
            args.connections
        );
        std::process::exit(2);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let exporter = PrometheusExporter::install().expect("install the recorder");
        let limits = ConnectionLimits::builder()
            .header_timeout(None)
            .idle_timeout(None)
            .build()
            .expect("limits");
        let listener = HygienicListener::builder()
            .name("api")
            .limits(limits)
            .bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr();
        let registry = listener.registry().clone();
        tokio::spawn(async move {
            let app = Router::new().route("/", get(|| async { "ok\n" }));
            let _ = axum::serve(listener, MakeTrackConnection::new(app)).await;
        });
        let started = Instant::now();
        let mut peers = std::process::Command::new(std::env::current_exe().expect("current_exe"))
            .args(["--hold", &addr.to_string(), "--connections"])
            .arg(args.connections.to_string())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start the peers' process");
        let mut ready = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(peers.stdout.take().expect("stdout")),
            &mut ready,
        )
        .expect("the peers' process says ready");
        assert_eq!(ready.trim(), "ready", "the peers' process opened its connections");
        let deadline = Instant::now() + Duration::from_secs(60);
        while registry.live() < args.connections {
            assert!(Instant::now() < deadline, "connections accepted within 60 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let sampler = Sampler::builder()
            .interval(Duration::from_secs(3600))
            .listener(&registry)
            .spawn()
            .expect("sampler");
        let page = ConnectionsPage::builder(sampler.clone())
            .listener(&registry)
            .build();
        // A few samples for the charts, then no tick during the measurement.
        for _ in 0..3 {
            sampler.sample_now().await;
        }
        sampler.stop();
        println!(
            "page bench: {} connections to one listener ({} sockets in the sample), set up in {:.1}s",
            registry.live(),
            sampler.latest().map_or(0, |s| s.cost.sockets_walked),
            started.elapsed().as_secs_f64()
        );
        let html_len = page.render_html().len();
        let json_len = page.render_json().len();
        let metrics_len = exporter.render().len();
        type Render<'a> = (&'a str, Box<dyn Fn() -> usize + 'a>);
        let variants: [Render<'_>; 3] = [
            ("html", Box::new(|| page.render_html().len())),
            ("json", Box::new(|| page.render_json().len())),
            ("metrics", Box::new(|| exporter.render().len())),
        ];
        let mut per_call: [Vec<f64>; 3] = Default::default();
        let mut ratio: [Vec<f64>; 2] = Default::default();
        for round in 0..args.rounds {
            let mut this_round = [0.0; 3];
            for k in 0..3 {
                let v = (round + k) % 3;
                let before = thread_cpu();
                let mut bytes = 0;
                for _ in 0..args.calls {
                    bytes += (variants[v].1)();
                }
                let cpu = thread_cpu() - before;
                std::hint::black_box(bytes);
                this_round[v] = cpu.as_secs_f64() / args.calls as f64;
            }
            for v in 0..3 {
                per_call[v].push(this_round[v]);
            }
            ratio[0].push(this_round[0] / this_round[2]);
            ratio[1].push(this_round[1] / this_round[2]);
        }
        println!(
            "{:<10} {:>9} {:>22} {:>22}",
            "render", "bytes", "CPU per call (ms)", "vs /metrics (per round)"
        );
        let sizes = [html_len, json_len, metrics_len];
        for (v, name) in ["html", "json", "metrics"].iter().enumerate() {
            let (m, lo, hi) = spread(&per_call[v]);
            let vs = if v < 2 {
                let (r, rlo, rhi) = spread(&ratio[v]);
                format!("{r:.2}x ({rlo:.2}-{rhi:.2})")
            } else {
                "1".into()
            };
            println!(
                "{name:<10} {:>9} {:>22} {:>22}",
                sizes[v],
                format!("{:.3} ({:.3}-{:.3})", m * 1e3, lo * 1e3, hi * 1e3),
                vs
            );
        }
        let (html_ms, _, _) = spread(&per_call[0]);
        println!(
            "target: the HTML page under 5 ms of CPU at 10000 connections: {:.3} ms at {} ({})",
            html_ms * 1e3,
            args.connections,
            if html_ms < 0.005 { "met" } else { "NOT met" }
        );
        // Closing its stdin ends the peers' process; it closes every connection.
        drop(peers.stdin.take());
        let _ = peers.wait();
    });
}
