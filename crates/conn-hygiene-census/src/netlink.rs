//! The netlink `sock_diag` wire format: requests, and a bounds-checked parser for answers.
//!
//! A dump is one `SOCK_DIAG_BY_FAMILY` request with `NLM_F_DUMP` for one address family, or
//! one older `TCPDIAG_GETSOCK` request for both (one pass over the kernel's tables); the
//! kernel answers with datagrams of `inet_diag_msg` messages and ends with `NLMSG_DONE`, or
//! refuses with `NLMSG_ERROR`. [`walk`](crate::walk()) runs dumps; this module is the parser, usable on
//! its own over bytes recorded earlier with [`dump_raw`]. The parser never panics on bad input:
//! a short or inconsistent message is an error for which
//! [`CensusError::is_malformed`] is true.
//!
//! ```
//! use conn_hygiene_census::netlink;
//!
//! // A datagram holding only NLMSG_DONE (length 20, type 3, payload 0).
//! let mut done = Vec::new();
//! done.extend_from_slice(&20u32.to_ne_bytes());
//! done.extend_from_slice(&3u16.to_ne_bytes());
//! done.extend_from_slice(&2u16.to_ne_bytes());
//! done.extend_from_slice(&[0; 12]);
//! let summary = netlink::parse_datagram(&done, |_| unreachable!()).unwrap();
//! assert!(summary.done);
//! assert_eq!(summary.sockets, 0);
//!
//! // The same bytes cut short are reported, not trusted.
//! let err = netlink::parse_datagram(&done[..18], |_| ()).unwrap_err();
//! assert!(err.is_malformed());
//! ```
// Requests and the errors of system calls exist on Linux only.
#![cfg_attr(not(target_os = "linux"), allow(dead_code))]

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use crate::{CensusError, Family, SockInfo, StateSet, TcpState};

/// `struct nlmsghdr` size.
const NLMSG_HDRLEN: usize = 16;
const NLMSG_NOOP: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_OVERRUN: u16 = 4;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x100 | 0x200;
const NLM_F_DUMP_INTR: u16 = 0x10;
/// `SOCK_DIAG_BY_FAMILY`.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `TCPDIAG_GETSOCK`: the older request, answered for every address family in one pass over
/// the kernel's tables, its answers of this type.
const TCPDIAG_GETSOCK: u16 = 18;
/// `struct inet_diag_req` (the older request) size.
const INET_DIAG_REQ_LEN: usize = 60;
/// `IPPROTO_TCP`.
const IPPROTO_TCP: u8 = 6;
/// `struct inet_diag_req_v2` size.
const INET_DIAG_REQ_V2_LEN: usize = 56;
/// `struct inet_diag_msg` size.
pub(crate) const INET_DIAG_MSG_LEN: usize = 72;

/// Size of a dump request: header plus `inet_diag_req_v2`.
pub(crate) const DUMP_REQUEST_LEN: usize = NLMSG_HDRLEN + INET_DIAG_REQ_V2_LEN;
/// Size of a dump request for both families: header plus `inet_diag_req`.
pub(crate) const DUMP_BOTH_REQUEST_LEN: usize = NLMSG_HDRLEN + INET_DIAG_REQ_LEN;

/// `INET_DIAG_INFO`: the `tcp_info` attribute, asked for by bit `INET_DIAG_INFO - 1` of
/// `idiag_ext`.
pub(crate) const INET_DIAG_INFO: u16 = 2;

/// Extensions a dump asks the kernel to attach to each socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Extensions {
    /// None: the bare `inet_diag_msg`, as the census walks.
    None,
    /// `tcp_info` (`INET_DIAG_INFO`).
    TcpInfo,
}

/// A `SOCK_DIAG_BY_FAMILY` dump request for TCP sockets of `family` in `states`.
pub(crate) fn dump_request(
    family: Family,
    states: StateSet,
    ext: Extensions,
    seq: u32,
) -> [u8; DUMP_REQUEST_LEN] {
    let mut req = [0u8; DUMP_REQUEST_LEN];
    req[0..4].copy_from_slice(&(DUMP_REQUEST_LEN as u32).to_ne_bytes());
    req[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req[8..12].copy_from_slice(&seq.to_ne_bytes());
    // nlmsg_pid 0: addressed to the kernel.
    req[16] = family.linux_af();
    req[17] = IPPROTO_TCP;
    req[18] = match ext {
        Extensions::None => 0,
        Extensions::TcpInfo => 1 << (INET_DIAG_INFO - 1),
    };
    // pad 0.
    req[20..24].copy_from_slice(&states.kernel_mask().to_ne_bytes());
    // inet_diag_sockid all zero: no address or cookie filter.
    req
}

/// A `TCPDIAG_GETSOCK` dump request for TCP sockets of both families in `states`.
///
/// The kernel answers it in one pass over its socket tables, where a `SOCK_DIAG_BY_FAMILY`
/// dump per family passes over all of them twice, each time testing every socket for its
/// family: half the kernel's work for a walk of both families.
pub(crate) fn dump_request_both(
    states: StateSet,
    ext: Extensions,
    seq: u32,
) -> [u8; DUMP_BOTH_REQUEST_LEN] {
    let mut req = [0u8; DUMP_BOTH_REQUEST_LEN];
    req[0..4].copy_from_slice(&(DUMP_BOTH_REQUEST_LEN as u32).to_ne_bytes());
    req[4..6].copy_from_slice(&TCPDIAG_GETSOCK.to_ne_bytes());
    req[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req[8..12].copy_from_slice(&seq.to_ne_bytes());
    // idiag_family (unused by a dump: every family), src_len, dst_len, then idiag_ext.
    req[19] = match ext {
        Extensions::None => 0,
        Extensions::TcpInfo => 1 << (INET_DIAG_INFO - 1),
    };
    // inet_diag_sockid (48 bytes) all zero, then idiag_states, then idiag_dbs 0.
    req[68..72].copy_from_slice(&states.kernel_mask().to_ne_bytes());
    req
}

/// What one datagram held. See [`parse_datagram`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DatagramSummary {
    /// Sockets handed to the visitor.
    pub sockets: u64,
    /// Messages passed over: unknown address family or state number, `NLMSG_NOOP`,
    /// acknowledgements, or (in a walk) answers to another request.
    pub skipped: u64,
    /// `NLMSG_DONE` was reached: the dump is complete. Bytes after it are ignored.
    pub done: bool,
    /// A message carried `NLM_F_DUMP_INTR`: the kernel tables changed during the dump, so a
    /// socket may be missing or counted twice.
    pub interrupted: bool,
}

/// Parses one datagram of a `sock_diag` dump answer, calling `f` for each TCP socket.
///
/// Stops at `NLMSG_DONE`. An `NLMSG_ERROR` with a non-zero code, or an `NLMSG_DONE` whose
/// code is negative, is an error for which [`CensusError::is_kernel_error`] is true and
/// [`CensusError::raw_os_error`] gives the errno. Several datagrams laid end to end parse as
/// one (the kernel aligns every message to four bytes).
///
/// Integers are read in the byte order of the machine running the parser, which is the
/// kernel's when the bytes come from it.
pub fn parse_datagram<F: FnMut(&SockInfo)>(
    buf: &[u8],
    mut f: F,
) -> Result<DatagramSummary, CensusError> {
    parse_messages(buf, None, "answer", &mut f)
}

/// [`parse_datagram`] for the walk: messages whose sequence number is not `seq` are skipped.
pub(crate) fn parse_messages<F: FnMut(&SockInfo)>(
    buf: &[u8],
    seq: Option<u32>,
    step: &'static str,
    f: &mut F,
) -> Result<DatagramSummary, CensusError> {
    parse_messages_with(buf, seq, step, &mut |info: &SockInfo, _: &[u8]| f(info))
}

/// What [`parse_messages_with`] hands each socket message to.
pub(crate) trait MessageSink {
    /// Offered each socket message's whole payload before it is read: `true` when the sink
    /// took it as it is (it then counts as a socket and is not read here). Only a payload of
    /// at least an `inet_diag_msg` may be taken.
    #[inline(always)]
    fn take_raw(&mut self, _payload: &[u8]) -> bool {
        false
    }

    /// One socket, with its message's whole payload, attributes included.
    fn socket(&mut self, info: &SockInfo, payload: &[u8]);
}

impl<F: FnMut(&SockInfo, &[u8])> MessageSink for F {
    #[inline(always)]
    fn socket(&mut self, info: &SockInfo, payload: &[u8]) {
        self(info, payload)
    }
}

/// [`parse_messages`] that also hands over each socket's whole `inet_diag_msg` payload, its
/// attributes included, and lets the sink take a message unread.
pub(crate) fn parse_messages_with<S: MessageSink>(
    buf: &[u8],
    seq: Option<u32>,
    step: &'static str,
    f: &mut S,
) -> Result<DatagramSummary, CensusError> {
    let mut summary = DatagramSummary::default();
    let mut rest = buf;
    while !rest.is_empty() {
        if rest.len() < NLMSG_HDRLEN {
            return Err(CensusError::netlink_malformed(
                step,
                format!(
                    "{} trailing bytes, shorter than a message header",
                    rest.len()
                ),
            ));
        }
        let len = read_u32(rest, 0) as usize;
        let kind = read_u16(rest, 4);
        let flags = read_u16(rest, 6);
        let msg_seq = read_u32(rest, 8);
        if len < NLMSG_HDRLEN || len > rest.len() {
            return Err(CensusError::netlink_malformed(
                step,
                format!(
                    "message length {len} outside {NLMSG_HDRLEN}..={}",
                    rest.len()
                ),
            ));
        }
        let payload = &rest[NLMSG_HDRLEN..len];
        // Messages are padded to four bytes; the last one may end the buffer unpadded.
        rest = rest.get(align4(len)..).unwrap_or(&[]);

        if flags & NLM_F_DUMP_INTR != 0 {
            summary.interrupted = true;
        }
        if seq.is_some_and(|s| s != msg_seq) {
            summary.skipped += 1;
            continue;
        }
        match kind {
            NLMSG_DONE => {
                // The payload, when present, is the dump's final status.
                if payload.len() >= 4 {
                    let status = read_i32(payload, 0);
                    if status < 0 {
                        return Err(CensusError::netlink_kernel(step, status.saturating_neg()));
                    }
                }
                summary.done = true;
                return Ok(summary);
            }
            NLMSG_ERROR => {
                if payload.len() < 4 {
                    return Err(CensusError::netlink_malformed(
                        step,
                        format!("NLMSG_ERROR payload of {} bytes", payload.len()),
                    ));
                }
                let code = read_i32(payload, 0);
                if code != 0 {
                    return Err(CensusError::netlink_kernel(step, code.saturating_neg()));
                }
                summary.skipped += 1;
            }
            NLMSG_OVERRUN => {
                return Err(CensusError::netlink_malformed(step, "NLMSG_OVERRUN"));
            }
            SOCK_DIAG_BY_FAMILY | TCPDIAG_GETSOCK if f.take_raw(payload) => summary.sockets += 1,
            SOCK_DIAG_BY_FAMILY | TCPDIAG_GETSOCK => match parse_inet_diag_msg(payload) {
                Ok(Some(info)) => {
                    summary.sockets += 1;
                    f.socket(&info, payload);
                }
                Ok(None) => summary.skipped += 1,
                Err(detail) => return Err(CensusError::netlink_malformed(step, detail)),
            },
            NLMSG_NOOP => summary.skipped += 1,
            other => {
                return Err(CensusError::netlink_malformed(
                    step,
                    format!("unexpected message type {other}"),
                ))
            }
        }
    }
    Ok(summary)
}

/// One `inet_diag_msg`; attributes after it are ignored. `Ok(None)` for a family or state
/// this crate does not report. Inlined into the loop over a datagram's messages, which builds
/// each socket in place.
#[inline(always)]
pub(crate) fn parse_inet_diag_msg(p: &[u8]) -> Result<Option<SockInfo>, String> {
    if p.len() < INET_DIAG_MSG_LEN {
        return Err(format!(
            "inet_diag_msg of {} bytes, expected at least {INET_DIAG_MSG_LEN}",
            p.len()
        ));
    }
    let family = match p[0] {
        2 => Family::Ipv4,
        10 => Family::Ipv6,
        _ => return Ok(None),
    };
    let Some(state) = TcpState::from_kernel(p[1]) else {
        return Ok(None);
    };
    // inet_diag_sockid: ports big-endian, addresses in network order.
    let sport = u16::from_be_bytes([p[4], p[5]]);
    let dport = u16::from_be_bytes([p[6], p[7]]);
    let (local, remote) = match family {
        Family::Ipv4 => (
            SocketAddr::V4(SocketAddrV4::new(ipv4_at(p, 8), sport)),
            SocketAddr::V4(SocketAddrV4::new(ipv4_at(p, 24), dport)),
        ),
        Family::Ipv6 => (
            SocketAddr::V6(SocketAddrV6::new(ipv6_at(p, 8), sport, 0, 0)),
            SocketAddr::V6(SocketAddrV6::new(ipv6_at(p, 24), dport, 0, 0)),
        ),
    };
    Ok(Some(SockInfo {
        family,
        state,
        local,
        remote,
        rqueue: read_u32(p, 56),
        wqueue: read_u32(p, 60),
        uid: read_u32(p, 64),
        inode: u64::from(read_u32(p, 68)),
    }))
}

/// Records one raw dump: sends the request for `family` and `states` and hands each datagram
/// of the answer to `f` as received, `NLMSG_DONE` included. Feed the bytes to
/// [`parse_datagram`] later, for instance to keep a kernel's answer as a test fixture.
pub fn dump_raw(
    family: Family,
    states: StateSet,
    buffer_size: usize,
    mut f: impl FnMut(&[u8]),
) -> Result<(), CensusError> {
    let mut sock = crate::sys::DiagSocket::open()?;
    let mut buf = vec![0u8; buffer_size.max(crate::walk::MIN_BUFFER)];
    let step = dump_step(Some(family));
    let seq = sock.send_dump(Some(family), states, Extensions::None, None, step)?;
    loop {
        let n = sock.recv(&mut buf, step)?;
        let datagram = &buf[..n];
        f(datagram);
        let summary = parse_messages(datagram, Some(seq), step, &mut |_: &SockInfo| ())?;
        if summary.done {
            return Ok(());
        }
    }
}

/// Appends the kernel's filter program to a dump request as its `INET_DIAG_REQ_BYTECODE`
/// attribute, and counts it in the message length. Either request takes it after its fixed
/// part; the program's length is a multiple of four (see [`crate::filter`]).
pub(crate) fn append_bytecode(req: &mut Vec<u8>, bytecode: &[u8]) {
    let attr_len = 4 + bytecode.len();
    req.extend_from_slice(&(attr_len as u16).to_ne_bytes());
    req.extend_from_slice(&crate::filter::INET_DIAG_REQ_BYTECODE.to_ne_bytes());
    req.extend_from_slice(bytecode);
    req.resize(align4(req.len()), 0);
    let total = req.len() as u32;
    req[0..4].copy_from_slice(&total.to_ne_bytes());
}

pub(crate) const fn dump_step(family: Option<Family>) -> &'static str {
    match family {
        Some(Family::Ipv4) => "dump (IPv4)",
        Some(Family::Ipv6) => "dump (IPv6)",
        None => "dump (both families)",
    }
}

pub(crate) fn align4(len: usize) -> usize {
    len.saturating_add(3) & !3
}

// The readers below are only called on ranges checked by the caller.
pub(crate) fn read_u16(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

pub(crate) fn read_u32(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn read_i32(b: &[u8], at: usize) -> i32 {
    read_u32(b, at) as i32
}

fn ipv4_at(b: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
}

fn ipv6_at(b: &[u8], at: usize) -> Ipv6Addr {
    let mut octets = [0u8; 16];
    octets.copy_from_slice(&b[at..at + 16]);
    Ipv6Addr::from(octets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_for_both_families_is_the_older_one_with_the_states_in_place() {
        let states = StateSet::only(TcpState::Established).with(TcpState::Listen);
        let req = dump_request_both(states, Extensions::TcpInfo, 7);
        assert_eq!(req.len(), 76);
        assert_eq!(u32::from_ne_bytes(req[0..4].try_into().unwrap()), 76);
        assert_eq!(
            u16::from_ne_bytes(req[4..6].try_into().unwrap()),
            TCPDIAG_GETSOCK
        );
        assert_eq!(u32::from_ne_bytes(req[8..12].try_into().unwrap()), 7);
        assert_eq!(req[16], 0, "every family");
        assert_eq!(req[19], 1 << (INET_DIAG_INFO - 1));
        assert!(req[20..68].iter().all(|&b| b == 0), "no socket id filter");
        assert_eq!(
            u32::from_ne_bytes(req[68..72].try_into().unwrap()),
            states.kernel_mask()
        );
        // Its answers carry its type and parse as the newer request's do.
        let mut answer = diag_msg(1, 7);
        answer[4..6].copy_from_slice(&TCPDIAG_GETSOCK.to_ne_bytes());
        answer.extend(done(7, 0));
        let mut seen = Vec::new();
        let summary = parse_datagram(&answer, |s| seen.push((s.state, s.local.port()))).unwrap();
        assert_eq!(seen, [(TcpState::Established, 8080)]);
        assert!(summary.done);
    }

    fn header(len: u32, kind: u16, flags: u16, seq: u32) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&len.to_ne_bytes());
        v.extend_from_slice(&kind.to_ne_bytes());
        v.extend_from_slice(&flags.to_ne_bytes());
        v.extend_from_slice(&seq.to_ne_bytes());
        v.extend_from_slice(&0u32.to_ne_bytes());
        v
    }

    fn diag_msg(state: u8, seq: u32) -> Vec<u8> {
        let mut v = header((NLMSG_HDRLEN + INET_DIAG_MSG_LEN + 8) as u32, 20, 2, seq);
        let mut p = [0u8; INET_DIAG_MSG_LEN];
        p[0] = 2;
        p[1] = state;
        p[4..6].copy_from_slice(&8080u16.to_be_bytes());
        p[6..8].copy_from_slice(&40000u16.to_be_bytes());
        p[8..12].copy_from_slice(&[127, 0, 0, 1]);
        p[24..28].copy_from_slice(&[127, 0, 0, 2]);
        p[56..60].copy_from_slice(&3u32.to_ne_bytes());
        p[60..64].copy_from_slice(&7u32.to_ne_bytes());
        p[64..68].copy_from_slice(&1000u32.to_ne_bytes());
        p[68..72].copy_from_slice(&4242u32.to_ne_bytes());
        v.extend_from_slice(&p);
        // One 8-byte attribute that the parser must step over.
        v.extend_from_slice(&8u16.to_ne_bytes());
        v.extend_from_slice(&8u16.to_ne_bytes());
        v.extend_from_slice(&[0; 4]);
        v
    }

    fn done(seq: u32, status: i32) -> Vec<u8> {
        let mut v = header(20, NLMSG_DONE, 2, seq);
        v.extend_from_slice(&status.to_ne_bytes());
        v
    }

    #[test]
    fn request_layout() {
        let req = dump_request(
            Family::Ipv6,
            StateSet::only(TcpState::Listen),
            Extensions::None,
            9,
        );
        assert_eq!(read_u32(&req, 0), 72);
        assert_eq!(read_u16(&req, 4), 20);
        assert_eq!(read_u16(&req, 6), 0x301);
        assert_eq!(read_u32(&req, 8), 9);
        assert_eq!((req[16], req[17]), (10, 6));
        assert_eq!(read_u32(&req, 20), 1 << 10);
    }

    #[test]
    fn parses_messages_and_done() {
        let mut buf = diag_msg(10, 1);
        buf.extend(diag_msg(6, 1));
        buf.extend(diag_msg(13, 1)); // BOUND_INACTIVE: not a reported state
        buf.extend(diag_msg(1, 99)); // another request's answer
        buf.extend(done(1, 0));
        buf.extend(diag_msg(1, 1)); // after DONE: ignored
        let mut seen = Vec::new();
        let s = parse_messages(&buf, Some(1), "t", &mut |i: &SockInfo| seen.push(*i)).unwrap();
        assert!(s.done);
        assert_eq!((s.sockets, s.skipped), (2, 2));
        assert_eq!(seen[0].state, TcpState::Listen);
        assert_eq!(seen[0].local, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(seen[0].remote, "127.0.0.2:40000".parse().unwrap());
        assert_eq!((seen[0].rqueue, seen[0].wqueue), (3, 7));
        assert_eq!((seen[0].uid, seen[0].inode), (1000, 4242));
        assert_eq!(seen[1].state, TcpState::TimeWait);
    }

    #[test]
    fn kernel_errors_are_typed() {
        let mut err = header(36, NLMSG_ERROR, 0, 5);
        err.extend_from_slice(&(-1i32).to_ne_bytes());
        err.extend_from_slice(&[0; 16]);
        let e = parse_datagram(&err, |_| ()).unwrap_err();
        assert!(e.is_kernel_error() && e.is_permission_denied());
        assert_eq!(e.raw_os_error(), Some(1));

        let e = parse_datagram(&done(5, -4), |_| ()).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(4));

        let mut ack = header(36, NLMSG_ERROR, 0, 5);
        ack.extend_from_slice(&0i32.to_ne_bytes());
        ack.extend_from_slice(&[0; 16]);
        assert_eq!(parse_datagram(&ack, |_| ()).unwrap().skipped, 1);
    }

    #[test]
    fn garbage_never_panics() {
        let mut buf = diag_msg(1, 1);
        buf.extend(done(1, 0));
        for cut in 0..buf.len() {
            let _ = parse_datagram(&buf[..cut], |_| ());
        }
        // Length field claiming more than there is, less than a header, or a short payload.
        let mut bad = buf.clone();
        bad[0..4].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert!(parse_datagram(&bad, |_| ()).unwrap_err().is_malformed());
        bad[0..4].copy_from_slice(&3u32.to_ne_bytes());
        assert!(parse_datagram(&bad, |_| ()).unwrap_err().is_malformed());
        bad[0..4].copy_from_slice(&40u32.to_ne_bytes());
        assert!(parse_datagram(&bad, |_| ()).unwrap_err().is_malformed());
        // Flipping every byte in turn must not panic either.
        for i in 0..buf.len() {
            let mut b = buf.clone();
            b[i] ^= 0xff;
            let _ = parse_datagram(&b, |_| ());
        }
    }
}
