//! A process's connections by remote endpoint, judged on what the kernel says of each:
//!
//! - `keepalive_missing`: no keepalive timer armed. A peer that vanishes (a crashed host, a NAT
//!   or load balancer that dropped the flow) sends nothing more: without keepalive such a
//!   connection is held until something is sent on it, forever for an idle pooled connection
//!   or a `CLOSE_WAIT` nobody reads.
//! - `close_wait_age`: left in `CLOSE_WAIT` long after the peer closed: a connection the
//!   application will not close, most likely leaked on an error path.
//! - `idle_too_long`: idle for longer than peers and middleboxes commonly keep an idle flow:
//!   the next request on it may wait for a retransmission timeout or meet a reset.
//!
//! Each names at most [`MAX_NAMED`] endpoints, the worst first; the rest share one finding.

use std::time::Duration;

use super::{proc_name, Cx, Findings, Levels};
use crate::findings::{Check, Measure, Severity};
use crate::peers::Peer;

/// Endpoints named in a finding of their own; the rest share one.
const MAX_NAMED: usize = 10;

const KEEPALIVE_FIX: &str = "turn keepalive on for these connections where they are made \
    (SO_KEEPALIVE with TCP_KEEPIDLE below the idle timeout of the peer and of any middlebox; \
    conn-hygiene's SocketPolicy does it for its listener and client), or in the driver or pool \
    settings that make them";
const CLOSE_WAIT_FIX: &str = "find what holds these connections (conn-hygiene's census traces \
    its own and its pools' to the line that leased them) and close them on every path, error \
    paths included; restart the process to free them now";
const IDLE_FIX: &str = "close idle pooled connections before the peer's and the middleboxes' \
    idle timeouts (a pool idle timeout below them), or keep them alive with TCP keepalive \
    probes more often than the shortest of those timeouts";

/// The process looked at, by name, and its endpoints; `None` after recording why there is
/// nothing to judge (no process asked for: OK; its connections unreadable: UNKNOWN).
fn looked_at<'a>(cx: &Cx<'a>, out: &mut Findings, check: Check) -> Option<(String, &'a [Peer])> {
    let Some(pid) = cx.s.pid else {
        out.record(Severity::Ok, check, Measure::None, Measure::None)
            .says(
                "no process was looked at (doctor --pid PID reads one's connections)",
                "nothing to do",
            );
        return None;
    };
    let comm =
        cx.s.process_fds
            .iter()
            .find(|p| p.pid == pid)
            .map_or("?", |p| p.comm.as_str());
    let name = proc_name(pid, comm);
    let peers = out.read(
        check,
        cx.s.peers.as_deref(),
        &format!("the timers of {name}'s connections (netlink sock_diag)"),
        "run as root or as the process's user, on Linux",
    )?;
    Some((name, peers))
}

/// Records a finding per endpoint in `flagged` (worst first, `severity` and value of each
/// given), ten at most and the rest together; or one OK finding saying `all_well`.
fn per_endpoint(
    out: &mut Findings,
    check: Check,
    threshold: Measure,
    mut flagged: Vec<(&Peer, Severity, Measure, String)>,
    all_well: String,
    rest: impl Fn(usize) -> String,
    fix: &str,
) {
    if flagged.is_empty() {
        out.record(Severity::Ok, check, Measure::None, threshold)
            .says(all_well, "nothing to do");
        return;
    }
    let tail = flagged.split_off(flagged.len().min(MAX_NAMED));
    for (p, severity, value, message) in flagged {
        out.record(severity, check, value, threshold.clone())
            .about(p.remote.to_string())
            .says(message, fix);
    }
    if let Some(worst) = tail
        .iter()
        .map(|(_, s, _, _)| *s)
        .max_by_key(|s| severity_rank(*s))
    {
        out.record(worst, check, Measure::Count(tail.len() as u64), threshold)
            .about(format!("{} more endpoints", tail.len()))
            .says(rest(tail.len()), fix);
    }
}

fn severity_rank(s: Severity) -> u8 {
    match s {
        Severity::Ok => 0,
        Severity::Unknown => 1,
        Severity::Warning => 2,
        Severity::Critical => 3,
    }
}

pub(super) fn keepalive_missing(cx: &Cx<'_>, out: &mut Findings) {
    let check = Check::KeepaliveMissing;
    let Some((name, peers)) = looked_at(cx, out, check) else {
        return;
    };
    let mut missing: Vec<&Peer> = peers.iter().filter(|p| p.without_keepalive > 0).collect();
    missing.sort_by(|a, b| {
        b.without_keepalive
            .cmp(&a.without_keepalive)
            .then_with(|| a.remote.cmp(&b.remote))
    });
    let total: u64 = peers.iter().map(Peer::sockets).sum();
    let flagged = missing
        .iter()
        .map(|p| {
            let message = format!(
                "{} of {} connections of {name} toward {} have no keepalive timer armed",
                p.without_keepalive,
                p.sockets(),
                p.remote
            );
            (
                *p,
                Severity::Warning,
                Measure::Count(p.without_keepalive),
                message,
            )
        })
        .collect();
    let count: u64 = missing
        .iter()
        .skip(MAX_NAMED)
        .map(|p| p.without_keepalive)
        .sum();
    per_endpoint(
        out,
        check,
        Measure::Count(0),
        flagged,
        format!(
            "all {total} connections of {name} toward {} endpoints have a keepalive timer",
            peers.len()
        ),
        |n| {
            format!(
                "{count} more connections of {name} toward {n} other endpoints have no \
                 keepalive timer armed"
            )
        },
        KEEPALIVE_FIX,
    );
}

pub(super) fn close_wait_age(cx: &Cx<'_>, out: &mut Findings) {
    let check = Check::CloseWaitAge;
    let Some((name, peers)) = looked_at(cx, out, check) else {
        return;
    };
    let (w, c) = cx.t.close_wait_age_secs();
    let levels = Levels::above(w).critical(c);
    let mut old: Vec<(&Peer, u64)> = peers
        .iter()
        .filter_map(|p| p.close_wait_max.map(|age| (p, age.as_secs())))
        .filter(|(_, age)| levels.judge(*age).0 != Severity::Ok)
        .collect();
    old.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.remote.cmp(&b.0.remote)));
    let flagged = old
        .iter()
        .map(|(p, age)| {
            let message = format!(
                "{} connections of {name} toward {} in CLOSE_WAIT, the oldest {} after the \
                 peer closed it",
                p.states[crate::TcpState::CloseWait],
                p.remote,
                secs(*age)
            );
            (*p, levels.judge(*age).0, Measure::Count(*age), message)
        })
        .collect();
    let held: u64 = peers
        .iter()
        .map(|p| p.states[crate::TcpState::CloseWait])
        .sum();
    per_endpoint(
        out,
        check,
        Measure::Count(w),
        flagged,
        format!(
            "{held} connections of {name} in CLOSE_WAIT, none for over {}",
            secs(w)
        ),
        |n| format!("connections of {name} toward {n} other endpoints left in CLOSE_WAIT"),
        CLOSE_WAIT_FIX,
    );
}

pub(super) fn idle_too_long(cx: &Cx<'_>, out: &mut Findings) {
    let check = Check::IdleTooLong;
    let Some((name, peers)) = looked_at(cx, out, check) else {
        return;
    };
    let limit = cx.t.max_idle_secs();
    let mut idle: Vec<(&Peer, u64)> = peers
        .iter()
        .filter(|p| p.states[crate::TcpState::Established] > 0)
        .filter_map(|p| p.idle_max.map(|d| (p, d.as_secs())))
        .filter(|(_, s)| *s > limit)
        .collect();
    idle.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.remote.cmp(&b.0.remote)));
    let flagged = idle
        .iter()
        .map(|(p, s)| {
            let message = format!(
                "a connection of {name} toward {} idle for {}: longer than many load \
                 balancers and NATs keep an idle flow",
                p.remote,
                secs(*s)
            );
            (*p, Severity::Warning, Measure::Count(*s), message)
        })
        .collect();
    per_endpoint(
        out,
        check,
        Measure::Count(limit),
        flagged,
        format!("no connection of {name} idle for over {}", secs(limit)),
        |n| {
            format!(
                "connections of {name} toward {n} other endpoints idle for over {}",
                secs(limit)
            )
        },
        IDLE_FIX,
    );
}

fn secs(s: u64) -> String {
    humantime(Duration::from_secs(s))
}

fn humantime(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}
