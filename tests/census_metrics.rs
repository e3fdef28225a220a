//! The census sampler's metrics, through a global `DebuggingRecorder` (this binary holds one
//! test, so nothing else records into it): host and process sockets by state equal the
//! snapshot, one severity series per check, no series for what was never measured, and no label
//! holds an address.
#![cfg(all(feature = "census", feature = "server", feature = "client"))]

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use conn_hygiene::census::{Check, Sampler, Severity, TcpState};
use conn_hygiene::metrics::names;
use conn_hygiene::server::HygienicListener;
use conn_hygiene_test_support::eventually;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

fn looks_like_address(v: &str) -> bool {
    v.parse::<IpAddr>().is_ok()
        || v.parse::<SocketAddr>().is_ok()
        || v.contains("127.0.0.1")
        || v.contains("::1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_match_the_snapshot_and_carry_no_address() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // Global: the sampler registers each series when it first measures it, on the blocking
    // thread that takes the sample. This binary holds this one test, so nothing else records.
    recorder
        .install()
        .expect("the only recorder of this test binary");
    let listener = HygienicListener::builder()
        .name("api")
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let client = conn_hygiene::client::HygienicClient::builder()
        .upstream(
            listener.local_addr().to_string(),
            conn_hygiene::client::UpstreamConfig::new().name("self"),
        )
        .build::<http_body_util::Empty<bytes::Bytes>>()
        .unwrap();
    let census = Sampler::builder()
        .interval(Duration::from_secs(3600))
        .listener(listener.registry())
        .client(client.view())
        .spawn()
        .expect("valid sampler settings");
    // The first tick's sample, then one forced: the metrics are the forced one's.
    eventually("the first tick's sample", Duration::from_secs(10), || {
        census.latest().is_some()
    })
    .await;
    let snap = census.sample_now().await;

    let mut host = [None; TcpState::COUNT];
    let mut process = [None; TcpState::COUNT];
    let mut seen_duration = 0;
    let all = snapshotter.snapshot().into_vec();
    for (key, _, _, value) in &all {
        let k = key.key();
        for l in k.labels() {
            assert!(
                !looks_like_address(l.value()),
                "{} has an address label {}={}",
                k.name(),
                l.key(),
                l.value()
            );
        }
        let state = || {
            let v = k
                .labels()
                .find(|l| l.key() == "state")
                .unwrap()
                .value()
                .to_owned();
            v.parse::<TcpState>().unwrap()
        };
        match (k.name(), value) {
            (names::HOST_TCP_SOCKETS, DebugValue::Gauge(g)) => host[state().index()] = Some(g.0),
            (names::PROCESS_TCP_SOCKETS, DebugValue::Gauge(g)) => {
                process[state().index()] = Some(g.0)
            }
            (names::SAMPLER_DURATION_SECONDS, DebugValue::Histogram(h)) => seen_duration += h.len(),
            _ => {}
        }
    }
    for s in TcpState::ALL {
        assert_eq!(host[s.index()], Some(snap.host[s] as f64), "host {s}");
        // No descriptor holds a TIME_WAIT or SYN_RECV socket: no series for what is never
        // anything but 0.
        let held = !matches!(s, TcpState::TimeWait | TcpState::SynRecv);
        assert_eq!(
            process[s.index()],
            held.then_some(snap.process[s] as f64),
            "process {s}"
        );
    }
    assert!(snap.process[TcpState::Listen] >= 1);
    assert!(seen_duration >= 2, "both samples' cost recorded");
    let names_seen: Vec<&str> = all.iter().map(|(k, ..)| k.key().name()).collect();
    for name in [
        names::LISTENER_TCP_SOCKETS,
        names::LISTENER_ACCEPT_QUEUE,
        names::UPSTREAM_TCP_SOCKETS,
        names::UPSTREAM_PORT_HEADROOM_RATIO,
        names::CENSUS_CHECK_SEVERITY,
        names::CENSUS_DEGRADED,
        names::HOST_TCP_LISTEN_OVERFLOWS_TOTAL,
    ] {
        assert!(names_seen.contains(&name), "{name} missing");
    }
    // One series per check that looked at something, its value the worst severity found.
    let severity_value = |s: Severity| match s {
        Severity::Unknown => -1.0,
        Severity::Ok => 0.0,
        Severity::Warning => 1.0,
        Severity::Critical => 2.0,
    };
    let mut checks = std::collections::BTreeMap::new();
    for (key, _, _, value) in &all {
        if key.key().name() != names::CENSUS_CHECK_SEVERITY {
            continue;
        }
        let labels: Vec<_> = key.key().labels().collect();
        assert_eq!(labels.len(), 1, "{key:?}: the check alone");
        let DebugValue::Gauge(v) = value else {
            panic!("{key:?} is not a gauge")
        };
        assert!(
            checks.insert(labels[0].value().to_owned(), v.0).is_none(),
            "one series per check"
        );
    }
    for check in Check::ALL {
        let worst = snap
            .report
            .of(check)
            .map(|f| severity_value(f.severity))
            .reduce(f64::max);
        assert_eq!(checks.get(check.as_str()).copied(), worst, "{check:?}");
    }
    assert!(!checks.is_empty());
    // What could not be measured has no series at all, rather than a 0.
    let has = |name: &str| names_seen.contains(&name);
    assert_eq!(
        has(names::HOST_CONNTRACK_USAGE_RATIO),
        snap.counters.conntrack_ratio().is_some(),
        "conntrack usage series present exactly when measured"
    );
    assert_eq!(
        has(names::PROCESS_FD_USAGE_RATIO),
        snap.counters.fd_usage_ratio().is_some()
    );
    census.stop();
}
