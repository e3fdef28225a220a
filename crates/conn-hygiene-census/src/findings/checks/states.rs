//! Sockets piling up in one state: `time_wait`, `close_wait`, `close_wait_growing`,
//! `syn_recv`, `fin_wait2`.

use super::{proc_name, Cx, Findings, Levels};
use crate::findings::{Check, Measure, ProcessCount, Severity};
use crate::TcpState;

pub(super) fn time_wait(cx: &Cx<'_>, out: &mut Findings) {
    let n = cx.count(TcpState::TimeWait);
    let (w, c) = cx.t.time_wait();
    let f = out.judge(Check::TimeWait, n, Levels::above(w).critical(c));
    let message = match f.severity {
        Severity::Ok => format!("{n} sockets in TIME_WAIT"),
        _ => format!(
            "{n} sockets in TIME_WAIT: many short connections closed by this side; \
             local ports and TIME_WAIT buckets run out"
        ),
    };
    f.says(
        message,
        "keep connections open and reuse them (HTTP keep-alive, client connection \
         pools) so fewer are closed; for outgoing connections \
         net.ipv4.tcp_tw_reuse = 1; net.ipv4.ip_local_port_range = 1024 65535",
    );
}

pub(super) fn close_wait(cx: &Cx<'_>, out: &mut Findings) {
    let n = cx.count(TcpState::CloseWait);
    let levels = Levels::critical_above(cx.t.close_wait_critical());
    let top = cx.s.top_close_wait();
    let f = out.judge(Check::CloseWait, n, levels);
    let message = match (f.severity, top) {
        (Severity::Ok, _) => format!("{n} sockets in CLOSE_WAIT"),
        (_, Some(p)) => {
            let name = proc_name(p.pid, &p.comm);
            f.about(name.clone());
            format!(
                "{n} sockets in CLOSE_WAIT: peers closed and the application never \
                 called close(); {name} holds the most: {}",
                p.count
            )
        }
        (_, None) => format!(
            "{n} sockets in CLOSE_WAIT: peers closed and the application never called close()"
        ),
    };
    f.says(
        message,
        "fix the application: close the socket when a read returns end of stream and \
         on every error path (try-with-resources, defer, Drop), and give pooled \
         connections back on errors; no sysctl removes CLOSE_WAIT",
    );
}

pub(super) fn close_wait_growing(cx: &Cx<'_>, out: &mut Findings) {
    let Some(prev) = cx.prev else { return };
    let before = |pid: u32, comm: &str| {
        prev.close_wait_by_process
            .iter()
            .find(|p| p.pid == pid && p.comm == comm)
            .map_or(0, |p| p.count)
    };
    let mut growing: Vec<(&ProcessCount, u64)> =
        cx.s.close_wait_by_process
            .iter()
            .map(|p| (p, before(p.pid, &p.comm)))
            .filter(|(p, was)| p.count > 0 && p.count > *was)
            .collect();
    growing.sort_by_key(|(p, was)| std::cmp::Reverse(p.count - was));
    let fix = "the process leaks sockets the peer has closed: close on end of stream and \
               on error paths, return pooled connections on error";
    for (p, was) in &growing {
        let name = proc_name(p.pid, &p.comm);
        let message = format!("{name} holds {} CLOSE_WAIT sockets, up from {was}", p.count);
        out.judge(Check::CloseWaitGrowing, p.count, Levels::above(*was))
            .about(name)
            .says(message, fix);
    }
    if growing.is_empty() {
        let held: u64 = cx.s.close_wait_by_process.iter().map(|p| p.count).sum();
        out.record(
            Severity::Ok,
            Check::CloseWaitGrowing,
            Measure::Count(held),
            Measure::None,
        )
        .says(
            "no process's CLOSE_WAIT count grew between the samples",
            fix,
        );
    }
}

pub(super) fn syn_recv(cx: &Cx<'_>, out: &mut Findings) {
    let n = cx.count(TcpState::SynRecv);
    let f = out.judge(Check::SynRecv, n, Levels::above(cx.t.syn_recv_warning()));
    let message = match f.severity {
        Severity::Ok => format!("{n} half-open connections (SYN_RECV)"),
        _ => format!(
            "{n} half-open connections (SYN_RECV): possible SYN flood, or clients that \
             never complete the handshake"
        ),
    };
    f.says(
        message,
        "net.ipv4.tcp_syncookies = 1; net.ipv4.tcp_max_syn_backlog = 65535; \
         net.ipv4.tcp_synack_retries = 2; rate-limit SYNs per source at the firewall",
    );
}

pub(super) fn fin_wait2(cx: &Cx<'_>, out: &mut Findings) {
    let n = cx.count(TcpState::FinWait2);
    let f = out.judge(Check::FinWait2, n, Levels::above(cx.t.fin_wait2_warning()));
    let message = match f.severity {
        Severity::Ok => format!("{n} sockets in FIN_WAIT2"),
        _ => {
            format!("{n} sockets in FIN_WAIT2: this side closed and the peers never send their FIN")
        }
    };
    f.says(
        message,
        format!(
            "fix the peer that keeps its half open; \
             net.ipv4.tcp_fin_timeout = {} bounds orphaned FIN_WAIT2",
            cx.t.max_fin_timeout().min(15)
        ),
    );
}

#[cfg(test)]
// Samples are filled field by field, as code outside the crate must fill these
// `#[non_exhaustive]` structs.
#[allow(clippy::field_reassign_with_default)]
mod tests {
    use super::super::testing::{one, sev, th, with_state};
    use crate::findings::{evaluate, Check, HostSample, Measure, ProcessCount, Severity};
    use crate::TcpState;

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
}
