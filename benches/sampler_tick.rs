//! CPU cost of the census sampler's full tick against a full netlink walk of the same sockets,
//! in the same run.
//!
//! Run as `cargo bench --bench sampler_tick [-- --time-wait N[,N…]] [--rounds R]` (defaults:
//! 100 000 and 200 000 `TIME_WAIT` sockets, 15 rounds). Needs root: each size runs in a private
//! network namespace of its own (the benchmark re-executes itself under `unshare -n`, with
//! loopback up, `net.ipv4.tcp_tw_reuse=0`, `tcp_max_tw_buckets` raised and the whole port range
//! usable), where it creates N `TIME_WAIT` sockets toward one listener, closed client first.
//!
//! Two samplers run, each with one listener and one upstream to attribute to, as a service
//! keeps one (spawned, with a tick far off; a tick is [`Sampler::sample_now`]: a full sample,
//! the sampler's walk, attribution, port headroom and findings):
//! - *every `TIME_WAIT` ours*: the listener, and an upstream whose destinations are the
//!   listener's addresses, so every `TIME_WAIT` socket is the upstream's: the kernel's filter
//!   can leave none out;
//! - *none ours*: another listener, and an upstream none of them go to, as when the host's
//!   `TIME_WAIT` sockets are another service's: the filter leaves them all out.
//!
//! Each tick is measured against a full netlink walk of every socket (one `sock_diag` dump per
//! family, as `ss` walks, counted by state) and, beside it, a walk of every socket in one pass.
//! Each is this process's CPU time (`CLOCK_PROCESS_CPUTIME_ID`: the tick runs on a blocking
//! thread); the rounds interleave the four with their order rotated, and the ratios are the
//! medians of the ratios within each round, with the lowest and highest. Target: the tick at
//! most 0.7x the full walk. Last, each tick's peak memory above the resident size before it
//! (the kernel's peak mark reset first): the same at every size, as nothing is kept per socket.

#[cfg(target_os = "linux")]
fn main() {
    linux::main()
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("the sampler_tick benchmark needs Linux");
}

#[cfg(target_os = "linux")]
mod linux {
    use std::net::{SocketAddr, TcpListener};
    use std::process::Command;
    use std::time::Duration;

    use conn_hygiene::census::{AttributionSource, Claim, Sampler};
    use conn_hygiene_census::{Backend, StateCounts, TcpState, WalkOptions, Walker};

    /// Set in the re-executed benchmark, inside its namespace.
    const INNER: &str = "CONN_HYGIENE_SAMPLER_TICK_NETNS";
    const TARGET: f64 = 0.7;

    pub(crate) fn main() {
        let mut sizes = vec![100_000usize, 200_000];
        let mut rounds = 15usize;
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--time-wait" => {
                    sizes = args
                        .next()
                        .map(|v| v.split(',').filter_map(|n| n.parse().ok()).collect())
                        .unwrap_or_default();
                }
                "--rounds" => rounds = args.next().and_then(|v| v.parse().ok()).unwrap_or(rounds),
                _ => {} // `cargo bench` passes --bench
            }
        }
        if let Some(n) = std::env::var_os(INNER) {
            let n = n.to_str().and_then(|n| n.parse().ok()).expect("size");
            return inner(n, rounds.max(1));
        }
        let me = std::env::current_exe().expect("this benchmark's path");
        for n in sizes {
            let status = Command::new("unshare")
                .args(["-n", "--", "sh", "-c"])
                .arg(
                    "set -e; ip link set lo up; sysctl -qw net.ipv4.tcp_tw_reuse=0; \
                     sysctl -qw net.ipv4.tcp_max_tw_buckets=$(($1 + 100000)); \
                     sysctl -qw net.ipv4.ip_local_port_range='1024 65535'; \
                     exec \"$0\" --rounds \"$2\"",
                )
                .arg(&me)
                .arg(n.to_string())
                .arg(rounds.to_string())
                .env(INNER, n.to_string())
                .status()
                .expect("unshare (util-linux), as root");
            assert!(
                status.success(),
                "the run at {n} TIME_WAIT failed: {status}"
            );
        }
    }

    /// One listener, and an upstream whose destinations are its addresses.
    #[derive(Debug, Clone)]
    struct Source {
        listener: SocketAddr,
        destinations: Vec<SocketAddr>,
    }

    impl AttributionSource for Source {
        fn claims(&self) -> Vec<Claim> {
            vec![
                Claim::listener("api", self.listener),
                Claim::upstream("backend", "backend:80", self.destinations.clone()),
            ]
        }
    }

    fn inner(n: usize, rounds: usize) {
        let (listener, destinations) = make_time_wait(n);
        let ours = Source {
            listener: listener.local_addr().expect("local_addr"),
            destinations: destinations.clone(),
        };
        // Another service's listener and upstream: none of the TIME_WAIT sockets are theirs.
        // Below the port range the TIME_WAIT sockets use up (this namespace is ours alone).
        let elsewhere = TcpListener::bind("127.0.0.1:999").expect("bind 127.0.0.1:999");
        let theirs = Source {
            listener: elsewhere.local_addr().expect("local_addr"),
            destinations: vec![SocketAddr::from(([127, 0, 0, 254], 9))],
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        // Long-lived samplers, as a service keeps one: a tick is `sample_now`, a full sample
        // on a blocking thread, hence process CPU time for every method.
        let spawn = |source: Source| {
            let _guard = rt.enter();
            Sampler::builder()
                .interval(Duration::from_secs(3600))
                .source(source)
                .spawn()
                .expect("sampler")
        };
        let (all_ours, none_ours) = (spawn(ours), spawn(theirs));
        let tick = |sampler: &Sampler, ours: bool| {
            let before = process_cpu();
            let snapshot = rt.block_on(sampler.sample_now());
            let cpu = process_cpu() - before;
            let attributed = snapshot.upstreams.first().map_or(0, |u| u.time_wait);
            assert_eq!(
                attributed,
                if ours { n as u64 } else { 0 },
                "TIME_WAIT misattributed"
            );
            (cpu, snapshot.host[TcpState::TimeWait])
        };
        let tick_ours = || tick(&all_ours, true);
        let tick_theirs = || tick(&none_ours, false);
        let walk = |one_pass: bool| {
            move || {
                let before = process_cpu();
                let mut counts = StateCounts::new();
                let opts = WalkOptions::new().backend(Backend::Netlink);
                let per_family = [opts.clone().ipv6(false), opts.clone().ipv4(false)];
                let walks = if one_pass {
                    &[opts][..]
                } else {
                    &per_family[..]
                };
                for o in walks {
                    Walker::new(o.clone())
                        .walk(|s| counts.record(s.state))
                        .expect("netlink walk");
                }
                (process_cpu() - before, counts[TcpState::TimeWait])
            }
        };
        let (full, pass) = (walk(false), walk(true));
        let methods: [&dyn Fn() -> (Duration, u64); 4] = [&tick_ours, &tick_theirs, &full, &pass];
        // Twice each first: the samplers settle on how to ask for TIME_WAIT sockets.
        for _ in 0..2 {
            for m in methods {
                let (_, tw) = m();
                assert_eq!(tw, n as u64, "TIME_WAIT miscounted");
            }
        }
        let mut runs: [Vec<Duration>; 4] = Default::default();
        for round in 0..rounds {
            for k in 0..methods.len() {
                let i = (k + round) % methods.len();
                runs[i].push(methods[i]().0);
            }
        }
        let ratio = |a: &[Duration], b: &[Duration]| {
            let mut r: Vec<f64> = a
                .iter()
                .zip(b)
                .map(|(a, b)| a.as_secs_f64() / b.as_secs_f64().max(1e-9))
                .collect();
            r.sort_by(f64::total_cmp);
            (r[r.len() / 2], r[0], r[r.len() - 1])
        };
        let median = |v: &[Duration]| {
            let mut v = v.to_vec();
            v.sort();
            v[v.len() / 2].as_secs_f64() * 1e3
        };
        println!("# {n} TIME_WAIT, median of {rounds} rounds, process CPU");
        for (name, v) in [
            ("sampler tick, every TIME_WAIT ours", &runs[0]),
            ("sampler tick, none ours", &runs[1]),
            ("full netlink walk", &runs[2]),
            ("one-pass walk", &runs[3]),
        ] {
            println!("{name:<36} {:>8.2} ms", median(v));
        }
        for (what, i) in [("every TIME_WAIT ours", 0), ("none ours", 1)] {
            let (r, lo, hi) = ratio(&runs[i], &runs[2]);
            println!(
                "ratio ({what}): the sampler's full tick uses {r:.3}x [{lo:.3}..{hi:.3}] the CPU of a full netlink walk (target <= {TARGET}x: {})",
                if r <= TARGET { "met" } else { "MISSED" }
            );
            let (r, lo, hi) = ratio(&runs[i], &runs[3]);
            println!(
                "ratio ({what}): the sampler's full tick uses {r:.3}x [{lo:.3}..{hi:.3}] the CPU of a one-pass walk"
            );
        }
        // Memory: what a tick holds at its peak above what the process held before it. The
        // kernel's peak-RSS mark is reset first (`clear_refs` 5).
        for (what, m) in [
            (
                "every TIME_WAIT ours",
                &tick_ours as &dyn Fn() -> (Duration, u64),
            ),
            ("none ours", &tick_theirs),
        ] {
            std::fs::write("/proc/self/clear_refs", "5").expect("reset the peak RSS");
            let before = status_kib("VmRSS:");
            m();
            let peak = status_kib("VmHWM:");
            println!(
                "memory ({what}): a tick peaks at {} KiB above the {before} KiB resident before it",
                peak.saturating_sub(before)
            );
        }
        drop((listener, elsewhere));
    }

    /// A field of `/proc/self/status`, in KiB.
    fn status_kib(field: &str) -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{field} in /proc/self/status"))
    }

    /// `n` connections to one listener, each closed client first, every source port in use
    /// (see [`make_time_wait`](conn_hygiene_test_support::make_time_wait)), once all of them
    /// are in `TIME_WAIT`. Returns the listener and the destinations.
    fn make_time_wait(n: usize) -> (TcpListener, Vec<SocketAddr>) {
        let (listener, destinations) = conn_hygiene_test_support::make_time_wait(n, 1024..=65535);
        // The last closes settle in a moment: wait for all of them, with a deadline.
        let tw_only = WalkOptions::new().states(TcpState::TimeWait);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let got =
                conn_hygiene_census::count_states(&tw_only).expect("count")[TcpState::TimeWait];
            if got == n as u64 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{got} TIME_WAIT sockets, expected {n}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        (listener, destinations)
    }

    /// CPU time of this process (`CLOCK_PROCESS_CPUTIME_ID`), every thread's.
    fn process_cpu() -> Duration {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
        Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
    }
}
