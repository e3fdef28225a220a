//! CPU cost of `conn-hygiene states` against a full netlink walk of every socket and against
//! `ss -ant | awk '{++s[$1]} END {…}'`, in one run.
//!
//! All three run as child processes, so each pays its start-up, as it does for a user; CPU is
//! user + system time of the waited-for children from `getrusage(RUSAGE_CHILDREN)`. The
//! rounds interleave the three; each figure is the median of the rounds, and the ratios are
//! the medians of the ratios within each round, with the lowest and highest. The full walk is
//! this benchmark re-executed: a netlink dump of every TCP socket per family, counted by
//! state, as `ss` walks and as `states` counted before it asked for both families in one pass
//! and took `TIME_WAIT` from the kernel's own count. A one-pass walk of every socket is shown
//! beside it, to tell what each of the two saves. Targets:
//! `states` at most 0.7x the full walk at 100 000 `TIME_WAIT` and 0.65x at 200 000.
//!
//! `benches/states_vs_awk.sh` runs this in a fresh network namespace with `--time-wait N`,
//! which first creates N `TIME_WAIT` sockets (refused outside such a namespace), and passes
//! the release binary with `--bin`.

#[cfg(target_os = "linux")]
fn main() {
    linux::main()
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("the states benchmark needs Linux");
}

#[cfg(target_os = "linux")]
mod linux {
    use std::process::Command;
    use std::time::{Duration, Instant};

    use conn_hygiene_census::{
        count_states, Backend, ProcRoot, StateCounts, TcpState, WalkOptions, Walker,
    };

    /// Set by `states_vs_awk.sh` inside the throwaway namespace.
    const NETNS_ENV: &str = "CONN_HYGIENE_BENCH_NETNS";
    /// Re-executed with this argument, the benchmark is the full-walk baseline.
    const FULL_WALK: &str = "--full-walk-child";
    /// ... and this one, the walk of both families in one pass.
    const ONE_PASS_WALK: &str = "--one-pass-walk-child";
    const AWK_PIPELINE: &str = "ss -ant | awk '{++s[$1]} END {for(k in s) print k, s[k]}'";

    pub(crate) fn main() {
        if std::env::args().any(|a| a == FULL_WALK) {
            return full_walk(false);
        }
        if std::env::args().any(|a| a == ONE_PASS_WALK) {
            return full_walk(true);
        }
        let mut time_wait = None;
        let mut rounds = 5usize;
        let mut bin = None;
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--time-wait" => time_wait = args.next().and_then(|v| v.parse::<usize>().ok()),
                "--rounds" => rounds = args.next().and_then(|v| v.parse().ok()).unwrap_or(rounds),
                "--bin" => bin = args.next(),
                _ => {} // `cargo bench` passes --bench
            }
        }
        let Some(bin) = bin else {
            eprintln!("states_vs_awk: run it through benches/states_vs_awk.sh (needs --bin)");
            return;
        };
        if let Some(n) = time_wait {
            assert!(
                std::env::var_os(NETNS_ENV).is_some(),
                "--time-wait creates {n} sockets: run it through benches/states_vs_awk.sh"
            );
            let started = Instant::now();
            make_time_wait(n);
            eprintln!(
                "created {n} TIME_WAIT sockets in {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }
        let bench = std::env::current_exe().expect("this benchmark's path");
        let run_states = || {
            child(Command::new(&bin).args(["states", "--json"]), |out| {
                let v: serde_json::Value = serde_json::from_str(out).expect("states JSON");
                v["tcp"]["TIME_WAIT"].as_u64().expect("TIME_WAIT count")
            })
        };
        let run_walk = || {
            child(Command::new(&bench).arg(FULL_WALK), |out| {
                out.trim().parse().expect("the full walk's TIME_WAIT count")
            })
        };
        let run_one_pass = || {
            child(Command::new(&bench).arg(ONE_PASS_WALK), |out| {
                out.trim()
                    .parse()
                    .expect("the one-pass walk's TIME_WAIT count")
            })
        };
        let run_awk = || {
            child(Command::new("sh").args(["-c", AWK_PIPELINE]), |out| {
                out.lines()
                    .find_map(|l| l.strip_prefix("TIME-WAIT "))
                    .map_or(0, |n| n.trim().parse().unwrap_or(0))
            })
        };
        // Warm the page cache, then interleave: each round runs the four in turn, the order
        // rotated from round to round so that none always follows the same one (`ss | awk`
        // leaves the caches cold for whatever runs next).
        let methods: [&dyn Fn() -> Run; 4] = [&run_states, &run_walk, &run_one_pass, &run_awk];
        for m in methods {
            m();
        }
        let mut runs: [Vec<Run>; 4] = Default::default();
        for round in 0..rounds.max(1) {
            for k in 0..methods.len() {
                let i = (k + round) % methods.len();
                runs[i].push(methods[i]());
            }
        }
        let [states, walks, passes, awks] = runs;
        let per_round = |a: &[Run], b: &[Run]| -> (f64, f64, f64) {
            let mut r: Vec<f64> = a
                .iter()
                .zip(b)
                .map(|(a, b)| r_ratio(a.cpu, b.cpu))
                .collect();
            r.sort_by(f64::total_cmp);
            (r[r.len() / 2], r[0], r[r.len() - 1])
        };
        let vs_walk = per_round(&states, &walks);
        let vs_pass = per_round(&states, &passes);
        let vs_awk = per_round(&awks, &states);
        let (states, walk, pass, awk) =
            (median(states), median(walks), median(passes), median(awks));
        if let Some(n) = time_wait {
            assert_eq!(states.tw, n as u64, "conn-hygiene states miscounted");
            assert_eq!(walk.tw, n as u64, "the full walk miscounted");
            assert_eq!(pass.tw, n as u64, "the one-pass walk miscounted");
            assert_eq!(awk.tw, n as u64, "the awk pipeline miscounted");
        }
        println!("# {} TIME_WAIT, median of {rounds} rounds", states.tw);
        println!(
            "{:<30} {:>10} {:>10} {:>10}",
            "method", "cpu ms", "(sys ms)", "wall ms"
        );
        for (name, r) in [
            ("conn-hygiene states", &states),
            ("full netlink walk (process)", &walk),
            ("one-pass netlink walk", &pass),
            ("ss -ant | awk", &awk),
        ] {
            println!(
                "{name:<30} {:>10.1} {:>10.1} {:>10.1}",
                ms(r.cpu),
                ms(r.sys),
                ms(r.wall)
            );
        }
        println!(
            "ratio: conn-hygiene states uses {:.3}x [{:.3}..{:.3}] the CPU of a full netlink walk",
            vs_walk.0, vs_walk.1, vs_walk.2
        );
        println!(
            "ratio: conn-hygiene states uses {:.3}x [{:.3}..{:.3}] the CPU of a one-pass walk of every socket",
            vs_pass.0, vs_pass.1, vs_pass.2
        );
        println!(
            "ratio: ss|awk uses {:.1}x [{:.1}..{:.1}] the CPU of conn-hygiene states",
            vs_awk.0, vs_awk.1, vs_awk.2
        );
    }

    /// The baselines: one process that walks every TCP socket over netlink, counts them by
    /// state and prints the `TIME_WAIT` count. The full walk is one dump per family, as `ss`
    /// and `states` before it walked; `one_pass` asks for both families in one pass over the
    /// kernel's tables, every socket still walked.
    fn full_walk(one_pass: bool) {
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
        println!("{}", counts[TcpState::TimeWait]);
    }

    fn r_ratio(a: Duration, b: Duration) -> f64 {
        a.as_secs_f64() / b.as_secs_f64().max(1e-6)
    }

    /// Opens and closes `n` loopback connections, client first. As in the census benchmark,
    /// each client binds its source port explicitly, walking the port range once per
    /// destination (127.0.0.1, 127.0.0.2, …), so that connect never searches a full range.
    fn make_time_wait(n: usize) {
        let (lo, hi) = ProcRoot::default()
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
                "{got} TIME_WAIT sockets, expected {n}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    struct Run {
        cpu: Duration,
        sys: Duration,
        wall: Duration,
        tw: u64,
    }

    fn median(mut runs: Vec<Run>) -> Run {
        runs.sort_by_key(|r| r.cpu);
        runs.swap_remove(runs.len() / 2)
    }

    fn child(cmd: &mut Command, parse: impl FnOnce(&str) -> u64) -> Run {
        let before = children_times();
        let started = Instant::now();
        let out = cmd.output().expect("run child");
        let wall = started.elapsed();
        let after = children_times();
        assert!(out.status.success(), "{cmd:?} failed: {out:?}");
        let cpu = (after.0 + after.1).saturating_sub(before.0 + before.1);
        let sys = after.1.saturating_sub(before.1);
        let tw = parse(&String::from_utf8_lossy(&out.stdout));
        Run { cpu, sys, wall, tw }
    }

    /// (user, system) time of waited-for children.
    #[allow(unsafe_code)]
    fn children_times() -> (Duration, Duration) {
        let mut ru = std::mem::MaybeUninit::<libc::rusage>::uninit();
        // SAFETY: getrusage(2) fills the rusage it is pointed at; checked before reading.
        let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, ru.as_mut_ptr()) };
        assert_eq!(rc, 0, "getrusage: {}", std::io::Error::last_os_error());
        // SAFETY: initialised by the successful call above.
        let ru = unsafe { ru.assume_init() };
        let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
        (tv(ru.ru_utime), tv(ru.ru_stime))
    }

    fn ms(d: Duration) -> f64 {
        d.as_secs_f64() * 1e3
    }
}
