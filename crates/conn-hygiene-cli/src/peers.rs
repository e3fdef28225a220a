//! `conn-hygiene peers --pid PID`: a process's sockets by remote endpoint, with the kernel's
//! detail (keepalive timers, idle time, retransmissions).

use std::io::Write;

use conn_hygiene_census::{
    peers::{process_peers, Peer},
    ProcRoot, WalkOptions,
};
use serde_json::{json, Map, Value};

use crate::error::CliError;
use crate::output::{self, Cell};

/// Reads and prints; exit status 0.
pub(crate) fn run(pid: u32, as_json: bool) -> Result<u8, CliError> {
    // Read the descriptors first, so an unknown pid or a refusal is named as such.
    ProcRoot::default()
        .socket_inodes(pid)
        .map_err(|e| CliError::census("process descriptors", Some(pid), e))?;
    let peers = process_peers(&WalkOptions::new(), pid)
        .map_err(|e| CliError::census("TCP sockets with tcp_info", Some(pid), e))?;
    let mut out = std::io::stdout().lock();
    if as_json {
        output::json(&mut out, &Value::Array(peers.iter().map(to_json).collect()))?;
    } else {
        writeln!(
            out,
            "TCP peers of pid {pid} ({}): {} endpoints",
            output::comm(pid),
            peers.len()
        )?;
        let rows: Vec<Vec<Cell>> = peers
            .iter()
            .map(|p| {
                vec![
                    Cell::text(p.remote.to_string()),
                    Cell::text(states_text(p)),
                    Cell::num(p.without_keepalive),
                    Cell::num(
                        p.idle_max
                            .map_or("-".to_owned(), |d| format!("{:.1}", d.as_secs_f64())),
                    ),
                    Cell::num(p.retransmits),
                ]
            })
            .collect();
        output::table(
            &mut out,
            false,
            &[
                "REMOTE",
                "STATES",
                "NO_KEEPALIVE",
                "IDLE_MAX_S",
                "RETRANSMITS",
            ],
            &rows,
        )?;
    }
    out.flush()?;
    Ok(0)
}

/// `ESTABLISHED=3 CLOSE_WAIT=1`: the states it has sockets in.
fn states_text(p: &Peer) -> String {
    p.states
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(s, n)| format!("{}={n}", s.as_str()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `{"remote", "states": {"ESTABLISHED": n}, "sockets", "without_keepalive", "idle_max_s",
/// "retransmits", "close_wait_max_s"}`; states with no socket left out, the times null when
/// unknown (`close_wait_max_s`: the longest any has been in `CLOSE_WAIT`, dated by the last
/// acknowledgement received, which in that state is the peer's FIN unless we sent since).
pub(crate) fn to_json(p: &Peer) -> Value {
    let states: Map<String, Value> = p
        .states
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(s, n)| (s.as_str().to_owned(), json!(n)))
        .collect();
    json!({
        "remote": p.remote.to_string(),
        "states": states,
        "sockets": p.sockets(),
        "without_keepalive": p.without_keepalive,
        "idle_max_s": p.idle_max.map(|d| d.as_secs_f64()),
        "retransmits": p.retransmits,
        "close_wait_max_s": p.close_wait_max.map(|d| d.as_secs_f64()),
    })
}
