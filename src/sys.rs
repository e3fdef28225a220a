//! The few raw syscalls socket2 does not cover.
#![cfg_attr(not(any(feature = "server", feature = "client")), allow(dead_code))]

/// Kernel TCP state numbers (`include/net/tcp_states.h`).
const TCP_CLOSE_WAIT: u8 = 8;
const TCP_LAST_ACK: u8 = 9;

/// True when the peer's FIN has arrived on this socket, read or not (the kernel then holds it
/// in CLOSE_WAIT, or LAST_ACK once we sent ours): the peer closed first.
pub(crate) fn peer_sent_fin(stream: &impl std::os::fd::AsRawFd) -> bool {
    matches!(
        tcp_state(stream.as_raw_fd()),
        Some(TCP_CLOSE_WAIT | TCP_LAST_ACK)
    )
}

/// The kernel's TCP state of a socket (`tcpi_state` of `TCP_INFO`), `None` if it cannot be read.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub(crate) fn tcp_state(fd: std::os::fd::RawFd) -> Option<u8> {
    // `tcpi_state` is the first byte of `struct tcp_info`; the kernel copies at most `len` bytes.
    let mut buf = [0u8; 8];
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: `buf` is valid for writes of `len` bytes and `len` points to its size; `fd` is a
    // socket owned by the caller for the duration of the call.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    (rc == 0 && len >= 1).then_some(buf[0])
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn tcp_state(_fd: i32) -> Option<u8> {
    None
}

/// How far the peer has taken what we sent: bytes still in the send queue (sent and not
/// acknowledged, or not sent yet) and bytes acknowledged so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SendQueue {
    pub(crate) queued: u32,
    pub(crate) acked: u64,
}

/// The send queue of a socket (`SIOCOUTQ` and `tcpi_bytes_acked` of `TCP_INFO`), `None` if it
/// cannot be read.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub(crate) fn send_queue(fd: std::os::fd::RawFd) -> Option<SendQueue> {
    let mut queued: libc::c_int = 0;
    // SAFETY: TIOCOUTQ (SIOCOUTQ on a socket) writes one int through the pointer, which is
    // valid for that write.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut queued) };
    if rc != 0 {
        return None;
    }
    // SAFETY: `tcp_info` is plain integers, for which all-zero is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` is valid for writes of `len` bytes and `len` points to its size; the kernel
    // copies at most that many.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    let acked_end = std::mem::offset_of!(libc::tcp_info, tcpi_bytes_acked) + 8;
    (rc == 0 && len as usize >= acked_end).then(|| SendQueue {
        queued: u32::try_from(queued).unwrap_or(0),
        acked: info.tcpi_bytes_acked,
    })
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn send_queue(_fd: i32) -> Option<SendQueue> {
    None
}
