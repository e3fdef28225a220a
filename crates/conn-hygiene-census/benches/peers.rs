//! What the kernel detail costs a walk: every TCP socket of the namespace walked over netlink
//! with and without `tcp_info` (what the sampler's full walk asks for, to see its own
//! connections' keepalive timers, idle times and retransmissions), with N connections of this
//! process open (2N sockets of ours). Interleaved rounds in one run; CPU time of this thread
//! (user + system, `CLOCK_THREAD_CPUTIME_ID`) per walk; prints the medians, the ratio of each
//! round's pair, and that ratio's spread (10th to 90th percentile).
//!
//! `cargo bench -p conn-hygiene-census --bench peers -- [--pairs N] [--rounds R]` (defaults
//! 5000 and 30). Loopback only; needs a descriptor limit of 2N + a few (raised to the hard
//! limit when lower).

#[cfg(target_os = "linux")]
fn main() {
    linux::main()
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("the peers benchmark needs Linux");
}

#[cfg(target_os = "linux")]
mod linux {
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;

    use conn_hygiene_census::{WalkOptions, Walker};

    pub(crate) fn main() {
        let mut pairs = 5000usize;
        let mut rounds = 30usize;
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--pairs" => pairs = args.next().and_then(|v| v.parse().ok()).unwrap_or(pairs),
                "--rounds" => rounds = args.next().and_then(|v| v.parse().ok()).unwrap_or(rounds),
                _ => {} // `cargo bench` passes --bench
            }
        }
        raise_nofile();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().unwrap();
        let mut held = Vec::with_capacity(2 * pairs);
        for _ in 0..pairs {
            let c = TcpStream::connect(addr).expect("connect (descriptor limit?)");
            let (s, _) = listener.accept().expect("accept");
            held.push((c, s));
        }
        let mut plain = Walker::new(WalkOptions::new());
        let mut detailed = Walker::new(WalkOptions::new().tcp_info(true));
        // One warm-up each: the netlink socket opens on the first walk.
        let (mut seen, mut with_info) = (0u64, 0u64);
        plain.walk(|_| seen += 1).expect("walk");
        detailed
            .walk_detailed(|_, d| with_info += u64::from(d.is_some_and(|d| d.idle().is_some())))
            .expect("walk");
        let (mut a, mut b, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds {
            // Alternate which goes first, so neither always runs on a warmer cache.
            let (pa, pb) = if round % 2 == 0 {
                let pa = cpu(|| {
                    plain
                        .walk(|s| {
                            std::hint::black_box(s);
                        })
                        .map(drop)
                });
                let pb = cpu(|| {
                    detailed
                        .walk_detailed(|s, d| {
                            std::hint::black_box((s, d));
                        })
                        .map(drop)
                });
                (pa, pb)
            } else {
                let pb = cpu(|| {
                    detailed
                        .walk_detailed(|s, d| {
                            std::hint::black_box((s, d));
                        })
                        .map(drop)
                });
                let pa = cpu(|| {
                    plain
                        .walk(|s| {
                            std::hint::black_box(s);
                        })
                        .map(drop)
                });
                (pa, pb)
            };
            a.push(pa);
            b.push(pb);
            ratios.push(pb.as_secs_f64() / pa.as_secs_f64().max(1e-9));
        }
        let med = |v: &mut Vec<Duration>| {
            v.sort();
            v[v.len() / 2]
        };
        ratios.sort_by(f64::total_cmp);
        let pct = |p: f64| ratios[((ratios.len() - 1) as f64 * p).round() as usize];
        println!(
            "{} sockets walked, {} of ours ({} with tcp_info); {rounds} interleaved rounds",
            seen,
            2 * pairs,
            with_info
        );
        println!("{:<28} {:>10}", "walk", "cpu ms");
        println!("{:<28} {:>10.3}", "without tcp_info", ms(med(&mut a)));
        println!(
            "{:<28} {:>10.3}",
            "with tcp_info (sampler)",
            ms(med(&mut b))
        );
        println!(
            "ratio with/without: median {:.3}x, p10 {:.3}x, p90 {:.3}x",
            pct(0.5),
            pct(0.1),
            pct(0.9)
        );
        drop(held);
    }

    fn cpu(f: impl FnOnce() -> Result<(), conn_hygiene_census::CensusError>) -> Duration {
        let before = thread_cpu();
        f().expect("walk");
        thread_cpu().saturating_sub(before)
    }

    #[allow(unsafe_code)]
    fn thread_cpu() -> Duration {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes one timespec through the pointer, valid for the call.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        assert_eq!(rc, 0, "clock_gettime: {}", std::io::Error::last_os_error());
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }

    #[allow(unsafe_code)]
    fn raise_nofile() {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit read and write one rlimit through a valid pointer.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
                lim.rlim_cur = lim.rlim_max;
                libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            }
        }
    }

    fn ms(d: Duration) -> f64 {
        d.as_secs_f64() * 1e3
    }
}
