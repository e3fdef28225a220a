//! Tables filling up against their limits: `process_fd_usage`, `system_file_nr`,
//! `conntrack`.

use super::{percent, proc_name, Cx, Findings, Levels};
use crate::findings::{Check, Finding, Measure, ProcessFd, Severity};

pub(super) fn process_fds(cx: &Cx<'_>, out: &mut Findings) {
    let (w, c) = cx.t.fd_usage_percent();
    let levels = Levels::above(w).critical(c);
    let fix = |pid: u32| {
        format!(
            "raise the limit of pid {pid}'s service (LimitNOFILE= in its systemd unit, \
             ulimit -n); if the count keeps growing, look for a descriptor leak"
        )
    };
    let mut rated: Vec<(&ProcessFd, f64)> =
        cx.s.process_fds
            .iter()
            .filter_map(|p| p.usage.ratio().map(|r| (p, r * 100.0)))
            .collect();
    rated.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.pid.cmp(&b.0.pid)));
    let mut any = false;
    for (p, pct) in &rated {
        if levels.judge(*pct).0 == Severity::Ok {
            break; // sorted: the rest use less
        }
        any = true;
        let name = proc_name(p.pid, &p.comm);
        let message = format!(
            "{name} has {} descriptors open of its limit {}",
            p.usage.open,
            p.usage.soft_limit.unwrap_or(0)
        );
        out.judge(Check::ProcessFdUsage, *pct, levels)
            .about(name)
            .says(message, fix(p.pid));
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
        out.record(
            Severity::Ok,
            Check::ProcessFdUsage,
            value,
            Measure::Percent(w),
        )
        .says(message, rec);
    }
}

/// `used` of `limit` in percent, held against the (warning, critical) `levels`.
fn share(
    out: &mut Findings,
    check: Check,
    used: u64,
    limit: u64,
    (warning, critical): (f64, f64),
) -> &mut Finding {
    let levels = Levels::above(warning).critical(critical);
    out.judge(check, percent(used, limit), levels)
}

pub(super) fn file_nr(cx: &Cx<'_>, out: &mut Findings) {
    let Some(nr) = out.read(
        Check::SystemFileNr,
        cx.s.file_nr,
        "/proc/sys/fs/file-nr",
        "check that /proc/sys/fs/file-nr is readable",
    ) else {
        return;
    };
    share(
        out,
        Check::SystemFileNr,
        nr.allocated,
        nr.max,
        cx.t.fd_usage_percent(),
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
    );
}

pub(super) fn conntrack(cx: &Cx<'_>, out: &mut Findings) {
    let Some(ct) = cx.s.conntrack else {
        // Not an unknown: no table, nothing to fill.
        out.record(Severity::Ok, Check::Conntrack, Measure::None, Measure::None)
            .says(
                "connection tracking is not in use in this network namespace",
                "nothing to do",
            );
        return;
    };
    share(
        out,
        Check::Conntrack,
        ct.count,
        ct.max,
        cx.t.conntrack_percent(),
    )
    .says(
        format!(
            "{} connections tracked of nf_conntrack_max {}; a full table drops new \
                 connections",
            ct.count, ct.max
        ),
        format!(
            "net.netfilter.nf_conntrack_max = {}; \
                 net.netfilter.nf_conntrack_tcp_timeout_time_wait = 30",
            ct.max.saturating_mul(2).max(262_144)
        ),
    );
}

#[cfg(test)]
// Samples are filled field by field, as code outside the crate must fill these
// `#[non_exhaustive]` structs.
#[allow(clippy::field_reassign_with_default)]
mod tests {
    use super::super::testing::{one, sev, th};
    use crate::findings::{evaluate, Check, HostSample, ProcessFd, Severity};
    use crate::{Conntrack, FdUsage, FileNr};

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
}
