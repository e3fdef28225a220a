//! The TCP sockets one process holds, grouped by remote endpoint, with what the kernel knows
//! of each: the timer it has armed (a keepalive timer or not), how long it has sent or
//! received nothing, and its retransmissions.
//!
//! One netlink `sock_diag` dump per address family asks for `tcp_info` beside each socket
//! (what `ss -tnoi` shows); the sockets are joined to the process through `/proc/PID/fd`.
//! [`parse_detail`] reads one socket's answer and is usable on recorded bytes.
//!
//! ```
//! use std::net::{TcpListener, TcpStream};
//! use conn_hygiene_census::{peers, TcpState, WalkOptions};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let listener = TcpListener::bind("127.0.0.1:0")?;
//! let client = TcpStream::connect(listener.local_addr()?)?; // no SO_KEEPALIVE
//! let (server, _) = listener.accept()?;
//! let found = match peers::process_peers(&WalkOptions::new(), std::process::id()) {
//!     Ok(found) => found,
//!     Err(e) if e.is_unsupported() => return Ok(()), // not Linux
//!     Err(e) => return Err(e.into()),
//! };
//! let toward = found.iter().find(|p| p.remote == listener.local_addr().unwrap()).unwrap();
//! assert_eq!(toward.states[TcpState::Established], 1);
//! assert_eq!(toward.without_keepalive, 1);
//! # drop((client, server));
//! # Ok(())
//! # }
//! ```

use std::{collections::HashMap, net::SocketAddr, time::Duration};

use crate::{
    canonical_addr,
    netlink::{align4, read_u16, read_u32, INET_DIAG_INFO},
    Backend, CensusError, SockInfo, StateCounts, StateSet, TcpState, WalkOptions, Walker,
};

/// `struct inet_diag_msg` size: the attributes follow it.
const INET_DIAG_MSG_LEN: usize = 72;
/// `struct rtattr` header size.
const RTA_HDRLEN: usize = 4;
/// Offsets in `struct tcp_info`.
const TCPI_LAST_DATA_SENT: usize = 44;
const TCPI_LAST_DATA_RECV: usize = 52;
const TCPI_LAST_ACK_RECV: usize = 56;
const TCPI_TOTAL_RETRANS: usize = 100;

/// The timer a socket has armed, as `idiag_timer` (and `ss -o`) reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Timer {
    /// None (`ss` prints no timer).
    Off,
    /// Retransmission (`on`).
    Retransmit,
    /// Keepalive (`keepalive`; the same kernel timer also runs `FIN_WAIT2`'s timeout).
    Keepalive,
    /// `TIME_WAIT` (`timewait`).
    TimeWait,
    /// Zero-window probe (`persist`).
    Persist,
    /// A number this crate does not know.
    Other(u8),
}

impl Timer {
    /// From `idiag_timer`.
    pub const fn from_kernel(n: u8) -> Timer {
        match n {
            0 => Timer::Off,
            1 => Timer::Retransmit,
            2 => Timer::Keepalive,
            3 => Timer::TimeWait,
            4 => Timer::Persist,
            n => Timer::Other(n),
        }
    }
}

/// What the kernel said of one socket beyond its addresses and state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SockDetail {
    /// The armed timer.
    pub timer: Timer,
    /// Time since data was last sent (`lastsnd`), from `tcp_info`.
    pub last_data_sent: Option<Duration>,
    /// Time since data was last received (`lastrcv`), from `tcp_info`.
    pub last_data_recv: Option<Duration>,
    /// Retransmitted segments over the socket's life (`retrans:N/TOTAL`), from `tcp_info`.
    pub total_retrans: Option<u32>,
    /// Time since an acknowledgement was last received (`lastack`), from `tcp_info`. In
    /// `CLOSE_WAIT` the peer has nothing more to send, so, unless we sent since, this dates its
    /// FIN: how long the socket has been left unclosed.
    pub last_ack_recv: Option<Duration>,
}

impl SockDetail {
    /// Nothing known: no timer, no `tcp_info` (a socket read from the `/proc` tables).
    pub const UNKNOWN: SockDetail = SockDetail {
        timer: Timer::Off,
        last_data_sent: None,
        last_data_recv: None,
        total_retrans: None,
        last_ack_recv: None,
    };

    /// Time it has sent and received nothing: the shorter of the two, when `tcp_info` came.
    pub fn idle(&self) -> Option<Duration> {
        Some(self.last_data_sent?.min(self.last_data_recv?))
    }
}

/// One socket's kernel detail as a walk received it, read only when asked
/// ([`Walker::walk_keeping_time_wait`](crate::Walker::walk_keeping_time_wait)): a walk
/// that needs the detail of a few of its sockets passes over the others' without reading
/// them.
#[derive(Debug, Clone, Copy)]
pub struct RawDetail<'a> {
    payload: Option<&'a [u8]>,
}

impl<'a> RawDetail<'a> {
    pub(crate) fn new(payload: Option<&'a [u8]>) -> Self {
        RawDetail { payload }
    }

    /// The detail, read now: `None` from the `/proc` tables, or for an answer that cannot be
    /// read, as [`Walker::walk_detailed`](crate::Walker::walk_detailed) hands it over.
    pub fn parse(&self) -> Option<SockDetail> {
        self.payload.and_then(|p| parse_detail(p).ok())
    }
}

/// Reads one socket's `inet_diag_msg` payload, its attributes included. Bad input is an
/// error, never a panic; a `tcp_info` shorter than a field leaves that field `None`.
pub fn parse_detail(payload: &[u8]) -> Result<SockDetail, String> {
    if payload.len() < INET_DIAG_MSG_LEN {
        return Err(format!(
            "inet_diag_msg of {} bytes, expected at least {INET_DIAG_MSG_LEN}",
            payload.len()
        ));
    }
    let mut detail = SockDetail {
        timer: Timer::from_kernel(payload[2]),
        last_data_sent: None,
        last_data_recv: None,
        total_retrans: None,
        last_ack_recv: None,
    };
    let mut rest = &payload[INET_DIAG_MSG_LEN..];
    while rest.len() >= RTA_HDRLEN {
        let len = usize::from(read_u16(rest, 0));
        let kind = read_u16(rest, 2);
        if len < RTA_HDRLEN || len > rest.len() {
            return Err(format!(
                "attribute length {len} outside {RTA_HDRLEN}..={}",
                rest.len()
            ));
        }
        if kind == INET_DIAG_INFO {
            let info = &rest[RTA_HDRLEN..len];
            let ms = |at: usize| {
                (info.len() >= at + 4).then(|| Duration::from_millis(read_u32(info, at).into()))
            };
            detail.last_data_sent = ms(TCPI_LAST_DATA_SENT);
            detail.last_data_recv = ms(TCPI_LAST_DATA_RECV);
            detail.last_ack_recv = ms(TCPI_LAST_ACK_RECV);
            detail.total_retrans =
                (info.len() >= TCPI_TOTAL_RETRANS + 4).then(|| read_u32(info, TCPI_TOTAL_RETRANS));
        }
        rest = rest.get(align4(len)..).unwrap_or(&[]);
    }
    Ok(detail)
}

/// One remote endpoint of a process: its sockets toward it, by state, with their kernel
/// detail.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Peer {
    /// The remote address and port (an IPv4-mapped IPv6 address as IPv4).
    pub remote: SocketAddr,
    /// Sockets by state.
    pub states: StateCounts,
    /// Sockets with no keepalive timer armed: a peer that vanished would hold them until
    /// something is sent.
    pub without_keepalive: u64,
    /// The longest time any of them has sent and received nothing, when the kernel said.
    pub idle_max: Option<Duration>,
    /// Retransmitted segments, summed over the sockets.
    pub retransmits: u64,
    /// The longest any of them has been in `CLOSE_WAIT`, as the kernel dates the peer's FIN
    /// ([`SockDetail::last_ack_recv`]), when one is.
    pub close_wait_max: Option<Duration>,
}

impl Peer {
    /// An endpoint with no socket counted yet.
    pub fn new(remote: SocketAddr) -> Self {
        Peer {
            remote,
            states: StateCounts::new(),
            without_keepalive: 0,
            idle_max: None,
            retransmits: 0,
            close_wait_max: None,
        }
    }

    /// Sockets toward it.
    pub fn sockets(&self) -> u64 {
        self.states.total()
    }

    /// Counts one socket toward it.
    pub fn add(&mut self, info: &SockInfo, detail: &SockDetail) {
        self.states.record(info.state);
        if detail.timer != Timer::Keepalive {
            self.without_keepalive += 1;
        }
        if let Some(idle) = detail.idle() {
            self.idle_max = Some(self.idle_max.map_or(idle, |m| m.max(idle)));
        }
        self.retransmits += u64::from(detail.total_retrans.unwrap_or(0));
        if info.state == TcpState::CloseWait {
            if let Some(age) = detail.last_ack_recv {
                self.close_wait_max = Some(self.close_wait_max.map_or(age, |m| m.max(age)));
            }
        }
    }
}

/// Groups sockets by remote endpoint as a walk visits them: hand it every socket of one
/// process (a listener or `TIME_WAIT` is passed over), then [`finish`](Self::finish).
#[derive(Debug, Default)]
pub struct PeerTable {
    by_remote: HashMap<SocketAddr, Peer>,
}

impl PeerTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one socket toward its remote endpoint. A socket without detail counts as one
    /// with no keepalive timer known, its idle time and retransmissions unknown.
    pub fn visit(&mut self, info: &SockInfo, detail: Option<&SockDetail>) {
        if matches!(info.state, TcpState::Listen | TcpState::TimeWait) {
            return;
        }
        let remote = canonical_addr(info.remote);
        let peer = self
            .by_remote
            .entry(remote)
            .or_insert_with(|| Peer::new(remote));
        peer.add(info, detail.unwrap_or(&SockDetail::UNKNOWN));
    }

    /// Endpoints seen so far.
    pub fn len(&self) -> usize {
        self.by_remote.len()
    }

    /// Whether none was seen.
    pub fn is_empty(&self) -> bool {
        self.by_remote.is_empty()
    }

    /// The endpoints, most sockets first (then by address).
    pub fn finish(self) -> Vec<Peer> {
        let mut peers: Vec<Peer> = self.by_remote.into_values().collect();
        peers.sort_by(|a, b| {
            b.sockets()
                .cmp(&a.sockets())
                .then_with(|| a.remote.cmp(&b.remote))
        });
        peers
    }
}

/// The sockets `pid` holds toward remote endpoints (listeners left out), grouped by endpoint,
/// most sockets first (then by address). The walk's families and proc root come from `opts`;
/// its states are all but `LISTEN` and `TIME_WAIT` (which no process holds), and it asks the
/// kernel for `tcp_info`.
///
/// # Errors
///
/// `pid` unknown or unreadable ([`CensusError::is_not_found`],
/// [`CensusError::is_permission_denied`]); netlink refused or failing (the `/proc` tables
/// carry no timers nor `tcp_info`, so there is no fallback); not Linux.
pub fn process_peers(opts: &WalkOptions, pid: u32) -> Result<Vec<Peer>, CensusError> {
    let held = opts.get_proc_root().socket_inodes(pid)?;
    let mut states = StateSet::ALL;
    states.remove(TcpState::Listen);
    states.remove(TcpState::TimeWait);
    let opts = opts
        .clone()
        .states(states)
        .backend(Backend::Netlink)
        .tcp_info(true);
    let mut table = PeerTable::new();
    Walker::new(opts).walk_detailed(|info, detail| {
        if held.contains(info.inode) {
            table.visit(info, detail);
        }
    })?;
    Ok(table.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(timer: u8, attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut p = vec![0u8; INET_DIAG_MSG_LEN];
        p[0] = 2;
        p[1] = 1;
        p[2] = timer;
        for (kind, data) in attrs {
            let len = (RTA_HDRLEN + data.len()) as u16;
            p.extend_from_slice(&len.to_ne_bytes());
            p.extend_from_slice(&kind.to_ne_bytes());
            p.extend_from_slice(data);
            while p.len() % 4 != 0 {
                p.push(0);
            }
        }
        p
    }

    fn tcp_info(sent_ms: u32, recv_ms: u32, total_retrans: u32) -> Vec<u8> {
        let mut info = vec![0u8; 232];
        info[TCPI_LAST_DATA_SENT..TCPI_LAST_DATA_SENT + 4].copy_from_slice(&sent_ms.to_ne_bytes());
        info[TCPI_LAST_DATA_RECV..TCPI_LAST_DATA_RECV + 4].copy_from_slice(&recv_ms.to_ne_bytes());
        info[TCPI_TOTAL_RETRANS..TCPI_TOTAL_RETRANS + 4]
            .copy_from_slice(&total_retrans.to_ne_bytes());
        info
    }

    #[test]
    fn raw_detail_reads_as_parse_detail_does_when_asked() {
        let info = tcp_info(1500, 700, 3);
        let payload = msg(2, &[(INET_DIAG_INFO, &info)]);
        let raw = RawDetail::new(Some(&payload));
        assert_eq!(raw.parse(), parse_detail(&payload).ok());
        assert_eq!(
            raw.parse().and_then(|d| d.idle()),
            Some(Duration::from_millis(700))
        );
        // From the /proc tables, and from an answer that cannot be read: nothing.
        assert_eq!(RawDetail::new(None).parse(), None);
        assert_eq!(RawDetail::new(Some(&payload[..10])).parse(), None);
    }

    #[test]
    fn reads_the_timer_and_tcp_info() {
        let info = tcp_info(1500, 700, 3);
        let d = parse_detail(&msg(2, &[(1, &[0; 8]), (INET_DIAG_INFO, &info)])).unwrap();
        assert_eq!(d.timer, Timer::Keepalive);
        assert_eq!(d.last_data_sent, Some(Duration::from_millis(1500)));
        assert_eq!(d.last_data_recv, Some(Duration::from_millis(700)));
        assert_eq!(d.idle(), Some(Duration::from_millis(700)));
        assert_eq!(d.total_retrans, Some(3));
    }

    #[test]
    fn a_short_tcp_info_leaves_what_it_lacks_unknown() {
        let info = tcp_info(10, 20, 5);
        let d = parse_detail(&msg(0, &[(INET_DIAG_INFO, &info[..60])])).unwrap();
        assert_eq!(d.timer, Timer::Off);
        assert_eq!(d.last_data_recv, Some(Duration::from_millis(20)));
        assert_eq!(d.total_retrans, None);
        let none = parse_detail(&msg(4, &[])).unwrap();
        assert_eq!(none.timer, Timer::Persist);
        assert_eq!(none.idle(), None);
    }

    #[test]
    fn bad_bytes_are_errors_not_panics() {
        assert!(parse_detail(&[0; 10]).is_err());
        let mut p = msg(1, &[(INET_DIAG_INFO, &[0; 8])]);
        // An attribute claiming more than there is.
        p[INET_DIAG_MSG_LEN] = 200;
        assert!(parse_detail(&p).is_err());
        // Every truncation of a good message parses or errs, never panics.
        let good = msg(2, &[(INET_DIAG_INFO, &tcp_info(1, 2, 3))]);
        for end in 0..good.len() {
            let _ = parse_detail(&good[..end]);
        }
    }
}
