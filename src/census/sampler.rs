//! The background sampler, its builder and its handle.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use conn_hygiene_census::findings::Thresholds;
use conn_hygiene_census::ProcRoot;
use tokio::sync::watch;

use super::attribution::{AttributionSource, Claim};
use super::export::CensusMetrics;
use super::sample::{Core, CoreConfig};
use super::snapshot::CensusSnapshot;
#[cfg(feature = "client")]
use crate::client::ClientView;
#[cfg(feature = "server")]
use crate::server::ConnectionRegistry;

/// Shortest tick interval accepted.
const MIN_INTERVAL: Duration = Duration::from_millis(1);

/// Configures a [`Sampler`]. Every setter names its default.
#[derive(Debug, Clone)]
pub struct SamplerBuilder {
    interval: Duration,
    walk_every: u32,
    thresholds: Thresholds,
    sources: Vec<Arc<dyn AttributionSource>>,
    proc_root: Option<PathBuf>,
    pid: Option<u32>,
}

impl Default for SamplerBuilder {
    fn default() -> Self {
        SamplerBuilder {
            interval: Duration::from_secs(5),
            walk_every: 1,
            thresholds: Thresholds::default(),
            sources: Vec::new(),
            proc_root: None,
            pid: None,
        }
    }
}

impl SamplerBuilder {
    /// Time between ticks; the counters tier runs on every tick. Default: 5 s. At least 1 ms:
    /// [`spawn`](Self::spawn) refuses less.
    pub fn interval(mut self, d: Duration) -> Self {
        self.interval = d;
        self
    }

    /// Walk the whole socket table every `n` ticks, at least 1 ([`spawn`](Self::spawn) refuses
    /// 0). Default: 1.
    ///
    /// The period stretches when walks are expensive: a walk should cost at most 5 % of the
    /// interval on average, so after each walk the period becomes
    /// `max(n, ⌈walk time ÷ (interval × 5 %)⌉)` ticks, at most `64 × n`, and shrinks back
    /// when walks get cheaper. The period in force is in [`SampleCost::walk_every`] and in
    /// `conn_hygiene_census_walk_period_ticks`.
    ///
    /// [`SampleCost::walk_every`]: super::SampleCost::walk_every
    pub fn walk_every(mut self, n: u32) -> Self {
        self.walk_every = n;
        self
    }

    /// The thresholds findings are judged against. Default: [`Thresholds::default`].
    pub fn thresholds(mut self, t: Thresholds) -> Self {
        self.thresholds = t;
        self
    }

    /// A source of listeners and upstreams whose sockets are ours, attributed to them by
    /// name: see [`AttributionSource`]. May be called several times; listeners keep the order
    /// given, upstreams of one name are merged. Default: none.
    pub fn source(mut self, source: impl AttributionSource + 'static) -> Self {
        self.sources.push(Arc::new(source));
        self
    }

    /// A listener whose sockets are ours: `TIME_WAIT`, half-open and not yet accepted
    /// connections on its address are attributed to it by name. May be called several times.
    /// Default: none.
    #[cfg(feature = "server")]
    #[cfg_attr(docsrs, doc(cfg(feature = "server")))]
    pub fn listener(self, registry: &ConnectionRegistry) -> Self {
        self.source(registry.clone())
    }

    /// A client whose upstreams are ours: `TIME_WAIT` toward their destinations, port use
    /// and `CLOSE_WAIT` with lease sites are attributed to them by name. May be called several
    /// times. Default: none.
    #[cfg(feature = "client")]
    #[cfg_attr(docsrs, doc(cfg(feature = "client")))]
    pub fn client(self, view: ClientView) -> Self {
        self.source(view)
    }

    /// Where the proc file system is. Default: `/proc`, with the socket table read through
    /// netlink `sock_diag` (falling back to `/proc/net/tcp`). Any other root is read for
    /// everything, the socket tables included, never this namespace's netlink: a fixture
    /// directory in tests, or another namespace's `/proc`.
    pub fn proc_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.proc_root = Some(root.into());
        self
    }

    /// The process whose sockets are ours. Default: this process. For fixtures under
    /// [`proc_root`](Self::proc_root).
    pub fn pid(mut self, pid: u32) -> Self {
        self.pid = Some(pid);
        self
    }

    fn core(self) -> Core {
        Core::new(CoreConfig {
            root: self.proc_root.map(ProcRoot::new),
            pid: self.pid,
            thresholds: self.thresholds,
            sources: self.sources,
            interval: self.interval,
            walk_every: self.walk_every,
        })
    }

    /// Takes one full sample now, on this thread, without a runtime and without metrics (the
    /// tick settings do not apply).
    pub fn sample_once(self) -> CensusSnapshot {
        self.core().sample(true)
    }

    /// The settings that cannot work, as [`spawn`](Self::spawn) finds them.
    fn validate(&self) -> Result<(), SamplerConfigError> {
        if self.interval < MIN_INTERVAL {
            return Err(SamplerConfigError::Interval {
                value: self.interval,
            });
        }
        if self.walk_every == 0 {
            return Err(SamplerConfigError::WalkEvery { value: 0 });
        }
        Ok(())
    }

    /// Starts the sampler on the current tokio runtime and takes the first (full) sample at
    /// once. Metric handles are resolved here, through the recorder in force now (with none
    /// installed yet, they are bound to the one installed later).
    ///
    /// Without a runtime the sampler does not run (one warning says so); the handle still
    /// answers [`Sampler::latest`] with `None`.
    ///
    /// # Errors
    ///
    /// A setting that cannot work: an interval below 1 ms, a walk every 0 ticks.
    pub fn spawn(self) -> Result<Sampler, SamplerConfigError> {
        self.validate()?;
        let interval = self.interval;
        let claims: Vec<Claim> = self.sources.iter().flat_map(|s| s.claims()).collect();
        let metrics = crate::metrics::resolve(|| CensusMetrics::new(&claims));
        let engine = Arc::new(Engine {
            state: Mutex::new((self.core(), metrics)),
            latest: watch::Sender::new(None),
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let (done_tx, done_rx) = watch::channel(());
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(run(engine.clone(), interval, stop_rx, done_tx));
            }
            Err(e) => {
                tracing::warn!("connection census sampler not started: no tokio runtime ({e})");
                drop(done_tx);
            }
        }
        Ok(Sampler {
            inner: Arc::new(HandleInner {
                engine,
                _stop: stop_tx,
                done: done_rx,
            }),
        })
    }
}

/// A [`SamplerBuilder`] setting that cannot work, found by [`spawn`](SamplerBuilder::spawn).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SamplerConfigError {
    /// `interval` below 1 ms.
    Interval {
        /// The rejected value.
        value: Duration,
    },
    /// `walk_every` of 0.
    WalkEvery {
        /// The rejected value.
        value: u32,
    },
}

impl std::fmt::Display for SamplerConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Interval { value } => write!(
                f,
                "invalid sampler: interval = {value:?}: expected at least 1ms"
            ),
            Self::WalkEvery { value } => write!(
                f,
                "invalid sampler: walk_every = {value}: expected at least 1"
            ),
        }
    }
}

impl std::error::Error for SamplerConfigError {}

/// What the task and the handles share.
#[derive(Debug)]
struct Engine {
    state: Mutex<(Core, CensusMetrics)>,
    latest: watch::Sender<Option<Arc<CensusSnapshot>>>,
}

impl Engine {
    /// One sample: a full one when `force`, else as the walk period says.
    fn sample(&self, force: bool) -> Arc<CensusSnapshot> {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (core, metrics) = &mut *guard;
        let snap = Arc::new(core.tick(force));
        metrics.record(&snap);
        drop(guard);
        // The gauges counted from live state (a listener's connections by state) follow the
        // sampler's ticks, so that a recorder scraped by other means sees them move.
        crate::metrics::collect();
        self.latest.send_replace(Some(snap.clone()));
        snap
    }
}

async fn run(
    engine: Arc<Engine>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
    _done: watch::Sender<()>,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut panicked = false;
    let mut samples = 0u64;
    loop {
        tokio::select! {
            biased;
            changed = stop.changed() => {
                if changed.is_err() && samples < 2 {
                    // Dropped, not stopped, before a second sample: almost surely
                    // `let _ = sampler.spawn()`, which would otherwise sample nothing silently.
                    tracing::warn!(
                        "connection census sampler stopped: its handle was dropped right after \
                         spawn (keep it: `let _sampler = ...spawn()`, not `let _ = ...`)"
                    );
                }
                if changed.is_err() || *stop.borrow() {
                    break;
                }
                continue;
            }
            _ = ticks.tick() => {}
        }
        samples += 1;
        let e = engine.clone();
        // The walk makes system calls that take milliseconds on big tables: off the runtime.
        if let Err(err) = tokio::task::spawn_blocking(move || e.sample(false)).await {
            if !panicked {
                panicked = true;
                tracing::error!("connection census sample failed, sampler keeps ticking: {err}");
            }
        }
    }
}

#[derive(Debug)]
struct HandleInner {
    engine: Arc<Engine>,
    /// Dropped with the last handle: the task sees it and ends.
    _stop: watch::Sender<bool>,
    done: watch::Receiver<()>,
}

/// A census taken in the background: cheap counters every tick, a full walk of the socket
/// table every few ticks, attributed to the listeners and upstreams of the
/// [sources](AttributionSource) it was given, judged, and exported as metrics. See the
/// [module docs](super). Built by [`Sampler::builder`] and started by
/// [`SamplerBuilder::spawn`].
///
/// Cheap to clone; when the last clone is dropped the background task stops at its next
/// wake-up, so keep one for as long as sampling should go on: bind it
/// (`let _sampler = builder.spawn()?;`), since `let _ = builder.spawn()?;` drops it at once (a
/// sampler dropped before its second sample logs a warning).
#[derive(Debug, Clone)]
#[must_use = "the sampler stops when its last handle is dropped: bind it with `let _sampler = ...`"]
pub struct Sampler {
    inner: Arc<HandleInner>,
}

impl Sampler {
    /// A builder with the defaults: a tick every 5 s, a full walk every tick, the default
    /// [`Thresholds`], no attribution source, `/proc`.
    pub fn builder() -> SamplerBuilder {
        SamplerBuilder::default()
    }

    /// The latest sample, if one was taken.
    pub fn latest(&self) -> Option<Arc<CensusSnapshot>> {
        self.inner.engine.latest.borrow().clone()
    }

    /// Takes a full sample now (off the runtime's worker threads), publishes it as the latest,
    /// and returns it. It restarts the walk period.
    pub async fn sample_now(&self) -> Arc<CensusSnapshot> {
        let e = self.inner.engine.clone();
        match tokio::task::spawn_blocking(move || e.sample(true)).await {
            Ok(snap) => snap,
            Err(err) => {
                tracing::error!("connection census sample failed: {err}");
                self.latest().unwrap_or_default()
            }
        }
    }

    /// Waits for the next sample published after this call; `None` once the sampler stopped.
    pub async fn changed(&self) -> Option<Arc<CensusSnapshot>> {
        let mut rx = self.inner.engine.latest.subscribe();
        let mut done = self.inner.done.clone();
        tokio::select! {
            r = rx.changed() => r.ok().and_then(|()| rx.borrow_and_update().clone()),
            _ = done.changed() => None,
        }
    }

    /// Stops the background task; the handle keeps answering [`latest`](Self::latest) and
    /// [`sample_now`](Self::sample_now).
    pub fn stop(&self) {
        self.inner._stop.send_replace(true);
    }

    /// A watch on the background task that does not keep it running.
    pub fn task(&self) -> SamplerTask {
        SamplerTask {
            done: self.inner.done.clone(),
        }
    }
}

/// Tells whether a sampler's background task has ended. Holding one does not keep the
/// sampler running.
#[derive(Debug, Clone)]
pub struct SamplerTask {
    done: watch::Receiver<()>,
}

impl SamplerTask {
    /// Whether the task has ended (stopped, its last handle dropped, or its runtime gone).
    pub fn is_finished(&self) -> bool {
        self.done.has_changed().is_err()
    }

    /// Waits until the task has ended.
    pub async fn finished(mut self) {
        while self.done.changed().await.is_ok() {}
    }
}
