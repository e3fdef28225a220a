//! What the hygienic server costs over plain `axum::serve` and plain hyper-util, measured against
//! them in the same run.
//!
//! Six servers run the same axum app (`examples/axum_server.rs`, route `/`, a 24-byte body),
//! each in a process of its own so the load generator never shares their runtime:
//!
//! - `bare`: `axum::serve(tokio::net::TcpListener, app)` (`axum_server --bare`);
//! - `hygienic`: `axum::serve(HygienicListener, MakeTrackConnection::new(app))` (`axum_server`),
//!   with the Prometheus recorder installed and the census sampler running;
//! - `no-metrics`: `hygienic` without the recorder and the sampler (`axum_server
//!   --no-metrics`): the listener and layer alone, their metrics going to the facade's no-op
//!   default;
//! - `bare-hyper`: a plain hyper-util accept loop (`auto` builder, one task per connection,
//!   hyper-util's graceful shutdown; `axum_server --bare-hyper`);
//! - `own-loop`: the crate's own `Server` accept loop (`axum_server --hyper-loop`), recorder and
//!   sampler on;
//! - `own-loop-no-metrics`: the same without them (`axum_server --hyper-loop --no-metrics`).
//!
//! `hygienic` and `no-metrics` are compared with `bare`, the two `own-loop` variants with
//! `bare-hyper`. Targets: throughput at least 0.98× the baseline, p99 at most 1.05×, CPU per
//! request at most 1.03× with the recorder and sampler, 1.015× without.
//!
//! The load is keep-alive HTTP/1.1 over loopback from `wrk -t1 -c32 -d3s --latency` when `wrk`
//! is installed (`scripts/install-test-deps.sh` installs it). Without it, an in-process
//! generator does the same job: 32 connections made with hyper's HTTP/1 client over
//! hyper-util's `TokioIo`, on one current-thread runtime (like `wrk -t1`), each sending its next
//! request as soon as the previous response has ended, every latency kept and sorted.
//!
//! The servers start once and are warmed up; then each round loads every server in turn, the
//! order rotated from round to round so that no variant always runs first or last. A variant's
//! figures are the medians of its rounds; the ratios are ratios of those medians. The
//! `per round` columns give the median, lowest and highest of the ratios taken within each
//! round: a wide range means the machine was busy with something else.
//!
//! Each server's CPU time per request (user + system over all its threads, from
//! `/proc/PID/stat`) is reported too. Other work on the machine moves it far less than
//! throughput and latency, so on a shared box it is the steadiest measure of the overhead.
//!
//! The p99 of a saturating closed-loop load is the queue (connections over throughput, by
//! Little's law) plus the scheduler's timeslices: it repeats the throughput ratio, noisily. The
//! p99 target is therefore judged on a second part, at a fixed rate below saturation
//! (`support/fixed_rate.rs`): an open-loop load at `--rate` requests per second (default
//! 0.25× bare's median throughput above) over `--rate-connections` keep-alive connections,
//! `--rate-rounds` rounds of `--rate-secs` seconds, order rotated, latency from each request's
//! write to the end of its response; the ratio is of the medians of the rounds' p99s, with the
//! per-round ratios' spread. Each server's CPU time per request at that rate is shown beside it
//! (`cpu/req@rate`), without a target: the CPU targets are the saturating load's. Sends that
//! start more than 1 ms after their time are counted as late: about one in a hundred come
//! from the generator's own threads waiting for a CPU on a 2-core machine; many more mean the
//! server fell behind the rate.
//!
//! ```text
//! cargo bench --bench server_overhead [-- --rounds N] [--secs S] [--connections N]
//!     [--loadgen wrk|hyper] [--server-bin PATH]
//!     [--rate-rounds N] [--rate-secs S] [--rate R] [--rate-connections N]
//! ```
//!
//! Defaults: 20 rounds of 3 s, 32 connections, then 20 fixed-rate rounds of 2 s over 16
//! connections (each target is judged on medians over at least 20 interleaved rounds); the
//! whole run takes about 11 minutes. The bench builds the example first (`cargo build --release
//! --example axum_server`) unless `--server-bin` names one. `benches/wrk.sh` runs the same
//! comparison from the shell.

#[path = "support/fixed_rate.rs"]
mod fixed_rate;

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::PathBuf,
    process::{Child, ChildStdout, Command, Stdio},
    time::{Duration, Instant},
};

const THROUGHPUT_TARGET: f64 = 0.98;
const P99_TARGET: f64 = 1.05;
const WARM_UP: Duration = Duration::from_secs(1);
/// The fixed-rate part's load, by default, as a fraction of bare's median throughput.
const RATE_FRACTION: f64 = 0.25;

/// One server set-up, the `axum_server` flags that select it, the variant it is compared with
/// (an index into [`VARIANTS`]; `None` for a baseline) and its CPU per request target.
struct Variant {
    name: &'static str,
    flags: &'static [&'static str],
    baseline: Option<usize>,
    cpu_target: f64,
}

/// CPU per request, at most, with the recorder installed and the sampler running.
const CPU_TARGET_METRICS: f64 = 1.03;
/// CPU per request, at most, without a recorder.
const CPU_TARGET_NO_RECORDER: f64 = 1.015;

const VARIANTS: [Variant; 6] = [
    Variant {
        name: "bare",
        flags: &["--bare"],
        baseline: None,
        cpu_target: 1.0,
    },
    Variant {
        name: "hygienic",
        flags: &[],
        baseline: Some(0),
        cpu_target: CPU_TARGET_METRICS,
    },
    Variant {
        name: "no-metrics",
        flags: &["--no-metrics"],
        baseline: Some(0),
        cpu_target: CPU_TARGET_NO_RECORDER,
    },
    Variant {
        name: "bare-hyper",
        flags: &["--bare-hyper"],
        baseline: None,
        cpu_target: 1.0,
    },
    Variant {
        name: "own-loop",
        flags: &["--hyper-loop"],
        baseline: Some(3),
        cpu_target: CPU_TARGET_METRICS,
    },
    Variant {
        name: "own-loop-no-metrics",
        flags: &["--hyper-loop", "--no-metrics"],
        baseline: Some(3),
        cpu_target: CPU_TARGET_NO_RECORDER,
    },
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LoadGen {
    Wrk,
    Hyper,
}

struct Options {
    rounds: usize,
    duration: Duration,
    connections: usize,
    loadgen: Option<LoadGen>,
    server_bin: Option<PathBuf>,
    rate_rounds: usize,
    rate_duration: Duration,
    /// Requests per second of the fixed-rate part; `None`: [`RATE_FRACTION`] of bare's.
    rate: Option<f64>,
    rate_connections: usize,
}

/// What one load run measured.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Measurement {
    requests_per_sec: f64,
    p99: Duration,
    /// Completed requests.
    requests: u64,
    /// Failed requests: socket errors and non-2xx/3xx answers.
    errors: u64,
}

/// One variant in one round: the load generator's figures, and the server's CPU time (user +
/// system, all threads) per completed request, which other work on the machine disturbs far
/// less than throughput and latency.
#[derive(Debug, Clone, Copy)]
struct Round {
    load: Measurement,
    cpu_per_request: Option<Duration>,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes `--bench`; `cargo test --benches` does not, and then only the parts
    // that need no servers run, so a test run stays quick.
    if !args.iter().any(|a| a == "--bench") {
        check_parsers();
        println!("server_overhead: parsers checked; run `cargo bench --bench server_overhead` to measure");
        return;
    }
    let options = parse_options(&args).unwrap_or_else(|e| {
        eprintln!("server_overhead: {e}");
        std::process::exit(2);
    });
    run(&options);
}

fn parse_options(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        rounds: 20,
        duration: Duration::from_secs(3),
        connections: 32,
        loadgen: None,
        server_bin: None,
        rate_rounds: 20,
        rate_duration: Duration::from_secs(2),
        rate: None,
        rate_connections: 16,
    };
    let positive = |flag: &str, v: &str| -> Result<usize, String> {
        v.parse()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("{flag}: {v:?} is not a positive whole number"))
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
                    .filter(|&n| n > 0)
                    .ok_or_else(|| format!("--rounds: {v:?} is not a positive whole number"))?;
            }
            "--secs" => {
                let v = value()?;
                options.duration = v
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .map(Duration::from_secs)
                    .ok_or_else(|| format!("--secs: {v:?} is not a positive whole number"))?;
            }
            "--connections" => {
                let v = value()?;
                options.connections = v.parse().ok().filter(|&n| n > 0).ok_or_else(|| {
                    format!("--connections: {v:?} is not a positive whole number")
                })?;
            }
            "--loadgen" => {
                options.loadgen = Some(match value()?.as_str() {
                    "wrk" => LoadGen::Wrk,
                    "hyper" => LoadGen::Hyper,
                    other => return Err(format!("--loadgen: {other:?} is neither wrk nor hyper")),
                });
            }
            "--server-bin" => options.server_bin = Some(PathBuf::from(value()?)),
            "--rate-rounds" => options.rate_rounds = positive(arg, value()?)?,
            "--rate-secs" => {
                options.rate_duration = Duration::from_secs(positive(arg, value()?)? as u64)
            }
            "--rate-connections" => options.rate_connections = positive(arg, value()?)?,
            "--rate" => options.rate = Some(positive(arg, value()?)? as f64),
            // `cargo bench` adds `--bench`, and a filter when one is given on its command line.
            _ => {}
        }
    }
    Ok(options)
}

fn run(options: &Options) {
    let loadgen = options.loadgen.unwrap_or_else(|| {
        if wrk_installed() {
            LoadGen::Wrk
        } else {
            eprintln!("server_overhead: wrk not found, using the in-process hyper load generator");
            LoadGen::Hyper
        }
    });
    let bin = options.server_bin.clone().unwrap_or_else(build_example);
    let servers: Vec<ServerProcess> = VARIANTS
        .iter()
        .map(|v| ServerProcess::start(&bin, v))
        .collect();
    let describe = match loadgen {
        LoadGen::Wrk => format!(
            "wrk -t1 -c{} -d{}s --latency",
            options.connections,
            options.duration.as_secs()
        ),
        LoadGen::Hyper => format!(
            "in-process hyper client, {} connections, {} s",
            options.connections,
            options.duration.as_secs()
        ),
    };
    println!(
        "server_overhead: {describe}; {} rounds, order rotated each round",
        options.rounds
    );
    for server in &servers {
        println!("  {:<19} {}", server.name, server.addr);
        load(loadgen, server.addr, options.connections, WARM_UP);
    }

    let ticks_per_sec = clock_ticks_per_sec();
    // results[variant][round]
    let mut results: Vec<Vec<Round>> = vec![Vec::new(); VARIANTS.len()];
    for round in 0..options.rounds {
        for k in 0..VARIANTS.len() {
            let i = (round + k) % VARIANTS.len();
            let server = &servers[i];
            let cpu_before = server.cpu_ticks();
            let m = load(loadgen, server.addr, options.connections, options.duration);
            let cpu_per_request = match (cpu_before, server.cpu_ticks()) {
                (Some(before), Some(after)) if m.requests > 0 => Some(Duration::from_secs_f64(
                    after.saturating_sub(before) as f64 / ticks_per_sec / m.requests as f64,
                )),
                _ => None,
            };
            println!(
                "round {}/{}  {:<19} {:>9.0} req/s  p99 {:>8.3} ms  cpu {:>6.2} us/req{}",
                round + 1,
                options.rounds,
                server.name,
                m.requests_per_sec,
                millis(m.p99),
                cpu_per_request.map_or(f64::NAN, micros),
                if m.errors > 0 {
                    format!("  ({} errors)", m.errors)
                } else {
                    String::new()
                }
            );
            results[i].push(Round {
                load: m,
                cpu_per_request,
            });
        }
    }
    print_summary(&results);
    let rate = options.rate.unwrap_or_else(|| {
        RATE_FRACTION * median(results[0].iter().map(|r| r.load.requests_per_sec).collect())
    });
    fixed_rate_part(&servers, options, rate.round());
}

/// The fixed-rate latency part (see the module's documentation).
fn fixed_rate_part(servers: &[ServerProcess], options: &Options, rate: f64) {
    println!();
    println!(
        "fixed-rate latency: {rate:.0} req/s open loop over {} connections, {} rounds of {} s, \
         order rotated; latency from each request's write to its response's end",
        options.rate_connections,
        options.rate_rounds,
        options.rate_duration.as_secs()
    );
    for server in servers {
        fixed_rate::run(server.addr, rate, options.rate_connections, WARM_UP);
    }
    // p99s[variant][round], in milliseconds.
    let mut p50s: Vec<Vec<f64>> = vec![Vec::new(); VARIANTS.len()];
    let mut p99s: Vec<Vec<f64>> = vec![Vec::new(); VARIANTS.len()];
    // CPU per request in µs, [variant][round]: below saturation each request finds the
    // server's caches colder than under a saturating load, so it may cost more.
    let mut cpus: Vec<Vec<f64>> = vec![Vec::new(); VARIANTS.len()];
    let ticks_per_sec = clock_ticks_per_sec();
    let mut late = vec![0u64; VARIANTS.len()];
    let mut errors = vec![0u64; VARIANTS.len()];
    for round in 0..options.rate_rounds {
        for k in 0..VARIANTS.len() {
            let i = (round + k) % VARIANTS.len();
            let cpu_before = servers[i].cpu_ticks();
            let l = fixed_rate::run(
                servers[i].addr,
                rate,
                options.rate_connections,
                options.rate_duration,
            );
            let answered = l.sorted.len();
            let cpu = match (cpu_before, servers[i].cpu_ticks()) {
                (Some(before), Some(after)) if answered > 0 => {
                    after.saturating_sub(before) as f64 / ticks_per_sec / answered as f64 * 1e6
                }
                _ => f64::NAN,
            };
            let (p50, p99) = (millis(l.quantile(0.5)), millis(l.quantile(0.99)));
            println!(
                "rate round {}/{}  {:<19} p50 {p50:>7.3} ms  p99 {p99:>7.3} ms  cpu {cpu:>6.2} us/req  {} requests  late {}  errors {}",
                round + 1,
                options.rate_rounds,
                servers[i].name,
                answered,
                l.late,
                l.errors
            );
            p50s[i].push(p50);
            p99s[i].push(p99);
            cpus[i].push(cpu);
            late[i] += l.late;
            errors[i] += l.errors;
        }
    }
    println!();
    println!(
        "{:<19} {:>10} {:>10} {:>7} {:>7} {:>12}  (fixed rate)",
        "variant", "p50 ms", "p99 ms", "late", "errors", "cpu us/req"
    );
    for (i, v) in VARIANTS.iter().enumerate() {
        println!(
            "{:<19} {:>10.3} {:>10.3} {:>7} {:>7} {:>12.2}  (fixed-rate)",
            v.name,
            median(p50s[i].clone()),
            median(p99s[i].clone()),
            late[i],
            errors[i],
            median(cpus[i].clone())
        );
    }
    println!();
    for (i, v) in VARIANTS.iter().enumerate() {
        let Some(base) = v.baseline else { continue };
        let pair = format!("{}/{}", v.name, VARIANTS[base].name);
        let (ratio, per_round, lo, hi) = rate_ratio(&p99s[i], &p99s[base]);
        println!(
            "{pair:<31} {:<10} {ratio:>6.3}x {:>16}   {per_round:.3} [{lo:.3}..{hi:.3}]",
            "p99@rate",
            format!("<= {P99_TARGET:.3}x {}", verdict(ratio <= P99_TARGET)),
        );
        // Shown, not judged: the CPU targets are the saturating load's.
        let (ratio, per_round, lo, hi) = rate_ratio(&cpus[i], &cpus[base]);
        println!(
            "{pair:<31} {:<10} {ratio:>6.3}x {:>16}   {per_round:.3} [{lo:.3}..{hi:.3}]",
            "cpu/req@rate", "-",
        );
    }
}

/// The ratio of the medians of two variants' per-round figures, and the median, lowest and
/// highest of the ratios taken within each round.
fn rate_ratio(ours: &[f64], base: &[f64]) -> (f64, f64, f64, f64) {
    let ratio = median(ours.to_vec()) / median(base.to_vec());
    let ratios: Vec<f64> = ours.iter().zip(base).map(|(a, b)| a / b).collect();
    let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (ratio, median(ratios), lo, hi)
}

fn print_summary(results: &[Vec<Round>]) {
    type Metric = fn(&Round) -> f64;
    let rps: Metric = |r| r.load.requests_per_sec;
    let p99: Metric = |r| millis(r.load.p99);
    let cpu: Metric = |r| r.cpu_per_request.map_or(f64::NAN, micros);
    let med = |i: usize, f: Metric| median(results[i].iter().map(f).collect());

    println!();
    println!(
        "{:<19} {:>10} {:>10} {:>12} {:>7}",
        "variant", "req/s", "p99 ms", "cpu us/req", "errors"
    );
    for (i, v) in VARIANTS.iter().enumerate() {
        let errors: u64 = results[i].iter().map(|r| r.load.errors).sum();
        println!(
            "{:<19} {:>10.0} {:>10.3} {:>12.2} {:>7}",
            v.name,
            med(i, rps),
            med(i, p99),
            med(i, cpu),
            errors
        );
    }
    println!();
    println!(
        "{:<31} {:<10} {:>7} {:>16}   per round: median [lowest..highest]",
        "ratio to its baseline", "", "medians", "target"
    );
    for (i, v) in VARIANTS.iter().enumerate() {
        let Some(base) = v.baseline else { continue };
        let rows: [(&str, Metric, Target); 3] = [
            ("req/s", rps, Target::AtLeast(THROUGHPUT_TARGET)),
            ("p99", p99, Target::AtMost(P99_TARGET)),
            ("cpu/req", cpu, Target::AtMost(v.cpu_target)),
        ];
        for (row, (label, f, target)) in rows.into_iter().enumerate() {
            let ratio = med(i, f) / med(base, f);
            let target = match target {
                Target::AtLeast(t) => format!(">= {t:.3}x {}", verdict(ratio >= t)),
                Target::AtMost(t) => format!("<= {t:.3}x {}", verdict(ratio <= t)),
            };
            let name = if row == 0 {
                format!("{}/{}", v.name, VARIANTS[base].name)
            } else {
                String::new()
            };
            println!(
                "{name:<31} {label:<10} {ratio:>6.3}x {target:>16}   {}",
                per_round(&results[i], &results[base], f)
            );
        }
    }
}

/// The bound a ratio to its baseline should keep.
#[derive(Clone, Copy)]
enum Target {
    AtLeast(f64),
    AtMost(f64),
}

fn verdict(met: bool) -> &'static str {
    if met {
        "ok"
    } else {
        "MISS"
    }
}

/// The ratios of `a` to `b` within each round, as `median [lowest..highest]`.
fn per_round(a: &[Round], b: &[Round], f: impl Fn(&Round) -> f64) -> String {
    let ratios: Vec<f64> = a.iter().zip(b).map(|(x, y)| f(x) / f(y)).collect();
    let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{:.3} [{lo:.3}..{hi:.3}]", median(ratios))
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

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// `USER_HZ`, the unit of the CPU times in `/proc/PID/stat`: 100 on every common Linux.
fn clock_ticks_per_sec() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .filter(|&hz: &f64| hz > 0.0)
        .unwrap_or(100.0)
}

/// User + system CPU time of a process and its threads, in clock ticks, from the text of
/// `/proc/PID/stat` (fields 14 and 15, counted after the parenthesised command name).
fn parse_proc_stat_cpu(stat: &str) -> Option<u64> {
    let mut fields = stat.get(stat.rfind(')')? + 1..)?.split_whitespace();
    // Field 3 (state) is the first after the name; utime and stime are fields 14 and 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn load(loadgen: LoadGen, addr: SocketAddr, connections: usize, duration: Duration) -> Measurement {
    match loadgen {
        LoadGen::Wrk => run_wrk(addr, connections, duration),
        LoadGen::Hyper => hyper_load(addr, connections, duration),
    }
}

// ---- the servers ----

/// An `axum_server` child process; killed when dropped.
struct ServerProcess {
    name: &'static str,
    addr: SocketAddr,
    child: Child,
    // Kept open: the server may write to stdout after its first line.
    _stdout: BufReader<ChildStdout>,
}

impl ServerProcess {
    /// CPU time used so far, in clock ticks; `None` where `/proc` is not readable.
    fn cpu_ticks(&self) -> Option<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).ok()?;
        parse_proc_stat_cpu(&stat)
    }

    fn start(bin: &std::path::Path, variant: &Variant) -> Self {
        let mut cmd = Command::new(bin);
        cmd.args(["--listen", "127.0.0.1:0"]);
        cmd.args(variant.flags);
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        // Blocks until the server has bound; end of file means it died first.
        let read = stdout
            .read_line(&mut line)
            .expect("read the server's stdout");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok());
        let Some(addr) = addr else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{} {:?}: expected `listening on ADDR`, got {:?} ({read} bytes)",
                bin.display(),
                variant.flags,
                line
            );
        };
        Self {
            name: variant.name,
            addr,
            child,
            _stdout: stdout,
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Builds the example with the cargo that runs this bench and returns the path of the binary,
/// as cargo reports it (so a custom target directory is followed).
fn build_example() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let output = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--example",
            "axum_server",
            "--message-format=json-render-diagnostics",
            "--manifest-path",
            manifest,
        ])
        .stderr(Stdio::inherit())
        .output()
        .expect("run cargo build --release --example axum_server");
    assert!(
        output.status.success(),
        "cargo build --release --example axum_server failed"
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| l.contains(r#""reason":"compiler-artifact""#) && l.contains("axum_server"))
        .find_map(json_executable)
        .map(PathBuf::from)
        .expect("cargo reported no axum_server executable")
}

/// The `"executable"` string of one cargo JSON message.
fn json_executable(line: &str) -> Option<String> {
    let rest = &line[line.find(r#""executable":""#)? + r#""executable":""#.len()..];
    let mut out = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => out.push(chars.next()?),
            c => out.push(c),
        }
    }
    None
}

// ---- wrk ----

fn wrk_installed() -> bool {
    // `wrk -v` prints its version and exits non-zero; only whether it starts matters.
    Command::new("wrk")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

fn run_wrk(addr: SocketAddr, connections: usize, duration: Duration) -> Measurement {
    let output = Command::new("wrk")
        .args([
            "-t1".to_string(),
            format!("-c{connections}"),
            format!("-d{}s", duration.as_secs().max(1)),
            "--latency".to_string(),
            format!("http://{addr}/"),
        ])
        .stderr(Stdio::inherit())
        .output()
        .expect("run wrk");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "wrk failed:\n{text}");
    parse_wrk(&text).unwrap_or_else(|| panic!("cannot read wrk's output:\n{text}"))
}

/// Reads `Requests/sec:`, the `99%` line of `--latency`, and the error lines of wrk's report.
fn parse_wrk(text: &str) -> Option<Measurement> {
    let mut requests_per_sec = None;
    let mut p99 = None;
    let mut requests = None;
    let mut errors = 0;
    for line in text.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("Requests/sec:") => requests_per_sec = words.next()?.parse().ok(),
            // 256797 requests in 5.00s, 36.73MB read
            Some(n) if line.split_whitespace().nth(1) == Some("requests") => {
                requests = n.parse().ok()
            }
            Some("99%") => p99 = parse_wrk_time(words.next()?),
            Some("Non-2xx") => errors += line.rsplit(' ').next()?.parse::<u64>().ok()?,
            Some("Socket") => {
                // Socket errors: connect 0, read 3, write 0, timeout 0
                let counts = line.split_once(':')?.1;
                for part in counts.split(',') {
                    errors += part.split_whitespace().nth(1)?.parse::<u64>().ok()?;
                }
            }
            _ => {}
        }
    }
    Some(Measurement {
        requests_per_sec: requests_per_sec?,
        p99: p99?,
        requests: requests?,
        errors,
    })
}

/// wrk's time format: a number and one of `us`, `ms`, `s`, `m`, `h`.
fn parse_wrk_time(s: &str) -> Option<Duration> {
    let split = s.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = s.split_at(split);
    let number: f64 = number.parse().ok()?;
    let nanos_per_unit = match unit {
        "us" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "m" => 60e9,
        "h" => 3600e9,
        _ => return None,
    };
    // Rounded to whole nanoseconds, so "1.47ms" is exactly 1470 µs.
    let nanos = (number * nanos_per_unit).round();
    (nanos.is_finite() && nanos >= 0.0).then(|| Duration::from_nanos(nanos as u64))
}

// ---- the in-process load generator ----

fn hyper_load(addr: SocketAddr, connections: usize, duration: Duration) -> Measurement {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("load generator runtime");
    rt.block_on(async move {
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + duration;
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..connections {
            tasks.spawn(one_connection(addr, deadline));
        }
        let mut latencies: Vec<Duration> = Vec::new();
        let mut errors = 0;
        while let Some(done) = tasks.join_next().await {
            let (lat, err) = done.expect("load task");
            latencies.extend(lat);
            errors += err;
        }
        let elapsed = started.elapsed();
        latencies.sort_unstable();
        let p99 = match latencies.len() {
            0 => Duration::ZERO,
            n => latencies[(n * 99).div_ceil(100) - 1],
        };
        Measurement {
            requests_per_sec: latencies.len() as f64 / elapsed.as_secs_f64(),
            p99,
            requests: latencies.len() as u64,
            errors,
        }
    })
}

/// One keep-alive connection sending requests back to back until `deadline`: the latencies
/// of the successful requests and the number of failed ones.
async fn one_connection(addr: SocketAddr, deadline: tokio::time::Instant) -> (Vec<Duration>, u64) {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::TokioIo;

    let mut latencies = Vec::with_capacity(1 << 14);
    let Ok(tcp) = tokio::net::TcpStream::connect(addr).await else {
        return (latencies, 1);
    };
    let _ = tcp.set_nodelay(true);
    let Ok((mut sender, conn)) =
        hyper::client::conn::http1::handshake::<_, Empty<bytes::Bytes>>(TokioIo::new(tcp)).await
    else {
        return (latencies, 1);
    };
    let driver = tokio::spawn(conn);
    let host = addr.to_string();
    let mut errors = 0;
    while tokio::time::Instant::now() < deadline {
        if sender.ready().await.is_err() {
            errors += 1;
            break;
        }
        let request = http::Request::get("/")
            .header(http::header::HOST, &host)
            .body(Empty::new())
            .expect("request");
        let start = Instant::now();
        match sender.send_request(request).await {
            Ok(response) => {
                let ok = response.status().is_success();
                let body = response.into_body().collect().await;
                if ok && body.is_ok() {
                    latencies.push(start.elapsed());
                } else {
                    errors += 1;
                }
            }
            Err(_) => {
                errors += 1;
                break;
            }
        }
    }
    drop(sender);
    let _ = driver.await;
    (latencies, errors)
}

// ---- checks that need no server (`cargo test --benches`) ----

fn check_parsers() {
    let sample = "\
Running 5s test @ http://127.0.0.1:41234/
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   620.55us  202.14us   9.87ms   91.02%
    Req/Sec    51.62k     1.93k   54.43k    78.00%
  Latency Distribution
     50%  585.00us
     75%  651.00us
     90%  744.00us
     99%    1.47ms
  256797 requests in 5.00s, 36.73MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:  51359.40
Transfer/sec:      7.35MB
";
    assert_eq!(
        parse_wrk(sample),
        Some(Measurement {
            requests_per_sec: 51359.40,
            p99: Duration::from_micros(1470),
            requests: 256797,
            errors: 7,
        })
    );
    let stat = "4242 (axum_server (x)) S 1 4242 4242 0 -1 4194560 1234 0 0 0 \
                731 402 0 0 20 0 3 0 123456 1000000 2000 18446744073709551615";
    assert_eq!(parse_proc_stat_cpu(stat), Some(731 + 402));
    assert_eq!(parse_wrk_time("585.00us"), Some(Duration::from_micros(585)));
    assert_eq!(parse_wrk_time("2.00s"), Some(Duration::from_secs(2)));
    assert_eq!(parse_wrk_time("1.50m"), Some(Duration::from_secs(90)));
    assert_eq!(parse_wrk_time("12"), None);
    assert_eq!(parse_wrk("Requests/sec: 10\n"), None);
    let response = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nContent-Length: 24\r\n\r\n";
    assert_eq!(fixed_rate::parse_head(&response[..20]).unwrap(), None);
    assert_eq!(
        fixed_rate::parse_head(response).unwrap(),
        Some((response.len(), 200, 24))
    );
    assert!(fixed_rate::parse_head(b"HTTP/1.1 200 OK\r\nbroken\r\n\r\n").is_err());
    let l = fixed_rate::Latencies {
        sorted: (1..=100).map(Duration::from_millis).collect(),
        late: 0,
        errors: 0,
    };
    assert_eq!(l.quantile(0.99), Duration::from_millis(99));
    assert_eq!(l.quantile(0.5), Duration::from_millis(51));
    assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
    assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
    assert_eq!(
        json_executable(
            r#"{"reason":"compiler-artifact","executable":"/t/a\"b/axum_server","fresh":true}"#
        ),
        Some(r#"/t/a"b/axum_server"#.to_string())
    );
}
