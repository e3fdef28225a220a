//! Settings that work against what the sample shows: the `sysctl_*` checks.

use super::ports::ports_short;
use super::{Cx, Findings, Levels};
use crate::findings::{Check, Measure, Severity};
use crate::TcpState;

/// Every setting, in [`Check::ALL`] order.
pub(super) fn all(cx: &Cx<'_>, out: &mut Findings) {
    tw_reuse(cx, out);
    max_tw_buckets(cx, out);
    fin_timeout(cx, out);
    somaxconn(cx, out);
    max_syn_backlog(cx, out);
    syncookies(cx, out);
    keepalive(cx, out);
    port_range(cx, out);
}

/// The setting `name`, or `None` after an `UNKNOWN` finding of `check`.
fn setting<T>(out: &mut Findings, check: Check, value: Option<T>, name: &str) -> Option<T> {
    out.read(
        check,
        value,
        name,
        "check that /proc/sys is mounted and readable in this namespace",
    )
}

/// `tcp_tw_reuse`: only where it helps, i.e. many `TIME_WAIT` or ports running short.
fn tw_reuse(cx: &Cx<'_>, out: &mut Findings) {
    let (check, name) = (Check::TcpTwReuse, "net.ipv4.tcp_tw_reuse");
    let Some(v) = setting(out, check, cx.s.sysctls.tcp_tw_reuse, name) else {
        return;
    };
    let short = ports_short(cx);
    let helps = cx.count(TcpState::TimeWait) > cx.t.time_wait().0 || short;
    let sev = if helps && v != 1 {
        Severity::Warning
    } else {
        Severity::Ok
    };
    let message = match (helps, v) {
        (true, 1) => "tcp_tw_reuse = 1: outgoing connections reuse TIME_WAIT ports".to_owned(),
        (true, _) => format!(
            "tcp_tw_reuse = {v} while {} ; reuse lets outgoing connections take \
             ports still in TIME_WAIT",
            if short {
                "local ports run short toward a destination"
            } else {
                "TIME_WAIT is above its warning level"
            }
        ),
        (false, _) => {
            format!("tcp_tw_reuse = {v}; TIME_WAIT and local ports are fine, reuse would not help")
        }
    };
    out.record(sev, check, Measure::Count(u64::from(v)), Measure::Count(1))
        .says(
            message,
            "net.ipv4.tcp_tw_reuse = 1 (outgoing connections only; needs TCP \
             timestamps, on by default)",
        );
}

/// `tcp_max_tw_buckets`: `TIME_WAIT` at 80 % of the buckets or more.
fn max_tw_buckets(cx: &Cx<'_>, out: &mut Findings) {
    let (check, name) = (Check::TcpMaxTwBuckets, "net.ipv4.tcp_max_tw_buckets");
    let Some(b) = setting(out, check, cx.s.sysctls.tcp_max_tw_buckets, name) else {
        return;
    };
    let tw = cx.count(TcpState::TimeWait);
    let limit = b.saturating_mul(8) / 10;
    let sev = if tw >= limit {
        Severity::Warning
    } else {
        Severity::Ok
    };
    out.record(sev, check, Measure::Count(tw), Measure::Count(limit))
        .says(
            format!(
                "{tw} TIME_WAIT sockets against tcp_max_tw_buckets {b}; above it \
                 the kernel destroys TIME_WAIT sockets early"
            ),
            format!(
                "net.ipv4.tcp_max_tw_buckets = {}",
                b.max(tw.saturating_mul(2)).max(200_000)
            ),
        );
}

/// `tcp_fin_timeout`: long, while `FIN_WAIT2` piles up.
fn fin_timeout(cx: &Cx<'_>, out: &mut Findings) {
    let (check, name) = (Check::TcpFinTimeout, "net.ipv4.tcp_fin_timeout");
    let Some(v) = setting(out, check, cx.s.sysctls.tcp_fin_timeout, name) else {
        return;
    };
    let max = cx.t.max_fin_timeout();
    let piling = cx.count(TcpState::FinWait2) > cx.t.fin_wait2_warning();
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
    out.record(
        sev,
        check,
        Measure::Count(u64::from(v)),
        Measure::Count(u64::from(max)),
    )
    .says(
        message,
        format!("net.ipv4.tcp_fin_timeout = {}", v.min(max)),
    );
}

fn somaxconn(cx: &Cx<'_>, out: &mut Findings) {
    let (check, name) = (Check::Somaxconn, "net.core.somaxconn");
    let Some(v) = setting(out, check, cx.s.sysctls.somaxconn, name) else {
        return;
    };
    let min = cx.t.min_somaxconn();
    out.judge(check, u64::from(v), Levels::below(u64::from(min)))
        .says(
            format!("somaxconn = {v}: every accept queue is at most min(backlog, {v})"),
            format!("net.core.somaxconn = {}", v.max(min)),
        );
}

/// `tcp_max_syn_backlog`: half-open connections past half of it.
fn max_syn_backlog(cx: &Cx<'_>, out: &mut Findings) {
    let (check, name) = (Check::TcpMaxSynBacklog, "net.ipv4.tcp_max_syn_backlog");
    let Some(v) = setting(out, check, cx.s.sysctls.tcp_max_syn_backlog, name) else {
        return;
    };
    let syn = cx.count(TcpState::SynRecv);
    out.judge(check, syn, Levels::above(u64::from(v) / 2)).says(
        format!("{syn} half-open connections against tcp_max_syn_backlog {v}"),
        format!(
            "net.ipv4.tcp_max_syn_backlog = {}",
            v.max(syn_backlog_for(syn))
        ),
    );
}

/// A SYN backlog comfortably above `syn` half-open connections.
fn syn_backlog_for(syn: u64) -> u32 {
    let want = syn.saturating_mul(4).max(4096);
    u32::try_from(want.next_power_of_two()).unwrap_or(u32::MAX)
}

fn syncookies(cx: &Cx<'_>, out: &mut Findings) {
    let (check, name) = (Check::TcpSyncookies, "net.ipv4.tcp_syncookies");
    let Some(v) = setting(out, check, cx.s.sysctls.tcp_syncookies, name) else {
        return;
    };
    let message = if v == 0 {
        "tcp_syncookies = 0: a SYN flood fills the SYN queue and locks out clients".to_owned()
    } else {
        format!("tcp_syncookies = {v}")
    };
    // Off is below 1.
    out.judge(check, u64::from(v), Levels::below(1))
        .says(message, "net.ipv4.tcp_syncookies = 1");
}

/// The keepalive settings together: how long a dead peer goes unnoticed. Informational.
fn keepalive(cx: &Cx<'_>, out: &mut Findings) {
    let check = Check::TcpKeepalive;
    let sys = &cx.s.sysctls;
    let all = sys
        .tcp_keepalive_time
        .zip(sys.tcp_keepalive_intvl)
        .zip(sys.tcp_keepalive_probes);
    let Some(((time, intvl), probes)) = setting(out, check, all, "net.ipv4.tcp_keepalive_*") else {
        return;
    };
    let detect = u64::from(time) + u64::from(intvl) * u64::from(probes);
    let max = cx.t.max_keepalive_detect_secs();
    let message = if detect > max {
        format!(
            "keepalive finds a dead peer after {detect} s ({time} + {intvl} x \
             {probes}); only for sockets with SO_KEEPALIVE"
        )
    } else {
        format!("keepalive finds a dead peer after {detect} s")
    };
    out.record(
        Severity::Ok,
        check,
        Measure::Count(detect),
        Measure::Count(max),
    )
    .says(
        message,
        "net.ipv4.tcp_keepalive_time = 600; net.ipv4.tcp_keepalive_intvl = 15; \
         net.ipv4.tcp_keepalive_probes = 3 (and SO_KEEPALIVE on long-lived \
         connections)",
    );
}

fn port_range(cx: &Cx<'_>, out: &mut Findings) {
    let (check, name) = (Check::LocalPortRange, "net.ipv4.ip_local_port_range");
    let Some((lo, hi)) = setting(out, check, cx.s.sysctls.ip_local_port_range, name) else {
        return;
    };
    let width = u64::from(hi.saturating_sub(lo)) + u64::from(lo <= hi);
    let min = u64::from(cx.t.min_port_range_width());
    out.judge(check, width, Levels::below(min)).says(
        format!("ip_local_port_range = {lo} {hi}: {width} local ports per destination"),
        "net.ipv4.ip_local_port_range = 1024 65535 (keep listening ports \
         out of it with net.ipv4.ip_local_reserved_ports)",
    );
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::super::testing::{one, sev, sysctls_ok, th};
    use crate::findings::{evaluate, Check, HostSample, Measure, PortUse, Severity};
    use crate::TcpState;

    #[test]
    fn kernel_defaults_are_ok() {
        let s = sysctls_ok();
        let r = evaluate(&s, None, &th());
        let settings = Check::ALL
            .iter()
            .filter(|c| c.as_str().starts_with("sysctl_"));
        assert_eq!(settings.clone().count(), 8);
        for check in settings {
            assert_eq!(one(&r, *check).severity, Severity::Ok, "{check}");
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
}
