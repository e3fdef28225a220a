//! What one socket looks like to the census.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};

use crate::TcpState;

/// An IP address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// IPv4 (`AF_INET`, `/proc/net/tcp`).
    Ipv4,
    /// IPv6 (`AF_INET6`, `/proc/net/tcp6`), dual-stack sockets included.
    Ipv6,
}

impl Family {
    /// Both families, IPv4 first.
    pub const BOTH: [Family; 2] = [Family::Ipv4, Family::Ipv6];

    /// `"IPv4"` or `"IPv6"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Family::Ipv4 => "IPv4",
            Family::Ipv6 => "IPv6",
        }
    }

    /// Linux `AF_INET` / `AF_INET6` numbers.
    pub(crate) const fn linux_af(self) -> u8 {
        match self {
            Family::Ipv4 => 2,
            Family::Ipv6 => 10,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One TCP socket as the kernel reports it.
///
/// Small and `Copy`: a walk hands out a reference to one it reuses, and nothing is allocated
/// per socket.
///
/// For a `LISTEN` socket, `rqueue` is the current length of the accept queue (connections the
/// kernel has completed and the application has not yet accepted) and `wqueue` is its maximum,
/// `min(backlog, net.core.somaxconn)`, when the walk used netlink; the `/proc` tables carry no
/// maximum and report 0. For other sockets they are the sequence space received and not yet
/// read by the application, and written and not yet acknowledged by the peer (a FIN counts
/// as one).
/// `TIME_WAIT` sockets belong to no process: inode, uid and queues are 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct SockInfo {
    /// Address family.
    pub family: Family,
    /// TCP state.
    pub state: TcpState,
    /// Local address and port.
    pub local: SocketAddr,
    /// Remote address and port (all zero for a listener).
    pub remote: SocketAddr,
    /// Socket inode, as in `/proc/PID/fd` links `socket:[N]`; 0 when no process holds it.
    pub inode: u64,
    /// Owner uid.
    pub uid: u32,
    /// Receive queue, or current accept queue length for a listener.
    pub rqueue: u32,
    /// Send queue, or accept queue maximum for a listener (netlink only).
    pub wqueue: u32,
}

impl SockInfo {
    /// A socket in `state` from `local` to `remote` that no process holds (inode 0, empty
    /// queues), of `local`'s family: for tests and replays. Set the other fields by hand.
    pub fn new(state: TcpState, local: SocketAddr, remote: SocketAddr) -> Self {
        SockInfo {
            family: if local.is_ipv6() {
                Family::Ipv6
            } else {
                Family::Ipv4
            },
            state,
            local,
            remote,
            ..SockInfo::default()
        }
    }
}

impl Default for SockInfo {
    fn default() -> Self {
        let unspecified = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
        SockInfo {
            family: Family::Ipv4,
            state: TcpState::Close,
            local: unspecified,
            remote: unspecified,
            inode: 0,
            uid: 0,
            rqueue: 0,
            wqueue: 0,
        }
    }
}

/// An address as the kernel compares it: an IPv4-mapped IPv6 address (a dual-stack socket
/// talking IPv4) is its IPv4 address; any other address is itself.
///
/// ```
/// use conn_hygiene_census::canonical_addr;
///
/// let mapped = "[::ffff:10.0.0.5]:5432".parse().unwrap();
/// assert_eq!(canonical_addr(mapped), "10.0.0.5:5432".parse().unwrap());
/// let v6 = "[2001:db8::1]:443".parse().unwrap();
/// assert_eq!(canonical_addr(v6), v6);
/// ```
#[inline]
pub fn canonical_addr(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => addr,
        },
        SocketAddr::V4(_) => addr,
    }
}
