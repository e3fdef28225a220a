//! The few system calls std does not wrap: a netlink socket, and `getrlimit`.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::netlink::{append_bytecode, dump_request, dump_request_both, Extensions};
use crate::{CensusError, Family, StateSet};

/// How long one receive may wait for the kernel. A dump answer is produced on demand by
/// the receive itself, so this only bounds a kernel that stops answering.
const RECV_TIMEOUT_SECS: libc::time_t = 10;

/// A `NETLINK_SOCK_DIAG` socket. Closed on drop.
#[derive(Debug)]
pub(crate) struct DiagSocket {
    fd: OwnedFd,
    seq: u32,
}

impl DiagSocket {
    pub(crate) fn open() -> Result<Self, CensusError> {
        // SAFETY: socket(2) takes no pointers; the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_SOCK_DIAG,
            )
        };
        if raw < 0 {
            return Err(CensusError::netlink_io(
                "socket",
                io::Error::last_os_error(),
            ));
        }
        // SAFETY: `raw` is a descriptor just returned by socket(2) and owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let timeout = libc::timeval {
            tv_sec: RECV_TIMEOUT_SECS,
            tv_usec: 0,
        };
        // SAFETY: the option value points to a live timeval of the size passed.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&timeout as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(CensusError::netlink_io(
                "setsockopt(SO_RCVTIMEO)",
                io::Error::last_os_error(),
            ));
        }
        Ok(DiagSocket { fd, seq: 0 })
    }

    /// Sends a dump request for `family`, or for both in one pass (`None`); returns its
    /// sequence number.
    pub(crate) fn send_dump(
        &mut self,
        family: Option<Family>,
        states: StateSet,
        ext: Extensions,
        bytecode: Option<&[u8]>,
        step: &'static str,
    ) -> Result<u32, CensusError> {
        self.seq = self.seq.wrapping_add(1);
        let mut req: Vec<u8> = match family {
            Some(family) => dump_request(family, states, ext, self.seq).to_vec(),
            None => dump_request_both(states, ext, self.seq).to_vec(),
        };
        if let Some(bc) = bytecode {
            append_bytecode(&mut req, bc);
        }
        let req = &req[..];
        loop {
            // SAFETY: the pointer and length describe `req`, alive for the call. An unbound,
            // unconnected netlink socket sends to the kernel (port id 0).
            let n = unsafe { libc::send(self.fd.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) };
            if n < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(CensusError::netlink_io(step, err));
            }
            if n as usize != req.len() {
                return Err(CensusError::netlink_malformed(
                    step,
                    "short send of the request",
                ));
            }
            return Ok(self.seq);
        }
    }

    /// Receives one datagram into `buf`; a datagram larger than `buf` is an error.
    pub(crate) fn recv(&self, buf: &mut [u8], step: &'static str) -> Result<usize, CensusError> {
        loop {
            // SAFETY: the pointer and length describe `buf`, writable for the call. MSG_TRUNC
            // makes the kernel return the datagram's full length even if it did not fit.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_TRUNC,
                )
            };
            if n < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(CensusError::netlink_io(step, err));
            }
            let n = n as usize;
            if n > buf.len() {
                return Err(CensusError::netlink_malformed(
                    step,
                    format!(
                        "datagram of {n} bytes truncated to the {}-byte buffer",
                        buf.len()
                    ),
                ));
            }
            if n == 0 {
                return Err(CensusError::netlink_malformed(step, "empty datagram"));
            }
            return Ok(n);
        }
    }
}

/// This process's `RLIMIT_NOFILE` (soft, hard); `None` is unlimited.
pub(crate) fn nofile_limit() -> Result<(Option<u64>, Option<u64>), CensusError> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) writes one rlimit into the live, exclusively borrowed `lim`.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    if rc < 0 {
        return Err(CensusError::call_io(
            "getrlimit(RLIMIT_NOFILE)",
            io::Error::last_os_error(),
        ));
    }
    // rlim_t is 32 bits wide on some targets.
    #[allow(clippy::unnecessary_cast)]
    let finite = |v: libc::rlim_t| (v != libc::RLIM_INFINITY).then_some(v as u64);
    Ok((finite(lim.rlim_cur), finite(lim.rlim_max)))
}

pub(crate) const SUPPORTED: bool = true;

/// CPU time the calling thread has used, user and system: what a walk cost it, the kernel's
/// work on its dumps included. `None` if the clock cannot be read.
pub(crate) fn thread_cpu_time() -> Option<std::time::Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return None;
    }
    Some(std::time::Duration::new(
        u64::try_from(ts.tv_sec).ok()?,
        u32::try_from(ts.tv_nsec).ok()?,
    ))
}
