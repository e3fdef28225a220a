//! The census against real sockets in a private network namespace, where the kernel's table
//! holds only this test's sockets, so every count is exact.
//!
//! - `attribution`: TIME_WAIT left by our server closing first is our listener's; TIME_WAIT
//!   left by our client closing first is its upstream's, from the right source address;
//!   TIME_WAIT of a listener that is not ours is nobody's; connections waiting in the accept
//!   queue of a listener we never accept from are that listener's; a CLOSE_WAIT our client
//!   holds under an unread response names its upstream and the line of the request; the
//!   host and process counts equal `ss`'s.
//! - `port_headroom`: with a 100-port `ip_local_port_range`, TIME_WAIT toward one upstream
//!   eats the ports: the headroom ratio, its rate and time to exhaustion, and the
//!   `local_port_headroom` finding.
//! - `mapped_and_plain_time_wait`: an upstream's TIME_WAIT from IPv4 sockets and from IPv6
//!   sockets connected to the IPv4-mapped address, among another service's, counted as its
//!   own per destination and source, with the kernel's filter and without.
#![cfg(all(feature = "census", feature = "server", feature = "client"))]

#[path = "support/census_netns.rs"]
mod census_netns;
mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use bytes::Bytes;
use conn_hygiene::census::{Owner, Sampler};
use conn_hygiene::client::{HygienicClient, UpstreamConfig};
use conn_hygiene::server::{ConnectionLimits, HygienicListener};
use conn_hygiene_census::findings::Check;
use conn_hygiene_census::{count_states, Severity, StateCounts, TcpState, WalkOptions};
use conn_hygiene_test_support::{in_netns, run_in_netns, satisfies, wait_until};
use http_body_util::{BodyExt, Empty};
use support::Mode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Client = HygienicClient<Empty<Bytes>>;

/// Connections our server closes first (one request each, then `Connection: close`).
const K_SRV: usize = 5;
/// Connections our client closes first (one request each).
const K_CLI: usize = 4;
/// Connections of the foreign listener, closed by its server first.
const K_FOREIGN: usize = 3;
/// Connections left in our unaccepted listener's queue.
const N_QUEUED: usize = 3;
const SETTLE: Duration = Duration::from_secs(10);

fn host_counts() -> StateCounts {
    count_states(&WalkOptions::new()).expect("walk")
}

#[test]
fn attribution() {
    run_in_netns("inner_attribution", &[]);
}

#[test]
#[ignore = "runs inside a private network namespace, started by `attribution`"]
fn inner_attribution() {
    if !in_netns() {
        return attribution();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        // Every listener first.
        let limits = ConnectionLimits::builder()
            .max_requests(Some(1))
            .build()
            .unwrap();
        let api = support::start(
            Mode::Axum,
            HygienicListener::builder().name("api").limits(limits),
        )
        .await;
        let backend = support::start(Mode::Axum, HygienicListener::builder().name("backend")).await;
        let queue = HygienicListener::builder()
            .name("queue")
            .bind("127.0.0.1:0")
            .await
            .expect("bind queue");
        let foreign = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let raw = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let raw_addr = raw.local_addr().unwrap();

        // (1) Our server closes first: it retires each connection after one request.
        for _ in 0..K_SRV {
            let mut s = tokio::net::TcpStream::connect(api.addr).await.unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
                .await
                .unwrap();
            let mut sink = Vec::new();
            tokio::time::timeout(SETTLE, s.read_to_end(&mut sink))
                .await
                .expect("the server closes after one request")
                .unwrap();
            assert!(sink.starts_with(b"HTTP/1.1 200"), "{sink:?}");
        }

        // (2) Our client closes first, from 127.0.0.2: one request per connection.
        let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
        let client: Client = HygienicClient::builder()
            .upstream(
                backend.addr.to_string(),
                UpstreamConfig::new()
                    .name("backend")
                    .max_requests(Some(1))
                    .local_addrs(vec![source]),
            )
            .build()
            .unwrap();
        for _ in 0..K_CLI {
            let res = client.get(backend.url("/").parse().unwrap()).await.unwrap();
            res.into_body().collect().await.unwrap();
        }
        let reg = backend.registry.clone();
        support::eventually("the backend saw every close", SETTLE, || {
            reg.totals().closed == K_CLI as u64
        })
        .await;

        // (3) A listener that is not ours, its server closing first.
        for _ in 0..K_FOREIGN {
            let c = std::net::TcpStream::connect(foreign.local_addr().unwrap()).unwrap();
            let (srv, _) = foreign.accept().unwrap();
            drop(srv);
            let mut c = c;
            let mut buf = [0u8; 1];
            use std::io::Read as _;
            assert_eq!(c.read(&mut buf).unwrap(), 0, "the foreign server closed");
            drop(c);
        }

        // (4) Connections our listener never accepts.
        let queued: Vec<_> = (0..N_QUEUED)
            .map(|_| std::net::TcpStream::connect(queue.local_addr()).unwrap())
            .collect();

        // (5) An upstream closes while our client holds its response unread.
        let raw_task = tokio::spawn(async move {
            let (mut s, _) = raw.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).await.unwrap();
                assert!(n > 0, "request head");
                head.extend_from_slice(&buf[..n]);
            }
            let body = vec![b'x'; 48 * 1024];
            s.write_all(
                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes(),
            )
            .await
            .unwrap();
            s.write_all(&body).await.unwrap();
            // Dropped: the upstream closes first.
        });
        let leaky: Client = HygienicClient::builder()
            .upstream(raw_addr.to_string(), UpstreamConfig::new().name("leaky"))
            .build()
            .unwrap();
        let unread = leaky
            .get(format!("http://{raw_addr}/").parse().unwrap())
            .await
            .unwrap();
        let lease_line = line!() - 3;
        raw_task.await.unwrap();

        // Settled: the namespace holds exactly these sockets.
        let mut expected = StateCounts::new();
        // api, backend, queue, foreign; the raw upstream stopped listening after its one accept.
        expected.set(TcpState::Listen, 4);
        expected.set(TcpState::TimeWait, (K_SRV + K_CLI + K_FOREIGN) as u64);
        expected.set(TcpState::Established, 2 * N_QUEUED as u64);
        expected.set(TcpState::CloseWait, 1);
        expected.set(TcpState::FinWait2, 1);
        tokio::task::spawn_blocking(move || {
            wait_until(&format!("the crafted states: {expected}"), SETTLE, || {
                satisfies(host_counts(), |c| *c == expected)
            })
        })
        .await
        .unwrap();

        let census = Sampler::builder()
            .interval(Duration::from_secs(3600))
            .listener(&api.registry)
            .listener(&backend.registry)
            .listener(queue.registry())
            .client(client.view())
            .client(leaky.view())
            .spawn()
            .expect("valid sampler settings");
        let snap = census.sample_now().await;
        let pid = std::process::id();
        let (ss_host, ss_mine) = tokio::task::spawn_blocking(move || {
            (
                census_netns::ss_counts(None),
                census_netns::ss_counts(Some(pid)),
            )
        })
        .await
        .unwrap();
        println!("host: {}\nprocess: {}", snap.host, snap.process);
        for l in &snap.listeners {
            println!("{l:?}");
        }
        for u in &snap.upstreams {
            println!("{u:?}");
        }
        println!("{:?}", snap.close_wait);

        // Host and process counts, exact and equal to ss.
        assert_eq!(snap.host, expected);
        assert_eq!(snap.host, ss_host);
        let mut mine = StateCounts::new();
        mine.set(TcpState::Listen, 4);
        mine.set(TcpState::Established, N_QUEUED as u64);
        mine.set(TcpState::CloseWait, 1);
        assert_eq!(snap.process, mine);
        assert_eq!(snap.process, ss_mine);

        // TIME_WAIT: our server's, our client's (from its source address), nobody's.
        let api_c = snap.listener("api").unwrap();
        assert_eq!(api_c.addr, api.addr);
        assert_eq!(api_c.time_wait, K_SRV as u64);
        let backend_l = snap.listener("backend").unwrap();
        assert_eq!(backend_l.time_wait, 0, "the client closed first there");
        let up = snap.upstream("backend").unwrap();
        assert_eq!(up.time_wait, K_CLI as u64);
        assert_eq!(up.time_wait_from(source), K_CLI as u64);
        assert_eq!(up.time_wait_from(IpAddr::V4(Ipv4Addr::LOCALHOST)), 0);
        assert!(up.destinations.contains(&backend.addr), "{up:?}");
        assert_eq!(up.ports.len(), 1, "{up:?}");
        assert_eq!(up.ports[0].source, source);
        assert_eq!(
            snap.time_wait_ours(),
            (K_SRV + K_CLI) as u64,
            "the foreign listener's TIME_WAIT is not ours"
        );

        // The unaccepted connections are the queue listener's.
        let q = snap.listener("queue").unwrap();
        assert_eq!(q.not_accepted, N_QUEUED as u64);
        assert_eq!(q.accept_queue_len, Some(N_QUEUED as u32));
        assert!(q.accept_queue_max.is_some_and(|m| m > 0), "{q:?}");

        // The CLOSE_WAIT names its upstream and the request's line.
        assert_eq!(snap.close_wait.len(), 1, "{:?}", snap.close_wait);
        let cw = &snap.close_wait[0];
        assert_eq!(cw.owner, Owner::Upstream("leaky".into()));
        assert_eq!(cw.remote, raw_addr);
        let site = cw.lease_site.expect("a leased connection has its site");
        assert_eq!((site.file(), site.line()), (file!(), lease_line));
        assert_eq!(snap.upstream("leaky").unwrap().close_wait, 1);
        assert!(snap.degraded.is_none(), "{:?}", snap.degraded);

        drop(unread);
        drop(queued);
        census.stop();
        api.stop().await;
        backend.stop().await;
    });
}

#[test]
fn port_headroom() {
    run_in_netns(
        "inner_port_headroom",
        &["net.ipv4.ip_local_port_range=40000 40099"],
    );
}

#[test]
#[ignore = "runs inside a private network namespace, started by `port_headroom`"]
fn inner_port_headroom() {
    if !in_netns() {
        return port_headroom();
    }
    const FIRST: usize = 60;
    const TOTAL: usize = 90;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let backend = support::start(Mode::Axum, HygienicListener::builder().name("backend")).await;
        let client: Client = HygienicClient::builder()
            .upstream(
                backend.addr.to_string(),
                UpstreamConfig::new().name("backend").max_requests(Some(1)),
            )
            .build()
            .unwrap();
        let census = Sampler::builder()
            .interval(Duration::from_secs(3600))
            .listener(&backend.registry)
            .client(client.view())
            .spawn()
            .expect("valid sampler settings");
        let reg = backend.registry.clone();
        let mut snaps = Vec::new();
        let mut sent = 0;
        for target in [FIRST, TOTAL] {
            while (reg.totals().opened as usize) < target {
                // One connection per request (`max_requests(1)`): a bound, so that requests that
                // stop opening connections fail the test instead of looping forever.
                assert!(
                    sent < 2 * TOTAL,
                    "{sent} requests opened {} connections, not one each",
                    reg.totals().opened
                );
                let res = client.get(backend.url("/").parse().unwrap()).await.unwrap();
                res.into_body().collect().await.unwrap();
                sent += 1;
            }
            support::eventually("every close landed", SETTLE, || {
                reg.totals().closed == target as u64
            })
            .await;
            let want = target as u64;
            tokio::task::spawn_blocking(move || {
                wait_until("TIME_WAIT toward the backend", SETTLE, || {
                    host_counts()[TcpState::TimeWait] == want
                })
            })
            .await
            .unwrap();
            snaps.push(census.sample_now().await);
        }
        let snap = &snaps[1];
        let up = snap.upstream("backend").unwrap();
        println!("{up:?}");
        assert_eq!(snap.counters.port_range_size(), Some(100));
        assert_eq!(up.time_wait, TOTAL as u64);
        let p = &up.ports[0];
        assert_eq!(p.destination, backend.addr);
        assert_eq!(p.source, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!((p.used, p.time_wait, p.headroom), (90, 90, 10));
        assert_eq!(up.headroom_ratio(), Some(0.1));
        let rate = p
            .rate_per_second
            .expect("ports were taken since the first walk");
        assert!(rate > 0.0, "{rate}");
        let tte = up.time_to_exhaustion().expect("growing");
        let expect = 10.0 / rate;
        assert!(
            (tte.as_secs_f64() - expect).abs() < 1e-3 * expect.max(1.0),
            "{tte:?}"
        );
        assert_eq!(snaps[0].upstream("backend").unwrap().ports[0].headroom, 40);

        let findings: Vec<_> = snap.report.of(Check::LocalPortHeadroom).collect();
        println!("{findings:?}");
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert_eq!(
            findings[0].severity,
            Severity::Warning,
            "10 % left: below 20 %, above 5 %"
        );
        assert_eq!(
            findings[0].subject.as_deref(),
            Some(backend.addr.to_string().as_str())
        );
        assert_eq!(findings[0].value.as_percent(), Some(10.0));

        census.stop();
        drop(client);
        backend.stop().await;
    });
}

/// TIME_WAIT toward an upstream's two destinations from plain IPv4 sockets and from IPv6
/// sockets connected to the IPv4-mapped address, with another service's TIME_WAIT among
/// them.
const N_PLAIN: usize = 150;
const N_MAPPED: usize = 150;
const N_SECOND: usize = 100;
const N_ELSEWHERE: usize = 80;

#[test]
fn mapped_and_plain_time_wait() {
    run_in_netns("inner_mapped_and_plain_time_wait", &[]);
}

/// An upstream's TIME_WAIT sockets are its own whether its client sockets were IPv4 or IPv6
/// connected to the IPv4-mapped address, counted per destination and source as IPv4, in the
/// kernel's order (which interleaves destinations), in both ways the sampler asks for them:
/// the kernel's filter first, then every TIME_WAIT socket in one pass once most are kept.
#[test]
#[ignore = "runs inside a private network namespace, started by `mapped_and_plain_time_wait`"]
fn inner_mapped_and_plain_time_wait() {
    use std::net::{SocketAddr, TcpListener, TcpStream};

    use conn_hygiene::census::{AttributionSource, Claim};

    if !in_netns() {
        return mapped_and_plain_time_wait();
    }
    let listener = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let elsewhere = TcpListener::bind("127.0.0.1:0").unwrap();
    let first = SocketAddr::from(([127, 0, 0, 1], port));
    let second = SocketAddr::from(([127, 0, 0, 2], port));
    let mapped: SocketAddr = format!("[::ffff:127.0.0.1]:{port}").parse().unwrap();
    // A kernel without IPv6 has no IPv6 sockets to map from: nothing to test there.
    if let Err(e) = std::net::TcpListener::bind("[::]:0") {
        if e.raw_os_error() == Some(97) {
            println!("skipped: no IPv6 sockets on this kernel ({e})");
            return;
        }
    }
    // Each connection closed client first, so the client's end is left in TIME_WAIT.
    let close_client_first = |to: SocketAddr, on: &TcpListener| {
        let client = TcpStream::connect(to).unwrap();
        let (server, _) = on.accept().unwrap();
        drop(client);
        drop(server);
    };
    for i in 0..N_PLAIN.max(N_MAPPED).max(N_SECOND).max(N_ELSEWHERE) {
        if i < N_PLAIN {
            close_client_first(first, &listener);
        }
        if i < N_MAPPED {
            close_client_first(mapped, &listener);
        }
        if i < N_SECOND {
            close_client_first(second, &listener);
        }
        if i < N_ELSEWHERE {
            close_client_first(elsewhere.local_addr().unwrap(), &elsewhere);
        }
    }
    let all = (N_PLAIN + N_MAPPED + N_SECOND + N_ELSEWHERE) as u64;
    wait_until("every client end in TIME_WAIT", SETTLE, || {
        host_counts()[TcpState::TimeWait] == all
    });

    #[derive(Debug)]
    struct Backend(Vec<SocketAddr>);
    impl AttributionSource for Backend {
        fn claims(&self) -> Vec<Claim> {
            vec![Claim::upstream("backend", "backend:80", self.0.clone())]
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let census = Sampler::builder()
            .interval(Duration::from_secs(3600))
            .source(Backend(vec![first, second]))
            .spawn()
            .expect("valid sampler settings");
        let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let mut walked = Vec::new();
        for tick in 0..3 {
            let snap = census.sample_now().await;
            walked.push(snap.cost.sockets_walked);
            assert_eq!(snap.host[TcpState::TimeWait], all, "tick {tick}");
            assert_eq!(
                census_netns::ss_counts(None)[TcpState::TimeWait],
                all,
                "tick {tick}: ss agrees"
            );
            let up = snap.upstream("backend").unwrap();
            println!("tick {tick}: {up:?}");
            assert_eq!(
                up.time_wait,
                (N_PLAIN + N_MAPPED + N_SECOND) as u64,
                "tick {tick}"
            );
            let mut ports: Vec<_> = up
                .ports
                .iter()
                .map(|p| (p.destination, p.source, p.used, p.time_wait))
                .collect();
            ports.sort();
            let (to_first, to_second) = ((N_PLAIN + N_MAPPED) as u64, N_SECOND as u64);
            assert_eq!(
                ports,
                [
                    (first, localhost, to_first, to_first),
                    (second, localhost, to_second, to_second),
                ],
                "tick {tick}: per destination and source, the mapped ones as IPv4"
            );
        }
        // Both ways of asking were taken: the kernel's filter leaving the other service's
        // TIME_WAIT sockets out, then every one of them in one pass.
        println!("sockets walked per tick: {walked:?}");
        assert!(walked.iter().any(|&n| n < all), "{walked:?}");
        assert!(walked.iter().any(|&n| n >= all), "{walked:?}");
        census.stop();
    });
    drop((listener, elsewhere));
}
