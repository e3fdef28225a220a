//! Listeners' accept queues: `listener_backlog` (capped by `somaxconn`) and
//! `accept_queue_full`.

use super::{Cx, Findings, Levels};
use crate::findings::{Check, Measure, Severity};
use crate::Listener;

/// The sample's listeners by port, and how many have an unknown queue maximum.
fn by_port<'a>(cx: &Cx<'a>) -> (Vec<&'a Listener>, usize) {
    let mut listeners: Vec<&Listener> = cx.s.listeners.iter().collect();
    listeners.sort_by_key(|l| (l.local.port(), l.local));
    let unknown_max = listeners.iter().filter(|l| l.queue_max.is_none()).count();
    (listeners, unknown_max)
}

pub(super) fn backlog(cx: &Cx<'_>, out: &mut Findings) {
    let somaxconn = cx.s.sysctls.somaxconn;
    let min = cx.t.min_somaxconn();
    let (listeners, unknown_max) = by_port(cx);
    let mut capped = 0;
    for l in &listeners {
        let (Some(max), Some(cap)) = (l.queue_max, somaxconn) else {
            continue;
        };
        if max != cap {
            continue;
        }
        capped += 1;
        out.judge(
            Check::ListenerBacklog,
            u64::from(cap),
            Levels::below(u64::from(min)),
        )
        .about(l.local.to_string())
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
        );
    }
    if capped > 0 {
        return;
    }
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
    out.record(
        sev,
        Check::ListenerBacklog,
        somaxconn.map_or(Measure::None, |s| Measure::Count(u64::from(s))),
        Measure::Count(u64::from(min)),
    )
    .says(message, "nothing to do");
}

pub(super) fn accept_queue_full(cx: &Cx<'_>, out: &mut Findings) {
    let (listeners, unknown_max) = by_port(cx);
    let mut full = 0;
    for l in &listeners {
        let Some(max) = l.queue_max else { continue };
        // At its maximum, not merely near it; a backlog of 0 with nothing queued is idle.
        if l.queue_len < max || (max == 0 && l.queue_len == 0) {
            continue;
        }
        full += 1;
        out.record(
            Severity::Critical,
            Check::AcceptQueueFull,
            Measure::Count(u64::from(l.queue_len)),
            Measure::Count(u64::from(max)),
        )
        .about(l.local.to_string())
        .says(
            format!(
                "listener {}: accept queue full ({} of {max}); new connections are dropped",
                l.local, l.queue_len
            ),
            "the application is not accepting: check that its accept loop runs and \
             is not blocked; then raise the listen() backlog and net.core.somaxconn",
        );
    }
    if full > 0 {
        return;
    }
    let (sev, message) = if unknown_max > 0 {
        (
            Severity::Unknown,
            format!("{unknown_max} listeners' accept queue maximum is unknown"),
        )
    } else {
        (
            Severity::Ok,
            format!("no accept queue full among {} listeners", listeners.len()),
        )
    };
    let longest = listeners.iter().map(|l| l.queue_len).max().unwrap_or(0);
    out.record(
        sev,
        Check::AcceptQueueFull,
        Measure::Count(u64::from(longest)),
        Measure::None,
    )
    .says(message, "nothing to do");
}

#[cfg(test)]
// Samples are filled field by field, as code outside the crate must fill these
// `#[non_exhaustive]` structs.
#[allow(clippy::field_reassign_with_default)]
mod tests {
    use super::super::testing::{listener, one, sev, th};
    use crate::findings::{evaluate, Check, HostSample, Severity};

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
}
