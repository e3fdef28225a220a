//! The checks, one family per file, and the shape they share.
//!
//! Every check reads its input or reports `UNKNOWN` ([`Findings::read`]), holds a value
//! against warning and critical [`Levels`] ([`Findings::judge`]), and says what it found and
//! what to do ([`Finding::says`]). A check that decides its severity another way records it
//! with [`Findings::record`].

mod counters;
mod limits;
mod listeners;
mod peers;
mod ports;
mod states;
mod sysctls;

#[cfg(test)]
mod golden;

use super::{Check, Finding, HostSample, Measure, Report, Severity, Thresholds};
use crate::TcpState;

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
    let mut out = Findings::default();
    for check in CHECKS {
        check(&cx, &mut out);
    }
    Report { findings: out.list }
}

/// Every check, in [`Check::ALL`] order.
const CHECKS: [fn(&Cx<'_>, &mut Findings); 16] = [
    states::time_wait,
    states::close_wait,
    states::close_wait_growing,
    states::syn_recv,
    states::fin_wait2,
    ports::local_port_headroom,
    counters::deltas,
    limits::process_fds,
    peers::keepalive_missing,
    peers::close_wait_age,
    peers::idle_too_long,
    limits::file_nr,
    limits::conntrack,
    listeners::backlog,
    listeners::accept_queue_full,
    sysctls::all,
];

/// What every check looks at: the sample, the one before it, the thresholds.
struct Cx<'a> {
    s: &'a HostSample,
    prev: Option<&'a HostSample>,
    t: &'a Thresholds,
}

impl Cx<'_> {
    fn count(&self, state: TcpState) -> u64 {
        self.s.states[state]
    }
}

/// The findings of one evaluation, recorded in order.
#[derive(Default)]
struct Findings {
    list: Vec<Finding>,
}

impl Findings {
    /// `input` when it was read; otherwise `None`, after one `UNKNOWN` finding of `check`
    /// saying that `what` could not be read, with `fix` as its recommendation.
    fn read<T>(&mut self, check: Check, input: Option<T>, what: &str, fix: &str) -> Option<T> {
        if input.is_none() {
            self.record(Severity::Unknown, check, Measure::None, Measure::None)
                .says(format!("{what} could not be read"), fix);
        }
        input
    }

    /// Records a finding of `check` whose `value` is held against `levels`: its severity and
    /// the threshold crossed (else the first level). The caller gives it its words.
    fn judge<V: Level>(&mut self, check: Check, value: V, levels: Levels<V>) -> &mut Finding {
        let (severity, threshold) = levels.judge(value);
        self.record(severity, check, value.measure(), threshold.measure())
    }

    /// Records a finding whose severity the check decided. The caller gives it its words.
    fn record(
        &mut self,
        severity: Severity,
        check: Check,
        value: Measure,
        threshold: Measure,
    ) -> &mut Finding {
        self.list
            .push(Finding::new(severity, check, value, threshold));
        let last = self.list.len() - 1;
        &mut self.list[last]
    }
}

/// A value a check holds against levels: a count or a percentage.
trait Level: Copy + PartialOrd {
    fn measure(self) -> Measure;
}

impl Level for u64 {
    fn measure(self) -> Measure {
        Measure::Count(self)
    }
}

impl Level for f64 {
    fn measure(self) -> Measure {
        Measure::Percent(self)
    }
}

/// Warning and critical levels; a value strictly beyond one has crossed it.
#[derive(Debug, Clone, Copy)]
struct Levels<V> {
    warning: Option<V>,
    critical: Option<V>,
    /// Low values are bad (headroom); high ones otherwise.
    below: bool,
}

impl<V: Level> Levels<V> {
    /// A warning above `warning`.
    fn above(warning: V) -> Self {
        Levels {
            warning: Some(warning),
            critical: None,
            below: false,
        }
    }

    /// A warning below `warning`.
    fn below(warning: V) -> Self {
        Levels {
            below: true,
            ..Levels::above(warning)
        }
    }

    /// Critical above `critical`, and no warning level.
    fn critical_above(critical: V) -> Self {
        Levels {
            warning: None,
            critical: Some(critical),
            below: false,
        }
    }

    /// Critical beyond `critical` too.
    fn critical(self, critical: V) -> Self {
        Levels {
            critical: Some(critical),
            ..self
        }
    }

    /// The severity of `value` and the level it is held against: the one crossed, else the
    /// warning level (the critical one when there is no warning level).
    fn judge(self, value: V) -> (Severity, V) {
        let crossed = |level: V| {
            if self.below {
                value < level
            } else {
                value > level
            }
        };
        match (self.warning, self.critical) {
            (_, Some(c)) if crossed(c) => (Severity::Critical, c),
            (Some(w), _) if crossed(w) => (Severity::Warning, w),
            (Some(w), _) => (Severity::Ok, w),
            (None, Some(c)) => (Severity::Ok, c),
            (None, None) => unreachable!("every constructor sets a level"),
        }
    }
}

/// `part` of `whole` in percent; 0 when `whole` is 0.
fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// A process as findings name it: `pid 42 (java)`.
fn proc_name(pid: u32, comm: &str) -> String {
    format!("pid {pid} ({comm})")
}

/// Helpers for the checks' tests.
#[cfg(test)]
// Samples are filled field by field, as code outside the crate must fill these
// `#[non_exhaustive]` structs.
#[allow(clippy::field_reassign_with_default)]
mod testing {
    use std::net::SocketAddr;

    use super::evaluate;
    use crate::findings::{Check, Finding, HostSample, Report, Severity, Thresholds};
    use crate::{Family, FileNr, Listener, TcpCounters, TcpState};

    pub(super) fn th() -> Thresholds {
        Thresholds::default()
    }

    pub(super) fn with_state(state: TcpState, n: u64) -> HostSample {
        let mut s = HostSample::default();
        s.states.set(state, n);
        s
    }

    /// The one finding of `check`.
    pub(super) fn one(report: &Report, check: Check) -> &Finding {
        let mut it = report.of(check);
        let f = it.next().unwrap_or_else(|| panic!("no {check} finding"));
        assert!(it.next().is_none(), "more than one {check} finding");
        f
    }

    /// The severity of the one finding of `check`, with the default thresholds.
    pub(super) fn sev(sample: &HostSample, prev: Option<&HostSample>, check: Check) -> Severity {
        one(&evaluate(sample, prev, &th()), check).severity
    }

    pub(super) fn listener(port: u16, len: u32, max: Option<u32>) -> Listener {
        Listener {
            family: Family::Ipv4,
            local: SocketAddr::from(([0, 0, 0, 0], port)),
            inode: u64::from(port),
            uid: 0,
            queue_len: len,
            queue_max: max,
        }
    }

    pub(super) fn counters(overflows: u64, drops: u64, tw: u64) -> HostSample {
        let mut c = TcpCounters::default();
        c.listen_overflows = Some(overflows);
        c.listen_drops = Some(drops);
        c.time_wait_overflow = Some(tw);
        let mut s = HostSample::default();
        s.counters = Some(c);
        s
    }

    /// Every setting readable, at the kernel's defaults.
    pub(super) fn sysctls_ok() -> HostSample {
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
}

#[cfg(test)]
mod tests {
    use super::testing::{counters, sysctls_ok, th};
    use super::*;
    use crate::findings::ProcessCount;

    #[test]
    fn levels_hold_values_strictly_beyond() {
        let l = Levels::above(10u64).critical(20);
        assert_eq!(l.judge(10), (Severity::Ok, 10));
        assert_eq!(l.judge(11), (Severity::Warning, 10));
        assert_eq!(l.judge(21), (Severity::Critical, 20));
        let l = Levels::below(20.0).critical(5.0);
        assert_eq!(l.judge(20.0), (Severity::Ok, 20.0));
        assert_eq!(l.judge(19.0), (Severity::Warning, 20.0));
        assert_eq!(l.judge(4.0), (Severity::Critical, 5.0));
        let l = Levels::critical_above(7u64);
        assert_eq!(l.judge(7), (Severity::Ok, 7));
        assert_eq!(l.judge(8), (Severity::Critical, 7));
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
