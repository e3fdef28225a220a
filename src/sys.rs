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
