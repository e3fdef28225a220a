//! `keepalive_missing`: a process's connections toward an endpoint with no keepalive timer
//! armed. A peer that vanishes (a crashed host, a NAT or load balancer that dropped the flow)
//! sends nothing more: without keepalive such a connection is held until something is sent on
//! it, forever for an idle pooled connection or a CLOSE_WAIT nobody reads.

use super::{proc_name, Cx, Findings};
use crate::findings::{Check, Measure, Severity};
use crate::peers::Peer;

/// Endpoints named in a finding of their own, most sockets without keepalive first; the rest
/// share one.
const MAX_NAMED: usize = 10;

const FIX: &str = "turn keepalive on for these connections where they are made (SO_KEEPALIVE \
                   with TCP_KEEPIDLE below the idle timeout of the peer and of any middlebox; \
                   conn-hygiene's SocketPolicy does it for its listener and client), or in the \
                   driver or pool settings that make them";

pub(super) fn keepalive_missing(cx: &Cx<'_>, out: &mut Findings) {
    let name = match cx.s.pid {
        Some(pid) => proc_name(
            pid,
            cx.s.process_fds
                .iter()
                .find(|p| p.pid == pid)
                .map_or("?", |p| p.comm.as_str()),
        ),
        None => {
            out.record(
                Severity::Ok,
                Check::KeepaliveMissing,
                Measure::None,
                Measure::Count(0),
            )
            .says(
                "no process was looked at (doctor --pid PID reads one's connections)",
                "nothing to do",
            );
            return;
        }
    };
    let Some(peers) = out.read(
        Check::KeepaliveMissing,
        cx.s.peers.as_ref(),
        &format!("the timers of {name}'s connections (netlink sock_diag)"),
        "run as root or as the process's user, on Linux",
    ) else {
        return;
    };
    let mut missing: Vec<&Peer> = peers.iter().filter(|p| p.without_keepalive > 0).collect();
    missing.sort_by(|a, b| {
        b.without_keepalive
            .cmp(&a.without_keepalive)
            .then_with(|| a.remote.cmp(&b.remote))
    });
    if missing.is_empty() {
        let total: u64 = peers.iter().map(Peer::sockets).sum();
        out.record(
            Severity::Ok,
            Check::KeepaliveMissing,
            Measure::Count(0),
            Measure::Count(0),
        )
        .about(name.clone())
        .says(
            format!(
                "all {total} connections of {name} toward {} endpoints have a keepalive timer",
                peers.len()
            ),
            "nothing to do",
        );
        return;
    }
    for p in missing.iter().take(MAX_NAMED) {
        out.record(
            Severity::Warning,
            Check::KeepaliveMissing,
            Measure::Count(p.without_keepalive),
            Measure::Count(0),
        )
        .about(p.remote.to_string())
        .says(
            format!(
                "{} of {} connections of {name} toward {} have no keepalive timer armed",
                p.without_keepalive,
                p.sockets(),
                p.remote
            ),
            FIX,
        );
    }
    if missing.len() > MAX_NAMED {
        let rest = &missing[MAX_NAMED..];
        let count: u64 = rest.iter().map(|p| p.without_keepalive).sum();
        out.record(
            Severity::Warning,
            Check::KeepaliveMissing,
            Measure::Count(count),
            Measure::Count(0),
        )
        .about(format!("{} more endpoints", rest.len()))
        .says(
            format!(
                "{count} more connections of {name} toward {} other endpoints have no \
                 keepalive timer armed",
                rest.len()
            ),
            FIX,
        );
    }
}
