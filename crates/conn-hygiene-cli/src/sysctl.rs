//! `conn-hygiene sysctl`: a sysctl.d file of recommended settings. Reads only.

use std::io::Write;

use conn_hygiene_census::findings::{sample_host, HostSample};
use conn_hygiene_census::{TcpState, Thresholds, WalkOptions, Walker};
use serde_json::json;

use crate::error::CliError;
use crate::output;
use crate::watch::timestamp;

/// One recommended setting.
#[derive(Debug)]
struct Setting {
    name: &'static str,
    current: Option<String>,
    recommended: String,
    reason: String,
    risk: &'static str,
}

impl Setting {
    fn changes(&self) -> bool {
        self.current.as_deref() != Some(self.recommended.as_str())
    }
}

/// Prints the file (or JSON); exit status 0.
pub(crate) fn run(as_json: bool) -> Result<u8, CliError> {
    let mut walker = Walker::new(WalkOptions::new());
    let sample =
        sample_host(&mut walker, None).map_err(|e| CliError::census("the host sample", None, e))?;
    let settings = recommend(&sample, &Thresholds::default());
    let mut out = std::io::stdout().lock();
    if as_json {
        let list: Vec<_> = settings
            .iter()
            .map(|s| {
                json!({
                    "name": s.name,
                    "current": s.current,
                    "recommended": s.recommended,
                    "changes": s.changes(),
                    "reason": s.reason,
                    "risk": s.risk,
                })
            })
            .collect();
        output::json(&mut out, &json!({ "settings": list }))?;
    } else {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_default();
        writeln!(out, "# /etc/sysctl.d/90-conn-hygiene.conf")?;
        writeln!(
            out,
            "# TCP settings recommended for {host} by `conn-hygiene sysctl` at {}.",
            timestamp(std::time::SystemTime::now())
        )?;
        writeln!(
            out,
            "# Nothing was changed. Review, install the file, then apply with `sysctl --system`."
        )?;
        writeln!(
            out,
            "# net.* settings apply to the network namespace they are set in."
        )?;
        for s in &settings {
            writeln!(out)?;
            let current = s.current.as_deref().unwrap_or("not available");
            let verdict = if s.changes() { "change" } else { "keep" };
            writeln!(out, "# current: {current} ({verdict}). {}", s.reason)?;
            writeln!(out, "# risk: {}", s.risk)?;
            writeln!(out, "{} = {}", s.name, s.recommended)?;
        }
    }
    out.flush()?;
    Ok(0)
}

fn opt<T: ToString>(v: Option<T>) -> Option<String> {
    v.map(|v| v.to_string())
}

/// The settings for this sample. Limits are only ever raised and timeouts only lowered.
fn recommend(s: &HostSample, t: &Thresholds) -> Vec<Setting> {
    let sys = &s.sysctls;
    let tw = s.states[TcpState::TimeWait];
    let (tw_warn, _) = t.time_wait();
    let mut out = Vec::new();

    let range = sys.ip_local_port_range;
    let (lo, _) = range.unwrap_or((32_768, 60_999));
    out.push(Setting {
        name: "net.ipv4.ip_local_port_range",
        current: range.map(|(lo, hi)| format!("{lo} {hi}")),
        recommended: format!("{} 65535", lo.min(1024)),
        reason: "The wider the range, the more connections each destination can take \
                 before connect() fails with EADDRNOTAVAIL."
            .into(),
        risk: "ports inside the range may be taken by outgoing connections before a service \
               binds them; reserve service ports with net.ipv4.ip_local_reserved_ports.",
    });

    let size = s.port_range_size().unwrap_or(28_232);
    let (headroom_warn, _) = t.port_headroom_percent();
    let short = s
        .port_usage
        .iter()
        .any(|u| (u.headroom(size) as f64) * 100.0 < headroom_warn * size as f64);
    let helps = tw > tw_warn || short;
    let reuse = sys.tcp_tw_reuse;
    out.push(Setting {
        name: "net.ipv4.tcp_tw_reuse",
        current: opt(reuse),
        recommended: if helps {
            "1".into()
        } else {
            reuse.unwrap_or(2).to_string()
        },
        reason: if helps {
            format!(
                "{tw} sockets in TIME_WAIT{}: outgoing connections may reuse a TIME_WAIT port \
                 when TCP timestamps show it is safe.",
                if short {
                    " and ports running short toward a destination"
                } else {
                    ""
                }
            )
        } else {
            format!(
                "{tw} sockets in TIME_WAIT and enough ports per destination: reuse would not \
                 help here, so the current value stays."
            )
        },
        risk: "affects outgoing connections only; needs TCP timestamps on both ends (the \
               default).",
    });

    let buckets = sys.tcp_max_tw_buckets;
    out.push(Setting {
        name: "net.ipv4.tcp_max_tw_buckets",
        current: opt(buckets),
        recommended: buckets
            .unwrap_or(0)
            .max(tw.saturating_mul(2))
            .max(200_000)
            .to_string(),
        reason: format!(
            "Above this many TIME_WAIT sockets the kernel drops new ones early \
             (TCPTimeWaitOverflow); {tw} now."
        ),
        risk: "each TIME_WAIT socket costs a little kernel memory (a few hundred bytes).",
    });

    let fin = sys.tcp_fin_timeout;
    out.push(Setting {
        name: "net.ipv4.tcp_fin_timeout",
        current: opt(fin),
        recommended: fin.unwrap_or(60).min(t.max_fin_timeout()).to_string(),
        reason: "How long an orphaned socket waits in FIN_WAIT2 for the peer's FIN.".into(),
        risk: "a peer slower than this to close its side gets a reset instead.",
    });

    let somaxconn = sys.somaxconn;
    out.push(Setting {
        name: "net.core.somaxconn",
        current: opt(somaxconn),
        recommended: somaxconn.unwrap_or(0).max(t.min_somaxconn()).to_string(),
        reason: "Caps every listen() backlog: the effective accept queue is \
                 min(backlog, somaxconn)."
            .into(),
        risk: "a longer queue lets connections wait longer under overload; only helps if the \
               application asks for a larger backlog.",
    });

    let syn = sys.tcp_max_syn_backlog;
    let half_open = s.states[TcpState::SynRecv];
    out.push(Setting {
        name: "net.ipv4.tcp_max_syn_backlog",
        current: opt(syn),
        recommended: syn
            .unwrap_or(0)
            .max(4096)
            .max(u32::try_from(half_open.saturating_mul(4)).unwrap_or(u32::MAX))
            .to_string(),
        reason: format!("Bounds half-open connections waiting for the handshake; {half_open} now."),
        risk: "more memory for half-open connections during a SYN flood.",
    });

    let cookies = sys.tcp_syncookies;
    out.push(Setting {
        name: "net.ipv4.tcp_syncookies",
        current: opt(cookies),
        recommended: cookies.unwrap_or(1).max(1).to_string(),
        reason: "When the SYN queue overflows, answer with cookies instead of dropping \
                 clients."
            .into(),
        risk: "connections accepted through a cookie lose TCP options not encoded in it \
               (only while the queue overflows).",
    });

    let keepalive: [(&'static str, Option<u32>, u32, &str); 3] = [
        (
            "net.ipv4.tcp_keepalive_time",
            sys.tcp_keepalive_time,
            600,
            "Idle seconds before the first keepalive probe.",
        ),
        (
            "net.ipv4.tcp_keepalive_intvl",
            sys.tcp_keepalive_intvl,
            15,
            "Seconds between keepalive probes.",
        ),
        (
            "net.ipv4.tcp_keepalive_probes",
            sys.tcp_keepalive_probes,
            3,
            "Unanswered probes before the connection is dropped.",
        ),
    ];
    for (name, current, want, why) in keepalive {
        out.push(Setting {
            name,
            current: opt(current),
            recommended: current.unwrap_or(want).min(want).to_string(),
            reason: format!(
                "{why} Only sockets with SO_KEEPALIVE probe; dead peers are found in minutes \
                 instead of hours."
            ),
            risk: "a little more traffic on idle keepalive connections.",
        });
    }

    if let Some(nr) = s.file_nr {
        out.push(Setting {
            name: "fs.file-max",
            current: Some(nr.max.to_string()),
            recommended: nr.max.max(2_000_000).to_string(),
            reason: format!("Open files of the whole host; {} in use now.", nr.allocated),
            risk: "none beyond memory for the files actually opened; host-wide, not per \
                   namespace.",
        });
    }

    if let Some(ct) = s.conntrack {
        out.push(Setting {
            name: "net.netfilter.nf_conntrack_max",
            current: Some(ct.max.to_string()),
            recommended: ct
                .max
                .max(ct.count.saturating_mul(2))
                .max(262_144)
                .to_string(),
            reason: format!(
                "A full connection-tracking table drops new connections; {} tracked now.",
                ct.count
            ),
            risk: "about 300 bytes of kernel memory per tracked connection.",
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_lowers_limits_nor_raises_timeouts() {
        let mut s = HostSample::default();
        s.sysctls.somaxconn = Some(65_535);
        s.sysctls.tcp_fin_timeout = Some(10);
        s.sysctls.tcp_tw_reuse = Some(2);
        s.sysctls.ip_local_port_range = Some((1024, 65_535));
        let settings = recommend(&s, &Thresholds::default());
        let get = |n: &str| settings.iter().find(|s| s.name == n).unwrap();
        assert_eq!(get("net.core.somaxconn").recommended, "65535");
        assert_eq!(get("net.ipv4.tcp_fin_timeout").recommended, "10");
        // Few TIME_WAIT: reuse stays as it is.
        assert_eq!(get("net.ipv4.tcp_tw_reuse").recommended, "2");
        assert!(!get("net.ipv4.ip_local_port_range").changes());

        s.states.set(TcpState::TimeWait, 60_000);
        let settings = recommend(&s, &Thresholds::default());
        let reuse = settings
            .iter()
            .find(|s| s.name == "net.ipv4.tcp_tw_reuse")
            .unwrap();
        assert_eq!(reuse.recommended, "1");
        assert!(settings.iter().all(|s| !s.name.contains("recycle")));
    }
}
