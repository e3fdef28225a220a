//! A census of a Linux network namespace's TCP sockets.
//!
//! - [`walk()`] and [`count_states`]: every TCP socket, by netlink `sock_diag` (one socket, one
//!   reused buffer, nothing allocated per socket), falling back to `/proc/net/tcp` and
//!   `/proc/net/tcp6` when netlink is refused. See the [`walk` module](mod@walk).
//! - [`Walker::walk_detailed_keeping_time_wait`]: every socket but only the `TIME_WAIT` ones a
//!   [`SocketFilter`] keeps, which the kernel picks out; the rest are counted, not walked.
//!   [`Walker::walk_keeping_time_wait`] is the same walk with each socket's detail read only
//!   when asked ([`peers::RawDetail`]); [`Walker::walk_runs_keeping_time_wait`] hands over
//!   the `TIME_WAIT` sockets that differ only in their local port as one [`WalkItem`] each
//!   run, read once.
//! - [`listeners()`]: each listener's accept queue, length and maximum.
//! - [`process`]: the sockets one process holds, and which process holds a socket;
//!   [`peers`]: them by remote endpoint, with keepalive timers, idle times and retransmits.
//! - [`counters`]: the cheap counters (`sockstat`, `snmp`, `netstat`, `file-nr`, descriptor
//!   limits, conntrack) and [`sysctl`]: the settings behind `TIME_WAIT` and queue limits.
//! - [`findings`]: a [`HostSample`] judged against [`Thresholds`], each [`Finding`] with
//!   its severity, value, threshold and recommendation.
//! - [`netlink`] and [`proc_net`]: the parsers, usable on recorded bytes and text.
//!
//! Every reader takes a [`ProcRoot`], `/proc` unless told otherwise, and parses apart from
//! reading, so each parser can be tested on samples. The crate builds on every platform;
//! off Linux every reader returns an error for which [`CensusError::is_unsupported`] is true.
//!
//! ```
//! use std::io::Write;
//! use std::net::{TcpListener, TcpStream};
//! use conn_hygiene_census::{count_states, process, ProcRoot, TcpState, WalkOptions};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // One connection over loopback: both ends are ESTABLISHED.
//! let listener = TcpListener::bind("127.0.0.1:0")?;
//! let mut client = TcpStream::connect(listener.local_addr()?)?;
//! let (server, _) = listener.accept()?;
//! client.write_all(b"x")?;
//!
//! let opts = WalkOptions::new();
//! let counts = match count_states(&opts) {
//!     Ok(counts) => counts,
//!     Err(e) if e.is_unsupported() => return Ok(()), // not Linux
//!     Err(e) => return Err(e.into()),
//! };
//! assert!(counts[TcpState::Established] >= 2);
//! assert!(counts[TcpState::Listen] >= 1);
//!
//! // This process holds exactly these three sockets.
//! let mine = process::process_state_counts(&opts, std::process::id())?;
//! assert_eq!(mine[TcpState::Established], 2);
//! assert_eq!(mine[TcpState::Listen], 1);
//! assert_eq!(mine.total(), 3);
//!
//! let sockstat = ProcRoot::default().sockstat()?;
//! assert!(sockstat.tcp_inuse + sockstat.tcp6_inuse.unwrap_or(0) >= 3);
//! # drop((server, client));
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]
#![warn(missing_debug_implementations, rust_2018_idioms, unreachable_pub)]
#![deny(unsafe_code)]

pub mod counters;
mod error;
pub mod filter;
pub mod findings;
pub mod listeners;
pub mod lookup;
pub mod netlink;
pub mod peers;
pub mod proc_net;
pub mod process;
mod root;
mod sock;
mod state;
mod sys;
pub mod sysctl;
pub mod walk;

pub use counters::{
    fd_usage_self, Conntrack, CounterTable, FdUsage, FileNr, Limits, Sockstat, TcpCounters,
};
pub use error::CensusError;
pub use filter::SocketFilter;
pub use findings::{evaluate, sample_host, Finding, HostSample, Report, Severity, Thresholds};
pub use listeners::{listeners, Listener};
pub use root::ProcRoot;
pub use sock::{canonical_addr, Family, SockInfo};
pub use state::{ParseStateError, StateCounts, StateSet, TcpState};
pub use sysctl::Sysctls;
pub use walk::{
    count_states, walk, Backend, FallbackReason, Source, WalkItem, WalkOptions, WalkStats, Walker,
};
