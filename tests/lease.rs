//! Lease tracking: leak detection by the background task under paused time, the reports,
//! the metrics, the test helpers and the tracking bound.

use std::{
    collections::HashMap,
    io,
    panic::{catch_unwind, AssertUnwindSafe},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use conn_hygiene::{
    lease::{LeaseConfigError, LeaseTracker},
    metrics::names,
    testing::{assert_no_leases, assert_no_leases_older_than, LeakCheck},
};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tokio::time::sleep;

/// Metric values read from a [`DebuggingRecorder`]: its snapshots swap values out, so every
/// read adds what counters and histograms gained since the last one; gauges are set whole.
struct Metrics {
    snapshotter: Snapshotter,
    counters: HashMap<String, u64>,
    gauges: HashMap<String, f64>,
    histograms: HashMap<String, Vec<f64>>,
}

impl Metrics {
    fn new(recorder: &DebuggingRecorder) -> Self {
        Self {
            snapshotter: recorder.snapshotter(),
            counters: HashMap::new(),
            gauges: HashMap::new(),
            histograms: HashMap::new(),
        }
    }

    fn refresh(&mut self) {
        for (key, _, _, value) in self.snapshotter.snapshot().into_vec() {
            let (_, key) = key.into_parts();
            let labels: Vec<_> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            let name = format!("{}{{{}}}", key.name(), labels.join(","));
            match value {
                DebugValue::Counter(v) => *self.counters.entry(name).or_default() += v,
                // Set whole at each collection (see `gauge`).
                DebugValue::Gauge(v) => {
                    self.gauges.insert(name, v.0);
                }
                DebugValue::Histogram(vs) => self
                    .histograms
                    .entry(name)
                    .or_default()
                    .extend(vs.into_iter().map(|v| v.0)),
            }
        }
    }

    fn counter(&mut self, name: &str, pool: &str) -> u64 {
        self.refresh();
        self.counters
            .get(&format!("{name}{{pool={pool},kind=pool}}"))
            .copied()
            .unwrap_or(0)
    }

    /// Gauges are counted from the trackers when metrics are collected, as a user with a
    /// recorder of their own does before rendering it.
    fn gauge(&mut self, name: &str, pool: &str) -> f64 {
        conn_hygiene::metrics::collect();
        self.refresh();
        self.gauges
            .get(&format!("{name}{{pool={pool},kind=pool}}"))
            .copied()
            .unwrap_or(0.0)
    }

    fn histogram(&mut self, name: &str, pool: &str) -> Vec<f64> {
        self.refresh();
        self.histograms
            .get(&format!("{name}{{pool={pool},kind=pool}}"))
            .cloned()
            .unwrap_or_default()
    }
}

/// Builds a tracker with its metric handles resolved against a fresh debugging recorder.
fn tracker_with_metrics(build: impl FnOnce() -> LeaseTracker) -> (LeaseTracker, Metrics) {
    let recorder = DebuggingRecorder::new();
    let tracker = metrics::with_local_recorder(&recorder, build);
    (tracker, Metrics::new(&recorder))
}

/// Log lines written by a `tracing` subscriber installed for the current thread.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    fn capture() -> (Self, tracing::subscriber::DefaultGuard) {
        let logs = Logs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        let guard = tracing::subscriber::set_default(subscriber);
        (logs, guard)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    fn lines_containing(&self, needle: &str) -> Vec<String> {
        self.text()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_owned)
            .collect()
    }
}

impl io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .unwrap_or_default(),
    }
}

#[tokio::test(start_paused = true)]
async fn leak_is_reported_once_by_the_background_task_then_its_return() {
    let (logs, _logging) = Logs::capture();
    let (tracker, mut metrics) = tracker_with_metrics(|| {
        LeaseTracker::builder("db")
            .leak_threshold(Some(Duration::from_secs(30)))
            .build()
            .unwrap()
    });
    let _check = LeakCheck::new(&tracker);
    let returned = tracker.lease();
    drop(returned);
    let lease = tracker.lease();
    let line = line!() - 1;
    let site = format!("{}:{line}:", file!());
    assert_eq!(tracker.outstanding(), 1);
    assert_eq!(metrics.gauge(names::LEASES_OUTSTANDING, "db"), 1.0);
    assert_eq!(metrics.counter(names::LEASES_ACQUIRED_TOTAL, "db"), 2);

    // Below the threshold: nothing reported. `totals()` does not check for leaks itself, so
    // whatever is reported comes from the background task.
    sleep(Duration::from_secs(29)).await;
    assert_eq!(tracker.totals().leaks_detected, 0);
    assert_eq!(metrics.counter(names::LEASE_LEAKS_TOTAL, "db"), 0);

    // Past the threshold plus one detector period (15 s): reported.
    sleep(Duration::from_secs(17)).await;
    assert_eq!(tracker.totals().leaks_detected, 1);
    assert_eq!(metrics.counter(names::LEASE_LEAKS_TOTAL, "db"), 1);

    // Ten more minutes of ticks: still reported once.
    sleep(Duration::from_secs(600)).await;
    assert_eq!(tracker.check_leaks(), 0);
    assert_eq!(metrics.counter(names::LEASE_LEAKS_TOTAL, "db"), 1);
    let reports = logs.lines_containing("longer than the leak threshold");
    assert_eq!(reports.len(), 1, "{}", logs.text());
    assert!(reports[0].contains(" WARN "), "{}", reports[0]);
    assert!(reports[0].contains(&site), "{} lacks {site}", reports[0]);
    assert!(reports[0].contains("pool=db"), "{}", reports[0]);
    assert!(reports[0].contains("lease=2"), "{}", reports[0]);

    let snapshot = tracker.snapshot();
    assert_eq!(snapshot.pool, "db");
    assert_eq!(snapshot.leases.len(), 1);
    let info = &snapshot.leases[0];
    assert!(info.leaked);
    assert_eq!(info.id, lease.id());
    assert_eq!(
        (info.site.file(), info.site.line()),
        (file!(), line),
        "{info:?}"
    );
    assert_eq!(info.age, Duration::from_secs(646));
    assert_eq!(info.backtrace, None);
    assert_eq!(snapshot.totals.leaks_detected, 1);
    assert_eq!(snapshot.totals.leaked_outstanding(), 1);

    drop(lease);
    assert_eq!(tracker.outstanding(), 0);
    assert_eq!(tracker.totals().leaked_returned, 1);
    assert_eq!(metrics.counter(names::LEASE_LEAKS_RETURNED_TOTAL, "db"), 1);
    assert_eq!(metrics.gauge(names::LEASES_OUTSTANDING, "db"), 0.0);
    assert_eq!(
        metrics.histogram(names::LEASE_DURATION_SECONDS, "db"),
        vec![0.0, 646.0]
    );
    let returned = logs.lines_containing("leaked lease returned after 646.000s");
    assert_eq!(returned.len(), 1, "{}", logs.text());
    assert!(returned[0].contains(&site), "{}", returned[0]);
}

#[tokio::test(start_paused = true)]
async fn detector_reports_within_one_and_a_half_thresholds_and_lists_only_old_leases() {
    let tracker = LeaseTracker::builder("cache")
        .leak_threshold(Some(Duration::from_millis(200)))
        .build()
        .unwrap();
    let old = tracker.lease();
    sleep(Duration::from_millis(150)).await;
    let young = tracker.lease();
    sleep(Duration::from_millis(151)).await; // old: 301 ms, young: 151 ms
    assert_eq!(tracker.totals().leaks_detected, 1);
    let snapshot = tracker.snapshot();
    let ids: Vec<_> = snapshot.leases.iter().map(|l| (l.id, l.leaked)).collect();
    assert_eq!(ids, [(old.id(), true), (young.id(), false)], "oldest first");
    assert_eq!(snapshot.leaked().count(), 1);
    drop((old, young));
    assert_no_leases(&tracker);
}

#[test]
fn without_a_runtime_check_leaks_finds_leaks() {
    let threshold = Duration::from_millis(1);
    let tracker = LeaseTracker::builder("sync")
        .leak_threshold(Some(threshold))
        .build()
        .unwrap();
    let lease = tracker.lease();
    while lease.age() <= threshold {
        std::hint::spin_loop();
    }
    assert_eq!(tracker.totals().leaks_detected, 0, "no runtime, no task");
    assert_eq!(tracker.check_leaks(), 1);
    assert_eq!(tracker.check_leaks(), 0, "reported once");
    assert!(tracker.snapshot().leases[0].leaked);
    drop(lease);
    assert_eq!(tracker.totals().leaked_returned, 1);
}

#[test]
fn leak_detection_off_counts_and_lists_but_never_reports() {
    let tracker = LeaseTracker::builder("off")
        .leak_threshold(None)
        .build()
        .unwrap();
    let lease = tracker.lease();
    assert_eq!(tracker.check_leaks(), 0);
    let snapshot = tracker.snapshot();
    assert_eq!(snapshot.leak_threshold, None);
    assert_eq!(snapshot.leases.len(), 1);
    assert!(!snapshot.leases[0].leaked);
    drop(lease);
}

#[tokio::test(start_paused = true)]
async fn assert_no_leases_lists_each_lease_with_site_and_age() {
    let tracker = LeaseTracker::new("db");
    let first = tracker.lease();
    let first_line = line!() - 1;
    sleep(Duration::from_millis(1234)).await;
    let second = tracker.wrap(vec![1u8]);
    let second_line = line!() - 1;
    sleep(Duration::from_millis(1)).await;

    let message =
        panic_message(catch_unwind(AssertUnwindSafe(|| assert_no_leases(&tracker))).unwrap_err());
    let lines: Vec<&str> = message.lines().collect();
    assert_eq!(lines[0], "2 leases outstanding in pool `db`:");
    let file = file!();
    assert!(
        lines[1].starts_with(&format!("db: lease #1 taken at {file}:{first_line}:")),
        "{message}"
    );
    assert!(lines[1].ends_with(", held for 1.235s"), "{message}");
    assert!(
        lines[2].starts_with(&format!("db: lease #2 taken at {file}:{second_line}:")),
        "{message}"
    );
    assert!(lines[2].ends_with(", held for 0.001s"), "{message}");
    assert_eq!(lines.len(), 3, "{message}");

    // Only the old one is older than one second.
    let message = panic_message(
        catch_unwind(AssertUnwindSafe(|| {
            assert_no_leases_older_than(&tracker, Duration::from_secs(1))
        }))
        .unwrap_err(),
    );
    assert!(message.starts_with("1 lease held longer than 1.000s in pool `db`:\ndb: lease #1 "));
    assert!(!message.contains("lease #2"), "{message}");

    drop(first);
    assert_no_leases_older_than(&tracker, Duration::from_secs(1));
    drop(second);
    assert_no_leases(&tracker);
}

#[tokio::test]
#[should_panic(
    expected = "1 lease outstanding in pool `db`:\ndb: lease #2 taken at tests/lease.rs:"
)]
async fn leak_check_fails_a_test_that_leaks() {
    let tracker = LeaseTracker::new("db");
    let _check = LeakCheck::new(&tracker);
    let mut retry_later = Vec::new();
    drop(tracker.wrap("returned"));
    retry_later.push(tracker.wrap("kept"));
    std::mem::forget(retry_later);
}

#[tokio::test]
async fn leak_check_passes_a_test_that_returns_everything() {
    let tracker = LeaseTracker::new("db");
    let _check = LeakCheck::new(&tracker);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let tracker = tracker.clone();
            tokio::spawn(async move {
                let conn = tracker.wrap(String::from("conn"));
                tokio::task::yield_now().await;
                conn.len()
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), 4);
    }
    assert_eq!(tracker.totals().acquired, 8);
}

#[test]
fn leak_check_stays_quiet_while_the_test_is_already_panicking() {
    let tracker = LeaseTracker::new("db");
    let result = catch_unwind(AssertUnwindSafe(|| {
        let _check = LeakCheck::new(&tracker);
        let _lease = tracker.lease();
        let _leaked = Box::leak(Box::new(tracker.lease()));
        panic!("the test's own failure");
    }));
    // A second panic in drop would abort the process; the test's own message is kept.
    assert_eq!(panic_message(result.unwrap_err()), "the test's own failure");
}

#[tokio::test(start_paused = true)]
async fn beyond_max_tracked_leases_are_counted_not_listed_and_returned() {
    let (logs, _logging) = Logs::capture();
    let (tracker, mut metrics) = tracker_with_metrics(|| {
        LeaseTracker::builder("small")
            .max_tracked(2)
            .leak_threshold(Some(Duration::from_secs(1)))
            .build()
            .unwrap()
    });
    let a = tracker.lease();
    let b = tracker.lease();
    let c = tracker.lease();
    let d = tracker.lease();
    assert!(a.is_tracked() && b.is_tracked());
    assert!(!c.is_tracked() && !d.is_tracked());
    assert_eq!(tracker.outstanding(), 4);
    assert_eq!(metrics.gauge(names::LEASES_OUTSTANDING, "small"), 4.0);
    assert_eq!(metrics.counter(names::LEASES_UNTRACKED_TOTAL, "small"), 2);
    assert_eq!(
        logs.lines_containing("bound reached").len(),
        1,
        "logged once"
    );

    sleep(Duration::from_secs(2)).await;
    let snapshot = tracker.snapshot();
    let listed: Vec<_> = snapshot.leases.iter().map(|l| l.id).collect();
    assert_eq!(listed, [a.id(), b.id()]);
    assert_eq!(snapshot.outstanding(), 4);
    assert_eq!(snapshot.totals.untracked, 2);
    assert_eq!(
        snapshot.totals.leaks_detected, 2,
        "only listed leases are checked"
    );

    let message =
        panic_message(catch_unwind(AssertUnwindSafe(|| assert_no_leases(&tracker))).unwrap_err());
    assert!(
        message.ends_with("small: and 2 untracked leases (beyond max_tracked, not listed)"),
        "{message}"
    );

    // Returning an untracked lease leaves the listed ones alone; a freed slot is reused.
    drop(c);
    assert_eq!(tracker.outstanding(), 3);
    assert_eq!(tracker.snapshot().leases.len(), 2);
    drop(a);
    let e = tracker.lease();
    assert!(e.is_tracked());
    let listed: Vec<_> = tracker.snapshot().leases.iter().map(|l| l.id).collect();
    assert_eq!(listed, [b.id(), e.id()]);

    drop((b, d, e));
    assert_eq!(tracker.outstanding(), 0);
    assert_eq!(metrics.gauge(names::LEASES_OUTSTANDING, "small"), 0.0);
    assert_eq!(
        metrics
            .histogram(names::LEASE_DURATION_SECONDS, "small")
            .len(),
        5
    );
    let totals = tracker.totals();
    assert_eq!(
        (totals.acquired, totals.returned, totals.untracked),
        (5, 5, 2)
    );
    assert_eq!(totals.leaked_returned, 2);
    assert_no_leases(&tracker);
}

#[test]
fn leases_from_many_threads_all_come_back() {
    let tracker = LeaseTracker::builder("threads")
        .max_tracked(64)
        .build()
        .unwrap();
    let ids = Arc::new(Mutex::new(Vec::new()));
    std::thread::scope(|s| {
        for _ in 0..4 {
            let tracker = &tracker;
            let ids = ids.clone();
            s.spawn(move || {
                let mut mine = Vec::new();
                for _ in 0..5_000 {
                    let a = tracker.lease();
                    let b = tracker.lease();
                    mine.extend([a.id(), b.id()]);
                }
                ids.lock().unwrap().extend(mine);
            });
        }
    });
    let mut ids = Arc::try_unwrap(ids).unwrap().into_inner().unwrap();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 40_000, "ids are unique");
    let totals = tracker.totals();
    assert_eq!((totals.acquired, totals.returned), (40_000, 40_000));
    assert_eq!(totals.untracked, 0, "at most 8 outstanding at once");
    assert_no_leases(&tracker);
}

#[test]
fn leased_gives_the_guard_back_before_ending_the_lease() {
    /// A pool guard that records how many leases were outstanding when it went back.
    struct Guard {
        tracker: LeaseTracker,
        seen: Arc<AtomicUsize>,
    }
    impl Drop for Guard {
        fn drop(&mut self) {
            self.seen
                .store(self.tracker.outstanding(), Ordering::SeqCst);
        }
    }
    let tracker = LeaseTracker::new("order");
    let seen = Arc::new(AtomicUsize::new(usize::MAX));
    let guard = |tracker: &LeaseTracker| Guard {
        tracker: tracker.clone(),
        seen: seen.clone(),
    };

    drop(tracker.wrap(guard(&tracker)));
    assert_eq!(
        seen.load(Ordering::SeqCst),
        1,
        "lease still open while the guard drops"
    );
    assert_eq!(tracker.outstanding(), 0);

    // into_inner ends the lease and hands the guard over.
    let mut leased = tracker.wrap(guard(&tracker));
    let _: &mut Guard = leased.get_mut();
    assert_eq!(leased.get_ref().tracker.pool(), "order");
    let inner = leased.into_inner();
    assert_eq!(tracker.outstanding(), 0);
    drop(inner);

    // into_parts keeps both.
    let (inner, lease) = tracker.wrap(guard(&tracker)).into_parts();
    assert_eq!(lease.pool(), "order");
    drop(inner);
    assert_eq!(tracker.outstanding(), 1);
    drop(lease);
    assert_no_leases(&tracker);
}

#[test]
fn backtraces_when_asked_appear_in_snapshots_and_messages() {
    let tracker = LeaseTracker::builder("bt")
        .backtraces(true)
        .build()
        .unwrap();
    let lease = tracker.lease();
    let backtrace = tracker.snapshot().leases[0].backtrace.clone().unwrap();
    assert!(
        backtrace.contains("backtraces_when_asked_appear_in_snapshots_and_messages"),
        "{backtrace}"
    );
    let message =
        panic_message(catch_unwind(AssertUnwindSafe(|| assert_no_leases(&tracker))).unwrap_err());
    assert!(message.lines().count() > 3, "{message}");
    assert!(
        message.contains("\n    ") && message.contains("backtraces_when_asked"),
        "{message}"
    );

    // The leak report carries it too.
    let (logs, _logging) = Logs::capture();
    let reporting = LeaseTracker::builder("bt-report")
        .backtraces(true)
        .leak_threshold(Some(Duration::from_millis(1)))
        .build()
        .unwrap();
    let leaked = reporting.lease();
    while leaked.age() <= Duration::from_millis(1) {
        std::hint::spin_loop();
    }
    assert_eq!(reporting.check_leaks(), 1);
    let report = logs.text();
    assert!(report.contains("possible leak: lease #1"), "{report}");
    assert!(report.contains("backtrace="), "{report}");
    assert!(report.contains("backtraces_when_asked"), "{report}");
    drop((lease, leaked));
}

#[test]
fn guards_and_trackers_cross_threads() {
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<LeaseTracker>();
    send_sync::<conn_hygiene::lease::Lease>();
    send_sync::<conn_hygiene::lease::Leased<String>>();
    send_sync::<conn_hygiene::lease::LeaseSnapshot>();
}

#[tokio::test(start_paused = true)]
async fn the_detector_ends_with_the_last_tracker_clone_even_with_leases_out() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let before = metrics.num_alive_tasks();
    let tracker = LeaseTracker::new("short-lived");
    let clone = tracker.clone();
    let lease = tracker.lease();
    assert_eq!(metrics.num_alive_tasks(), before + 1, "detector started");
    let _second = clone.lease();
    assert_eq!(metrics.num_alive_tasks(), before + 1, "only one detector");
    drop(tracker);
    sleep(Duration::from_secs(60)).await;
    assert_eq!(metrics.num_alive_tasks(), before + 1, "a clone is left");
    drop(clone);
    tokio::task::yield_now().await;
    assert_eq!(metrics.num_alive_tasks(), before, "detector gone");
    assert_eq!(lease.age(), Duration::from_secs(60));
    drop(lease); // returning a lease after its tracker is gone is fine
}

#[test]
fn a_detector_lost_with_its_runtime_is_restarted_in_the_next_one() {
    let tracker = LeaseTracker::builder("rt")
        .leak_threshold(Some(Duration::from_secs(10)))
        .build()
        .unwrap();
    let paused_runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap()
    };
    let first = paused_runtime();
    let early = first.block_on(async { tracker.lease() });
    drop(first); // the detector task is dropped with its runtime

    let second = paused_runtime();
    second.block_on(async {
        let late = tracker.lease();
        sleep(Duration::from_secs(16)).await;
        // Detected by the new task: the late lease is 16 s old on this runtime's clock.
        assert!(tracker.totals().leaks_detected >= 1);
        drop(late);
    });
    drop(early);
}

#[test]
fn a_runtime_without_timers_falls_back_to_check_leaks() {
    let tracker = LeaseTracker::builder("no-timer")
        .leak_threshold(Some(Duration::from_millis(1)))
        .build()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (logs, _logging) = Logs::capture();
    let lease = runtime.block_on(async {
        let first = tracker.lease();
        // Let the detector run (and find no timer) once; later leases must not start another.
        tokio::task::yield_now().await;
        for _ in 0..3 {
            drop(tracker.lease());
            tokio::task::yield_now().await;
        }
        first
    });
    assert_eq!(
        logs.lines_containing("has no timer").len(),
        1,
        "{}",
        logs.text()
    );
    while lease.age() <= Duration::from_millis(1) {
        std::hint::spin_loop();
    }
    assert_eq!(tracker.check_leaks(), 1);
    drop(lease);
}

#[test]
fn invalid_settings_are_refused_by_name() {
    let err = LeaseTracker::builder("x")
        .leak_threshold(Some(Duration::ZERO))
        .build()
        .unwrap_err();
    assert_eq!(
        err,
        LeaseConfigError::LeakThreshold {
            value: Duration::ZERO
        }
    );
    assert!(err
        .to_string()
        .contains("leak_threshold = 0ns: expected at least 1ms"));
    let err = LeaseTracker::builder("x")
        .max_tracked(0)
        .build()
        .unwrap_err();
    assert_eq!(err, LeaseConfigError::MaxTracked { value: 0 });
    assert_eq!(
        err.to_string(),
        "invalid lease tracker: max_tracked = 0: expected at least 1"
    );
    let tracker = LeaseTracker::new("defaults");
    assert_eq!(tracker.leak_threshold(), Some(Duration::from_secs(30)));
    assert_eq!(tracker.pool(), "defaults");
    assert!(format!("{tracker:?}").contains("max_tracked: 65536"));
}
