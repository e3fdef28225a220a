//! `conn-hygiene who STATE`: who holds the sockets in a state.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;

use conn_hygiene_census::{walk, ProcRoot, TcpState, WalkOptions};
use serde_json::json;

use crate::error::CliError;
use crate::output::{self, Cell};

/// Sockets in one state counted per holding process.
#[derive(Debug, Default)]
struct Holders {
    /// (pid, comm, count), most first.
    processes: Vec<(u32, String, u64)>,
    /// (local, remote, count) of the sockets no visible process holds, most first.
    endpoints: Vec<(String, String, u64)>,
    /// Sockets in the state.
    total: u64,
    /// Processes whose descriptors could not be read.
    unreadable: u64,
}

/// Parses the state, counts, prints; exit status 0.
pub(crate) fn run(state: &str, top: usize, as_json: bool) -> Result<u8, CliError> {
    let state: TcpState = state.parse().map_err(|_| {
        CliError::BadArgument(format!(
            "unknown TCP state {state:?} (one of {})",
            TcpState::ALL.map(TcpState::as_str).join(", ")
        ))
    })?;
    let h = count(state)?;
    let no_owner = h.processes.is_empty() && h.total > 0;
    let mut out = std::io::stdout().lock();
    if as_json {
        let processes: Vec<_> = h
            .processes
            .iter()
            .map(|(pid, comm, count)| json!({"pid": pid, "comm": comm, "count": count}))
            .collect();
        let endpoints: Vec<_> = h
            .endpoints
            .iter()
            .map(|(l, r, count)| json!({"local": l, "remote": r, "count": count}))
            .collect();
        let mut v = json!({
            "state": state.as_str(),
            "total": h.total,
            "grouped_by": if no_owner { "endpoint" } else { "process" },
            "processes": processes,
            "endpoints": endpoints,
        });
        if !h.endpoints.is_empty() {
            v["note"] = json!(no_owner_note(state));
        }
        output::json(&mut out, &v)?;
    } else {
        let colour = output::colour();
        let limit = if top == 0 { usize::MAX } else { top };
        writeln!(out, "{} sockets in {state}", h.total)?;
        if !h.processes.is_empty() {
            let rows: Vec<Vec<Cell>> = h
                .processes
                .iter()
                .take(limit)
                .map(|(pid, comm, n)| vec![Cell::num(pid), Cell::text(comm), Cell::num(n)])
                .collect();
            output::table(&mut out, colour, &["PID", "COMM", "COUNT"], &rows)?;
            more(&mut out, h.processes.len(), limit)?;
        }
        if !h.endpoints.is_empty() {
            if !h.processes.is_empty() {
                writeln!(out)?;
            }
            writeln!(out, "{}", no_owner_note(state))?;
            let rows: Vec<Vec<Cell>> = h
                .endpoints
                .iter()
                .take(limit)
                .map(|(l, r, n)| vec![Cell::num(n), Cell::text(l), Cell::text(r)])
                .collect();
            output::table(&mut out, colour, &["COUNT", "LOCAL", "REMOTE"], &rows)?;
            more(&mut out, h.endpoints.len(), limit)?;
        }
    }
    out.flush()?;
    if h.unreadable > 0 {
        eprintln!(
            "conn-hygiene: the descriptors of {} processes could not be read; their sockets \
             are listed by endpoint (run as root to see them)",
            h.unreadable
        );
    }
    Ok(0)
}

fn more(out: &mut impl Write, len: usize, limit: usize) -> std::io::Result<()> {
    if len > limit {
        writeln!(out, "… {} more (--top 0 shows all)", len - limit)?;
    }
    Ok(())
}

fn no_owner_note(state: TcpState) -> String {
    let why = match state {
        TcpState::TimeWait => "TIME_WAIT sockets belong to no process: the kernel keeps them after close",
        TcpState::SynRecv => "half-open connections belong to no process until accepted",
        _ => "these sockets belong to no visible process (closed by it, not yet accepted, or its descriptors are unreadable)",
    };
    format!("{why}; grouped by local and remote endpoint, the connecting side's port shown as *")
}

fn count(state: TcpState) -> Result<Holders, CliError> {
    let root = ProcRoot::default();
    let range = root
        .sysctls()
        .ok()
        .and_then(|s| s.ip_local_port_range)
        .filter(|(lo, hi)| lo <= hi);
    let opts = WalkOptions::new().states(state);
    // (inode, local, remote) of every socket in the state: one walk, then the join.
    let mut sockets: Vec<(u64, SocketAddr, SocketAddr)> = Vec::new();
    walk(&opts, |s| sockets.push((s.inode, s.local, s.remote)))
        .map_err(|e| CliError::census("TCP sockets", None, e))?;

    let mut h = Holders {
        total: sockets.len() as u64,
        ..Holders::default()
    };
    let mut by_pid: HashMap<u32, (String, u64)> = HashMap::new();
    let mut unowned: Vec<(SocketAddr, SocketAddr)> = Vec::new();
    let holders = if sockets.iter().any(|s| s.0 != 0) {
        let holders = root
            .socket_holders()
            .map_err(|e| CliError::census("process descriptors", None, e))?;
        h.unreadable = holders.unreadable_processes();
        Some(holders)
    } else {
        None
    };
    for (inode, local, remote) in sockets {
        let held = match (&holders, inode) {
            (Some(holders), 1..) => holders.get(inode),
            _ => &[],
        };
        if held.is_empty() {
            unowned.push((local, remote));
        }
        for holder in held {
            by_pid
                .entry(holder.pid)
                .or_insert_with(|| (holder.comm.to_string(), 0))
                .1 += 1;
        }
    }
    h.processes = by_pid
        .into_iter()
        .map(|(pid, (comm, n))| (pid, comm, n))
        .collect();
    h.processes
        .sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));

    let ephemeral = |a: &SocketAddr| range.is_some_and(|(lo, hi)| (lo..=hi).contains(&a.port()));
    let star = |a: SocketAddr| match a {
        SocketAddr::V4(v4) => format!("{}:*", v4.ip()),
        SocketAddr::V6(v6) => format!("[{}]:*", v6.ip()),
    };
    // The side whose port came from ip_local_port_range is the connecting one: its port
    // changes with every connection, so it is shown as `*` (at most one side is).
    let mut groups: HashMap<(String, String), u64> = HashMap::new();
    for (l, r) in unowned {
        let key = if ephemeral(&l) {
            (star(l), r.to_string())
        } else if ephemeral(&r) {
            (l.to_string(), star(r))
        } else {
            (l.to_string(), r.to_string())
        };
        *groups.entry(key).or_default() += 1;
    }
    h.endpoints = groups.into_iter().map(|((l, r), n)| (l, r, n)).collect();
    h.endpoints
        .sort_by(|a, b| b.2.cmp(&a.2).then_with(|| (&a.0, &a.1).cmp(&(&b.0, &b.1))));
    Ok(h)
}
