//! What [`evaluate`](super::evaluate) judges: [`HostSample`] and its parts, plain data.

use std::net::SocketAddr;

use crate::{Conntrack, FdUsage, FileNr, Listener, StateCounts, Sysctls, TcpCounters};

/// A count of sockets one process holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessCount {
    /// Process id.
    pub pid: u32,
    /// Command name (`/proc/PID/comm`).
    pub comm: String,
    /// Sockets.
    pub count: u64,
}

impl ProcessCount {
    /// A count for `pid` running `comm`.
    pub fn new(pid: u32, comm: impl Into<String>, count: u64) -> Self {
        ProcessCount {
            pid,
            comm: comm.into(),
            count,
        }
    }
}

/// Local ports in `ip_local_port_range` used by connections toward one destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PortUse {
    /// The remote address and port.
    pub destination: SocketAddr,
    /// Sockets toward it whose local port lies in the range, `TIME_WAIT` included.
    pub used: u64,
}

impl PortUse {
    /// `used` ports toward `destination`.
    pub fn new(destination: SocketAddr, used: u64) -> Self {
        PortUse { destination, used }
    }

    /// Ports left toward the destination in a range of `range_size` ports.
    pub fn headroom(&self, range_size: u64) -> u64 {
        range_size.saturating_sub(self.used)
    }
}

/// One process's descriptors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessFd {
    /// Process id.
    pub pid: u32,
    /// Command name.
    pub comm: String,
    /// Open descriptors and limits.
    pub usage: FdUsage,
}

impl ProcessFd {
    /// `usage` of `pid` running `comm`.
    pub fn new(pid: u32, comm: impl Into<String>, usage: FdUsage) -> Self {
        ProcessFd {
            pid,
            comm: comm.into(),
            usage,
        }
    }
}

/// What [`evaluate`](super::evaluate) judges: one look at the host. Plain data; fill it by
/// hand, with [`sample_host`](super::sample_host), or in two steps with
/// [`read_host_counters`](super::read_host_counters) and a [`HostWalk`](super::HostWalk).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct HostSample {
    /// TCP sockets of the network namespace by state, both families.
    pub states: StateCounts,
    /// `CLOSE_WAIT` sockets per holding process, most first. A socket shared by several
    /// processes counts for each.
    pub close_wait_by_process: Vec<ProcessCount>,
    /// Local-port use per destination, most used first.
    pub port_usage: Vec<PortUse>,
    /// Kernel TCP counters; `None` when they could not be read.
    pub counters: Option<TcpCounters>,
    /// TCP sysctls; a `None` field could not be read.
    pub sysctls: Sysctls,
    /// `fs.file-nr`; `None` when it could not be read.
    pub file_nr: Option<FileNr>,
    /// Descriptor usage of the processes looked at.
    pub process_fds: Vec<ProcessFd>,
    /// Connection tracking; `None` when it is not in use here.
    pub conntrack: Option<Conntrack>,
    /// Listening sockets.
    pub listeners: Vec<Listener>,
    /// The process's sockets by remote endpoint with their kernel detail (keepalive timers),
    /// read only for one process (`pid`); `None` when not read.
    pub peers: Option<Vec<crate::peers::Peer>>,
    /// When set, the process-level parts (`close_wait_by_process`, `process_fds`) cover
    /// only this process.
    pub pid: Option<u32>,
}

impl HostSample {
    /// Size of `ip_local_port_range`, when known and well formed.
    pub fn port_range_size(&self) -> Option<u64> {
        self.sysctls
            .ip_local_port_range
            .filter(|(lo, hi)| lo <= hi)
            .map(|(lo, hi)| u64::from(hi - lo) + 1)
    }

    /// The process holding the most `CLOSE_WAIT` sockets.
    pub fn top_close_wait(&self) -> Option<&ProcessCount> {
        self.close_wait_by_process
            .iter()
            .max_by(|a, b| a.count.cmp(&b.count).then(b.pid.cmp(&a.pid)))
    }
}
