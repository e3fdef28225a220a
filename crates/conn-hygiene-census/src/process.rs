//! Which process holds which socket.
//!
//! A process's descriptors are the links in `/proc/PID/fd`; a socket's link reads
//! `socket:[INODE]`, the inode a walk reports in [`SockInfo::inode`](crate::SockInfo::inode).
//! Joining the two answers "which sockets does this process hold, and in which states" and,
//! over every process, "who holds these `CLOSE_WAIT` sockets".
//!
//! ```
//! use conn_hygiene_census::process::parse_socket_link;
//!
//! assert_eq!(parse_socket_link(b"socket:[4242]"), Some(4242));
//! assert_eq!(parse_socket_link(b"pipe:[4242]"), None);
//! assert_eq!(parse_socket_link(b"socket:[42"), None);
//! ```

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use crate::{walk, CensusError, ProcRoot, SockInfo, StateCounts, WalkOptions, WalkStats};

/// The inode in a `/proc/PID/fd` link target `socket:[INODE]`.
pub fn parse_socket_link(target: &[u8]) -> Option<u64> {
    let digits = target.strip_prefix(b"socket:[")?.strip_suffix(b"]")?;
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// The socket inodes one process holds, sorted, without duplicates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SocketInodes {
    inodes: Vec<u64>,
}

impl SocketInodes {
    /// From any list of inodes.
    pub fn new(mut inodes: Vec<u64>) -> Self {
        inodes.sort_unstable();
        inodes.dedup();
        SocketInodes { inodes }
    }

    /// Whether `inode` is held. Inode 0 (a socket no process holds) never is.
    pub fn contains(&self, inode: u64) -> bool {
        inode != 0 && self.inodes.binary_search(&inode).is_ok()
    }

    /// Number of distinct sockets.
    pub fn len(&self) -> usize {
        self.inodes.len()
    }

    /// Whether the process holds no socket.
    pub fn is_empty(&self) -> bool {
        self.inodes.is_empty()
    }

    /// The inodes, ascending.
    pub fn as_slice(&self) -> &[u64] {
        &self.inodes
    }
}

/// A process holding a socket.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Holder {
    /// Process id.
    pub pid: u32,
    /// Command name (`/proc/PID/comm`), shared by all this process's entries.
    pub comm: Arc<str>,
}

/// Socket inode to the processes holding it, over every process of the proc file system.
#[derive(Debug, Clone, Default)]
pub struct SocketHolders {
    map: HashMap<u64, Vec<Holder>>,
    unreadable: u64,
}

impl SocketHolders {
    /// The processes holding `inode` (several after `fork` or descriptor passing).
    pub fn get(&self, inode: u64) -> &[Holder] {
        self.map.get(&inode).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Number of distinct socket inodes held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no socket was found.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Every inode with its holders, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &[Holder])> + '_ {
        self.map.iter().map(|(i, h)| (*i, h.as_slice()))
    }

    /// Processes whose descriptors could not be read (another user's, without privilege).
    pub fn unreadable_processes(&self) -> u64 {
        self.unreadable
    }
}

impl ProcRoot {
    /// The socket inodes `pid` holds, from the links in `PID/fd`. Descriptors closed while
    /// listing are passed over.
    pub fn socket_inodes(&self, pid: u32) -> Result<SocketInodes, CensusError> {
        let mut inodes = Vec::new();
        self.each_socket_inode(&self.join(format!("{pid}/fd")), |i| inodes.push(i))?;
        Ok(SocketInodes::new(inodes))
    }

    /// Every process's socket inodes. Processes that exit while listed, or whose
    /// descriptors this process may not read, are passed over (the latter counted).
    pub fn socket_holders(&self) -> Result<SocketHolders, CensusError> {
        let root = self.path();
        crate::root::check_supported(root)?;
        let dir = std::fs::read_dir(root).map_err(|e| CensusError::path_io(root, e))?;
        let mut holders = SocketHolders::default();
        for entry in dir {
            let entry = entry.map_err(|e| CensusError::path_io(root, e))?;
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let mut inodes = Vec::new();
            match self.each_socket_inode(&entry.path().join("fd"), |i| inodes.push(i)) {
                Ok(()) => {}
                Err(e) if e.is_not_found() => continue,
                Err(e) if e.is_permission_denied() => {
                    holders.unreadable += 1;
                    continue;
                }
                Err(e) => return Err(e),
            }
            if inodes.is_empty() {
                continue;
            }
            let comm: Arc<str> = read_comm(&entry.path()).into();
            inodes.sort_unstable();
            inodes.dedup();
            for inode in inodes {
                holders.map.entry(inode).or_default().push(Holder {
                    pid,
                    comm: comm.clone(),
                });
            }
        }
        Ok(holders)
    }

    /// The command name of `pid` (`PID/comm`); empty when it cannot be read.
    pub(crate) fn comm(&self, pid: u32) -> String {
        read_comm(&self.join(pid.to_string()))
    }

    fn each_socket_inode(&self, fd_dir: &Path, mut f: impl FnMut(u64)) -> Result<(), CensusError> {
        crate::root::check_supported(fd_dir)?;
        let dir = std::fs::read_dir(fd_dir).map_err(|e| CensusError::path_io(fd_dir, e))?;
        for entry in dir {
            let entry = entry.map_err(|e| CensusError::path_io(fd_dir, e))?;
            match std::fs::read_link(entry.path()) {
                Ok(target) => {
                    let target = target.to_str().map(str::as_bytes).unwrap_or_default();
                    if let Some(inode) = parse_socket_link(target) {
                        f(inode);
                    }
                }
                // Closed since the directory was listed.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(CensusError::path_io(&entry.path(), e)),
            }
        }
        Ok(())
    }
}

/// The command name in a process directory's `comm`; empty when it cannot be read.
fn read_comm(process_dir: &Path) -> String {
    std::fs::read_to_string(process_dir.join("comm"))
        .map(|c| c.trim_end_matches('\n').to_owned())
        .unwrap_or_default()
}

/// Calls `f` for each socket of the walk that `pid` holds. `pid`'s descriptors are read from
/// the options' proc root.
pub fn walk_process<F: FnMut(&SockInfo)>(
    opts: &WalkOptions,
    pid: u32,
    mut f: F,
) -> Result<WalkStats, CensusError> {
    let inodes = opts.get_proc_root().socket_inodes(pid)?;
    walk(opts, |s| {
        if inodes.contains(s.inode) {
            f(s)
        }
    })
}

/// The sockets `pid` holds, by state.
pub fn process_state_counts(opts: &WalkOptions, pid: u32) -> Result<StateCounts, CensusError> {
    let mut counts = StateCounts::new();
    walk_process(opts, pid, |s| counts.record(s.state))?;
    Ok(counts)
}
