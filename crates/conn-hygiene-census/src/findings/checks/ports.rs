//! Local ports running out toward one destination: `local_port_headroom`.

use super::{percent, Cx, Findings, Levels};
use crate::findings::{Check, Measure, PortUse, Severity};

pub(super) fn local_port_headroom(cx: &Cx<'_>, out: &mut Findings) {
    let Some(size) = out.read(
        Check::LocalPortHeadroom,
        cx.s.port_range_size(),
        "net.ipv4.ip_local_port_range",
        "check that /proc/sys/net/ipv4/ip_local_port_range is readable",
    ) else {
        return;
    };
    let (w, c) = cx.t.port_headroom_percent();
    let levels = Levels::below(w).critical(c);
    let fix = "reuse connections to this destination (keep-alive, pool) instead of \
               opening one per request; net.ipv4.ip_local_port_range = 1024 65535; \
               spread over more destination addresses or source addresses; \
               net.ipv4.tcp_tw_reuse = 1";
    let mut uses: Vec<&PortUse> = cx.s.port_usage.iter().collect();
    uses.sort_by(|a, b| b.used.cmp(&a.used).then(a.destination.cmp(&b.destination)));
    let mut any = false;
    for u in &uses {
        let left = u.headroom(size);
        let pct = percent(left, size);
        if levels.judge(pct).0 == Severity::Ok {
            break; // sorted: the rest have more headroom
        }
        any = true;
        out.judge(Check::LocalPortHeadroom, pct, levels)
            .about(u.destination.to_string())
            .says(
                format!(
                    "toward {}: {} of {size} local ports in use, {left} left ({pct:.1}%); \
                     connect() fails with EADDRNOTAVAIL when none are left",
                    u.destination, u.used
                ),
                fix,
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
        out.record(
            Severity::Ok,
            Check::LocalPortHeadroom,
            Measure::Percent(pct),
            Measure::Percent(w),
        )
        .says(message, fix);
    }
}

/// Whether some destination is below the port headroom warning level.
pub(super) fn ports_short(cx: &Cx<'_>) -> bool {
    let Some(size) = cx.s.port_range_size() else {
        return false;
    };
    let (w, _) = cx.t.port_headroom_percent();
    cx.s.port_usage
        .iter()
        .any(|u| percent(u.headroom(size), size) < w)
}

#[cfg(test)]
// Samples are filled field by field, as code outside the crate must fill these
// `#[non_exhaustive]` structs.
#[allow(clippy::field_reassign_with_default)]
mod tests {
    use std::net::SocketAddr;

    use super::super::testing::{one, sev, th};
    use crate::findings::{evaluate, Check, HostSample, Measure, PortUse, Severity};

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
}
