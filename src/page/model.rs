//! What the page shows, gathered from the sources at one moment: plain data that renders as the
//! HTML page and serializes as its JSON twin.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::history::HistoryData;
use super::Sources;
use crate::census::{CensusSnapshot, Owner, PortHeadroom, TcpState, UpstreamCensus};
use crate::server::ConnectionRegistry;

/// Leases listed one by one, oldest first; more are only counted.
pub(crate) const MAX_LISTED_LEASES: usize = 100;

/// The whole page.
#[derive(Debug, Serialize)]
pub(crate) struct PageData {
    pub(crate) pid: u32,
    /// Unix time the page was put together, in seconds.
    pub(crate) generated_at: f64,
    /// The worst severity of the findings (`OK` before the first sample).
    pub(crate) status: &'static str,
    /// The census sample the kernel's figures come from; `None` before the first one.
    pub(crate) sample: Option<SampleInfo>,
    /// Every TCP socket of the network namespace, by state (non-zero states only).
    pub(crate) host: BTreeMap<&'static str, u64>,
    /// The TCP sockets this process holds, by state (non-zero states only).
    pub(crate) process: BTreeMap<&'static str, u64>,
    pub(crate) listeners: Vec<ListenerRow>,
    pub(crate) upstreams: Vec<UpstreamRow>,
    pub(crate) pools: Vec<PoolRow>,
    /// Leases held longer than `old_lease_after_seconds`, oldest first.
    pub(crate) old_leases: Vec<LeaseRow>,
    pub(crate) old_leases_unlisted: u64,
    pub(crate) old_lease_after_seconds: f64,
    pub(crate) close_wait: Vec<CloseWaitRow>,
    pub(crate) close_wait_unlisted: u64,
    pub(crate) findings: Vec<FindingRow>,
    pub(crate) history: HistoryData,
    /// Seconds between the page's own refreshes.
    pub(crate) refresh_seconds: u64,
}

#[derive(Debug, Serialize)]
pub(crate) struct SampleInfo {
    pub(crate) seq: u64,
    pub(crate) tier: &'static str,
    pub(crate) taken_at: Option<f64>,
    pub(crate) walked_at: Option<f64>,
    /// Why part of the census could not be read, when it could not.
    pub(crate) degraded: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct ListenerRow {
    pub(crate) name: String,
    pub(crate) addr: String,
    pub(crate) backlog_requested: Option<u32>,
    pub(crate) backlog_effective: Option<u32>,
    pub(crate) somaxconn: Option<u32>,
    /// Live connections, tracked or not.
    pub(crate) live: usize,
    /// Tracked live connections by the registry's state.
    pub(crate) connections: BTreeMap<&'static str, usize>,
    pub(crate) opened: u64,
    pub(crate) closed: u64,
    pub(crate) aborted: u64,
    pub(crate) requests_unanswered: u64,
    pub(crate) shutdown_cut: u64,
    pub(crate) accept_errors: u64,
    /// Closes by who sent the first FIN (non-zero only).
    pub(crate) closed_by: BTreeMap<&'static str, u64>,
    /// Closes by reason (non-zero only).
    pub(crate) closed_for: BTreeMap<&'static str, u64>,
    /// What the kernel holds on its address, from the last walk.
    pub(crate) kernel: Option<ListenerKernel>,
}

#[derive(Debug, Serialize)]
pub(crate) struct ListenerKernel {
    pub(crate) accept_queue_len: Option<u32>,
    pub(crate) accept_queue_max: Option<u32>,
    pub(crate) time_wait: u64,
    pub(crate) syn_recv: u64,
    pub(crate) not_accepted: u64,
    pub(crate) close_wait: u64,
}

#[derive(Debug, Serialize)]
pub(crate) struct UpstreamRow {
    pub(crate) name: String,
    pub(crate) authority: String,
    pub(crate) open: usize,
    pub(crate) idle: usize,
    pub(crate) leased: usize,
    pub(crate) pending: usize,
    pub(crate) connects: u64,
    pub(crate) connect_errors: u64,
    pub(crate) closed: u64,
    pub(crate) retries: u64,
    pub(crate) timeouts: u64,
    pub(crate) closed_by: BTreeMap<&'static str, u64>,
    pub(crate) closed_for: BTreeMap<&'static str, u64>,
    pub(crate) leases_outstanding: u64,
    pub(crate) leaks_detected: u64,
    pub(crate) kernel: Option<UpstreamKernel>,
}

/// What the kernel holds toward an upstream or a pool's destinations, from the last walk.
#[derive(Debug, Serialize)]
pub(crate) struct UpstreamKernel {
    pub(crate) time_wait: u64,
    pub(crate) close_wait: u64,
    /// The destination and source pair with the least headroom.
    pub(crate) ports: Option<PortsRow>,
}

#[derive(Debug, Serialize)]
pub(crate) struct PortsRow {
    pub(crate) used: u64,
    pub(crate) time_wait: u64,
    pub(crate) headroom: u64,
    pub(crate) range: u64,
    pub(crate) headroom_ratio: f64,
    pub(crate) rate_per_second: Option<f64>,
    pub(crate) seconds_to_exhaustion: Option<f64>,
}

#[derive(Debug, Serialize)]
pub(crate) struct PoolRow {
    pub(crate) name: String,
    pub(crate) authority: Option<String>,
    pub(crate) size: Option<u64>,
    pub(crate) idle: Option<u64>,
    pub(crate) max_size: Option<u64>,
    pub(crate) waiters: Option<u64>,
    pub(crate) timeouts: Option<u64>,
    pub(crate) checked_out: usize,
    pub(crate) leases_outstanding: u64,
    pub(crate) leaks_detected: u64,
    pub(crate) kernel: Option<UpstreamKernel>,
}

#[derive(Debug, Serialize)]
pub(crate) struct LeaseRow {
    /// The pool, upstream or tracker the lease belongs to.
    pub(crate) pool: String,
    pub(crate) id: u64,
    /// `file:line:column` of the line that took it.
    pub(crate) site: String,
    pub(crate) age_seconds: f64,
    pub(crate) leaked: bool,
    pub(crate) awaiting: bool,
}

#[derive(Debug, Serialize)]
pub(crate) struct CloseWaitRow {
    pub(crate) local: String,
    pub(crate) remote: String,
    /// `listener`, `upstream` or `untracked`.
    pub(crate) owner_kind: &'static str,
    pub(crate) owner: Option<String>,
    pub(crate) connection_id: Option<u64>,
    /// Where the request holding it was made, while it is leased.
    pub(crate) lease_site: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct FindingRow {
    pub(crate) severity: &'static str,
    pub(crate) check: &'static str,
    pub(crate) subject: Option<String>,
    pub(crate) message: String,
    pub(crate) recommendation: String,
}

pub(crate) fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn states(counts: &crate::census::StateCounts) -> BTreeMap<&'static str, u64> {
    counts
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(s, n)| (s.as_str(), n))
        .collect()
}

fn nonzero<K: Copy>(
    keys: impl IntoIterator<Item = K>,
    name: impl Fn(K) -> &'static str,
    count: impl Fn(K) -> u64,
) -> BTreeMap<&'static str, u64> {
    keys.into_iter()
        .filter_map(|k| {
            let n = count(k);
            (n > 0).then(|| (name(k), n))
        })
        .collect()
}

#[cfg_attr(
    not(any(
        feature = "client",
        feature = "deadpool",
        feature = "bb8",
        feature = "sqlx",
        feature = "redis"
    )),
    allow(dead_code)
)]
fn ports(p: &PortHeadroom) -> PortsRow {
    PortsRow {
        used: p.used,
        time_wait: p.time_wait,
        headroom: p.headroom,
        range: p.range_size,
        headroom_ratio: p.ratio(),
        rate_per_second: p.rate_per_second,
        seconds_to_exhaustion: p.time_to_exhaustion.map(|d| d.as_secs_f64()),
    }
}

#[cfg_attr(
    not(any(
        feature = "client",
        feature = "deadpool",
        feature = "bb8",
        feature = "sqlx",
        feature = "redis"
    )),
    allow(dead_code)
)]
fn upstream_kernel(u: &UpstreamCensus) -> UpstreamKernel {
    UpstreamKernel {
        time_wait: u.time_wait,
        close_wait: u.close_wait,
        // Worst headroom first.
        ports: u.ports.first().map(ports),
    }
}

fn listener_row(registry: &ConnectionRegistry, census: Option<&CensusSnapshot>) -> ListenerRow {
    use crate::server::{CloseReason, Closer};
    let totals = registry.totals();
    let backlog = registry.backlog();
    ListenerRow {
        name: registry.name().to_owned(),
        addr: registry.local_addr().to_string(),
        backlog_requested: backlog.map(|b| b.requested),
        backlog_effective: backlog.map(|b| b.effective),
        somaxconn: backlog.and_then(|b| b.somaxconn),
        live: registry.live(),
        connections: registry
            .live_by_state()
            .into_iter()
            .map(|(s, n)| (s.as_str(), n))
            .collect(),
        opened: totals.opened,
        closed: totals.closed,
        aborted: totals.aborted,
        requests_unanswered: totals.requests_unanswered,
        shutdown_cut: totals.shutdown_cut,
        accept_errors: totals.accept_errors,
        closed_by: nonzero(Closer::ALL, Closer::as_str, |c| totals.closed_by(c)),
        closed_for: nonzero(CloseReason::ALL, CloseReason::as_str, |r| {
            totals.closed_for(r)
        }),
        kernel: census
            .and_then(|c| c.listener(registry.name()))
            .map(|l| ListenerKernel {
                accept_queue_len: l.accept_queue_len,
                accept_queue_max: l.accept_queue_max,
                time_wait: l.time_wait,
                syn_recv: l.syn_recv,
                not_accepted: l.not_accepted,
                close_wait: l.close_wait,
            }),
    }
}

#[cfg(feature = "client")]
fn upstream_rows(
    view: &crate::client::ClientView,
    census: Option<&CensusSnapshot>,
    leases: &mut LeaseList,
) -> Vec<UpstreamRow> {
    use crate::client::CloseReason;
    use crate::close::Closer;
    view.summaries()
        .into_iter()
        .map(|u| {
            let t = &u.totals;
            leases.add(&u.leases);
            UpstreamRow {
                kernel: census
                    .and_then(|c| c.upstream(&u.name))
                    .map(upstream_kernel),
                closed_by: nonzero(Closer::ALL, Closer::as_str, |c| t.closed_by(c)),
                closed_for: nonzero(CloseReason::ALL, CloseReason::as_str, |r| t.closed_for(r)),
                connects: t.connects,
                connect_errors: t.connect_errors,
                closed: t.closed,
                retries: t.retries,
                timeouts: t.timeouts,
                leases_outstanding: u.leases.outstanding(),
                leaks_detected: u.leases.totals.leaks_detected,
                open: u.open,
                idle: u.idle,
                leased: u.leased,
                pending: u.pending,
                name: u.name,
                authority: u.authority,
            }
        })
        .collect()
}

#[cfg(any(
    feature = "deadpool",
    feature = "bb8",
    feature = "sqlx",
    feature = "redis"
))]
fn pool_row(
    view: &crate::pools::PoolView,
    census: Option<&CensusSnapshot>,
    leases: &mut LeaseList,
) -> PoolRow {
    let snapshot = view.tracker().snapshot();
    leases.add(&snapshot);
    let stats = view.stats();
    PoolRow {
        name: view.name().to_owned(),
        authority: view.authority(),
        size: stats.map(|s| s.size),
        idle: stats.map(|s| s.idle),
        max_size: stats.map(|s| s.max_size),
        waiters: stats.map(|s| s.waiters),
        timeouts: stats.and_then(|s| s.timeouts),
        checked_out: view.checkouts().len(),
        leases_outstanding: snapshot.outstanding(),
        leaks_detected: snapshot.totals.leaks_detected,
        kernel: census
            .and_then(|c| c.upstream(view.name()))
            .map(upstream_kernel),
    }
}

/// The old leases of every tracker, gathered as the trackers are visited.
#[cfg_attr(not(feature = "lease"), allow(dead_code))]
struct LeaseList {
    older_than: Duration,
    rows: Vec<LeaseRow>,
}

impl LeaseList {
    #[cfg(feature = "lease")]
    fn add(&mut self, snapshot: &crate::lease::LeaseSnapshot) {
        self.rows
            .extend(snapshot.older_than(self.older_than).map(|l| LeaseRow {
                pool: snapshot.pool.clone(),
                id: l.id,
                site: l.site.to_string(),
                age_seconds: l.age.as_secs_f64(),
                leaked: l.leaked,
                awaiting: l.awaiting,
            }));
    }

    /// The oldest [`MAX_LISTED_LEASES`], and how many more there are.
    fn finish(mut self) -> (Vec<LeaseRow>, u64) {
        self.rows
            .sort_by(|a, b| b.age_seconds.total_cmp(&a.age_seconds));
        let unlisted = self.rows.len().saturating_sub(MAX_LISTED_LEASES) as u64;
        self.rows.truncate(MAX_LISTED_LEASES);
        (self.rows, unlisted)
    }
}

/// Leases outstanding over every tracker the sources hold, for the history.
pub(crate) fn leases_outstanding(sources: &Sources) -> u64 {
    #[allow(unused_mut)]
    let mut total = 0;
    #[cfg(feature = "client")]
    for view in &sources.clients {
        total += view
            .lease_trackers()
            .iter()
            .map(|t| t.totals().outstanding())
            .sum::<u64>();
    }
    #[cfg(any(
        feature = "deadpool",
        feature = "bb8",
        feature = "sqlx",
        feature = "redis"
    ))]
    for view in &sources.pools {
        total += view.tracker().totals().outstanding();
    }
    #[cfg(feature = "lease")]
    for tracker in &sources.trackers {
        total += tracker.totals().outstanding();
    }
    let _ = sources;
    total
}

/// Puts the page together: the live figures of every source now, the kernel's from `census`.
pub(crate) fn gather(
    sources: &Sources,
    census: Option<&CensusSnapshot>,
    history: HistoryData,
    refresh: Duration,
) -> PageData {
    #[allow(unused_mut)]
    let mut leases = LeaseList {
        older_than: sources.old_lease_after,
        rows: Vec::new(),
    };
    let listeners = sources
        .listeners
        .iter()
        .map(|r| listener_row(r, census))
        .collect();
    #[allow(unused_mut)]
    let mut upstreams = Vec::new();
    #[cfg(feature = "client")]
    for view in &sources.clients {
        upstreams.extend(upstream_rows(view, census, &mut leases));
    }
    #[allow(unused_mut)]
    let mut pools = Vec::new();
    #[cfg(any(
        feature = "deadpool",
        feature = "bb8",
        feature = "sqlx",
        feature = "redis"
    ))]
    for view in &sources.pools {
        pools.push(pool_row(view, census, &mut leases));
    }
    #[cfg(feature = "lease")]
    for tracker in &sources.trackers {
        leases.add(&tracker.snapshot());
    }
    let (old_leases, old_leases_unlisted) = leases.finish();
    let status = census.map_or("OK", |c| c.report.status().as_str());
    PageData {
        pid: std::process::id(),
        generated_at: unix_seconds(SystemTime::now()),
        status,
        sample: census.map(|c| SampleInfo {
            seq: c.seq,
            tier: c.tier.as_str(),
            taken_at: c.taken_at.map(unix_seconds),
            walked_at: c.walked_at.map(unix_seconds),
            degraded: c.degraded.as_ref().map(|d| d.reason.clone()),
        }),
        host: census.map(|c| states(&c.host)).unwrap_or_default(),
        process: census.map(|c| states(&c.process)).unwrap_or_default(),
        listeners,
        upstreams,
        pools,
        old_leases,
        old_leases_unlisted,
        old_lease_after_seconds: sources.old_lease_after.as_secs_f64(),
        close_wait: census.map(close_wait_rows).unwrap_or_default(),
        close_wait_unlisted: census.map_or(0, |c| c.close_wait_unlisted),
        findings: census
            .map(|c| {
                c.report
                    .findings
                    .iter()
                    .map(|f| FindingRow {
                        severity: f.severity.as_str(),
                        check: f.check.as_str(),
                        subject: f.subject.clone(),
                        message: f.message.clone(),
                        recommendation: f.recommendation.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        history,
        refresh_seconds: refresh.as_secs().max(1),
    }
}

fn close_wait_rows(census: &CensusSnapshot) -> Vec<CloseWaitRow> {
    census
        .close_wait
        .iter()
        .map(|e| {
            let (owner_kind, owner) = match &e.owner {
                Owner::Listener(name) => ("listener", Some(name.clone())),
                Owner::Upstream(name) => ("upstream", Some(name.clone())),
                _ => ("untracked", None),
            };
            CloseWaitRow {
                local: e.local.to_string(),
                remote: e.remote.to_string(),
                owner_kind,
                owner,
                connection_id: e.connection_id,
                lease_site: e.lease_site.map(|s| s.to_string()),
            }
        })
        .collect()
}

/// The state names the host table shows first, in this order; the others follow.
pub(crate) const HOST_STATES_FIRST: [TcpState; 5] = [
    TcpState::Established,
    TcpState::TimeWait,
    TcpState::CloseWait,
    TcpState::SynRecv,
    TcpState::FinWait2,
];
