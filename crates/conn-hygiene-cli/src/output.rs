//! Aligned tables, colour on terminals only, JSON.

use std::io::{self, IsTerminal, Write};

use conn_hygiene_census::Severity;

/// Whether stdout takes colour: a terminal, `NO_COLOR` unset, `TERM` not `dumb`.
pub(crate) fn colour() -> bool {
    io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::env::var("TERM").map_or(true, |t| t != "dumb")
}

/// ANSI colour for a severity.
fn ansi(severity: Severity) -> &'static str {
    match severity {
        Severity::Ok => "\x1b[32m",
        Severity::Warning => "\x1b[33m",
        Severity::Critical => "\x1b[1;31m",
        Severity::Unknown => "\x1b[35m",
    }
}

/// `text` coloured for `severity` when `on`.
pub(crate) fn paint(on: bool, severity: Severity, text: &str) -> String {
    if on {
        format!("{}{text}\x1b[0m", ansi(severity))
    } else {
        text.to_owned()
    }
}

/// A table cell: its text and, optionally, the severity that colours it.
#[derive(Debug, Clone)]
pub(crate) struct Cell {
    text: String,
    severity: Option<Severity>,
    right: bool,
}

impl Cell {
    /// Left-aligned text.
    pub(crate) fn text(text: impl Into<String>) -> Self {
        Cell {
            text: text.into(),
            severity: None,
            right: false,
        }
    }

    /// Right-aligned (numbers).
    pub(crate) fn num(text: impl ToString) -> Self {
        Cell {
            text: text.to_string(),
            severity: None,
            right: true,
        }
    }

    /// Coloured by `severity` on a terminal.
    pub(crate) fn with(mut self, severity: Severity) -> Self {
        self.severity = Some(severity);
        self
    }
}

/// Writes `rows` under `header`, columns padded to their widest cell; the last column is
/// not padded.
pub(crate) fn table(
    out: &mut impl Write,
    colour: bool,
    header: &[&str],
    rows: &[Vec<Cell>],
) -> io::Result<()> {
    let cols = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(cols) {
            widths[i] = widths[i].max(cell.text.chars().count());
        }
    }
    let head: Vec<Cell> = header.iter().map(|h| Cell::text(*h)).collect();
    let mut line = |row: &[Cell]| -> io::Result<()> {
        let mut s = String::new();
        for (i, cell) in row.iter().enumerate().take(cols) {
            if i > 0 {
                s.push_str("  ");
            }
            let pad = widths[i].saturating_sub(cell.text.chars().count());
            let last = i + 1 == cols.min(row.len());
            let body = match cell.severity {
                Some(sev) => paint(colour, sev, &cell.text),
                None => cell.text.clone(),
            };
            if cell.right {
                s.push_str(&" ".repeat(pad));
                s.push_str(&body);
            } else {
                s.push_str(&body);
                if !last {
                    s.push_str(&" ".repeat(pad));
                }
            }
        }
        writeln!(out, "{}", s.trim_end())
    };
    line(&head)?;
    for row in rows {
        line(row)?;
    }
    Ok(())
}

/// Writes `value` as indented JSON.
pub(crate) fn json(out: &mut impl Write, value: &serde_json::Value) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value).map_err(io::Error::other)?;
    writeln!(out)
}

/// Writes `value` as JSON on one line.
pub(crate) fn json_line(out: &mut impl Write, value: &serde_json::Value) -> io::Result<()> {
    serde_json::to_writer(&mut *out, value).map_err(io::Error::other)?;
    writeln!(out)
}

/// The command name of `pid` (`/proc/PID/comm`), empty when unreadable.
pub(crate) fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| c.trim_end_matches('\n').to_owned())
        .unwrap_or_default()
}
