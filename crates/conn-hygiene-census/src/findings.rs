//! Findings: a host's TCP sockets, counters and settings judged against thresholds.
//!
//! A [`HostSample`] is plain data: the state counts, the `CLOSE_WAIT` sockets each process
//! holds, how many local ports the connections toward each destination use, the kernel
//! counters, the sysctls, descriptor and connection-tracking usage, and the listeners.
//! [`evaluate`] compares one sample (and, for the checks that need a rate, the sample taken
//! before it) against [`Thresholds`] and returns a [`Report`]: one [`Finding`] per check or
//! per offending item, each with a [`Severity`], the measured value, the threshold, a message
//! and a concrete recommendation (the sysctl line to set, or the fix in the application).
//!
//! [`sample_host`] fills a sample from the live host with one socket walk.
//!
//! The checks, by [`Check`] id, and their default thresholds:
//!
//! | check | warning | critical |
//! |---|---|---|
//! | `time_wait` | > 50 000 | > 100 000 |
//! | `close_wait` | | > 1 000 (names the process holding the most) |
//! | `close_wait_growing` | a process holds more than in the previous sample | |
//! | `syn_recv` | > 1 000 (possible SYN flood) | |
//! | `fin_wait2` | > 500 | |
//! | `local_port_headroom` | < 20 % of the port range left toward one destination | < 5 % |
//! | `listen_overflows`, `listen_drops`, `time_wait_overflow` | rose since the previous sample | |
//! | `process_fd_usage`, `system_file_nr` | > 80 % of the limit | > 95 % |
//! | `conntrack` | > 80 % of `nf_conntrack_max` | > 95 % |
//! | `listener_backlog` | accept queue capped by a `somaxconn` below 4 096 | |
//! | `accept_queue_full` | | accept queue at its maximum now |
//! | `sysctl_*` | setting works against what the sample shows | |
//!
//! Checks that compare two samples are left out when no previous sample is given.
//!
//! ```
//! use conn_hygiene_census::findings::{evaluate, Check, HostSample, Severity, Thresholds};
//! use conn_hygiene_census::TcpState;
//!
//! let mut sample = HostSample::default();
//! sample.states.set(TcpState::TimeWait, 60_000);
//! let report = evaluate(&sample, None, &Thresholds::default());
//! let tw = report.findings.iter().find(|f| f.check == Check::TimeWait).unwrap();
//! assert_eq!(tw.severity, Severity::Warning);
//! assert_eq!(tw.value.as_count(), Some(60_000));
//! assert_eq!(tw.threshold.as_count(), Some(50_000));
//! assert_eq!(report.status(), Severity::Warning);
//!
//! let strict = Thresholds::builder().time_wait(10_000, 20_000).build().unwrap();
//! assert_eq!(evaluate(&sample, None, &strict).status(), Severity::Critical);
//! assert!(Thresholds::builder().time_wait(9, 8).build().is_err());
//! ```

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;

use crate::{
    CensusError, Conntrack, FdUsage, FileNr, Listener, Source, StateCounts, Sysctls, TcpCounters,
    TcpState, Walker,
};

/// How bad a finding is. Ordered by [`Severity::rank`] for the overall status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Severity {
    /// Within the thresholds.
    #[default]
    Ok,
    /// Over a warning threshold: look into it.
    Warning,
    /// Over a critical threshold: connections are failing or about to.
    Critical,
    /// What the check needs could not be read.
    Unknown,
}

impl Severity {
    /// `OK`, `WARNING`, `CRITICAL` or `UNKNOWN`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Severity::Ok => "OK",
            Severity::Warning => "WARNING",
            Severity::Critical => "CRITICAL",
            Severity::Unknown => "UNKNOWN",
        }
    }

    /// The monitoring-plugin exit status: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
    pub const fn exit_code(self) -> u8 {
        match self {
            Severity::Ok => 0,
            Severity::Warning => 1,
            Severity::Critical => 2,
            Severity::Unknown => 3,
        }
    }

    /// Precedence in an overall status: OK 0 < UNKNOWN 1 < WARNING 2 < CRITICAL 3. A known
    /// problem outranks a check that could not be made.
    pub const fn rank(self) -> u8 {
        match self {
            Severity::Ok => 0,
            Severity::Unknown => 1,
            Severity::Warning => 2,
            Severity::Critical => 3,
        }
    }

    /// The one of `self` and `other` with the higher [`rank`](Severity::rank).
    pub const fn worst(self, other: Severity) -> Severity {
        if other.rank() > self.rank() {
            other
        } else {
            self
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a finding is about. [`Check::as_str`] is a stable snake_case id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Check {
    /// `time_wait`: sockets in `TIME_WAIT`.
    TimeWait,
    /// `close_wait`: sockets in `CLOSE_WAIT`, host-wide.
    CloseWait,
    /// `close_wait_growing`: one process's `CLOSE_WAIT` count rising between samples.
    CloseWaitGrowing,
    /// `syn_recv`: half-open connections.
    SynRecv,
    /// `fin_wait2`: connections waiting for the peer's FIN.
    FinWait2,
    /// `local_port_headroom`: local ports left toward one destination.
    LocalPortHeadroom,
    /// `listen_overflows`: `TcpExt ListenOverflows` rising.
    ListenOverflows,
    /// `listen_drops`: `TcpExt ListenDrops` rising.
    ListenDrops,
    /// `time_wait_overflow`: `TcpExt TCPTimeWaitOverflow` rising.
    TimeWaitOverflow,
    /// `process_fd_usage`: a process's descriptors against its `RLIMIT_NOFILE`.
    ProcessFdUsage,
    /// `system_file_nr`: open files of the host against `fs.file-max`.
    SystemFileNr,
    /// `conntrack`: connection-tracking entries against `nf_conntrack_max`.
    Conntrack,
    /// `listener_backlog`: a listener's accept queue capped by `net.core.somaxconn`.
    ListenerBacklog,
    /// `accept_queue_full`: a listener's accept queue at its maximum.
    AcceptQueueFull,
    /// `sysctl_tcp_tw_reuse`.
    TcpTwReuse,
    /// `sysctl_tcp_max_tw_buckets`.
    TcpMaxTwBuckets,
    /// `sysctl_tcp_fin_timeout`.
    TcpFinTimeout,
    /// `sysctl_somaxconn`.
    Somaxconn,
    /// `sysctl_tcp_max_syn_backlog`.
    TcpMaxSynBacklog,
    /// `sysctl_tcp_syncookies`.
    TcpSyncookies,
    /// `sysctl_tcp_keepalive`: the three keepalive settings together.
    TcpKeepalive,
    /// `sysctl_ip_local_port_range`: width of the ephemeral port range.
    LocalPortRange,
}

impl Check {
    /// Every check, in report order.
    pub const ALL: [Check; 22] = [
        Check::TimeWait,
        Check::CloseWait,
        Check::CloseWaitGrowing,
        Check::SynRecv,
        Check::FinWait2,
        Check::LocalPortHeadroom,
        Check::ListenOverflows,
        Check::ListenDrops,
        Check::TimeWaitOverflow,
        Check::ProcessFdUsage,
        Check::SystemFileNr,
        Check::Conntrack,
        Check::ListenerBacklog,
        Check::AcceptQueueFull,
        Check::TcpTwReuse,
        Check::TcpMaxTwBuckets,
        Check::TcpFinTimeout,
        Check::Somaxconn,
        Check::TcpMaxSynBacklog,
        Check::TcpSyncookies,
        Check::TcpKeepalive,
        Check::LocalPortRange,
    ];

    /// The stable id, as `time_wait` or `sysctl_somaxconn`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Check::TimeWait => "time_wait",
            Check::CloseWait => "close_wait",
            Check::CloseWaitGrowing => "close_wait_growing",
            Check::SynRecv => "syn_recv",
            Check::FinWait2 => "fin_wait2",
            Check::LocalPortHeadroom => "local_port_headroom",
            Check::ListenOverflows => "listen_overflows",
            Check::ListenDrops => "listen_drops",
            Check::TimeWaitOverflow => "time_wait_overflow",
            Check::ProcessFdUsage => "process_fd_usage",
            Check::SystemFileNr => "system_file_nr",
            Check::Conntrack => "conntrack",
            Check::ListenerBacklog => "listener_backlog",
            Check::AcceptQueueFull => "accept_queue_full",
            Check::TcpTwReuse => "sysctl_tcp_tw_reuse",
            Check::TcpMaxTwBuckets => "sysctl_tcp_max_tw_buckets",
            Check::TcpFinTimeout => "sysctl_tcp_fin_timeout",
            Check::Somaxconn => "sysctl_somaxconn",
            Check::TcpMaxSynBacklog => "sysctl_tcp_max_syn_backlog",
            Check::TcpSyncookies => "sysctl_tcp_syncookies",
            Check::TcpKeepalive => "sysctl_tcp_keepalive",
            Check::LocalPortRange => "sysctl_ip_local_port_range",
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A measured value or a threshold.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Measure {
    /// Nothing to show (the value could not be read, or the check has no threshold).
    #[default]
    None,
    /// A count of sockets, ports, descriptors, seconds…
    Count(u64),
    /// A percentage, 0 to 100.
    Percent(f64),
    /// Anything else, as a port range `32768 60999`.
    Text(String),
}

impl Measure {
    /// The count, if this is one.
    pub fn as_count(&self) -> Option<u64> {
        match self {
            Measure::Count(n) => Some(*n),
            _ => None,
        }
    }

    /// The percentage, if this is one.
    pub fn as_percent(&self) -> Option<f64> {
        match self {
            Measure::Percent(p) => Some(*p),
            _ => None,
        }
    }
}

/// `-` for none, the number, `12.5%`, or the text.
impl fmt::Display for Measure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Measure::None => f.write_str("-"),
            Measure::Count(n) => write!(f, "{n}"),
            Measure::Percent(p) => write!(f, "{p:.1}%"),
            Measure::Text(t) => f.write_str(t),
        }
    }
}

/// One judged check. See the [module docs](crate::findings).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Finding {
    /// How bad it is.
    pub severity: Severity,
    /// Which check.
    pub check: Check,
    /// What the finding is about when a check reports per item: a process `pid 42 (java)`, a
    /// destination `10.0.0.5:5432`, a listener `0.0.0.0:8080`.
    pub subject: Option<String>,
    /// The measured value.
    pub value: Measure,
    /// The threshold the value was held against: the one crossed, else the warning level.
    pub threshold: Measure,
    /// What was found, in one sentence.
    pub message: String,
    /// What to do: the sysctl line to set, or the fix in the application.
    pub recommendation: String,
}

impl Finding {
    fn new(severity: Severity, check: Check, value: Measure, threshold: Measure) -> Self {
        Finding {
            severity,
            check,
            subject: None,
            value,
            threshold,
            message: String::new(),
            recommendation: String::new(),
        }
    }

    fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    fn says(mut self, message: impl Into<String>, recommendation: impl Into<String>) -> Self {
        self.message = message.into();
        self.recommendation = recommendation.into();
        self
    }
}

/// The findings of one evaluation.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Report {
    /// Every finding, in [`Check::ALL`] order, worst first within a check.
    pub findings: Vec<Finding>,
}

impl Report {
    /// The worst severity of any finding (by [`Severity::rank`]); OK when there is none.
    pub fn status(&self) -> Severity {
        self.findings
            .iter()
            .fold(Severity::Ok, |s, f| s.worst(f.severity))
    }

    /// The findings of one check.
    pub fn of(&self, check: Check) -> impl Iterator<Item = &Finding> + '_ {
        self.findings.iter().filter(move |f| f.check == check)
    }

    /// Number of findings of `severity`.
    pub fn count(&self, severity: Severity) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == severity)
            .count()
    }
}

/// A count of sockets one process holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessCount {
    /// Process id.
    pub pid: u32,
    /// Command name (`/proc/PID/comm`).
    pub comm: String,
    /// Sockets.
    pub count: u64,
}

impl ProcessCount {
    /// A count for `pid` running `comm`.
    pub fn new(pid: u32, comm: impl Into<String>, count: u64) -> Self {
        ProcessCount {
            pid,
            comm: comm.into(),
            count,
        }
    }
}

/// Local ports in `ip_local_port_range` used by connections toward one destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PortUse {
    /// The remote address and port.
    pub destination: SocketAddr,
    /// Sockets toward it whose local port lies in the range, `TIME_WAIT` included.
    pub used: u64,
}

impl PortUse {
    /// `used` ports toward `destination`.
    pub fn new(destination: SocketAddr, used: u64) -> Self {
        PortUse { destination, used }
    }

    /// Ports left toward the destination in a range of `range_size` ports.
    pub fn headroom(&self, range_size: u64) -> u64 {
        range_size.saturating_sub(self.used)
    }
}

/// One process's descriptors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessFd {
    /// Process id.
    pub pid: u32,
    /// Command name.
    pub comm: String,
    /// Open descriptors and limits.
    pub usage: FdUsage,
}

impl ProcessFd {
    /// `usage` of `pid` running `comm`.
    pub fn new(pid: u32, comm: impl Into<String>, usage: FdUsage) -> Self {
        ProcessFd {
            pid,
            comm: comm.into(),
            usage,
        }
    }
}

/// What [`evaluate`] judges: one look at the host. Plain data; fill it by hand or with
/// [`sample_host`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct HostSample {
    /// TCP sockets of the network namespace by state, both families.
    pub states: StateCounts,
    /// `CLOSE_WAIT` sockets per holding process, most first. A socket shared by several
    /// processes counts for each.
    pub close_wait_by_process: Vec<ProcessCount>,
    /// Local-port use per destination, most used first.
    pub port_usage: Vec<PortUse>,
    /// Kernel TCP counters; `None` when they could not be read.
    pub counters: Option<TcpCounters>,
    /// TCP sysctls; a `None` field could not be read.
    pub sysctls: Sysctls,
    /// `fs.file-nr`; `None` when it could not be read.
    pub file_nr: Option<FileNr>,
    /// Descriptor usage of the processes looked at.
    pub process_fds: Vec<ProcessFd>,
    /// Connection tracking; `None` when it is not in use here.
    pub conntrack: Option<Conntrack>,
    /// Listening sockets.
    pub listeners: Vec<Listener>,
    /// When set, the process-level parts (`close_wait_by_process`, `process_fds`) cover
    /// only this process.
    pub pid: Option<u32>,
}

impl HostSample {
    /// Size of `ip_local_port_range`, when known and well formed.
    pub fn port_range_size(&self) -> Option<u64> {
        self.sysctls
            .ip_local_port_range
            .filter(|(lo, hi)| lo <= hi)
            .map(|(lo, hi)| u64::from(hi - lo) + 1)
    }

    /// The process holding the most `CLOSE_WAIT` sockets.
    pub fn top_close_wait(&self) -> Option<&ProcessCount> {
        self.close_wait_by_process
            .iter()
            .max_by(|a, b| a.count.cmp(&b.count).then(b.pid.cmp(&a.pid)))
    }
}

/// A threshold setting was given a value that cannot work. Each variant names the setting
/// and carries the bad value.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ThresholdError {
    /// `time_wait`: the warning level is above the critical one.
    TimeWait {
        /// Given warning level.
        warning: u64,
        /// Given critical level.
        critical: u64,
    },
    /// `port_headroom_percent`: outside 0–100, or warning below critical.
    PortHeadroom {
        /// Given warning level.
        warning: f64,
        /// Given critical level.
        critical: f64,
    },
    /// `fd_usage_percent`: outside 0–100, or warning above critical.
    FdUsage {
        /// Given warning level.
        warning: f64,
        /// Given critical level.
        critical: f64,
    },
    /// `conntrack_percent`: outside 0–100, or warning above critical.
    Conntrack {
        /// Given warning level.
        warning: f64,
        /// Given critical level.
        critical: f64,
    },
    /// `min_port_range_width`: more ports than exist.
    MinPortRangeWidth(u32),
}

impl fmt::Display for ThresholdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ThresholdError::TimeWait { warning, critical } => write!(
                f,
                "time_wait: warning level {warning} is above critical level {critical}"
            ),
            ThresholdError::PortHeadroom { warning, critical } => write!(
                f,
                "port_headroom_percent: warning {warning} and critical {critical} must lie in \
                 0..=100 with warning >= critical"
            ),
            ThresholdError::FdUsage { warning, critical } => write!(
                f,
                "fd_usage_percent: warning {warning} and critical {critical} must lie in \
                 0..=100 with warning <= critical"
            ),
            ThresholdError::Conntrack { warning, critical } => write!(
                f,
                "conntrack_percent: warning {warning} and critical {critical} must lie in \
                 0..=100 with warning <= critical"
            ),
            ThresholdError::MinPortRangeWidth(v) => {
                write!(f, "min_port_range_width: {v} is more than the 65536 ports")
            }
        }
    }
}

impl std::error::Error for ThresholdError {}

/// The limits [`evaluate`] judges against. [`Thresholds::default`] holds the levels of field
/// practice; change them with [`Thresholds::builder`].
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    time_wait_warning: u64,
    time_wait_critical: u64,
    close_wait_critical: u64,
    syn_recv_warning: u64,
    fin_wait2_warning: u64,
    port_headroom_warning: f64,
    port_headroom_critical: f64,
    fd_warning: f64,
    fd_critical: f64,
    conntrack_warning: f64,
    conntrack_critical: f64,
    min_somaxconn: u32,
    min_port_range_width: u32,
    max_fin_timeout: u32,
    max_keepalive_detect_secs: u64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            time_wait_warning: 50_000,
            time_wait_critical: 100_000,
            close_wait_critical: 1_000,
            syn_recv_warning: 1_000,
            fin_wait2_warning: 500,
            port_headroom_warning: 20.0,
            port_headroom_critical: 5.0,
            fd_warning: 80.0,
            fd_critical: 95.0,
            conntrack_warning: 80.0,
            conntrack_critical: 95.0,
            min_somaxconn: 4096,
            min_port_range_width: 16_384,
            max_fin_timeout: 30,
            max_keepalive_detect_secs: 1_200,
        }
    }
}

impl Thresholds {
    /// A builder starting from the defaults.
    pub fn builder() -> ThresholdsBuilder {
        ThresholdsBuilder {
            t: Thresholds::default(),
        }
    }

    /// `TIME_WAIT` sockets above which to warn, and to raise critical.
    pub fn time_wait(&self) -> (u64, u64) {
        (self.time_wait_warning, self.time_wait_critical)
    }

    /// `CLOSE_WAIT` sockets above which to raise critical.
    pub fn close_wait_critical(&self) -> u64 {
        self.close_wait_critical
    }

    /// `SYN_RECV` sockets above which to warn.
    pub fn syn_recv_warning(&self) -> u64 {
        self.syn_recv_warning
    }

    /// `FIN_WAIT2` sockets above which to warn.
    pub fn fin_wait2_warning(&self) -> u64 {
        self.fin_wait2_warning
    }

    /// Per-destination port headroom, in percent, below which to warn and raise critical.
    pub fn port_headroom_percent(&self) -> (f64, f64) {
        (self.port_headroom_warning, self.port_headroom_critical)
    }

    /// Descriptor usage, in percent, above which to warn and raise critical.
    pub fn fd_usage_percent(&self) -> (f64, f64) {
        (self.fd_warning, self.fd_critical)
    }

    /// Connection-tracking usage, in percent, above which to warn and raise critical.
    pub fn conntrack_percent(&self) -> (f64, f64) {
        (self.conntrack_warning, self.conntrack_critical)
    }

    /// `net.core.somaxconn` below which a capped listener is a warning.
    pub fn min_somaxconn(&self) -> u32 {
        self.min_somaxconn
    }

    /// Width of `ip_local_port_range` below which to warn.
    pub fn min_port_range_width(&self) -> u32 {
        self.min_port_range_width
    }

    /// Largest `tcp_fin_timeout` recommended, in seconds.
    pub fn max_fin_timeout(&self) -> u32 {
        self.max_fin_timeout
    }

    /// Longest keepalive dead-peer detection recommended, in seconds.
    pub fn max_keepalive_detect_secs(&self) -> u64 {
        self.max_keepalive_detect_secs
    }
}

/// Builds [`Thresholds`]; [`ThresholdsBuilder::build`] checks them.
#[derive(Debug, Clone)]
pub struct ThresholdsBuilder {
    t: Thresholds,
}

impl ThresholdsBuilder {
    /// `TIME_WAIT` warning and critical levels (strictly above is reported).
    /// Default: 50 000 and 100 000. Warning must not exceed critical.
    pub fn time_wait(mut self, warning: u64, critical: u64) -> Self {
        self.t.time_wait_warning = warning;
        self.t.time_wait_critical = critical;
        self
    }

    /// `CLOSE_WAIT` critical level (strictly above is reported). Default: 1 000.
    pub fn close_wait_critical(mut self, critical: u64) -> Self {
        self.t.close_wait_critical = critical;
        self
    }

    /// `SYN_RECV` warning level. Default: 1 000.
    pub fn syn_recv_warning(mut self, warning: u64) -> Self {
        self.t.syn_recv_warning = warning;
        self
    }

    /// `FIN_WAIT2` warning level. Default: 500.
    pub fn fin_wait2_warning(mut self, warning: u64) -> Self {
        self.t.fin_wait2_warning = warning;
        self
    }

    /// Per-destination headroom, in percent of the port range, below which to warn and
    /// raise critical. Default: 20 and 5. Both in 0–100, warning not below critical.
    pub fn port_headroom_percent(mut self, warning: f64, critical: f64) -> Self {
        self.t.port_headroom_warning = warning;
        self.t.port_headroom_critical = critical;
        self
    }

    /// Descriptor usage (process and host), in percent, above which to warn and raise
    /// critical. Default: 80 and 95. Both in 0–100, warning not above critical.
    pub fn fd_usage_percent(mut self, warning: f64, critical: f64) -> Self {
        self.t.fd_warning = warning;
        self.t.fd_critical = critical;
        self
    }

    /// Connection-tracking usage, in percent. Default: 80 and 95, as
    /// [`fd_usage_percent`](Self::fd_usage_percent).
    pub fn conntrack_percent(mut self, warning: f64, critical: f64) -> Self {
        self.t.conntrack_warning = warning;
        self.t.conntrack_critical = critical;
        self
    }

    /// `net.core.somaxconn` below which a listener capped by it is a warning. Default: 4 096
    /// (the kernel default since 5.4).
    pub fn min_somaxconn(mut self, min: u32) -> Self {
        self.t.min_somaxconn = min;
        self
    }

    /// Width of `ip_local_port_range` below which to warn. Default: 16 384. At most 65 536.
    pub fn min_port_range_width(mut self, min: u32) -> Self {
        self.t.min_port_range_width = min;
        self
    }

    /// Largest `tcp_fin_timeout` recommended, in seconds. Default: 30.
    pub fn max_fin_timeout(mut self, secs: u32) -> Self {
        self.t.max_fin_timeout = secs;
        self
    }

    /// Longest keepalive dead-peer detection (`time + intvl × probes`) recommended, in
    /// seconds. Default: 1 200.
    pub fn max_keepalive_detect_secs(mut self, secs: u64) -> Self {
        self.t.max_keepalive_detect_secs = secs;
        self
    }

    /// Checks the settings.
    pub fn build(self) -> Result<Thresholds, ThresholdError> {
        let t = self.t;
        let pct = |p: f64| (0.0..=100.0).contains(&p);
        if t.time_wait_warning > t.time_wait_critical {
            return Err(ThresholdError::TimeWait {
                warning: t.time_wait_warning,
                critical: t.time_wait_critical,
            });
        }
        let (w, c) = (t.port_headroom_warning, t.port_headroom_critical);
        if !(pct(w) && pct(c) && w >= c) {
            return Err(ThresholdError::PortHeadroom {
                warning: w,
                critical: c,
            });
        }
        let (w, c) = (t.fd_warning, t.fd_critical);
        if !(pct(w) && pct(c) && w <= c) {
            return Err(ThresholdError::FdUsage {
                warning: w,
                critical: c,
            });
        }
        let (w, c) = (t.conntrack_warning, t.conntrack_critical);
        if !(pct(w) && pct(c) && w <= c) {
            return Err(ThresholdError::Conntrack {
                warning: w,
                critical: c,
            });
        }
        if t.min_port_range_width > 65_536 {
            return Err(ThresholdError::MinPortRangeWidth(t.min_port_range_width));
        }
        Ok(t)
    }
}

/// Judges `current` (and, for rates, the change since `previous`) against `thresholds`.
pub fn evaluate(
    current: &HostSample,
    previous: Option<&HostSample>,
    thresholds: &Thresholds,
) -> Report {
    let cx = Cx {
        s: current,
        prev: previous,
        t: thresholds,
    };
    let mut findings = Vec::new();
    cx.time_wait(&mut findings);
    cx.close_wait(&mut findings);
    cx.close_wait_growing(&mut findings);
    cx.syn_recv(&mut findings);
    cx.fin_wait2(&mut findings);
    cx.port_headroom(&mut findings);
    cx.counter_deltas(&mut findings);
    cx.process_fds(&mut findings);
    cx.file_nr(&mut findings);
    cx.conntrack(&mut findings);
    cx.listeners(&mut findings);
    cx.sysctls(&mut findings);
    Report { findings }
}

struct Cx<'a> {
    s: &'a HostSample,
    prev: Option<&'a HostSample>,
    t: &'a Thresholds,
}

/// Severity of `value` against "above is bad" levels.
fn above(value: u64, warning: u64, critical: Option<u64>) -> (Severity, u64) {
    match critical {
        Some(c) if value > c => (Severity::Critical, c),
        _ if value > warning => (Severity::Warning, warning),
        _ => (Severity::Ok, warning),
    }
}

fn above_pct(value: f64, warning: f64, critical: f64) -> (Severity, f64) {
    if value > critical {
        (Severity::Critical, critical)
    } else if value > warning {
        (Severity::Warning, warning)
    } else {
        (Severity::Ok, warning)
    }
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

fn proc_name(pid: u32, comm: &str) -> String {
    format!("pid {pid} ({comm})")
}

fn unknown(check: Check, what: &str, fix: &str) -> Finding {
    Finding::new(Severity::Unknown, check, Measure::None, Measure::None)
        .says(format!("{what} could not be read"), fix)
}

impl Cx<'_> {
    fn count(&self, state: TcpState) -> u64 {
        self.s.states[state]
    }

    fn time_wait(&self, out: &mut Vec<Finding>) {
        let n = self.count(TcpState::TimeWait);
        let (w, c) = self.t.time_wait();
        let (sev, th) = above(n, w, Some(c));
        let message = match sev {
            Severity::Ok => format!("{n} sockets in TIME_WAIT"),
            _ => format!(
                "{n} sockets in TIME_WAIT: many short connections closed by this side; \
                 local ports and TIME_WAIT buckets run out"
            ),
        };
        out.push(
            Finding::new(sev, Check::TimeWait, Measure::Count(n), Measure::Count(th)).says(
                message,
                "keep connections open and reuse them (HTTP keep-alive, client connection \
                 pools) so fewer are closed; for outgoing connections \
                 net.ipv4.tcp_tw_reuse = 1; net.ipv4.ip_local_port_range = 1024 65535",
            ),
        );
    }

    fn close_wait(&self, out: &mut Vec<Finding>) {
        let n = self.count(TcpState::CloseWait);
        let c = self.t.close_wait_critical();
        let top = self.s.top_close_wait();
        let (sev, message) = if n > c {
            let who = match top {
                Some(p) => format!(
                    "; {} holds the most: {}",
                    proc_name(p.pid, &p.comm),
                    p.count
                ),
                None => String::new(),
            };
            (
                Severity::Critical,
                format!(
                    "{n} sockets in CLOSE_WAIT: peers closed and the application never \
                     called close(){who}"
                ),
            )
        } else {
            (Severity::Ok, format!("{n} sockets in CLOSE_WAIT"))
        };
        let mut f = Finding::new(sev, Check::CloseWait, Measure::Count(n), Measure::Count(c)).says(
            message,
            "fix the application: close the socket when a read returns end of stream and \
                 on every error path (try-with-resources, defer, Drop), and give pooled \
                 connections back on errors; no sysctl removes CLOSE_WAIT",
        );
        if sev != Severity::Ok {
            if let Some(p) = top {
                f = f.subject(proc_name(p.pid, &p.comm));
            }
        }
        out.push(f);
    }

    fn close_wait_growing(&self, out: &mut Vec<Finding>) {
        let Some(prev) = self.prev else { return };
        let before = |pid: u32, comm: &str| {
            prev.close_wait_by_process
                .iter()
                .find(|p| p.pid == pid && p.comm == comm)
                .map_or(0, |p| p.count)
        };
        let mut growing: Vec<(&ProcessCount, u64)> = self
            .s
            .close_wait_by_process
            .iter()
            .map(|p| (p, before(p.pid, &p.comm)))
            .filter(|(p, was)| p.count > 0 && p.count > *was)
            .collect();
        growing.sort_by_key(|(p, was)| std::cmp::Reverse(p.count - was));
        let fix = "the process leaks sockets the peer has closed: close on end of stream and \
                   on error paths, return pooled connections on error";
        for (p, was) in &growing {
            out.push(
                Finding::new(
                    Severity::Warning,
                    Check::CloseWaitGrowing,
                    Measure::Count(p.count),
                    Measure::Count(*was),
                )
                .subject(proc_name(p.pid, &p.comm))
                .says(
                    format!(
                        "{} holds {} CLOSE_WAIT sockets, up from {was}",
                        proc_name(p.pid, &p.comm),
                        p.count
                    ),
                    fix,
                ),
            );
        }
        if growing.is_empty() {
            let held: u64 = self.s.close_wait_by_process.iter().map(|p| p.count).sum();
            out.push(
                Finding::new(
                    Severity::Ok,
                    Check::CloseWaitGrowing,
                    Measure::Count(held),
                    Measure::None,
                )
                .says(
                    "no process's CLOSE_WAIT count grew between the samples",
                    fix,
                ),
            );
        }
    }

    fn syn_recv(&self, out: &mut Vec<Finding>) {
        let n = self.count(TcpState::SynRecv);
        let (sev, th) = above(n, self.t.syn_recv_warning(), None);
        let message = match sev {
            Severity::Ok => format!("{n} half-open connections (SYN_RECV)"),
            _ => format!(
                "{n} half-open connections (SYN_RECV): possible SYN flood, or clients that \
                 never complete the handshake"
            ),
        };
        out.push(
            Finding::new(sev, Check::SynRecv, Measure::Count(n), Measure::Count(th)).says(
                message,
                "net.ipv4.tcp_syncookies = 1; net.ipv4.tcp_max_syn_backlog = 65535; \
                 net.ipv4.tcp_synack_retries = 2; rate-limit SYNs per source at the firewall",
            ),
        );
    }

    fn fin_wait2(&self, out: &mut Vec<Finding>) {
        let n = self.count(TcpState::FinWait2);
        let (sev, th) = above(n, self.t.fin_wait2_warning(), None);
        let message = match sev {
            Severity::Ok => format!("{n} sockets in FIN_WAIT2"),
            _ => format!(
                "{n} sockets in FIN_WAIT2: this side closed and the peers never send their FIN"
            ),
        };
        out.push(
            Finding::new(sev, Check::FinWait2, Measure::Count(n), Measure::Count(th)).says(
                message,
                format!(
                    "fix the peer that keeps its half open; \
                     net.ipv4.tcp_fin_timeout = {} bounds orphaned FIN_WAIT2",
                    self.t.max_fin_timeout().min(15)
                ),
            ),
        );
    }

    fn port_headroom(&self, out: &mut Vec<Finding>) {
        let Some(size) = self.s.port_range_size() else {
            out.push(unknown(
                Check::LocalPortHeadroom,
                "net.ipv4.ip_local_port_range",
                "check that /proc/sys/net/ipv4/ip_local_port_range is readable",
            ));
            return;
        };
        let (w, c) = self.t.port_headroom_percent();
        let fix = "reuse connections to this destination (keep-alive, pool) instead of \
                   opening one per request; net.ipv4.ip_local_port_range = 1024 65535; \
                   spread over more destination addresses or source addresses; \
                   net.ipv4.tcp_tw_reuse = 1";
        let mut uses: Vec<&PortUse> = self.s.port_usage.iter().collect();
        uses.sort_by(|a, b| b.used.cmp(&a.used).then(a.destination.cmp(&b.destination)));
        let mut any = false;
        for u in &uses {
            let left = u.headroom(size);
            let pct = percent(left, size);
            let (sev, th) = if pct < c {
                (Severity::Critical, c)
            } else if pct < w {
                (Severity::Warning, w)
            } else {
                break; // sorted: the rest have more headroom
            };
            any = true;
            out.push(
                Finding::new(
                    sev,
                    Check::LocalPortHeadroom,
                    Measure::Percent(pct),
                    Measure::Percent(th),
                )
                .subject(u.destination.to_string())
                .says(
                    format!(
                        "toward {}: {} of {size} local ports in use, {left} left ({pct:.1}%); \
                         connect() fails with EADDRNOTAVAIL when none are left",
                        u.destination, u.used
                    ),
                    fix,
                ),
            );
        }
        if !any {
            let message = match uses.first() {
                Some(u) => format!(
                    "busiest destination {}: {} of {size} local ports in use",
                    u.destination, u.used
                ),
                None => format!("no outgoing connection uses the {size} local ports"),
            };
            let pct = uses
                .first()
                .map_or(100.0, |u| percent(u.headroom(size), size));
            out.push(
                Finding::new(
                    Severity::Ok,
                    Check::LocalPortHeadroom,
                    Measure::Percent(pct),
                    Measure::Percent(w),
                )
                .says(message, fix),
            );
        }
    }

    fn counter_deltas(&self, out: &mut Vec<Finding>) {
        let Some(prev) = self.prev else { return };
        type Pick = fn(&TcpCounters) -> Option<u64>;
        let checks: [(Check, &str, Pick, &str); 3] = [
            (
                Check::ListenOverflows,
                "TcpExt ListenOverflows",
                |c| c.listen_overflows,
                "completed connections were dropped because an accept queue was full: \
                 accept faster (more acceptor threads, no blocking work before accept), \
                 raise the listen() backlog and net.core.somaxconn = 4096",
            ),
            (
                Check::ListenDrops,
                "TcpExt ListenDrops",
                |c| c.listen_drops,
                "listeners dropped connection requests: see listen_overflows; also \
                 net.ipv4.tcp_max_syn_backlog = 65535 and net.ipv4.tcp_syncookies = 1",
            ),
            (
                Check::TimeWaitOverflow,
                "TcpExt TCPTimeWaitOverflow",
                |c| c.time_wait_overflow,
                "TIME_WAIT sockets were destroyed early because tcp_max_tw_buckets was \
                 reached: raise net.ipv4.tcp_max_tw_buckets, and close fewer connections",
            ),
        ];
        for (check, name, pick, fix) in checks {
            let now = self.s.counters.as_ref().and_then(pick);
            let before = prev.counters.as_ref().and_then(pick);
            let (Some(now), Some(before)) = (now, before) else {
                out.push(unknown(
                    check,
                    name,
                    "check that /proc/net/netstat is readable",
                ));
                continue;
            };
            // A counter that went down was reset: count from zero.
            let delta = now.checked_sub(before).unwrap_or(now);
            let (sev, message) = if delta > 0 {
                (
                    Severity::Warning,
                    format!("{name} rose by {delta} between the samples (now {now})"),
                )
            } else {
                (
                    Severity::Ok,
                    format!("{name} did not rise between the samples (total {now})"),
                )
            };
            out.push(
                Finding::new(sev, check, Measure::Count(delta), Measure::Count(0))
                    .says(message, fix),
            );
        }
    }

    fn process_fds(&self, out: &mut Vec<Finding>) {
        let (w, c) = self.t.fd_usage_percent();
        let fix = |pid: u32| {
            format!(
                "raise the limit of pid {pid}'s service (LimitNOFILE= in its systemd unit, \
                 ulimit -n); if the count keeps growing, look for a descriptor leak"
            )
        };
        let mut rated: Vec<(&ProcessFd, f64)> = self
            .s
            .process_fds
            .iter()
            .filter_map(|p| p.usage.ratio().map(|r| (p, r * 100.0)))
            .collect();
        rated.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.pid.cmp(&b.0.pid)));
        let mut any = false;
        for (p, pct) in &rated {
            let (sev, th) = above_pct(*pct, w, c);
            if sev == Severity::Ok {
                break;
            }
            any = true;
            let name = proc_name(p.pid, &p.comm);
            out.push(
                Finding::new(
                    sev,
                    Check::ProcessFdUsage,
                    Measure::Percent(*pct),
                    Measure::Percent(th),
                )
                .subject(name.clone())
                .says(
                    format!(
                        "{name} has {} descriptors open of its limit {}",
                        p.usage.open,
                        p.usage.soft_limit.unwrap_or(0)
                    ),
                    fix(p.pid),
                ),
            );
        }
        if !any {
            let (value, message, rec) = match rated.first() {
                Some((p, pct)) => (
                    Measure::Percent(*pct),
                    format!(
                        "highest: {} with {} of {} descriptors",
                        proc_name(p.pid, &p.comm),
                        p.usage.open,
                        p.usage.soft_limit.unwrap_or(0)
                    ),
                    fix(p.pid),
                ),
                None => (
                    Measure::None,
                    "no process with a descriptor limit was looked at".to_owned(),
                    "nothing to do".to_owned(),
                ),
            };
            out.push(
                Finding::new(
                    Severity::Ok,
                    Check::ProcessFdUsage,
                    value,
                    Measure::Percent(w),
                )
                .says(message, rec),
            );
        }
    }

    fn file_nr(&self, out: &mut Vec<Finding>) {
        let Some(nr) = self.s.file_nr else {
            out.push(unknown(
                Check::SystemFileNr,
                "/proc/sys/fs/file-nr",
                "check that /proc/sys/fs/file-nr is readable",
            ));
            return;
        };
        let (w, c) = self.t.fd_usage_percent();
        let pct = percent(nr.allocated, nr.max);
        let (sev, th) = above_pct(pct, w, c);
        out.push(
            Finding::new(
                sev,
                Check::SystemFileNr,
                Measure::Percent(pct),
                Measure::Percent(th),
            )
            .says(
                format!(
                    "{} file handles open of fs.file-max {}",
                    nr.allocated, nr.max
                ),
                format!(
                    "fs.file-max = {}; find the process holding the most descriptors",
                    nr.max.saturating_mul(2).max(2_000_000)
                ),
            ),
        );
    }

    fn conntrack(&self, out: &mut Vec<Finding>) {
        let Some(ct) = self.s.conntrack else {
            out.push(
                Finding::new(Severity::Ok, Check::Conntrack, Measure::None, Measure::None).says(
                    "connection tracking is not in use in this network namespace",
                    "nothing to do",
                ),
            );
            return;
        };
        let (w, c) = self.t.conntrack_percent();
        let pct = percent(ct.count, ct.max);
        let (sev, th) = above_pct(pct, w, c);
        out.push(
            Finding::new(
                sev,
                Check::Conntrack,
                Measure::Percent(pct),
                Measure::Percent(th),
            )
            .says(
                format!(
                    "{} connections tracked of nf_conntrack_max {}; a full table drops \
                         new connections",
                    ct.count, ct.max
                ),
                format!(
                    "net.netfilter.nf_conntrack_max = {}; \
                         net.netfilter.nf_conntrack_tcp_timeout_time_wait = 30",
                    ct.max.saturating_mul(2).max(262_144)
                ),
            ),
        );
    }

    fn listeners(&self, out: &mut Vec<Finding>) {
        let somaxconn = self.s.sysctls.somaxconn;
        let min = self.t.min_somaxconn();
        let mut listeners: Vec<&Listener> = self.s.listeners.iter().collect();
        listeners.sort_by_key(|l| (l.local.port(), l.local));
        let unknown_max = listeners.iter().filter(|l| l.queue_max.is_none()).count();

        // Backlog capped by somaxconn.
        let mut capped = 0;
        for l in &listeners {
            let (Some(max), Some(cap)) = (l.queue_max, somaxconn) else {
                continue;
            };
            if max != cap {
                continue;
            }
            capped += 1;
            let sev = if cap < min {
                Severity::Warning
            } else {
                Severity::Ok
            };
            out.push(
                Finding::new(
                    sev,
                    Check::ListenerBacklog,
                    Measure::Count(u64::from(max)),
                    Measure::Count(u64::from(min)),
                )
                .subject(l.local.to_string())
                .says(
                    format!(
                        "listener {}: effective backlog {max}, capped by net.core.somaxconn \
                         (the application likely asked for more)",
                        l.local
                    ),
                    format!(
                        "net.core.somaxconn = {}, and pass the backlog wanted to listen()",
                        cap.max(min).max(4096)
                    ),
                ),
            );
        }
        if capped == 0 {
            let (sev, message) = if unknown_max > 0 && somaxconn.is_some() {
                (
                    Severity::Unknown,
                    format!(
                        "{unknown_max} listeners' accept queue maximum is unknown \
                         (read from /proc, netlink was refused)"
                    ),
                )
            } else if somaxconn.is_none() {
                (
                    Severity::Unknown,
                    "net.core.somaxconn could not be read".to_owned(),
                )
            } else {
                (
                    Severity::Ok,
                    format!(
                        "{} listeners, none capped by net.core.somaxconn",
                        listeners.len()
                    ),
                )
            };
            out.push(
                Finding::new(
                    sev,
                    Check::ListenerBacklog,
                    somaxconn.map_or(Measure::None, |s| Measure::Count(u64::from(s))),
                    Measure::Count(u64::from(min)),
                )
                .says(message, "nothing to do"),
            );
        }

        // Accept queues full now.
        let mut full = 0;
        for l in &listeners {
            let Some(max) = l.queue_max else { continue };
            if l.queue_len < max || (max == 0 && l.queue_len == 0) {
                continue;
            }
            full += 1;
            out.push(
                Finding::new(
                    Severity::Critical,
                    Check::AcceptQueueFull,
                    Measure::Count(u64::from(l.queue_len)),
                    Measure::Count(u64::from(max)),
                )
                .subject(l.local.to_string())
                .says(
                    format!(
                        "listener {}: accept queue full ({} of {max}); new connections are \
                         dropped",
                        l.local, l.queue_len
                    ),
                    "the application is not accepting: check that its accept loop runs and \
                     is not blocked; then raise the listen() backlog and net.core.somaxconn",
                ),
            );
        }
        if full == 0 {
            let sev = if unknown_max > 0 {
                Severity::Unknown
            } else {
                Severity::Ok
            };
            let message = if unknown_max > 0 {
                format!("{unknown_max} listeners' accept queue maximum is unknown")
            } else {
                format!("no accept queue full among {} listeners", listeners.len())
            };
            let longest = listeners.iter().map(|l| l.queue_len).max().unwrap_or(0);
            out.push(
                Finding::new(
                    sev,
                    Check::AcceptQueueFull,
                    Measure::Count(u64::from(longest)),
                    Measure::None,
                )
                .says(message, "nothing to do"),
            );
        }
    }

    fn sysctls(&self, out: &mut Vec<Finding>) {
        let sys = &self.s.sysctls;
        let tw = self.count(TcpState::TimeWait);
        let (tw_warn, _) = self.t.time_wait();
        let unread = |check, name: &str| {
            unknown(
                check,
                name,
                "check that /proc/sys is mounted and readable in this namespace",
            )
        };

        // tcp_tw_reuse: only where it helps, i.e. many TIME_WAIT or ports running short.
        match sys.tcp_tw_reuse {
            None => out.push(unread(Check::TcpTwReuse, "net.ipv4.tcp_tw_reuse")),
            Some(v) => {
                let short = self.ports_short();
                let helps = tw > tw_warn || short;
                let sev = if helps && v != 1 {
                    Severity::Warning
                } else {
                    Severity::Ok
                };
                let message = match (helps, v) {
                    (true, 1) => {
                        "tcp_tw_reuse = 1: outgoing connections reuse TIME_WAIT ports".to_owned()
                    }
                    (true, _) => format!(
                        "tcp_tw_reuse = {v} while {} ; reuse lets outgoing connections take \
                         ports still in TIME_WAIT",
                        if short {
                            "local ports run short toward a destination"
                        } else {
                            "TIME_WAIT is above its warning level"
                        }
                    ),
                    (false, _) => format!(
                        "tcp_tw_reuse = {v}; TIME_WAIT and local ports are fine, reuse would \
                         not help"
                    ),
                };
                out.push(
                    Finding::new(
                        sev,
                        Check::TcpTwReuse,
                        Measure::Count(u64::from(v)),
                        Measure::Count(1),
                    )
                    .says(
                        message,
                        "net.ipv4.tcp_tw_reuse = 1 (outgoing connections only; needs TCP \
                         timestamps, on by default)",
                    ),
                );
            }
        }

        match sys.tcp_max_tw_buckets {
            None => out.push(unread(
                Check::TcpMaxTwBuckets,
                "net.ipv4.tcp_max_tw_buckets",
            )),
            Some(b) => {
                let limit = b.saturating_mul(8) / 10;
                let sev = if tw >= limit {
                    Severity::Warning
                } else {
                    Severity::Ok
                };
                out.push(
                    Finding::new(
                        sev,
                        Check::TcpMaxTwBuckets,
                        Measure::Count(tw),
                        Measure::Count(limit),
                    )
                    .says(
                        format!(
                            "{tw} TIME_WAIT sockets against tcp_max_tw_buckets {b}; above it \
                             the kernel destroys TIME_WAIT sockets early"
                        ),
                        format!(
                            "net.ipv4.tcp_max_tw_buckets = {}",
                            b.max(tw.saturating_mul(2)).max(200_000)
                        ),
                    ),
                );
            }
        }

        match sys.tcp_fin_timeout {
            None => out.push(unread(Check::TcpFinTimeout, "net.ipv4.tcp_fin_timeout")),
            Some(v) => {
                let max = self.t.max_fin_timeout();
                let piling = self.count(TcpState::FinWait2) > self.t.fin_wait2_warning();
                let sev = if v > max && piling {
                    Severity::Warning
                } else {
                    Severity::Ok
                };
                let message = if v > max {
                    format!(
                        "tcp_fin_timeout = {v} s: orphaned FIN_WAIT2 sockets live that long \
                         (recommended at most {max} s)"
                    )
                } else {
                    format!("tcp_fin_timeout = {v} s")
                };
                out.push(
                    Finding::new(
                        sev,
                        Check::TcpFinTimeout,
                        Measure::Count(u64::from(v)),
                        Measure::Count(u64::from(max)),
                    )
                    .says(
                        message,
                        format!("net.ipv4.tcp_fin_timeout = {}", v.min(max)),
                    ),
                );
            }
        }

        match sys.somaxconn {
            None => out.push(unread(Check::Somaxconn, "net.core.somaxconn")),
            Some(v) => {
                let min = self.t.min_somaxconn();
                let sev = if v < min {
                    Severity::Warning
                } else {
                    Severity::Ok
                };
                out.push(
                    Finding::new(
                        sev,
                        Check::Somaxconn,
                        Measure::Count(u64::from(v)),
                        Measure::Count(u64::from(min)),
                    )
                    .says(
                        format!("somaxconn = {v}: every accept queue is at most min(backlog, {v})"),
                        format!("net.core.somaxconn = {}", v.max(min)),
                    ),
                );
            }
        }

        match sys.tcp_max_syn_backlog {
            None => out.push(unread(
                Check::TcpMaxSynBacklog,
                "net.ipv4.tcp_max_syn_backlog",
            )),
            Some(v) => {
                let syn = self.count(TcpState::SynRecv);
                let half = u64::from(v) / 2;
                let sev = if syn > half {
                    Severity::Warning
                } else {
                    Severity::Ok
                };
                out.push(
                    Finding::new(
                        sev,
                        Check::TcpMaxSynBacklog,
                        Measure::Count(syn),
                        Measure::Count(half),
                    )
                    .says(
                        format!("{syn} half-open connections against tcp_max_syn_backlog {v}"),
                        format!(
                            "net.ipv4.tcp_max_syn_backlog = {}",
                            v.max(syn_backlog_for(syn))
                        ),
                    ),
                );
            }
        }

        match sys.tcp_syncookies {
            None => out.push(unread(Check::TcpSyncookies, "net.ipv4.tcp_syncookies")),
            Some(v) => {
                let sev = if v == 0 {
                    Severity::Warning
                } else {
                    Severity::Ok
                };
                let message = if v == 0 {
                    "tcp_syncookies = 0: a SYN flood fills the SYN queue and locks out clients"
                        .to_owned()
                } else {
                    format!("tcp_syncookies = {v}")
                };
                out.push(
                    Finding::new(
                        sev,
                        Check::TcpSyncookies,
                        Measure::Count(u64::from(v)),
                        Measure::Count(1),
                    )
                    .says(message, "net.ipv4.tcp_syncookies = 1"),
                );
            }
        }

        match (
            sys.tcp_keepalive_time,
            sys.tcp_keepalive_intvl,
            sys.tcp_keepalive_probes,
        ) {
            (Some(time), Some(intvl), Some(probes)) => {
                let detect = u64::from(time) + u64::from(intvl) * u64::from(probes);
                let max = self.t.max_keepalive_detect_secs();
                let message = if detect > max {
                    format!(
                        "keepalive finds a dead peer after {detect} s ({time} + {intvl} x \
                         {probes}); only for sockets with SO_KEEPALIVE"
                    )
                } else {
                    format!("keepalive finds a dead peer after {detect} s")
                };
                out.push(
                    Finding::new(
                        Severity::Ok,
                        Check::TcpKeepalive,
                        Measure::Count(detect),
                        Measure::Count(max),
                    )
                    .says(
                        message,
                        "net.ipv4.tcp_keepalive_time = 600; net.ipv4.tcp_keepalive_intvl = 15; \
                         net.ipv4.tcp_keepalive_probes = 3 (and SO_KEEPALIVE on long-lived \
                         connections)",
                    ),
                );
            }
            _ => out.push(unread(Check::TcpKeepalive, "net.ipv4.tcp_keepalive_*")),
        }

        match sys.ip_local_port_range {
            None => out.push(unread(
                Check::LocalPortRange,
                "net.ipv4.ip_local_port_range",
            )),
            Some((lo, hi)) => {
                let width = u64::from(hi.saturating_sub(lo)) + u64::from(lo <= hi);
                let min = u64::from(self.t.min_port_range_width());
                let sev = if width < min {
                    Severity::Warning
                } else {
                    Severity::Ok
                };
                out.push(
                    Finding::new(
                        sev,
                        Check::LocalPortRange,
                        Measure::Count(width),
                        Measure::Count(min),
                    )
                    .says(
                        format!(
                            "ip_local_port_range = {lo} {hi}: {width} local ports per \
                             destination"
                        ),
                        "net.ipv4.ip_local_port_range = 1024 65535 (keep listening ports \
                         out of it with net.ipv4.ip_local_reserved_ports)",
                    ),
                );
            }
        }
    }

    /// Whether some destination is below the port headroom warning level.
    fn ports_short(&self) -> bool {
        let Some(size) = self.s.port_range_size() else {
            return false;
        };
        let (w, _) = self.t.port_headroom_percent();
        self.s
            .port_usage
            .iter()
            .any(|u| percent(u.headroom(size), size) < w)
    }
}

/// A SYN backlog comfortably above `syn` half-open connections.
fn syn_backlog_for(syn: u64) -> u32 {
    let want = syn.saturating_mul(4).max(4096);
    u32::try_from(want.next_power_of_two()).unwrap_or(u32::MAX)
}

/// Fills a [`HostSample`] from the live host.
///
/// One walk with `walker` (which should walk every state of both families) collects the
/// state counts, the listeners, the local-port use per destination and the inodes of the
/// `CLOSE_WAIT` sockets; the inodes are then joined to their holders through `/proc/*/fd`.
/// Counters, sysctls, `file-nr` and connection tracking are read from the walker's proc
/// root; a counter file that cannot be read leaves its field `None`.
///
/// With `pid`, the process-level parts cover only that process, and an unknown or
/// unreadable `pid` is an error ([`CensusError::is_not_found`],
/// [`CensusError::is_permission_denied`]). Without it, descriptor usage is read for every
/// process holding a TCP socket.
///
/// A connection counts toward its destination's port use when its local port lies in
/// `ip_local_port_range` and is not a listening port (accepted connections share the
/// listener's port). Both netlink and `/proc` list a family's listeners before its
/// connections, which is what lets one pass tell them apart.
pub fn sample_host(walker: &mut Walker, pid: Option<u32>) -> Result<HostSample, CensusError> {
    let root = walker.options().get_proc_root().clone();
    let sysctls = root.sysctls()?;
    let scope = match pid {
        Some(pid) => Some(root.socket_inodes(pid)?),
        None => None,
    };
    let range = sysctls.ip_local_port_range.filter(|(lo, hi)| lo <= hi);

    let mut states = StateCounts::new();
    let mut listeners = Vec::new();
    let mut listen_ports: HashSet<u16> = HashSet::new();
    let mut ports: HashMap<SocketAddr, u64> = HashMap::new();
    let mut close_wait: Vec<u64> = Vec::new();
    let mut tcp_inodes: Vec<u64> = Vec::new();
    let stats = walker.walk(|s| {
        states.record(s.state);
        if s.state == TcpState::Listen {
            listen_ports.insert(s.local.port());
            listeners.push(Listener {
                family: s.family,
                local: s.local,
                inode: s.inode,
                uid: s.uid,
                queue_len: s.rqueue,
                queue_max: Some(s.wqueue),
            });
            return;
        }
        if s.inode != 0 {
            if s.state == TcpState::CloseWait
                && scope.as_ref().is_none_or(|inodes| inodes.contains(s.inode))
            {
                close_wait.push(s.inode);
            }
            if scope.is_none() {
                tcp_inodes.push(s.inode);
            }
        }
        let port = s.local.port();
        if !s.remote.ip().is_unspecified()
            && range.is_some_and(|(lo, hi)| (lo..=hi).contains(&port))
            && !listen_ports.contains(&port)
        {
            *ports.entry(s.remote).or_default() += 1;
        }
    })?;
    for l in &mut listeners {
        let source = match l.family {
            crate::Family::Ipv4 => stats.ipv4,
            crate::Family::Ipv6 => stats.ipv6,
        };
        if source != Some(Source::Netlink) {
            l.queue_max = None;
        }
    }
    tcp_inodes.extend(listeners.iter().map(|l| l.inode).filter(|i| *i != 0));

    let mut close_wait_by_process = Vec::new();
    let mut process_fds = Vec::new();
    match pid {
        Some(pid) => {
            let comm = std::fs::read_to_string(root.path().join(format!("{pid}/comm")))
                .map(|c| c.trim_end_matches('\n').to_owned())
                .unwrap_or_default();
            if !close_wait.is_empty() {
                close_wait_by_process.push(ProcessCount::new(
                    pid,
                    comm.clone(),
                    close_wait.len() as u64,
                ));
            }
            process_fds.push(ProcessFd::new(pid, comm, root.fd_usage(pid)?));
        }
        None => {
            let holders = root.socket_holders()?;
            let mut by_pid: HashMap<u32, (String, u64)> = HashMap::new();
            for inode in &close_wait {
                for h in holders.get(*inode) {
                    by_pid
                        .entry(h.pid)
                        .or_insert_with(|| (h.comm.to_string(), 0))
                        .1 += 1;
                }
            }
            close_wait_by_process = by_pid
                .into_iter()
                .map(|(pid, (comm, count))| ProcessCount::new(pid, comm, count))
                .collect();
            let mut seen: HashMap<u32, String> = HashMap::new();
            for inode in &tcp_inodes {
                for h in holders.get(*inode) {
                    seen.entry(h.pid).or_insert_with(|| h.comm.to_string());
                }
            }
            for (pid, comm) in seen {
                // A process that exited meanwhile is simply not looked at.
                if let Ok(usage) = root.fd_usage(pid) {
                    process_fds.push(ProcessFd::new(pid, comm, usage));
                }
            }
            process_fds.sort_by_key(|p| p.pid);
        }
    }
    close_wait_by_process.sort_by(|a, b| b.count.cmp(&a.count).then(a.pid.cmp(&b.pid)));
    let mut port_usage: Vec<PortUse> = ports
        .into_iter()
        .map(|(destination, used)| PortUse { destination, used })
        .collect();
    port_usage.sort_by(|a, b| b.used.cmp(&a.used).then(a.destination.cmp(&b.destination)));

    Ok(HostSample {
        states,
        close_wait_by_process,
        port_usage,
        counters: root.tcp_counters().ok(),
        sysctls,
        file_nr: root.file_nr().ok(),
        process_fds,
        conntrack: root.conntrack().ok().flatten(),
        listeners,
        pid,
    })
}

#[cfg(test)]
// Samples are filled field by field, as code outside the crate must fill these
// `#[non_exhaustive]` structs.
#[allow(clippy::field_reassign_with_default)]
mod tests {
    use super::*;
    use crate::Family;

    fn th() -> Thresholds {
        Thresholds::default()
    }

    fn with_state(state: TcpState, n: u64) -> HostSample {
        let mut s = HostSample::default();
        s.states.set(state, n);
        s
    }

    fn one(report: &Report, check: Check) -> &Finding {
        let mut it = report.of(check);
        let f = it.next().unwrap_or_else(|| panic!("no {check} finding"));
        assert!(it.next().is_none(), "more than one {check} finding");
        f
    }

    fn sev(sample: &HostSample, prev: Option<&HostSample>, check: Check) -> Severity {
        one(&evaluate(sample, prev, &th()), check).severity
    }

    fn listener(port: u16, len: u32, max: Option<u32>) -> Listener {
        Listener {
            family: Family::Ipv4,
            local: SocketAddr::from(([0, 0, 0, 0], port)),
            inode: u64::from(port),
            uid: 0,
            queue_len: len,
            queue_max: max,
        }
    }

    #[test]
    fn severity_order_and_codes() {
        use Severity::*;
        assert_eq!(Ok.worst(Unknown), Unknown);
        assert_eq!(Unknown.worst(Warning), Warning);
        assert_eq!(Critical.worst(Warning), Critical);
        assert_eq!(
            [Ok, Warning, Critical, Unknown].map(Severity::exit_code),
            [0, 1, 2, 3]
        );
        assert_eq!(Critical.to_string(), "CRITICAL");
        assert_eq!(Report::default().status(), Ok);
        let ids: HashSet<&str> = Check::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(ids.len(), Check::ALL.len());
        assert!(ids.iter().all(|id| id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit())));
    }

    #[test]
    fn threshold_validation_names_the_setting() {
        let e = Thresholds::builder().time_wait(10, 9).build().unwrap_err();
        assert_eq!(
            e,
            ThresholdError::TimeWait {
                warning: 10,
                critical: 9
            }
        );
        assert!(e.to_string().starts_with("time_wait:"), "{e}");
        assert!(Thresholds::builder().time_wait(9, 9).build().is_ok());
        let e = Thresholds::builder()
            .port_headroom_percent(5.0, 20.0)
            .build()
            .unwrap_err();
        assert!(e.to_string().starts_with("port_headroom_percent:"), "{e}");
        let e = Thresholds::builder()
            .fd_usage_percent(80.0, 101.0)
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("fd_usage_percent") && e.to_string().contains("101"));
        let e = Thresholds::builder()
            .conntrack_percent(f64::NAN, 90.0)
            .build()
            .unwrap_err();
        assert!(matches!(e, ThresholdError::Conntrack { .. }));
        let e = Thresholds::builder()
            .min_port_range_width(70_000)
            .build()
            .unwrap_err();
        assert_eq!(e, ThresholdError::MinPortRangeWidth(70_000));
        let t = Thresholds::builder()
            .close_wait_critical(5)
            .syn_recv_warning(6)
            .fin_wait2_warning(7)
            .min_somaxconn(8)
            .max_fin_timeout(9)
            .max_keepalive_detect_secs(10)
            .build()
            .unwrap();
        assert_eq!(
            (
                t.close_wait_critical(),
                t.syn_recv_warning(),
                t.fin_wait2_warning(),
                t.min_somaxconn(),
                t.max_fin_timeout(),
                t.max_keepalive_detect_secs()
            ),
            (5, 6, 7, 8, 9, 10)
        );
        assert_eq!(th().time_wait(), (50_000, 100_000));
        assert_eq!(th().port_headroom_percent(), (20.0, 5.0));
    }

    #[test]
    fn time_wait_levels() {
        for (n, want) in [
            (0, Severity::Ok),
            (50_000, Severity::Ok),
            (50_001, Severity::Warning),
            (100_000, Severity::Warning),
            (100_001, Severity::Critical),
        ] {
            let s = with_state(TcpState::TimeWait, n);
            let r = evaluate(&s, None, &th());
            let f = one(&r, Check::TimeWait);
            assert_eq!(f.severity, want, "{n}");
            assert_eq!(f.value, Measure::Count(n));
            let expect_th = if want == Severity::Critical {
                100_000
            } else {
                50_000
            };
            assert_eq!(f.threshold, Measure::Count(expect_th));
            assert!(f.recommendation.contains("net.ipv4.tcp_tw_reuse = 1"));
        }
    }

    #[test]
    fn close_wait_critical_names_the_top_process() {
        let mut s = with_state(TcpState::CloseWait, 1_000);
        s.close_wait_by_process = vec![
            ProcessCount::new(7, "small", 10),
            ProcessCount::new(42, "java", 990),
        ];
        assert_eq!(sev(&s, None, Check::CloseWait), Severity::Ok);
        s.states.set(TcpState::CloseWait, 1_001);
        s.close_wait_by_process[1].count = 991;
        let r = evaluate(&s, None, &th());
        let f = one(&r, Check::CloseWait);
        assert_eq!(f.severity, Severity::Critical);
        assert_eq!(f.subject.as_deref(), Some("pid 42 (java)"));
        assert!(f.message.contains("pid 42 (java)") && f.message.contains("991"));
        assert!(f.recommendation.contains("close"));
        assert_eq!(r.status(), Severity::Critical);
    }

    #[test]
    fn close_wait_growth_needs_two_samples() {
        let mut before = HostSample::default();
        before.close_wait_by_process = vec![ProcessCount::new(42, "java", 5)];
        let mut now = before.clone();
        // One sample: the check is left out.
        assert_eq!(
            evaluate(&now, None, &th())
                .of(Check::CloseWaitGrowing)
                .count(),
            0
        );
        // Unchanged: OK.
        assert_eq!(
            sev(&now, Some(&before), Check::CloseWaitGrowing),
            Severity::Ok
        );
        // Growing by one: warning, naming the process.
        now.close_wait_by_process[0].count = 6;
        let r = evaluate(&now, Some(&before), &th());
        let f = one(&r, Check::CloseWaitGrowing);
        assert_eq!(f.severity, Severity::Warning);
        assert_eq!(
            (f.value.as_count(), f.threshold.as_count()),
            (Some(6), Some(5))
        );
        assert_eq!(f.subject.as_deref(), Some("pid 42 (java)"));
        // Shrinking: OK. A new process with one: warning. Another process, same pid: new.
        now.close_wait_by_process[0].count = 4;
        assert_eq!(
            sev(&now, Some(&before), Check::CloseWaitGrowing),
            Severity::Ok
        );
        now.close_wait_by_process
            .push(ProcessCount::new(9, "new", 1));
        assert_eq!(
            sev(&now, Some(&before), Check::CloseWaitGrowing),
            Severity::Warning
        );
        let mut reused = before.clone();
        reused.close_wait_by_process[0].comm = "other".into();
        assert_eq!(
            sev(&reused, Some(&before), Check::CloseWaitGrowing),
            Severity::Warning
        );
    }

    #[test]
    fn syn_recv_and_fin_wait2_levels() {
        for (n, want) in [(1_000, Severity::Ok), (1_001, Severity::Warning)] {
            let s = with_state(TcpState::SynRecv, n);
            let f = evaluate(&s, None, &th());
            let f = one(&f, Check::SynRecv);
            assert_eq!(f.severity, want);
            if want == Severity::Warning {
                assert!(f.message.contains("SYN flood"));
            }
        }
        for (n, want) in [
            (0, Severity::Ok),
            (500, Severity::Ok),
            (501, Severity::Warning),
        ] {
            let s = with_state(TcpState::FinWait2, n);
            assert_eq!(sev(&s, None, Check::FinWait2), want, "{n}");
        }
    }

    fn ports(range: (u16, u16), used: &[u64]) -> HostSample {
        let mut s = HostSample::default();
        s.sysctls.ip_local_port_range = Some(range);
        s.port_usage = used
            .iter()
            .enumerate()
            .map(|(i, u)| PortUse::new(SocketAddr::from(([10, 0, 0, i as u8 + 1], 443)), *u))
            .collect();
        s
    }

    #[test]
    fn port_headroom_per_destination() {
        // 100 ports: headroom 20 is not below 20 %, 19 is; 5 is not below 5 %, 4 is.
        let s = ports((40_000, 40_099), &[80]);
        assert_eq!(sev(&s, None, Check::LocalPortHeadroom), Severity::Ok);
        let s = ports((40_000, 40_099), &[81]);
        let r = evaluate(&s, None, &th());
        let f = one(&r, Check::LocalPortHeadroom);
        assert_eq!(f.severity, Severity::Warning);
        assert_eq!(f.value, Measure::Percent(19.0));
        assert_eq!(f.threshold, Measure::Percent(20.0));
        assert_eq!(f.subject.as_deref(), Some("10.0.0.1:443"));
        assert!(f.message.contains("81 of 100"), "{}", f.message);
        assert!(f.recommendation.contains("ip_local_port_range"));
        let s = ports((40_000, 40_099), &[95]);
        assert_eq!(sev(&s, None, Check::LocalPortHeadroom), Severity::Warning);
        let s = ports((40_000, 40_099), &[96]);
        assert_eq!(sev(&s, None, Check::LocalPortHeadroom), Severity::Critical);
        let s = ports((40_000, 40_099), &[500]);
        assert_eq!(sev(&s, None, Check::LocalPortHeadroom), Severity::Critical);
        // One finding per destination short of ports, worst first; fine ones are not listed.
        let s = ports((40_000, 40_099), &[10, 99, 85]);
        let r = evaluate(&s, None, &th());
        let got: Vec<_> = r.of(Check::LocalPortHeadroom).map(|f| f.severity).collect();
        assert_eq!(got, [Severity::Critical, Severity::Warning]);
        // No outgoing connections; an unreadable or inverted range is unknown.
        let s = ports((32_768, 60_999), &[]);
        let r = evaluate(&s, None, &th());
        assert_eq!(
            one(&r, Check::LocalPortHeadroom).value,
            Measure::Percent(100.0)
        );
        let s = ports((2, 1), &[1]);
        assert_eq!(sev(&s, None, Check::LocalPortHeadroom), Severity::Unknown);
        assert_eq!(
            sev(&HostSample::default(), None, Check::LocalPortHeadroom),
            Severity::Unknown
        );
    }

    fn counters(overflows: u64, drops: u64, tw: u64) -> HostSample {
        let mut s = HostSample::default();
        let mut c = TcpCounters::default();
        c.listen_overflows = Some(overflows);
        c.listen_drops = Some(drops);
        c.time_wait_overflow = Some(tw);
        s.counters = Some(c);
        s
    }

    #[test]
    fn counter_deltas() {
        let before = counters(10, 20, 30);
        assert_eq!(
            evaluate(&before, None, &th())
                .of(Check::ListenOverflows)
                .count(),
            0
        );
        let same = counters(10, 20, 30);
        for check in [
            Check::ListenOverflows,
            Check::ListenDrops,
            Check::TimeWaitOverflow,
        ] {
            assert_eq!(sev(&same, Some(&before), check), Severity::Ok, "{check}");
        }
        let now = counters(11, 20, 35);
        let r = evaluate(&now, Some(&before), &th());
        let f = one(&r, Check::ListenOverflows);
        assert_eq!(
            (f.severity, f.value.as_count()),
            (Severity::Warning, Some(1))
        );
        assert_eq!(one(&r, Check::ListenDrops).severity, Severity::Ok);
        let f = one(&r, Check::TimeWaitOverflow);
        assert_eq!(
            (f.severity, f.value.as_count()),
            (Severity::Warning, Some(5))
        );
        assert!(f.recommendation.contains("tcp_max_tw_buckets"));
        // A reset counter counts from zero; a missing one is unknown.
        let reset = counters(0, 3, 30);
        assert_eq!(
            sev(&reset, Some(&before), Check::ListenDrops),
            Severity::Warning
        );
        assert_eq!(
            sev(&reset, Some(&before), Check::ListenOverflows),
            Severity::Ok
        );
        let missing = HostSample::default();
        assert_eq!(
            sev(&missing, Some(&before), Check::ListenDrops),
            Severity::Unknown
        );
    }

    fn fd(open: u64, limit: Option<u64>) -> FdUsage {
        let mut u = FdUsage::default();
        u.open = open;
        u.soft_limit = limit;
        u
    }

    #[test]
    fn fd_usage_levels() {
        for (open, want) in [
            (800, Severity::Ok),
            (801, Severity::Warning),
            (950, Severity::Warning),
            (951, Severity::Critical),
        ] {
            let mut s = HostSample::default();
            s.process_fds = vec![
                ProcessFd::new(1, "init", fd(10, Some(1000))),
                ProcessFd::new(42, "java", fd(open, Some(1000))),
                ProcessFd::new(43, "free", fd(1_000_000, None)),
            ];
            let r = evaluate(&s, None, &th());
            let f = one(&r, Check::ProcessFdUsage);
            assert_eq!(f.severity, want, "{open}");
            assert!(f.message.contains("pid 42 (java)"), "{}", f.message);
        }
        let mut s = HostSample::default();
        let mut nr = FileNr::default();
        for (alloc, want) in [
            (80, Severity::Ok),
            (81, Severity::Warning),
            (96, Severity::Critical),
        ] {
            nr.allocated = alloc;
            nr.max = 100;
            s.file_nr = Some(nr);
            let r = evaluate(&s, None, &th());
            let f = one(&r, Check::SystemFileNr);
            assert_eq!(f.severity, want, "{alloc}");
            assert!(f.recommendation.starts_with("fs.file-max = "));
        }
        assert_eq!(
            sev(&HostSample::default(), None, Check::SystemFileNr),
            Severity::Unknown
        );
        assert_eq!(
            sev(&HostSample::default(), None, Check::ProcessFdUsage),
            Severity::Ok
        );
    }

    #[test]
    fn conntrack_levels() {
        assert_eq!(
            sev(&HostSample::default(), None, Check::Conntrack),
            Severity::Ok
        );
        let mut s = HostSample::default();
        let mut ct = Conntrack::default();
        ct.max = 1000;
        for (count, want) in [
            (800, Severity::Ok),
            (801, Severity::Warning),
            (950, Severity::Warning),
            (951, Severity::Critical),
        ] {
            ct.count = count;
            s.conntrack = Some(ct);
            let r = evaluate(&s, None, &th());
            let f = one(&r, Check::Conntrack);
            assert_eq!(f.severity, want, "{count}");
            assert!(f.recommendation.contains("nf_conntrack_max = 262144"));
        }
    }

    #[test]
    fn listener_backlog_and_full_queues() {
        let mut s = HostSample::default();
        s.sysctls.somaxconn = Some(4096);
        s.listeners = vec![listener(80, 0, Some(511)), listener(8080, 3, Some(4096))];
        let r = evaluate(&s, None, &th());
        // Capped at 4096, which is the recommended floor: reported, OK.
        let f = one(&r, Check::ListenerBacklog);
        assert_eq!((f.severity, f.value.as_count()), (Severity::Ok, Some(4096)));
        assert_eq!(f.subject.as_deref(), Some("0.0.0.0:8080"));
        assert!(f.message.contains("effective backlog 4096"));
        assert_eq!(one(&r, Check::AcceptQueueFull).severity, Severity::Ok);
        // A lower somaxconn capping a listener: warning with the sysctl line.
        s.sysctls.somaxconn = Some(511);
        let r = evaluate(&s, None, &th());
        let f = one(&r, Check::ListenerBacklog);
        assert_eq!(
            (f.severity, f.value.as_count()),
            (Severity::Warning, Some(511))
        );
        assert_eq!(f.subject.as_deref(), Some("0.0.0.0:80"));
        assert!(f.recommendation.starts_with("net.core.somaxconn = 4096"));
        // A queue at its maximum is critical; one below it is not.
        s.listeners = vec![listener(80, 510, Some(511))];
        assert_eq!(sev(&s, None, Check::AcceptQueueFull), Severity::Ok);
        s.listeners = vec![listener(80, 511, Some(511))];
        let r = evaluate(&s, None, &th());
        let f = one(&r, Check::AcceptQueueFull);
        assert_eq!(f.severity, Severity::Critical);
        assert_eq!(
            (f.value.as_count(), f.threshold.as_count()),
            (Some(511), Some(511))
        );
        // backlog 0 with nothing queued is not full; the maximum unknown is unknown.
        s.listeners = vec![listener(80, 0, Some(0))];
        assert_eq!(sev(&s, None, Check::AcceptQueueFull), Severity::Ok);
        s.listeners = vec![listener(80, 0, None)];
        assert_eq!(sev(&s, None, Check::AcceptQueueFull), Severity::Unknown);
        assert_eq!(sev(&s, None, Check::ListenerBacklog), Severity::Unknown);
    }

    fn sysctls_ok() -> HostSample {
        let mut s = HostSample::default();
        let sys = &mut s.sysctls;
        sys.ip_local_port_range = Some((32_768, 60_999));
        sys.tcp_tw_reuse = Some(2);
        sys.tcp_max_tw_buckets = Some(262_144);
        sys.tcp_fin_timeout = Some(60);
        sys.somaxconn = Some(4096);
        sys.tcp_max_syn_backlog = Some(1024);
        sys.tcp_syncookies = Some(1);
        sys.tcp_keepalive_time = Some(7200);
        sys.tcp_keepalive_intvl = Some(75);
        sys.tcp_keepalive_probes = Some(9);
        let mut nr = FileNr::default();
        nr.allocated = 1_000;
        nr.max = 1_000_000;
        s.file_nr = Some(nr);
        s
    }

    #[test]
    fn kernel_defaults_are_ok() {
        let s = sysctls_ok();
        let r = evaluate(&s, None, &th());
        for check in [
            Check::TcpTwReuse,
            Check::TcpMaxTwBuckets,
            Check::TcpFinTimeout,
            Check::Somaxconn,
            Check::TcpMaxSynBacklog,
            Check::TcpSyncookies,
            Check::TcpKeepalive,
            Check::LocalPortRange,
        ] {
            assert_eq!(one(&r, check).severity, Severity::Ok, "{check}");
        }
        assert_eq!(one(&r, Check::TcpKeepalive).value, Measure::Count(7875));
        assert_eq!(r.status(), Severity::Ok, "{:#?}", r.findings);
        // Nothing readable: every setting unknown.
        let r = evaluate(&HostSample::default(), None, &th());
        assert_eq!(one(&r, Check::TcpKeepalive).severity, Severity::Unknown);
        assert_eq!(r.status(), Severity::Unknown);
    }

    #[test]
    fn tw_reuse_only_where_it_helps() {
        let mut s = sysctls_ok();
        s.states.set(TcpState::TimeWait, 50_000);
        assert_eq!(sev(&s, None, Check::TcpTwReuse), Severity::Ok);
        s.states.set(TcpState::TimeWait, 50_001);
        let r = evaluate(&s, None, &th());
        let f = one(&r, Check::TcpTwReuse);
        assert_eq!(f.severity, Severity::Warning);
        assert!(f.recommendation.starts_with("net.ipv4.tcp_tw_reuse = 1"));
        s.sysctls.tcp_tw_reuse = Some(1);
        assert_eq!(sev(&s, None, Check::TcpTwReuse), Severity::Ok);
        // Ports running short toward a destination also make it help.
        let mut s = sysctls_ok();
        s.sysctls.tcp_tw_reuse = Some(0);
        s.port_usage = vec![PortUse::new(SocketAddr::from(([10, 0, 0, 1], 80)), 28_000)];
        assert_eq!(sev(&s, None, Check::TcpTwReuse), Severity::Warning);
    }

    #[test]
    fn tw_buckets_fin_timeout_syn_backlog() {
        let mut s = sysctls_ok();
        s.sysctls.tcp_max_tw_buckets = Some(1000);
        s.states.set(TcpState::TimeWait, 799);
        assert_eq!(sev(&s, None, Check::TcpMaxTwBuckets), Severity::Ok);
        s.states.set(TcpState::TimeWait, 800);
        let r = evaluate(&s, None, &th());
        let f = one(&r, Check::TcpMaxTwBuckets);
        assert_eq!(f.severity, Severity::Warning);
        assert_eq!(f.recommendation, "net.ipv4.tcp_max_tw_buckets = 200000");

        let mut s = sysctls_ok();
        s.states.set(TcpState::FinWait2, 501);
        let r = evaluate(&s, None, &th());
        let f = one(&r, Check::TcpFinTimeout);
        assert_eq!(f.severity, Severity::Warning);
        assert_eq!(f.recommendation, "net.ipv4.tcp_fin_timeout = 30");
        s.sysctls.tcp_fin_timeout = Some(30);
        assert_eq!(sev(&s, None, Check::TcpFinTimeout), Severity::Ok);

        let mut s = sysctls_ok();
        s.states.set(TcpState::SynRecv, 512);
        assert_eq!(sev(&s, None, Check::TcpMaxSynBacklog), Severity::Ok);
        s.states.set(TcpState::SynRecv, 513);
        let r = evaluate(&s, None, &th());
        let f = one(&r, Check::TcpMaxSynBacklog);
        assert_eq!(f.severity, Severity::Warning);
        assert_eq!(f.recommendation, "net.ipv4.tcp_max_syn_backlog = 4096");
    }

    #[test]
    fn somaxconn_syncookies_port_range() {
        let mut s = sysctls_ok();
        s.sysctls.somaxconn = Some(4095);
        let r = evaluate(&s, None, &th());
        let f = one(&r, Check::Somaxconn);
        assert_eq!(f.severity, Severity::Warning);
        assert_eq!(f.recommendation, "net.core.somaxconn = 4096");
        s.sysctls.tcp_syncookies = Some(0);
        assert_eq!(sev(&s, None, Check::TcpSyncookies), Severity::Warning);
        s.sysctls.tcp_syncookies = Some(2);
        assert_eq!(sev(&s, None, Check::TcpSyncookies), Severity::Ok);
        // 16 384 ports is enough; 16 383 is narrow.
        s.sysctls.ip_local_port_range = Some((40_000, 56_383));
        assert_eq!(sev(&s, None, Check::LocalPortRange), Severity::Ok);
        s.sysctls.ip_local_port_range = Some((40_000, 56_382));
        let r = evaluate(&s, None, &th());
        let f = one(&r, Check::LocalPortRange);
        assert_eq!(
            (f.severity, f.value.as_count()),
            (Severity::Warning, Some(16_383))
        );
        assert!(f
            .recommendation
            .starts_with("net.ipv4.ip_local_port_range = 1024 65535"));
    }

    #[test]
    fn every_finding_says_what_to_do() {
        let mut s = sysctls_ok();
        s.states.set(TcpState::TimeWait, 200_000);
        s.states.set(TcpState::CloseWait, 5_000);
        s.close_wait_by_process = vec![ProcessCount::new(1, "x", 5_000)];
        let prev = counters(0, 0, 0);
        let mut now = s.clone();
        now.counters = counters(1, 1, 1).counters;
        let r = evaluate(&now, Some(&prev), &th());
        for f in &r.findings {
            assert!(
                !f.message.is_empty() && !f.recommendation.is_empty(),
                "{f:?}"
            );
        }
        // Report order follows Check::ALL.
        let order: Vec<usize> = r
            .findings
            .iter()
            .map(|f| Check::ALL.iter().position(|c| *c == f.check).unwrap())
            .collect();
        assert!(order.windows(2).all(|w| w[0] <= w[1]), "{order:?}");
        assert_eq!(r.status(), Severity::Critical);
        assert!(r.count(Severity::Critical) >= 2);
    }
}
