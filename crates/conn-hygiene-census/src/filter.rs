//! Which sockets a dump asks the kernel for: a filter the kernel runs on each socket (an
//! `inet_diag` bytecode program), so that sockets it does not match are passed over in the
//! kernel, never formatted, copied out or parsed.
//!
//! A [`SocketFilter`] matches a socket when any of its conditions does: a local port (the
//! sockets of a listener, whatever the local address), or a remote address and port (the
//! connections toward one destination; an IPv4 destination also matches IPv4-mapped IPv6
//! sockets, as the kernel compares them). [`SocketFilter::matches`] is the same test in user
//! space, for the `/proc` tables and for tests.
//!
//! ```
//! use conn_hygiene_census::filter::SocketFilter;
//! use conn_hygiene_census::{SockInfo, TcpState};
//!
//! let filter = SocketFilter::new().local_port(8080).remote("10.0.0.5:5432".parse()?);
//! let toward = SockInfo::new(TcpState::TimeWait, "10.0.0.1:40000".parse()?, "10.0.0.5:5432".parse()?);
//! let mapped = SockInfo::new(
//!     TcpState::TimeWait,
//!     "[::ffff:10.0.0.1]:40001".parse()?,
//!     "[::ffff:10.0.0.5]:5432".parse()?,
//! );
//! let other = SockInfo::new(TcpState::TimeWait, "10.0.0.1:40002".parse()?, "10.0.0.6:5432".parse()?);
//! assert!(filter.matches(&toward) && filter.matches(&mapped) && !filter.matches(&other));
//! # Ok::<(), std::net::AddrParseError>(())
//! ```

use std::net::{IpAddr, SocketAddr};

use crate::{canonical_addr, SockInfo};

/// Most conditions one filter holds: the kernel's jumps are 16-bit byte offsets, and an IPv6
/// condition with its jump takes 32 bytes.
pub const MAX_CONDITIONS: usize = 1024;

/// `INET_DIAG_REQ_BYTECODE`: the request attribute holding the program.
pub(crate) const INET_DIAG_REQ_BYTECODE: u16 = 1;

const INET_DIAG_BC_JMP: u8 = 1;
const INET_DIAG_BC_S_COND: u8 = 7;
const INET_DIAG_BC_D_COND: u8 = 8;
const AF_UNSPEC: u8 = 0;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// One condition of a [`SocketFilter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Condition {
    /// The local port, any local address.
    LocalPort(u16),
    /// The remote address and port ([`canonical_addr`]).
    Remote(SocketAddr),
}

/// Sockets matched by any of a set of conditions, run by the kernel in a dump. See the
/// [module docs](mod@crate::filter).
///
/// An empty filter matches nothing. At most [`MAX_CONDITIONS`] distinct conditions are kept;
/// a filter given more [`overflowed`](Self::overflowed), and a walk then asks for every
/// socket instead (more rows, never fewer).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SocketFilter {
    conditions: Vec<Condition>,
    overflowed: bool,
}

impl SocketFilter {
    /// A filter matching nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also matches sockets whose local port is `port`, on any local address.
    pub fn local_port(mut self, port: u16) -> Self {
        self.push(Condition::LocalPort(port));
        self
    }

    /// Also matches sockets whose remote address and port are `remote`. An IPv4-mapped IPv6
    /// address is taken as the IPv4 one, which matches both kinds of socket.
    pub fn remote(mut self, remote: SocketAddr) -> Self {
        self.push(Condition::Remote(canonical_addr(remote)));
        self
    }

    fn push(&mut self, c: Condition) {
        if self.conditions.contains(&c) {
            return;
        }
        if self.conditions.len() >= MAX_CONDITIONS {
            self.overflowed = true;
            return;
        }
        self.conditions.push(c);
    }

    /// Whether it matches nothing.
    pub fn is_empty(&self) -> bool {
        self.conditions.is_empty() && !self.overflowed
    }

    /// Whether more than [`MAX_CONDITIONS`] conditions were given: the kernel cannot run it,
    /// and a walk asks for every socket instead.
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// The kernel's test, in user space: whether a socket matches. An overflowed filter
    /// matches every socket.
    pub fn matches(&self, s: &SockInfo) -> bool {
        if self.overflowed {
            return true;
        }
        let local_port = s.local.port();
        let mut remote = None;
        self.conditions.iter().any(|c| match *c {
            Condition::LocalPort(p) => p == local_port,
            Condition::Remote(r) => *remote.get_or_insert_with(|| canonical_addr(s.remote)) == r,
        })
    }

    /// The `inet_diag` bytecode: the conditions in order, each followed by a jump to the end,
    /// as `ss` joins alternatives. A socket is kept when the program runs to its end exactly;
    /// a condition that fails skips its jump, to the next condition, and the last one's
    /// failure jumps past the end. `None` for a filter that matches nothing, or overflowed.
    pub(crate) fn bytecode(&self) -> Option<Vec<u8>> {
        if self.conditions.is_empty() || self.overflowed {
            return None;
        }
        let encoded: Vec<Vec<u8>> = self.conditions.iter().map(|c| encode(*c)).collect();
        let total: usize = encoded.iter().map(|e| e.len()).sum::<usize>() + 4 * (encoded.len() - 1);
        let mut out = Vec::with_capacity(total);
        for (i, cond) in encoded.iter().enumerate() {
            let last = i + 1 == encoded.len();
            let len = cond.len();
            let mut cond = cond.clone();
            // yes: the next op (this one's jump, or the end); no: past the jump, to the next
            // condition (or, for the last, past the end: rejected).
            cond[1] = u8::try_from(len).ok()?;
            cond[2..4].copy_from_slice(&u16::try_from(len + 4).ok()?.to_ne_bytes());
            out.extend_from_slice(&cond);
            if !last {
                // The jump to the end: `yes` is never taken by a jump, `no` is.
                let to_end = total - out.len();
                out.push(INET_DIAG_BC_JMP);
                out.push(4);
                out.extend_from_slice(&u16::try_from(to_end).ok()?.to_ne_bytes());
            }
        }
        debug_assert_eq!(out.len(), total);
        Some(out)
    }
}

/// One condition as `inet_diag_bc_op` (jumps left for the caller) and `inet_diag_hostcond`.
fn encode(c: Condition) -> Vec<u8> {
    let (code, family, prefix, port, addr): (u8, u8, u8, u16, Vec<u8>) = match c {
        Condition::LocalPort(p) => (INET_DIAG_BC_S_COND, AF_UNSPEC, 0, p, Vec::new()),
        Condition::Remote(r) => match r.ip() {
            IpAddr::V4(ip) => (
                INET_DIAG_BC_D_COND,
                AF_INET,
                32,
                r.port(),
                ip.octets().to_vec(),
            ),
            IpAddr::V6(ip) => (
                INET_DIAG_BC_D_COND,
                AF_INET6,
                128,
                r.port(),
                ip.octets().to_vec(),
            ),
        },
    };
    let mut out = vec![code, 0, 0, 0, family, prefix, 0, 0];
    // `int port`, in the machine's order; -1 would be any port.
    out.extend_from_slice(&i32::from(port).to_ne_bytes());
    out.extend_from_slice(&addr);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TcpState;

    /// The kernel's interpreter (`inet_diag_bc_run`) for the two conditions used here, on
    /// made-up sockets, and its audit's rules (`inet_diag_bc_audit`) on the program.
    fn run(bc: &[u8], s: &SockInfo) -> bool {
        let mut at = 0usize;
        let mut len = bc.len() as isize;
        while len > 0 {
            let op = &bc[at..];
            let (code, yes, no) = (
                op[0],
                op[1] as usize,
                u16::from_ne_bytes([op[2], op[3]]) as usize,
            );
            let ok = match code {
                INET_DIAG_BC_JMP => false,
                INET_DIAG_BC_S_COND | INET_DIAG_BC_D_COND => {
                    let family = op[4];
                    let port = i32::from_ne_bytes(op[8..12].try_into().unwrap());
                    let addr = if code == INET_DIAG_BC_S_COND {
                        s.local
                    } else {
                        s.remote
                    };
                    if port != -1 && port != i32::from(addr.port()) {
                        false
                    } else if family == AF_UNSPEC {
                        true
                    } else {
                        let want: IpAddr = if family == AF_INET {
                            IpAddr::V4(<[u8; 4]>::try_from(&op[12..16]).unwrap().into())
                        } else {
                            IpAddr::V6(<[u8; 16]>::try_from(&op[12..28]).unwrap().into())
                        };
                        canonical_addr(addr).ip() == want
                    }
                }
                other => panic!("unexpected op {other}"),
            };
            let step = if ok { yes } else { no };
            at += step;
            len -= step as isize;
        }
        len == 0
    }

    fn audit(bc: &[u8]) {
        let total = bc.len();
        let mut at = 0usize;
        while at < total {
            let len = total - at;
            let op = &bc[at..];
            let (yes, no) = (op[1] as usize, u16::from_ne_bytes([op[2], op[3]]) as usize);
            let min = match op[0] {
                INET_DIAG_BC_JMP => 4,
                INET_DIAG_BC_S_COND | INET_DIAG_BC_D_COND => {
                    4 + 8
                        + match op[4] {
                            AF_UNSPEC => 0,
                            AF_INET => 4,
                            AF_INET6 => 16,
                            f => panic!("family {f}"),
                        }
                }
                other => panic!("op {other}"),
            };
            assert!(no >= min && no <= len + 4 && no % 4 == 0, "no {no} at {at}");
            assert!(
                yes >= min && yes <= len + 4 && yes % 4 == 0,
                "yes {yes} at {at}"
            );
            if no < len {
                // The target lies on the chain of `yes` jumps from the start.
                let target = at + no;
                let mut p = 0;
                while p < target {
                    p += bc[p + 1] as usize;
                }
                assert_eq!(p, target, "jump from {at} lands between ops");
            }
            at += yes;
        }
        assert_eq!(at, total);
    }

    fn sock(local: &str, remote: &str) -> SockInfo {
        SockInfo::new(
            TcpState::TimeWait,
            local.parse().unwrap(),
            remote.parse().unwrap(),
        )
    }

    #[test]
    fn the_program_matches_as_the_user_space_test_does() {
        let filter = SocketFilter::new()
            .local_port(8080)
            .remote("10.0.0.5:5432".parse().unwrap())
            .remote("[2001:db8::7]:443".parse().unwrap())
            .remote("[::ffff:10.0.0.6]:6379".parse().unwrap());
        let bc = filter.bytecode().unwrap();
        audit(&bc);
        let cases = [
            ("127.0.0.1:8080", "127.0.0.1:40000", true),
            ("[::1]:8080", "[::1]:40000", true),
            ("10.0.0.1:40000", "10.0.0.5:5432", true),
            ("[::ffff:10.0.0.1]:40000", "[::ffff:10.0.0.5]:5432", true),
            ("10.0.0.1:40000", "10.0.0.5:5433", false),
            ("10.0.0.1:40000", "10.0.0.6:6379", true),
            ("[2001:db8::1]:40000", "[2001:db8::7]:443", true),
            ("[2001:db8::1]:40000", "[2001:db8::8]:443", false),
            ("10.0.0.1:8081", "10.0.0.9:1", false),
        ];
        for (local, remote, want) in cases {
            let s = sock(local, remote);
            assert_eq!(filter.matches(&s), want, "{local} -> {remote}");
            assert_eq!(run(&bc, &s), want, "{local} -> {remote} (bytecode)");
        }
    }

    #[test]
    fn one_condition_and_the_bounds() {
        let one = SocketFilter::new().local_port(1);
        let bc = one.bytecode().unwrap();
        audit(&bc);
        assert_eq!(bc.len(), 12);
        assert!(run(&bc, &sock("1.1.1.1:1", "2.2.2.2:2")));
        assert!(!run(&bc, &sock("1.1.1.1:2", "2.2.2.2:1")));

        assert!(SocketFilter::new().is_empty());
        assert_eq!(SocketFilter::new().bytecode(), None);
        assert!(!SocketFilter::new().matches(&sock("1.1.1.1:1", "2.2.2.2:2")));

        let mut many = SocketFilter::new();
        for i in 0..MAX_CONDITIONS as u32 {
            let ip = std::net::Ipv6Addr::from(0x2001_0db8_u128 << 96 | u128::from(i));
            many = many.remote(SocketAddr::new(ip.into(), 443));
        }
        assert!(!many.overflowed());
        let bc = many
            .bytecode()
            .expect("the largest filter fits the kernel's jumps");
        audit(&bc);
        let full = many.clone().remote("10.0.0.1:1".parse().unwrap());
        assert!(full.overflowed() && full.bytecode().is_none());
        assert!(
            full.matches(&sock("1.1.1.1:1", "2.2.2.2:2")),
            "overflowed: everything"
        );
        // Repeats are one condition.
        assert_eq!(
            many.clone().remote(SocketAddr::new(
                std::net::Ipv6Addr::from(0x2001_0db8_u128 << 96).into(),
                443,
            )),
            many
        );
    }
}
