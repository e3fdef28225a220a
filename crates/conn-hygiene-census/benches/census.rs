//! CPU cost of counting TCP sockets by state, four ways, in one run:
//!
//! - `netlink`: [`count_states`] over netlink `sock_diag`;
//! - `proc`: [`count_states`] forced onto `/proc/net/tcp` and `tcp6`;
//! - `procfs`: the `procfs` crate reading `tcp` and `tcp6` into vectors;
//! - `ss|awk`: `ss -ant | awk '{++s[$1]} END {for(k in s) print k, s[k]}'`, the usual shell
//!   one-liner, run through `sh -c`.
//!
//! CPU is user + system time (system shown apart) from `getrusage`: of this process around an in-process count, of
//! waited-for children around the pipeline (so the pipeline's process start-up is included,
//! as it is whenever someone runs it). Each figure is the median of the rounds; the last
//! column is the CPU time relative to the pipeline's.
//!
//! Run alone (`cargo bench -p conn-hygiene-census --bench census`) it counts whatever sockets
//! the current network namespace holds. `benches/census_vs_awk.sh` runs it in fresh
//! namespaces with `--time-wait N`, which first creates N `TIME_WAIT` sockets; that option
//! is refused outside such a namespace.

#[cfg(target_os = "linux")]
fn main() {
    linux::main()
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("the census benchmark needs Linux");
}

#[cfg(target_os = "linux")]
mod linux {
    use std::io::Write;
    use std::process::Command;
    use std::time::{Duration, Instant};

    use conn_hygiene_census::{count_states, Backend, StateCounts, TcpState, WalkOptions};

    /// Set by `census_vs_awk.sh` inside the throwaway namespace.
    const NETNS_ENV: &str = "CENSUS_BENCH_NETNS";
    const AWK_PIPELINE: &str = "ss -ant | awk '{++s[$1]} END {for(k in s) print k, s[k]}'";

    pub(crate) fn main() {
        let mut time_wait = None;
        let mut rounds = 5usize;
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--time-wait" => time_wait = args.next().and_then(|v| v.parse::<usize>().ok()),
                "--rounds" => rounds = args.next().and_then(|v| v.parse().ok()).unwrap_or(rounds),
                _ => {} // `cargo bench` passes --bench
            }
        }
        if let Some(n) = time_wait {
            assert!(
                std::env::var_os(NETNS_ENV).is_some(),
                "--time-wait creates {n} sockets: run it through benches/census_vs_awk.sh, \
                 which gives it a network namespace of its own"
            );
            let started = Instant::now();
            make_time_wait(n);
            eprintln!(
                "created {n} TIME_WAIT sockets in {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }
        measure(rounds, time_wait);
    }

    /// Opens and closes `n` loopback connections, client first, leaving `n` `TIME_WAIT` sockets.
    ///
    /// Each client binds its source port explicitly, walking `ip_local_port_range` once per
    /// destination (127.0.0.1, 127.0.0.2, …), so every 4-tuple is new. Left to pick ports itself,
    /// the kernel searches the whole range past the ports in `TIME_WAIT` on every `connect` once
    /// the range fills up, which takes minutes at these counts, longer than `TIME_WAIT` lasts.
    fn make_time_wait(n: usize) {
        let (lo, hi) = conn_hygiene_census::ProcRoot::default()
            .sysctls()
            .expect("sysctls")
            .ip_local_port_range
            .expect("net.ipv4.ip_local_port_range");
        // The listener may go: the sockets stay in TIME_WAIT.
        let _ = conn_hygiene_test_support::make_time_wait(n, lo..=hi);
        let tw_only = WalkOptions::new().states(TcpState::TimeWait);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got = count_states(&tw_only).expect("count")[TcpState::TimeWait];
            if got == n as u64 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{got} TIME_WAIT sockets, expected {n} (net.ipv4.tcp_max_tw_buckets too low?)"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    struct Sample {
        cpu: Duration,
        sys: Duration,
        wall: Duration,
        time_wait: u64,
    }

    fn measure(rounds: usize, expected_tw: Option<usize>) {
        type Variant = (&'static str, fn() -> (u64, Usage));
        let variants: [Variant; 4] = [
            ("netlink", || {
                in_process(|| states(Backend::Netlink)[TcpState::TimeWait])
            }),
            ("proc", || {
                in_process(|| states(Backend::Proc)[TcpState::TimeWait])
            }),
            ("procfs", || in_process(procfs_time_wait)),
            ("ss|awk", awk_pipeline),
        ];
        let mut results: Vec<(&str, Sample)> = Vec::new();
        for (name, run) in variants {
            run(); // warm up page cache and allocator
            let mut samples: Vec<Sample> = (0..rounds.max(1))
                .map(|_| {
                    let (tw, usage) = run();
                    Sample {
                        cpu: usage.cpu,
                        sys: usage.sys,
                        wall: usage.wall,
                        time_wait: tw,
                    }
                })
                .collect();
            samples.sort_by_key(|s| s.cpu);
            let median = samples.swap_remove(samples.len() / 2);
            if let Some(n) = expected_tw {
                assert_eq!(median.time_wait, n as u64, "{name} miscounted TIME_WAIT");
            }
            results.push((name, median));
        }
        let awk_cpu = results
            .iter()
            .find(|(n, _)| *n == "ss|awk")
            .map(|(_, s)| s.cpu)
            .unwrap();
        let mut out = std::io::stdout().lock();
        let label =
            expected_tw.map_or("current namespace".to_owned(), |n| format!("{n} TIME_WAIT"));
        writeln!(out, "# {label}, median of {rounds} rounds").unwrap();
        writeln!(
            out,
            "{:<8} {:>10} {:>10} {:>10} {:>10} {:>8}",
            "method", "TIME_WAIT", "cpu ms", "(sys ms)", "wall ms", "vs awk"
        )
        .unwrap();
        for (name, s) in &results {
            writeln!(
                out,
                "{:<8} {:>10} {:>10.1} {:>10.1} {:>10.1} {:>8.2}",
                name,
                s.time_wait,
                ms(s.cpu),
                ms(s.sys),
                ms(s.wall),
                s.cpu.as_secs_f64() / awk_cpu.as_secs_f64().max(1e-9)
            )
            .unwrap();
        }
    }

    fn states(backend: Backend) -> StateCounts {
        count_states(&WalkOptions::new().backend(backend)).expect("count_states")
    }

    fn procfs_time_wait() -> u64 {
        let mut counts = StateCounts::new();
        let v4 = procfs::net::tcp().expect("procfs tcp");
        let v6 = procfs::net::tcp6().expect("procfs tcp6");
        for entry in v4.iter().chain(v6.iter()) {
            if let Some(state) = TcpState::from_kernel(entry.state.to_u8()) {
                counts.record(state);
            }
        }
        counts[TcpState::TimeWait]
    }

    fn awk_pipeline() -> (u64, Usage) {
        let before = rusage(Who::Children);
        let started = Instant::now();
        let out = Command::new("sh")
            .args(["-c", AWK_PIPELINE])
            .output()
            .expect("run sh -c 'ss -ant | awk …'");
        let wall = started.elapsed();
        let (cpu, sys) = rusage(Who::Children).since(before);
        assert!(out.status.success(), "pipeline failed: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        let tw = text
            .lines()
            .find_map(|l| l.strip_prefix("TIME-WAIT "))
            .map_or(0, |n| n.trim().parse().unwrap_or(0));
        (tw, Usage { cpu, sys, wall })
    }

    struct Usage {
        cpu: Duration,
        sys: Duration,
        wall: Duration,
    }

    fn in_process(f: impl FnOnce() -> u64) -> (u64, Usage) {
        let before = rusage(Who::SelfProcess);
        let started = Instant::now();
        let tw = f();
        let wall = started.elapsed();
        let (cpu, sys) = rusage(Who::SelfProcess).since(before);
        (tw, Usage { cpu, sys, wall })
    }

    enum Who {
        SelfProcess,
        Children,
    }

    /// User and system CPU time.
    #[derive(Clone, Copy)]
    struct Times {
        user: Duration,
        sys: Duration,
    }

    impl Times {
        /// (user + system, system) spent since `earlier`.
        fn since(self, earlier: Times) -> (Duration, Duration) {
            let user = self.user.saturating_sub(earlier.user);
            let sys = self.sys.saturating_sub(earlier.sys);
            (user + sys, sys)
        }
    }

    #[allow(unsafe_code)]
    fn rusage(who: Who) -> Times {
        let who = match who {
            Who::SelfProcess => libc::RUSAGE_SELF,
            Who::Children => libc::RUSAGE_CHILDREN,
        };
        let mut ru = std::mem::MaybeUninit::<libc::rusage>::uninit();
        // SAFETY: getrusage(2) fills the rusage it is pointed at; checked before reading.
        let rc = unsafe { libc::getrusage(who, ru.as_mut_ptr()) };
        assert_eq!(rc, 0, "getrusage: {}", std::io::Error::last_os_error());
        // SAFETY: initialised by the successful call above.
        let ru = unsafe { ru.assume_init() };
        let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
        Times {
            user: tv(ru.ru_utime),
            sys: tv(ru.ru_stime),
        }
    }

    fn ms(d: Duration) -> f64 {
        d.as_secs_f64() * 1e3
    }
}
