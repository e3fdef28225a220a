//! `conn-hygiene watch`: one line per interval.

use std::io::Write;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use conn_hygiene_census::{ProcRoot, Severity, TcpState, Thresholds, WalkOptions, Walker};
use serde_json::json;

use crate::error::CliError;
use crate::output;

/// Prints a line every `interval` seconds until `count` lines (or forever); exit status 0.
pub(crate) fn run(interval: f64, count: Option<u64>, as_json: bool) -> Result<u8, CliError> {
    if !(0.01..=3600.0).contains(&interval) {
        return Err(CliError::BadArgument(format!(
            "--interval {interval} is out of range (0.01 to 3600 seconds)"
        )));
    }
    if count == Some(0) {
        return Err(CliError::BadArgument("--count must be at least 1".into()));
    }
    let interval = Duration::from_secs_f64(interval);
    let thresholds = Thresholds::default();
    let colour = output::colour();
    let root = ProcRoot::default();
    let mut walker = Walker::new(WalkOptions::new());
    let mut last_overflows: Option<u64> = None;
    let mut out = std::io::stdout().lock();
    let mut line = 0u64;
    let mut next = Instant::now();
    loop {
        let (counts, _) = walker
            .count_states()
            .map_err(|e| CliError::census("TCP sockets", None, e))?;
        let overflows = root.tcp_counters().ok().and_then(|c| c.listen_overflows);
        let delta = match (last_overflows, overflows) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a)),
            _ => None,
        };
        last_overflows = overflows;
        let ts = timestamp(SystemTime::now());

        let (tw_warn, tw_crit) = thresholds.time_wait();
        let marks = [
            (TcpState::Established, None),
            (
                TcpState::TimeWait,
                level(counts[TcpState::TimeWait], Some(tw_warn), tw_crit),
            ),
            (
                TcpState::CloseWait,
                level(
                    counts[TcpState::CloseWait],
                    None,
                    thresholds.close_wait_critical(),
                ),
            ),
            (
                TcpState::SynRecv,
                level(
                    counts[TcpState::SynRecv],
                    Some(thresholds.syn_recv_warning()),
                    u64::MAX,
                ),
            ),
            (
                TcpState::FinWait2,
                level(
                    counts[TcpState::FinWait2],
                    Some(thresholds.fin_wait2_warning()),
                    u64::MAX,
                ),
            ),
        ];
        if as_json {
            let mut v = json!({"time": ts});
            let mut over = serde_json::Map::new();
            for (state, mark) in marks {
                v[state.as_str()] = json!(counts[state]);
                if let Some(sev) = mark {
                    over.insert(state.as_str().to_owned(), json!(sev.as_str()));
                }
            }
            v["ListenOverflows_delta"] = json!(delta);
            v["over"] = serde_json::Value::Object(over);
            output::json_line(&mut out, &v)?;
        } else {
            let mut s = ts;
            for (state, mark) in marks {
                let field = format!("{}={}", state.as_str(), counts[state]);
                match mark {
                    Some(sev) => {
                        s.push(' ');
                        s.push_str(&output::paint(colour, sev, &format!("{field}!")));
                    }
                    None => {
                        s.push(' ');
                        s.push_str(&field);
                    }
                }
            }
            match delta {
                Some(d) if d > 0 => {
                    s.push(' ');
                    s.push_str(&output::paint(
                        colour,
                        Severity::Warning,
                        &format!("ListenOverflows+={d}!"),
                    ));
                }
                Some(d) => s.push_str(&format!(" ListenOverflows+={d}")),
                None => {}
            }
            writeln!(out, "{s}")?;
        }
        out.flush()?;
        line += 1;
        if count.is_some_and(|c| line >= c) {
            return Ok(0);
        }
        next += interval;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
}

/// The severity `n` reaches: above `critical`, or above `warning` when there is one.
fn level(n: u64, warning: Option<u64>, critical: u64) -> Option<Severity> {
    if n > critical {
        Some(Severity::Critical)
    } else if warning.is_some_and(|w| n > w) {
        Some(Severity::Warning)
    } else {
        None
    }
}

/// `2024-05-01T12:34:56Z`.
pub(crate) fn timestamp(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400 + 3_723); // 2000-02-29
        assert_eq!(timestamp(t), "2000-02-29T01:02:03Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_735_689_599);
        assert_eq!(timestamp(t), "2024-12-31T23:59:59Z");
    }

    #[test]
    fn levels() {
        assert_eq!(level(5, Some(5), 10), None);
        assert_eq!(level(6, Some(5), 10), Some(Severity::Warning));
        assert_eq!(level(11, Some(5), 10), Some(Severity::Critical));
        assert_eq!(level(11, None, 10), Some(Severity::Critical));
        assert_eq!(level(10, None, 10), None);
    }
}
