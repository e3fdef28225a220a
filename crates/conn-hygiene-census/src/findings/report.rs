//! What an evaluation says: [`Severity`], [`Check`], [`Measure`], [`Finding`] and [`Report`].

use std::fmt;

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
    /// `keepalive_missing`: a process's connections toward an endpoint with no keepalive
    /// timer armed (a peer that vanished would hold them forever).
    KeepaliveMissing,
    /// `close_wait_age`: a process's connection toward an endpoint left in `CLOSE_WAIT` long
    /// after the peer closed it.
    CloseWaitAge,
    /// `idle_too_long`: a process's connections toward an endpoint idle for longer than peers
    /// and middleboxes commonly keep an idle flow.
    IdleTooLong,
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
    pub const ALL: [Check; 25] = [
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
        Check::KeepaliveMissing,
        Check::CloseWaitAge,
        Check::IdleTooLong,
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
            Check::KeepaliveMissing => "keepalive_missing",
            Check::CloseWaitAge => "close_wait_age",
            Check::IdleTooLong => "idle_too_long",
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
    /// A finding with no words yet; [`says`](Self::says) gives them.
    pub(crate) fn new(
        severity: Severity,
        check: Check,
        value: Measure,
        threshold: Measure,
    ) -> Self {
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

    /// Sets what the finding is about.
    pub(crate) fn about(&mut self, subject: impl Into<String>) -> &mut Self {
        self.subject = Some(subject.into());
        self
    }

    /// Sets the message and the recommendation.
    pub(crate) fn says(
        &mut self,
        message: impl Into<String>,
        recommendation: impl Into<String>,
    ) -> &mut Self {
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

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

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
}
