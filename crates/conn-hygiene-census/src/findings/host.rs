//! Filling a [`HostSample`] from the live host: the only part of the findings that reads it.
//!
//! Two steps, which a sampler may take at different rates: [`read_host_counters`] (a few
//! small files) and a walk of the socket table through a [`HostWalk`]. [`sample_host`] takes
//! both, and joins the sockets to the processes holding them.

use std::collections::HashMap;

use super::{HostSample, HostSockets, HostWalk, ProcessCount, ProcessFd};
use crate::{CensusError, ProcRoot, Walker};

/// Reads the cheap part of a sample into `sample`: the kernel counters, `fs.file-nr` and
/// connection tracking (each `None` when it cannot be read) and the sysctls.
///
/// # Errors
///
/// The sysctls could not be read; they are left as they were, the rest is read.
pub fn read_host_counters(root: &ProcRoot, sample: &mut HostSample) -> Result<(), CensusError> {
    sample.counters = root.tcp_counters().ok();
    sample.file_nr = root.file_nr().ok();
    sample.conntrack = root.conntrack().ok().flatten();
    sample.sysctls = root.sysctls()?;
    Ok(())
}

/// Fills a [`HostSample`] from the live host.
///
/// The counters, sysctls, `file-nr` and connection tracking are read from the walker's proc
/// root ([`read_host_counters`]); then one walk with `walker` (which should walk every state
/// of both families) through a [`HostWalk`] collects the state counts, the listeners, the
/// local-port use per destination and the `CLOSE_WAIT` sockets, which are joined to their
/// holders through `/proc/*/fd`.
///
/// With `pid`, the process-level parts cover only that process, and an unknown or
/// unreadable `pid` is an error ([`CensusError::is_not_found`],
/// [`CensusError::is_permission_denied`]). Without it, descriptor usage is read for every
/// process holding a TCP socket.
///
/// A connection counts toward its destination's port use as [`HostWalk`] says: its local
/// port lies in `ip_local_port_range` and is not a listening port; the use of a destination
/// is that of its busiest source address.
pub fn sample_host(walker: &mut Walker, pid: Option<u32>) -> Result<HostSample, CensusError> {
    let root = walker.options().get_proc_root().clone();
    let mut sample = HostSample {
        pid,
        ..HostSample::default()
    };
    read_host_counters(&root, &mut sample)?;
    let range = sample.sysctls.ip_local_port_range;
    match pid {
        Some(pid) => {
            let held = root.socket_inodes(pid)?;
            let comm = root.comm(pid);
            let mut walk = HostWalk::new(range).process(pid, comm.clone(), &held);
            let stats = walker.walk(|s| {
                walk.visit(s);
            })?;
            walk.finish(&stats).fill(&mut sample);
            sample
                .process_fds
                .push(ProcessFd::new(pid, comm, root.fd_usage(pid)?));
            // Kernel detail needs netlink; without it the check says it could not look.
            sample.peers = crate::peers::process_peers(walker.options(), pid).ok();
        }
        None => {
            let mut walk = HostWalk::new(range);
            let stats = walker.walk(|s| {
                walk.visit(s);
            })?;
            let found = walk.finish(&stats);
            found.fill(&mut sample);
            join_holders(&root, &found, &mut sample)?;
        }
    }
    Ok(sample)
}

/// The process-level parts of a walk over every process: who holds the `CLOSE_WAIT`
/// sockets, and the descriptor usage of every process holding a TCP socket.
fn join_holders(
    root: &ProcRoot,
    found: &HostSockets,
    sample: &mut HostSample,
) -> Result<(), CensusError> {
    let holders = root.socket_holders()?;
    let mut by_pid: HashMap<u32, (String, u64)> = HashMap::new();
    for inode in &found.close_wait_inodes {
        for h in holders.get(*inode) {
            by_pid
                .entry(h.pid)
                .or_insert_with(|| (h.comm.to_string(), 0))
                .1 += 1;
        }
    }
    sample.close_wait_by_process = by_pid
        .into_iter()
        .map(|(pid, (comm, count))| ProcessCount::new(pid, comm, count))
        .collect();
    sample
        .close_wait_by_process
        .sort_by(|a, b| b.count.cmp(&a.count).then(a.pid.cmp(&b.pid)));
    let mut seen: HashMap<u32, String> = HashMap::new();
    for inode in &found.tcp_inodes {
        for h in holders.get(*inode) {
            seen.entry(h.pid).or_insert_with(|| h.comm.to_string());
        }
    }
    for (pid, comm) in seen {
        // A process that exited meanwhile is simply not looked at.
        if let Ok(usage) = root.fd_usage(pid) {
            sample.process_fds.push(ProcessFd::new(pid, comm, usage));
        }
    }
    sample.process_fds.sort_by_key(|p| p.pid);
    Ok(())
}
