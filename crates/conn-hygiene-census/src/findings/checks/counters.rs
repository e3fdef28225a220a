//! Kernel counters rising between two samples: `listen_overflows`, `listen_drops`,
//! `time_wait_overflow`.

use super::{Cx, Findings, Levels};
use crate::findings::Check;
use crate::TcpCounters;

/// One counter: its check, its name in `/proc/net/netstat`, how to pick it, what to do.
struct Counter {
    check: Check,
    name: &'static str,
    pick: fn(&TcpCounters) -> Option<u64>,
    fix: &'static str,
}

const COUNTERS: [Counter; 3] = [
    Counter {
        check: Check::ListenOverflows,
        name: "TcpExt ListenOverflows",
        pick: |c| c.listen_overflows,
        fix: "completed connections were dropped because an accept queue was full: \
              accept faster (more acceptor threads, no blocking work before accept), \
              raise the listen() backlog and net.core.somaxconn = 4096",
    },
    Counter {
        check: Check::ListenDrops,
        name: "TcpExt ListenDrops",
        pick: |c| c.listen_drops,
        fix: "listeners dropped connection requests: see listen_overflows; also \
              net.ipv4.tcp_max_syn_backlog = 65535 and net.ipv4.tcp_syncookies = 1",
    },
    Counter {
        check: Check::TimeWaitOverflow,
        name: "TcpExt TCPTimeWaitOverflow",
        pick: |c| c.time_wait_overflow,
        fix: "TIME_WAIT sockets were destroyed early because tcp_max_tw_buckets was \
              reached: raise net.ipv4.tcp_max_tw_buckets, and close fewer connections",
    },
];

/// Each counter's rise since the previous sample; left out without one.
pub(super) fn deltas(cx: &Cx<'_>, out: &mut Findings) {
    let Some(prev) = cx.prev else { return };
    for Counter {
        check,
        name,
        pick,
        fix,
    } in COUNTERS
    {
        let now = cx.s.counters.as_ref().and_then(pick);
        let before = prev.counters.as_ref().and_then(pick);
        let Some((now, before)) = out.read(
            check,
            now.zip(before),
            name,
            "check that /proc/net/netstat is readable",
        ) else {
            continue;
        };
        // A counter that went down was reset: count from zero.
        let delta = now.checked_sub(before).unwrap_or(now);
        let message = if delta > 0 {
            format!("{name} rose by {delta} between the samples (now {now})")
        } else {
            format!("{name} did not rise between the samples (total {now})")
        };
        out.judge(check, delta, Levels::above(0)).says(message, fix);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{counters, one, sev, th};
    use crate::findings::{evaluate, Check, HostSample, Severity};

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
}
