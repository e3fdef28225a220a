//! Filling a [`HostSample`] from the live host: the only part of the findings that reads it.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;

use super::{HostSample, PortUse, ProcessCount, ProcessFd};
use crate::{CensusError, Listener, Source, StateCounts, TcpState, Walker};

/// Fills a [`HostSample`] from the live host.
///
/// One walk with `walker` (which should walk every state of both families) collects the
/// state counts, the listeners, the local-port use per destination and the inodes of the
/// `CLOSE_WAIT` sockets; the inodes are then joined to their holders through `/proc/*/fd`.
/// Counters, sysctls, `file-nr` and connection tracking are read from the walker's proc
/// root; a counter file that cannot be read leaves its field `None`.
///
/// With `pid`, the process-level parts cover only that process, and an unknown or
/// unreadable `pid` is an error ([`CensusError::is_not_found`],
/// [`CensusError::is_permission_denied`]). Without it, descriptor usage is read for every
/// process holding a TCP socket.
///
/// A connection counts toward its destination's port use when its local port lies in
/// `ip_local_port_range` and is not a listening port (accepted connections share the
/// listener's port). Both netlink and `/proc` list a family's listeners before its
/// connections, which is what lets one pass tell them apart.
pub fn sample_host(walker: &mut Walker, pid: Option<u32>) -> Result<HostSample, CensusError> {
    let root = walker.options().get_proc_root().clone();
    let sysctls = root.sysctls()?;
    let scope = match pid {
        Some(pid) => Some(root.socket_inodes(pid)?),
        None => None,
    };
    let range = sysctls.ip_local_port_range.filter(|(lo, hi)| lo <= hi);

    let mut states = StateCounts::new();
    let mut listeners = Vec::new();
    let mut listen_ports: HashSet<u16> = HashSet::new();
    let mut ports: HashMap<SocketAddr, u64> = HashMap::new();
    let mut close_wait: Vec<u64> = Vec::new();
    let mut tcp_inodes: Vec<u64> = Vec::new();
    let stats = walker.walk(|s| {
        states.record(s.state);
        if s.state == TcpState::Listen {
            listen_ports.insert(s.local.port());
            listeners.push(Listener {
                family: s.family,
                local: s.local,
                inode: s.inode,
                uid: s.uid,
                queue_len: s.rqueue,
                queue_max: Some(s.wqueue),
            });
            return;
        }
        if s.inode != 0 {
            if s.state == TcpState::CloseWait
                && scope.as_ref().is_none_or(|inodes| inodes.contains(s.inode))
            {
                close_wait.push(s.inode);
            }
            if scope.is_none() {
                tcp_inodes.push(s.inode);
            }
        }
        let port = s.local.port();
        if !s.remote.ip().is_unspecified()
            && range.is_some_and(|(lo, hi)| (lo..=hi).contains(&port))
            && !listen_ports.contains(&port)
        {
            *ports.entry(s.remote).or_default() += 1;
        }
    })?;
    for l in &mut listeners {
        let source = match l.family {
            crate::Family::Ipv4 => stats.ipv4,
            crate::Family::Ipv6 => stats.ipv6,
        };
        if source != Some(Source::Netlink) {
            l.queue_max = None;
        }
    }
    tcp_inodes.extend(listeners.iter().map(|l| l.inode).filter(|i| *i != 0));

    let mut close_wait_by_process = Vec::new();
    let mut process_fds = Vec::new();
    match pid {
        Some(pid) => {
            let comm = std::fs::read_to_string(root.path().join(format!("{pid}/comm")))
                .map(|c| c.trim_end_matches('\n').to_owned())
                .unwrap_or_default();
            if !close_wait.is_empty() {
                close_wait_by_process.push(ProcessCount::new(
                    pid,
                    comm.clone(),
                    close_wait.len() as u64,
                ));
            }
            process_fds.push(ProcessFd::new(pid, comm, root.fd_usage(pid)?));
        }
        None => {
            let holders = root.socket_holders()?;
            let mut by_pid: HashMap<u32, (String, u64)> = HashMap::new();
            for inode in &close_wait {
                for h in holders.get(*inode) {
                    by_pid
                        .entry(h.pid)
                        .or_insert_with(|| (h.comm.to_string(), 0))
                        .1 += 1;
                }
            }
            close_wait_by_process = by_pid
                .into_iter()
                .map(|(pid, (comm, count))| ProcessCount::new(pid, comm, count))
                .collect();
            let mut seen: HashMap<u32, String> = HashMap::new();
            for inode in &tcp_inodes {
                for h in holders.get(*inode) {
                    seen.entry(h.pid).or_insert_with(|| h.comm.to_string());
                }
            }
            for (pid, comm) in seen {
                // A process that exited meanwhile is simply not looked at.
                if let Ok(usage) = root.fd_usage(pid) {
                    process_fds.push(ProcessFd::new(pid, comm, usage));
                }
            }
            process_fds.sort_by_key(|p| p.pid);
        }
    }
    close_wait_by_process.sort_by(|a, b| b.count.cmp(&a.count).then(a.pid.cmp(&b.pid)));
    let mut port_usage: Vec<PortUse> = ports
        .into_iter()
        .map(|(destination, used)| PortUse { destination, used })
        .collect();
    port_usage.sort_by(|a, b| b.used.cmp(&a.used).then(a.destination.cmp(&b.destination)));

    Ok(HostSample {
        states,
        close_wait_by_process,
        port_usage,
        counters: root.tcp_counters().ok(),
        sysctls,
        file_nr: root.file_nr().ok(),
        process_fds,
        conntrack: root.conntrack().ok().flatten(),
        listeners,
        pid,
    })
}
