//! Listening sockets and their accept queues.
//!
//! A connection the kernel has completed waits in its listener's accept queue until the
//! application accepts it. When the queue is full the kernel drops further completed
//! handshakes (`TcpExt ListenOverflows`). The queue's maximum is `min(backlog, somaxconn)`,
//! and the kernel refuses only when the length is already *above* it, so a queue holds at
//! most one connection more than its maximum.
//!
//! ```
//! use conn_hygiene_census::{listeners, WalkOptions};
//!
//! let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
//! let addr = l.local_addr().unwrap();
//! match listeners(&WalkOptions::new()) {
//!     Ok(all) => {
//!         let mine = all.iter().find(|x| x.local == addr).unwrap();
//!         assert_eq!(mine.queue_len, 0);
//!     }
//!     Err(e) => assert!(e.is_unsupported(), "{e}"),
//! }
//! ```

use std::net::SocketAddr;

use crate::{walk, CensusError, Family, SockInfo, Source, TcpState, WalkOptions, WalkStats};

/// One listening socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Listener {
    /// Address family.
    pub family: Family,
    /// Listening address and port.
    pub local: SocketAddr,
    /// Socket inode.
    pub inode: u64,
    /// Owner uid.
    pub uid: u32,
    /// Connections completed and not yet accepted.
    pub queue_len: u32,
    /// The accept queue's effective maximum, `min(backlog, somaxconn)`; `None` when the
    /// walk fell back to `/proc`, which does not show it.
    pub queue_max: Option<u32>,
}

impl Listener {
    /// Whether the queue has reached its maximum (the next completed handshake may be the
    /// last one the kernel keeps). `None` when the maximum is unknown.
    pub fn is_full(&self) -> Option<bool> {
        self.queue_max.map(|max| self.queue_len >= max)
    }
}

/// Every `LISTEN` socket matching `opts` (whose state filter is replaced by `LISTEN`).
pub fn listeners(opts: &WalkOptions) -> Result<Vec<Listener>, CensusError> {
    let opts = opts.clone().states(TcpState::Listen);
    let mut found = Vec::new();
    let stats = walk(&opts, |s| found.push(Listener::of(s)))?;
    Listener::settle(&mut found, &stats);
    Ok(found)
}

impl Listener {
    /// The listener a `LISTEN` socket of a walk describes, its maximum as reported.
    pub(crate) fn of(s: &SockInfo) -> Self {
        Listener {
            family: s.family,
            local: s.local,
            inode: s.inode,
            uid: s.uid,
            queue_len: s.rqueue,
            queue_max: Some(s.wqueue),
        }
    }

    /// Once the walk is over: the maximum is unknown for a family read from `/proc`.
    pub(crate) fn settle(found: &mut [Listener], stats: &WalkStats) {
        for l in found {
            let source = match l.family {
                Family::Ipv4 => stats.ipv4,
                Family::Ipv6 => stats.ipv6,
            };
            if source != Some(Source::Netlink) {
                l.queue_max = None;
            }
        }
    }
}
