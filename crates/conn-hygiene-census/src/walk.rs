//! Walking every TCP socket of the network namespace.
//!
//! A walk asks the kernel through netlink `sock_diag` (one socket, one reused receive buffer;
//! both address families in one pass over the kernel's tables with the older
//! `TCPDIAG_GETSOCK` request, or one dump per family where the kernel refuses it, or only one
//! family is wanted) and hands each socket to a visitor as a borrowed
//! [`SockInfo`]; nothing is allocated per socket, so memory stays flat however many sockets
//! there are. When netlink is refused (`EPERM`, `EACCES`, `EPROTONOSUPPORT`, `EAFNOSUPPORT`, or
//! `ENOENT` for a family without a `sock_diag` handler) the walk reads `/proc/net/tcp` and
//! `/proc/net/tcp6` instead, through the same buffer, and says why in [`WalkStats::fallback`].
//!
//! ```
//! use conn_hygiene_census::{count_states, TcpState, WalkOptions};
//!
//! let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
//! match count_states(&WalkOptions::new().states(TcpState::Listen)) {
//!     Ok(counts) => {
//!         assert!(counts[TcpState::Listen] >= 1);
//!         assert_eq!(counts.total(), counts[TcpState::Listen]);
//!     }
//!     Err(e) => assert!(e.is_unsupported(), "{e}"),
//! }
//! # drop(listener);
//! ```

use std::fmt;

use crate::netlink::{dump_step, parse_messages_with, MessageSink};
use crate::peers::{parse_detail, SockDetail};
use crate::proc_net::{read_table, table_file};
use crate::sys::DiagSocket;
use crate::{CensusError, Family, ProcRoot, SockInfo, StateCounts, StateSet};

/// Default receive buffer: comfortably above the 32 KiB the kernel puts in one dump datagram.
pub(crate) const DEFAULT_BUFFER: usize = 128 * 1024;
/// Smallest receive buffer accepted.
pub(crate) const MIN_BUFFER: usize = 16 * 1024;

mod keep_way;
mod runs;
mod time_wait;
use keep_way::KeepWay;
pub use runs::WalkItem;

/// What a walk hands its sockets to, inside the crate: a closure taking each socket with its
/// netlink payload (`None` from `/proc`), or a visitor that also takes netlink messages unread
/// and holds some back until the dump ends.
pub(crate) trait Visit {
    /// One socket, read.
    fn socket(&mut self, s: &SockInfo, payload: Option<&[u8]>);

    /// Offered each netlink socket message before it is read: `true` when taken as it is
    /// (see [`MessageSink::take_raw`]).
    #[inline(always)]
    fn take_raw(&mut self, _payload: &[u8]) -> bool {
        false
    }

    /// A dump or table ended, or failed: hand over anything held back.
    #[inline(always)]
    fn flush(&mut self) {}
}

impl<F: FnMut(&SockInfo, Option<&[u8]>)> Visit for F {
    #[inline(always)]
    fn socket(&mut self, s: &SockInfo, payload: Option<&[u8]>) {
        self(s, payload)
    }
}

/// A [`Visit`] as the netlink parser's sink.
struct Netlink<'a, V>(&'a mut V);

impl<V: Visit> MessageSink for Netlink<'_, V> {
    #[inline(always)]
    fn take_raw(&mut self, payload: &[u8]) -> bool {
        self.0.take_raw(payload)
    }

    #[inline(always)]
    fn socket(&mut self, info: &SockInfo, payload: &[u8]) {
        self.0.socket(info, Some(payload))
    }
}

/// Where a walk reads sockets from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Backend {
    /// Netlink, falling back to `/proc` when netlink is refused.
    #[default]
    Auto,
    /// Netlink only; a refusal is an error.
    Netlink,
    /// `/proc/net/tcp` and `/proc/net/tcp6` only.
    Proc,
}

/// Where the sockets of one family came from in a walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// A netlink `sock_diag` dump.
    Netlink,
    /// The `/proc/net/tcp` or `/proc/net/tcp6` table.
    Proc,
}

/// What a walk looks at. Built with setters; the default walks every TCP socket of both
/// families, netlink first.
#[derive(Debug, Clone)]
pub struct WalkOptions {
    states: StateSet,
    ipv4: bool,
    ipv6: bool,
    backend: Backend,
    proc_root: ProcRoot,
    pub(crate) buffer_size: usize,
    tcp_info: bool,
}

impl Default for WalkOptions {
    fn default() -> Self {
        WalkOptions {
            states: StateSet::ALL,
            ipv4: true,
            ipv6: true,
            backend: Backend::Auto,
            proc_root: ProcRoot::default(),
            buffer_size: DEFAULT_BUFFER,
            tcp_info: false,
        }
    }
}

impl WalkOptions {
    /// Every state, both families, [`Backend::Auto`], `/proc`, a 128 KiB buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// States to report. Default: all. Netlink filters in the kernel; `/proc` in the parser.
    pub fn states(mut self, states: impl Into<StateSet>) -> Self {
        self.states = states.into();
        self
    }

    /// Whether to walk IPv4 sockets. Default: true.
    pub fn ipv4(mut self, yes: bool) -> Self {
        self.ipv4 = yes;
        self
    }

    /// Whether to walk IPv6 sockets (dual-stack ones included). Default: true.
    pub fn ipv6(mut self, yes: bool) -> Self {
        self.ipv6 = yes;
        self
    }

    /// Where to read from. Default: [`Backend::Auto`].
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// The proc file system for the `/proc` tables. Default: `/proc`.
    pub fn proc_root(mut self, root: ProcRoot) -> Self {
        self.proc_root = root;
        self
    }

    /// Size of the one receive buffer, in bytes. Default: 128 KiB; at least 16 KiB is used.
    pub fn buffer_size(mut self, bytes: usize) -> Self {
        self.buffer_size = bytes;
        self
    }

    /// Whether netlink walks ask for `tcp_info` beside each socket, for
    /// [`Walker::walk_detailed`]: the armed timer is always there, idle times and
    /// retransmissions come with `tcp_info`. Costs kernel time and bytes per socket that has it
    /// (`TIME_WAIT` sockets have none). Default: false.
    pub fn tcp_info(mut self, on: bool) -> Self {
        self.tcp_info = on;
        self
    }

    /// The states reported.
    pub fn state_set(&self) -> StateSet {
        self.states
    }

    /// The backend asked for.
    pub fn get_backend(&self) -> Backend {
        self.backend
    }

    /// The proc file system used for the `/proc` tables.
    pub fn get_proc_root(&self) -> &ProcRoot {
        &self.proc_root
    }

    pub(crate) fn wants(&self, family: Family) -> bool {
        match family {
            Family::Ipv4 => self.ipv4,
            Family::Ipv6 => self.ipv6,
        }
    }
}

/// Why a walk read `/proc` instead of netlink.
#[derive(Debug, Clone)]
pub struct FallbackReason {
    error: CensusError,
}

impl FallbackReason {
    /// The netlink error that caused the fallback.
    pub fn error(&self) -> &CensusError {
        &self.error
    }
}

impl fmt::Display for FallbackReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "netlink refused ({}), read /proc instead", self.error)
    }
}

/// How a walk went.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct WalkStats {
    /// Source of the IPv4 sockets; `None` if IPv4 was not walked.
    pub ipv4: Option<Source>,
    /// Source of the IPv6 sockets; `None` if IPv6 was not walked.
    pub ipv6: Option<Source>,
    /// Set when netlink was refused and `/proc` stood in for it.
    pub fallback: Option<FallbackReason>,
    /// Sockets handed to the visitor.
    pub sockets: u64,
    /// Messages or lines passed over (see [`crate::netlink::DatagramSummary::skipped`]).
    pub skipped: u64,
    /// Netlink datagrams received.
    pub datagrams: u64,
    /// Bytes received from netlink.
    pub bytes: u64,
    /// The kernel flagged a dump as interrupted by concurrent changes.
    pub interrupted: bool,
    /// [`Walker::count_states`] took the `TIME_WAIT` count from the kernel's `sockstat`
    /// instead of walking those sockets: this many.
    pub timewait_counted: Option<u64>,
}

impl WalkStats {
    /// Whether every walked family came from netlink.
    pub fn used_netlink_only(&self) -> bool {
        [self.ipv4, self.ipv6]
            .iter()
            .all(|s| matches!(s, None | Some(Source::Netlink)))
    }
}

/// Walks sockets repeatedly with one netlink socket and one buffer.
///
/// Keep one around to take a census every few seconds without reopening anything. The netlink
/// socket is opened on the first walk.
#[derive(Debug)]
pub struct Walker {
    opts: WalkOptions,
    netlink: Option<DiagSocket>,
    buf: Vec<u8>,
    /// The kernel refused the dump of both families in one pass: one dump per family.
    one_pass_refused: bool,
    /// How [`walk_detailed_keeping_time_wait`](Self::walk_detailed_keeping_time_wait) asks
    /// for `TIME_WAIT` sockets next time.
    keep_way: KeepWay,
}

impl Walker {
    /// A walker with these options.
    pub fn new(opts: WalkOptions) -> Self {
        let size = opts.buffer_size.max(MIN_BUFFER);
        Walker {
            opts,
            netlink: None,
            buf: vec![0; size],
            one_pass_refused: false,
            keep_way: KeepWay::default(),
        }
    }

    /// The options this walker was built with.
    pub fn options(&self) -> &WalkOptions {
        &self.opts
    }

    /// Calls `f` for every socket matching the options.
    pub fn walk<F: FnMut(&SockInfo)>(&mut self, mut f: F) -> Result<WalkStats, CensusError> {
        self.walk_raw(&mut |s: &SockInfo, _: Option<&[u8]>| f(s))
    }

    /// [`walk`](Self::walk) with what the kernel said of each socket beyond its addresses and
    /// state: its armed timer, and, with [`WalkOptions::tcp_info`], its idle times and
    /// retransmissions. `None` from the `/proc` tables, or for an answer that cannot be read.
    pub fn walk_detailed<F: FnMut(&SockInfo, Option<&SockDetail>)>(
        &mut self,
        mut f: F,
    ) -> Result<WalkStats, CensusError> {
        self.walk_raw(&mut |s: &SockInfo, payload: Option<&[u8]>| {
            let detail = payload.and_then(|p| parse_detail(p).ok());
            f(s, detail.as_ref())
        })
    }

    fn walk_raw<V: Visit>(&mut self, f: &mut V) -> Result<WalkStats, CensusError> {
        let mut stats = WalkStats::default();
        if self.opts.ipv4
            && self.opts.ipv6
            && self.opts.backend != Backend::Proc
            && !self.one_pass_refused
        {
            match self.netlink_dump(None, &mut stats, f) {
                Ok(()) => {
                    stats.ipv4 = Some(Source::Netlink);
                    stats.ipv6 = Some(Source::Netlink);
                    return Ok(stats);
                }
                // Refused before any socket was visited: this kernel does not answer the
                // older request (or netlink at all). One dump per family from now on, which
                // says which.
                Err(Refusal::Refused(_) | Refusal::Failed(_)) if stats.sockets == 0 => {
                    self.one_pass_refused = true;
                    stats = WalkStats::default();
                }
                Err(Refusal::Refused(e) | Refusal::Failed(e)) => return Err(e),
            }
        }
        for family in Family::BOTH {
            if !self.opts.wants(family) {
                continue;
            }
            let source = self.walk_family(family, &mut stats, f)?;
            match family {
                Family::Ipv4 => stats.ipv4 = Some(source),
                Family::Ipv6 => stats.ipv6 = Some(source),
            }
        }
        Ok(stats)
    }

    fn walk_family<V: Visit>(
        &mut self,
        family: Family,
        stats: &mut WalkStats,
        f: &mut V,
    ) -> Result<Source, CensusError> {
        if self.opts.backend != Backend::Proc && stats.fallback.is_none() {
            match self.netlink_dump(Some(family), stats, f) {
                Ok(()) => return Ok(Source::Netlink),
                Err(Refusal::Refused(error)) if self.opts.backend == Backend::Auto => {
                    stats.fallback = Some(FallbackReason { error });
                }
                Err(Refusal::Refused(error) | Refusal::Failed(error)) => return Err(error),
            }
        }
        self.proc_family(family, stats, f)?;
        Ok(Source::Proc)
    }

    /// One netlink dump: of `family`, or of both in one pass (`None`).
    fn netlink_dump<V: Visit>(
        &mut self,
        family: Option<Family>,
        stats: &mut WalkStats,
        f: &mut V,
    ) -> Result<(), Refusal> {
        let ext = if self.opts.tcp_info {
            crate::netlink::Extensions::TcpInfo
        } else {
            crate::netlink::Extensions::None
        };
        self.netlink_dump_with(family, ext, None, stats, f)
    }

    /// One netlink dump with these extensions and, if given, the kernel's filter program.
    fn netlink_dump_with<V: Visit>(
        &mut self,
        family: Option<Family>,
        ext: crate::netlink::Extensions,
        bytecode: Option<&[u8]>,
        stats: &mut WalkStats,
        f: &mut V,
    ) -> Result<(), Refusal> {
        let sock = match &mut self.netlink {
            Some(sock) => sock,
            None => {
                let sock = DiagSocket::open().map_err(Refusal::classify)?;
                self.netlink.insert(sock)
            }
        };
        let step = dump_step(family);
        let seq = sock
            .send_dump(family, self.opts.states, ext, bytecode, step)
            .map_err(Refusal::classify)?;
        let mut first = true;
        let result = loop {
            let n = match sock.recv(&mut self.buf, step) {
                Ok(n) => n,
                Err(e) if first => break Err(Refusal::classify(e)),
                Err(e) => break Err(Refusal::Failed(e)),
            };
            stats.datagrams += 1;
            stats.bytes += n as u64;
            match parse_messages_with(&self.buf[..n], Some(seq), step, &mut Netlink(f)) {
                Ok(summary) => {
                    stats.sockets += summary.sockets;
                    stats.skipped += summary.skipped;
                    stats.interrupted |= summary.interrupted;
                    if summary.done {
                        break Ok(());
                    }
                }
                // A refusal arrives as the first answer, before any socket was visited.
                Err(e) if first => break Err(Refusal::classify(e)),
                Err(e) => break Err(Refusal::Failed(e)),
            }
            first = false;
        };
        f.flush();
        if result.is_err() {
            // The kernel may still hold the rest of this dump; start afresh next time.
            self.netlink = None;
        }
        result
    }

    fn proc_family<V: Visit>(
        &mut self,
        family: Family,
        stats: &mut WalkStats,
        f: &mut V,
    ) -> Result<(), CensusError> {
        let path = self.opts.proc_root.join(table_file(family));
        crate::root::check_supported(&path)?;
        let read = read_table(&path, family, self.opts.states, &mut self.buf, &mut |s| {
            f.socket(s, None)
        });
        f.flush();
        match read {
            Ok(summary) => {
                stats.sockets += summary.sockets;
                stats.skipped += summary.skipped;
                Ok(())
            }
            // No tcp6 table: IPv6 is disabled, so there are no IPv6 sockets.
            Err(e) if family == Family::Ipv6 && e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }
}

enum Refusal {
    Refused(CensusError),
    Failed(CensusError),
}

impl Refusal {
    fn classify(e: CensusError) -> Self {
        if e.netlink_refused() || e.is_unsupported() {
            Refusal::Refused(e)
        } else {
            Refusal::Failed(e)
        }
    }
}

/// Calls `f` for every TCP socket matching `opts`. See the [module docs](mod@crate::walk).
pub fn walk<F: FnMut(&SockInfo)>(opts: &WalkOptions, f: F) -> Result<WalkStats, CensusError> {
    Walker::new(opts.clone()).walk(f)
}

/// Counts the TCP sockets matching `opts` by state.
pub fn count_states(opts: &WalkOptions) -> Result<StateCounts, CensusError> {
    Walker::new(opts.clone()).count_states().map(|(c, _)| c)
}
