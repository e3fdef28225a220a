//! The tracker: durations displayed, and leases that wait before they are held.

use super::*;

#[test]
fn secs_display_millisecond_precision() {
    assert_eq!(Secs(Duration::from_millis(1234)).to_string(), "1.234s");
    assert_eq!(Secs(Duration::ZERO).to_string(), "0.000s");
}

#[tokio::test(start_paused = true)]
async fn a_lease_waiting_for_its_response_is_a_slow_wait_never_a_leak() {
    let tracker = LeaseTracker::builder("upstream")
        .leak_threshold(Duration::from_secs(1))
        .build()
        .expect("valid");
    let waiting = tracker.lease_raw(Location::caller(), tokio::time::Instant::now());
    let held = tracker.lease_raw(Location::caller(), tokio::time::Instant::now());
    tokio::time::advance(Duration::from_millis(500)).await;
    // The response of `held` arrives after half a second; `waiting` never gets one.
    tracker.holding(&held, Instant::now());
    tokio::time::advance(Duration::from_millis(900)).await;
    // Waited 1.4 s and held 0.9 s: one slow wait, no leak. (The background detector may have
    // looked first: the totals say what was found, whoever found it.)
    tracker.check_leaks();
    let s = tracker.snapshot();
    assert_eq!((s.totals.slow_waits, s.totals.leaks_detected), (1, 0));
    let awaiting: Vec<(u64, bool, bool)> = s
        .leases
        .iter()
        .map(|l| (l.id, l.awaiting, l.leaked))
        .collect();
    assert_eq!(awaiting, [(1, true, false), (2, false, false)]);
    assert!(s.leases[0]
        .to_string()
        .contains("awaiting its response for 1.400s"));
    // Held for longer than the threshold: a leak, counted from the response.
    tokio::time::advance(Duration::from_millis(200)).await;
    tracker.check_leaks();
    tokio::time::advance(Duration::from_secs(60)).await;
    tracker.check_leaks();
    let s = tracker.snapshot();
    assert_eq!(
        (s.totals.slow_waits, s.totals.leaks_detected),
        (1, 1),
        "each reported once"
    );
    assert!(s
        .leases
        .iter()
        .any(|l| l.id == 2 && l.leaked && !l.awaiting));
    tracker.release(waiting, Instant::now());
    tracker.release(held, Instant::now());
    // A pool's checkout is held from the start.
    let lease = tracker.lease();
    tokio::time::advance(Duration::from_secs(2)).await;
    tracker.check_leaks();
    drop(lease);
    let totals = tracker.snapshot().totals;
    assert_eq!((totals.slow_waits, totals.leaks_detected), (1, 2));
}

#[test]
fn a_pool_and_an_upstream_of_the_same_name_never_share_a_series() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let (pool, upstream) = metrics::with_local_recorder(&recorder, || {
        (
            LeaseTracker::new("api:80"),
            LeaseTracker::upstream_builder("api:80".into())
                .build()
                .expect("valid"),
        )
    });
    let _a = pool.lease();
    let _b = upstream.lease();
    let _c = upstream.lease();
    crate::metrics::collect();
    let mut outstanding: Vec<(String, f64)> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(k, ..)| k.key().name() == crate::metrics::names::LEASES_OUTSTANDING)
        .map(|(k, _, _, v)| {
            let labels: Vec<String> = k
                .key()
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            let DebugValue::Gauge(g) = v else {
                panic!("a gauge")
            };
            (labels.join(","), g.0)
        })
        .collect();
    outstanding.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        outstanding,
        [
            ("pool=api:80,kind=pool".to_owned(), 1.0),
            ("pool=api:80,kind=upstream".to_owned(), 2.0)
        ]
    );
}
