//! `conn-hygiene doctor`: every check, judged, with what to do.

use std::io::Write;
use std::time::Duration;

use conn_hygiene_census::findings::{evaluate, sample_host, Finding, Measure, Report};
use conn_hygiene_census::{ProcRoot, Severity, Thresholds, WalkOptions, Walker};
use serde_json::{json, Value};

use crate::error::CliError;
use crate::output::{self, Cell};

/// Longest window accepted, in milliseconds.
const MAX_WINDOW_MS: u64 = 60_000;

/// Samples twice `window_ms` apart, judges, prints; the exit status is the overall status.
pub(crate) fn run(pid: Option<u32>, window_ms: u64, as_json: bool) -> Result<u8, CliError> {
    if !(1..=MAX_WINDOW_MS).contains(&window_ms) {
        return Err(CliError::BadArgument(format!(
            "--window-ms {window_ms} is out of range (1 to {MAX_WINDOW_MS})"
        )));
    }
    if let Some(pid) = pid {
        ProcRoot::default()
            .socket_inodes(pid)
            .map_err(|e| CliError::census("process descriptors", Some(pid), e))?;
    }
    let mut walker = Walker::new(WalkOptions::new());
    let mut sample =
        || sample_host(&mut walker, pid).map_err(|e| CliError::census("the host sample", pid, e));
    let first = sample()?;
    std::thread::sleep(Duration::from_millis(window_ms));
    let second = sample()?;
    let report = evaluate(&second, Some(&first), &Thresholds::default());
    let status = report.status();

    let mut out = std::io::stdout().lock();
    if as_json {
        output::json(&mut out, &to_json(&report, pid, window_ms))?;
    } else {
        human(&mut out, &report, pid, window_ms)?;
    }
    out.flush()?;
    Ok(status.exit_code())
}

fn measure_json(m: &Measure) -> Value {
    match m {
        Measure::Count(n) => json!(n),
        Measure::Percent(p) => json!((p * 100.0).round() / 100.0),
        Measure::Text(t) => json!(t),
        _ => Value::Null,
    }
}

fn unit(m: &Measure) -> Value {
    match m {
        Measure::Count(_) => json!("count"),
        Measure::Percent(_) => json!("percent"),
        Measure::Text(_) => json!("text"),
        _ => Value::Null,
    }
}

fn finding_json(f: &Finding) -> Value {
    json!({
        "severity": f.severity.as_str(),
        "check": f.check.as_str(),
        "subject": f.subject,
        "value": measure_json(&f.value),
        "threshold": measure_json(&f.threshold),
        "unit": unit(&f.value),
        "message": f.message,
        "recommendation": f.recommendation,
    })
}

/// `{"status": …, "findings": […]}`, worst first.
fn to_json(report: &Report, pid: Option<u32>, window_ms: u64) -> Value {
    let findings: Vec<Value> = ordered(report).into_iter().map(finding_json).collect();
    let mut v = json!({
        "status": report.status().as_str(),
        "findings": findings,
        "window_ms": window_ms,
    });
    if let Some(pid) = pid {
        v["pid"] = json!(pid);
    }
    v
}

/// The findings, worst first, in check order within a severity.
fn ordered(report: &Report) -> Vec<&Finding> {
    let mut all: Vec<&Finding> = report.findings.iter().collect();
    all.sort_by_key(|f| std::cmp::Reverse(f.severity.rank()));
    all
}

fn human(
    out: &mut impl Write,
    report: &Report,
    pid: Option<u32>,
    window_ms: u64,
) -> std::io::Result<()> {
    let colour = output::colour();
    let status = report.status();
    let scope = pid.map_or(String::new(), |p| {
        format!(", process checks for pid {p} ({})", output::comm(p))
    });
    writeln!(
        out,
        "conn-hygiene doctor: {} ({} critical, {} warning, {} unknown, {} ok; counters over \
         {window_ms} ms{scope})",
        output::paint(colour, status, status.as_str()),
        report.count(Severity::Critical),
        report.count(Severity::Warning),
        report.count(Severity::Unknown),
        report.count(Severity::Ok),
    )?;
    writeln!(out)?;
    let findings = ordered(report);
    let rows: Vec<Vec<Cell>> = findings
        .iter()
        .map(|f| {
            vec![
                Cell::text(f.severity.as_str()).with(f.severity),
                Cell::text(f.check.as_str()),
                Cell::num(&f.value),
                Cell::num(&f.threshold),
                Cell::text(&f.message),
            ]
        })
        .collect();
    output::table(
        out,
        colour,
        &["SEVERITY", "CHECK", "VALUE", "THRESHOLD", "FINDING"],
        &rows,
    )?;
    let todo: Vec<&&Finding> = findings
        .iter()
        .filter(|f| matches!(f.severity, Severity::Warning | Severity::Critical))
        .collect();
    if !todo.is_empty() {
        writeln!(out)?;
        writeln!(out, "What to do:")?;
        for f in todo {
            let about = f
                .subject
                .as_deref()
                .map_or(String::new(), |s| format!(" ({s})"));
            writeln!(
                out,
                "  {} {}{about}: {}",
                output::paint(colour, f.severity, f.severity.as_str()),
                f.check,
                f.recommendation
            )?;
        }
    }
    Ok(())
}
