//! `conn-hygiene states`: TCP sockets by state.

use std::io::Write;

use conn_hygiene_census::{process, ProcRoot, StateCounts, WalkOptions, Walker};
use serde_json::{json, Map, Value};

use crate::error::CliError;
use crate::output::{self, Cell};

/// Counts and prints; exit status 0.
pub(crate) fn run(pid: Option<u32>, as_json: bool) -> Result<u8, CliError> {
    let opts = WalkOptions::new();
    let counts = match pid {
        None => {
            let (counts, stats) = Walker::new(opts)
                .count_states()
                .map_err(|e| CliError::census("TCP sockets", None, e))?;
            if let Some(reason) = stats.fallback {
                eprintln!("conn-hygiene: {reason}");
            }
            counts
        }
        Some(pid) => {
            // Read the descriptors first, so an unknown pid or a refusal is named as such.
            ProcRoot::default()
                .socket_inodes(pid)
                .map_err(|e| CliError::census("process descriptors", Some(pid), e))?;
            process::process_state_counts(&opts, pid)
                .map_err(|e| CliError::census("TCP sockets", Some(pid), e))?
        }
    };
    let mut out = std::io::stdout().lock();
    if as_json {
        output::json(&mut out, &to_json(&counts, pid))?;
    } else {
        if let Some(pid) = pid {
            writeln!(out, "TCP sockets held by pid {pid} ({})", output::comm(pid))?;
        }
        let mut rows: Vec<Vec<Cell>> = counts
            .iter()
            .map(|(state, n)| vec![Cell::text(state.as_str()), Cell::num(n)])
            .collect();
        rows.push(vec![Cell::text("TOTAL"), Cell::num(counts.total())]);
        output::table(&mut out, false, &["STATE", "COUNT"], &rows)?;
    }
    out.flush()?;
    Ok(0)
}

/// `{"tcp": {"ESTABLISHED": n, …}}`, every state, and `"pid"` when given.
pub(crate) fn to_json(counts: &StateCounts, pid: Option<u32>) -> Value {
    let tcp: Map<String, Value> = counts
        .iter()
        .map(|(state, n)| (state.as_str().to_owned(), json!(n)))
        .collect();
    let mut obj = Map::new();
    obj.insert("tcp".into(), Value::Object(tcp));
    if let Some(pid) = pid {
        obj.insert("pid".into(), json!(pid));
    }
    Value::Object(obj)
}
