//! This process's own sockets, found by address: what a library made and never handed out
//! (reqwest's, a pool's) can still have its options read back.

use std::{
    net::SocketAddr,
    os::fd::{FromRawFd, OwnedFd},
};

/// A duplicate of this process's TCP socket whose local address is `local`, if it holds one.
/// Reading options through it (`socket2::SockRef::from(&fd)`) reads the socket itself; closing
/// it closes only the duplicate.
pub fn own_socket(local: SocketAddr) -> Option<OwnedFd> {
    let dir = std::fs::read_dir("/proc/self/fd").ok()?;
    for entry in dir.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let is_socket = std::fs::read_link(entry.path())
            .is_ok_and(|l| l.to_string_lossy().starts_with("socket:["));
        if !is_socket {
            continue;
        }
        #[allow(unsafe_code)]
        // SAFETY: dup takes any descriptor number and returns a new descriptor this process
        // now owns (or -1): nothing else holds it, so OwnedFd may close it. If `fd` was closed
        // and reused meanwhile, the duplicate is of whatever it names now, and the address
        // check below tells.
        let dup = unsafe {
            let d = libc::dup(fd);
            (d >= 0).then(|| OwnedFd::from_raw_fd(d))
        };
        let Some(dup) = dup else { continue };
        if local_addr(&dup) == Some(local) {
            return Some(dup);
        }
    }
    None
}

fn local_addr(fd: &OwnedFd) -> Option<SocketAddr> {
    socket2::SockRef::from(fd).local_addr().ok()?.as_socket()
}
