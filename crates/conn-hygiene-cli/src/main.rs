//! `conn-hygiene`: a host's TCP connections by state, who holds them, what is wrong and what
//! to set, from one command instead of `ss | awk` pipelines.
//!
//! - `conn-hygiene states [--pid PID] [--json]`: sockets by state in this network namespace.
//! - `conn-hygiene who STATE [--json]`: the processes holding sockets in a state, most first.
//! - `conn-hygiene peers --pid PID [--json]`: one process's sockets by remote endpoint: states,
//!   sockets without a keepalive timer, longest idle time, retransmissions.
//! - `conn-hygiene doctor [--pid PID] [--window-ms MS] [--json]`: every check, with severity,
//!   value, threshold and recommendation; exit status 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
//! - `conn-hygiene watch [--interval SECS] [--count N] [--json]`: one line per interval.
//! - `conn-hygiene sysctl [--json]`: a sysctl.d file of recommended settings (changes nothing).
//!
//! Bad input (an unknown pid or state, a process whose descriptors may not be read) is one
//! line on stderr and exit status 3.
#![deny(unsafe_code)]

mod doctor;
mod error;
mod output;
mod peers;
mod states;
mod sysctl;
mod watch;
mod who;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// TCP connection hygiene for this host's network namespace.
#[derive(Debug, Parser)]
#[command(name = "conn-hygiene", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// TCP sockets by state (IPv4 and IPv6), or only those one process holds.
    States {
        /// Only the sockets this process holds.
        #[arg(long, value_name = "PID")]
        pid: Option<u32>,
        /// JSON: {"tcp": {"ESTABLISHED": n, ...}} (and "pid" with --pid).
        #[arg(long)]
        json: bool,
    },
    /// The processes holding sockets in STATE, most first; sockets no process holds (as
    /// TIME_WAIT) grouped by local and remote endpoint.
    Who {
        /// A TCP state: ESTABLISHED, CLOSE_WAIT, close-wait, TIME-WAIT, …
        state: String,
        /// Rows shown in the tables (JSON lists everything). 0 shows all.
        #[arg(long, value_name = "N", default_value_t = 20)]
        top: usize,
        /// JSON: {"state": ..., "processes": [{"pid", "comm", "count"}], "endpoints": [...]}.
        #[arg(long)]
        json: bool,
    },
    /// One process's TCP sockets by remote endpoint: states, sockets with no keepalive timer
    /// armed, the longest time any has sent or received nothing, retransmissions.
    Peers {
        /// The process.
        #[arg(long, value_name = "PID")]
        pid: u32,
        /// JSON: [{"remote", "states": {"ESTABLISHED": n}, "sockets", "without_keepalive",
        /// "idle_max_s", "retransmits", "close_wait_max_s"}].
        #[arg(long)]
        json: bool,
    },
    /// Every check with severity, value, threshold and recommendation. Exit status: 0 OK,
    /// 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
    Doctor {
        /// Scope the process-level checks (descriptors, CLOSE_WAIT growth) to this process.
        #[arg(long, value_name = "PID")]
        pid: Option<u32>,
        /// Window between the two samples whose difference gives the counter deltas
        /// (ListenOverflows, ListenDrops, TCPTimeWaitOverflow) and CLOSE_WAIT growth, in
        /// milliseconds, 1 to 60000.
        #[arg(long, value_name = "MS", default_value_t = 1000)]
        window_ms: u64,
        /// JSON: {"status": ..., "findings": [...]}.
        #[arg(long)]
        json: bool,
    },
    /// One line per interval: time and the key counts, values over thresholds marked `!`.
    Watch {
        /// Seconds between lines (fractions allowed), 0.01 to 3600.
        #[arg(long, value_name = "SECS", default_value_t = 2.0)]
        interval: f64,
        /// Stop after this many lines (default: run until interrupted).
        #[arg(long, value_name = "N")]
        count: Option<u64>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Print a sysctl.d file of recommended settings for this host, each with its current
    /// value, reason and risk. Changes nothing.
    Sysctl {
        /// JSON: {"settings": [{"name", "current", "recommended", "reason", "risk"}]}.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return error::clap_exit(e),
    };
    let result = match cli.command {
        Command::States { pid, json } => states::run(pid, json),
        Command::Who { state, top, json } => who::run(&state, top, json),
        Command::Peers { pid, json } => peers::run(pid, json),
        Command::Doctor {
            pid,
            window_ms,
            json,
        } => doctor::run(pid, window_ms, json),
        Command::Watch {
            interval,
            count,
            json,
        } => watch::run(interval, count, json),
        Command::Sysctl { json } => sysctl::run(json),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("conn-hygiene: {e}");
            ExitCode::from(error::EXIT_UNKNOWN)
        }
    }
}
