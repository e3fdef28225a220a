//! The census sampler's timing and failure modes under paused tokio time, on the census
//! crate's recorded `/proc` fixture (so every sample reads the same files).
//!
//! - Ticks come at the interval, the counters tier every tick, the full walk every n ticks.
//! - Dropping the last handle ends the task; `stop()` does too.
//! - A proc root that does not exist: one warning, then counters-tier snapshots that keep
//!   coming with the degraded reason, and no panic.
//!
//! The sampler's metrics are tested in `census_metrics.rs`.
#![cfg(all(feature = "census", feature = "server", feature = "client"))]

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use conn_hygiene::census::{Check, Severity};
use conn_hygiene::census::{DegradedPart, Sampler, Tier};
use tokio::time::Instant;

const FIXTURE_PID: u32 = 4242;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("crates/conn-hygiene-census/tests/fixtures/proc")
}

/// Every log line of this test binary (the sampler logs from blocking threads, so the
/// subscriber has to be global).
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = Shared(buf.clone());
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
        buf
    })
}

#[derive(Clone)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn ticks_at_the_interval_and_walks_every_n_ticks() {
    let census = Sampler::builder()
        .interval(Duration::from_secs(5))
        .walk_every(3)
        .proc_root(fixture())
        .pid(FIXTURE_PID)
        .spawn()
        .expect("valid sampler settings");
    let start = Instant::now();
    for k in 0..7u64 {
        let snap = census.changed().await.expect("a sample per tick");
        assert_eq!(snap.seq, k);
        assert_eq!(start.elapsed(), Duration::from_secs(5 * k), "tick {k}");
        let want = if k % 3 == 0 {
            Tier::Full
        } else {
            Tier::Counters
        };
        assert_eq!(snap.tier, want, "tick {k}");
        assert_eq!(snap.cost.walk.is_some(), want == Tier::Full, "tick {k}");
        assert_eq!(
            snap.cost.walk_every, 3,
            "a fixture walk is far below 5 % of 5 s"
        );
        // The fixture's sockets, on every tick (counters ticks keep the last walk's).
        assert_eq!(snap.pid, FIXTURE_PID);
        assert!(snap.host.total() > 0, "{:?}", snap.host);
        assert!(snap.walked_at.is_some());
        assert!(snap.counters.sockstat.is_some() && snap.counters.tcp.is_some());
        assert!(snap.degraded.is_none(), "{:?}", snap.degraded);
    }
    assert_eq!(census.latest().unwrap().seq, 6);

    // A forced sample is full and restarts the period: the next full walk is 3 ticks later.
    let forced = census.sample_now().await;
    assert_eq!((forced.seq, forced.tier), (7, Tier::Full));
    let tiers: Vec<Tier> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(census.changed().await.unwrap().tier);
        }
        v
    };
    assert_eq!(tiers, [Tier::Counters, Tier::Counters, Tier::Full]);

    // Dropping the last handle ends the task.
    let task = census.task();
    let clone = census.clone();
    drop(census);
    assert!(!task.is_finished(), "a clone still holds it");
    drop(clone);
    tokio::time::timeout(Duration::from_secs(60), task.clone().finished())
        .await
        .expect("the task ends once the last handle is gone");
    assert!(task.is_finished());
}

#[tokio::test(start_paused = true)]
async fn stop_ends_the_task_and_the_handle_still_answers() {
    let census = Sampler::builder()
        .proc_root(fixture())
        .pid(FIXTURE_PID)
        .spawn()
        .expect("valid sampler settings");
    let first = census.changed().await.unwrap();
    census.stop();
    census.task().finished().await;
    assert!(census.changed().await.is_none(), "no sample after stop");
    assert_eq!(census.latest().unwrap().seq, first.seq);
    assert_eq!(census.sample_now().await.seq, first.seq + 1);
}

#[tokio::test(start_paused = true)]
async fn a_missing_proc_root_degrades_with_one_warning() {
    let logs = logs();
    let missing = std::env::temp_dir().join(format!(
        "conn-hygiene-census-missing-{}",
        std::process::id()
    ));
    assert!(!missing.exists());
    let census = Sampler::builder()
        .interval(Duration::from_secs(1))
        .walk_every(2)
        .proc_root(&missing)
        .spawn()
        .expect("valid sampler settings");
    for k in 0..6u64 {
        let snap = census.changed().await.expect("samples keep coming");
        assert_eq!(snap.seq, k);
        let tier = if k % 2 == 0 {
            Tier::Full
        } else {
            Tier::Counters
        };
        assert_eq!(snap.tier, tier);
        let d = snap.degraded.as_ref().expect("degraded");
        for part in [
            DegradedPart::Counters,
            DegradedPart::Walk,
            DegradedPart::Process,
        ] {
            assert!(d.has(part), "{part:?} in {d:?}");
        }
        assert!(d.reason.contains(missing.to_str().unwrap()), "{}", d.reason);
        assert!(snap.walked_at.is_none() && snap.host.total() == 0);
        assert!(snap.counters.sockstat.is_none());
        // What needs the walk is unknown, not OK.
        let tw = snap.report.of(Check::TimeWait).next().unwrap();
        assert_eq!(tw.severity, Severity::Unknown);
    }
    let text = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    let warnings: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("WARN") && l.contains(missing.to_str().unwrap()))
        .collect();
    assert_eq!(warnings.len(), 1, "{text}");
    assert!(
        warnings[0].contains("connection census degraded (counters, walk, process)"),
        "{}",
        warnings[0]
    );
}

#[test]
fn sample_once_without_a_runtime() {
    let snap = Sampler::builder()
        .proc_root(fixture())
        .pid(FIXTURE_PID)
        .sample_once();
    assert_eq!(snap.tier, Tier::Full);
    assert!(snap.host.total() > 0);
    // No runtime: spawning does not panic, the handle answers None.
    let handle = Sampler::builder()
        .proc_root(fixture())
        .spawn()
        .expect("valid sampler settings");
    assert!(handle.latest().is_none());
    assert!(handle.task().is_finished());
}

#[tokio::test(start_paused = true)]
async fn a_handle_dropped_at_once_is_not_silent() {
    let logs = logs();
    let census = Sampler::builder()
        .proc_root(fixture())
        .pid(FIXTURE_PID)
        .spawn()
        .expect("valid sampler settings");
    let task = census.task();
    // What `let _ = Sampler::builder()...spawn();` does.
    drop(census);
    task.finished().await;
    let text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(
        text.contains("its handle was dropped right after spawn"),
        "{text}"
    );
}
