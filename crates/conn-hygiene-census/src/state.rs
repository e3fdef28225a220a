//! TCP states, sets of states and per-state counts.

use std::fmt;
use std::ops::{Add, AddAssign, Index};
use std::str::FromStr;

/// A TCP socket state as the Linux kernel names it.
///
/// The kernel's `TCP_NEW_SYN_RECV` (a request socket that has not yet become a full socket)
/// is reported as [`TcpState::SynRecv`], as `/proc/net/tcp` and `ss` do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TcpState {
    /// `ESTABLISHED` (kernel number 1).
    Established,
    /// `SYN_SENT` (2).
    SynSent,
    /// `SYN_RECV` (3, and `NEW_SYN_RECV`, 12).
    SynRecv,
    /// `FIN_WAIT1` (4).
    FinWait1,
    /// `FIN_WAIT2` (5).
    FinWait2,
    /// `TIME_WAIT` (6).
    TimeWait,
    /// `CLOSE` (7).
    Close,
    /// `CLOSE_WAIT` (8).
    CloseWait,
    /// `LAST_ACK` (9).
    LastAck,
    /// `LISTEN` (10).
    Listen,
    /// `CLOSING` (11).
    Closing,
}

/// Kernel number of `TCP_NEW_SYN_RECV`.
const KERNEL_NEW_SYN_RECV: u8 = 12;

impl TcpState {
    /// Number of states.
    pub const COUNT: usize = 11;

    /// Every state, in kernel number order.
    pub const ALL: [TcpState; TcpState::COUNT] = [
        TcpState::Established,
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::FinWait1,
        TcpState::FinWait2,
        TcpState::TimeWait,
        TcpState::Close,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::Listen,
        TcpState::Closing,
    ];

    /// The upper-case name: `ESTABLISHED`, `SYN_SENT`, `SYN_RECV`, `FIN_WAIT1`, `FIN_WAIT2`,
    /// `TIME_WAIT`, `CLOSE`, `CLOSE_WAIT`, `LAST_ACK`, `LISTEN`, `CLOSING`.
    pub const fn as_str(self) -> &'static str {
        match self {
            TcpState::Established => "ESTABLISHED",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::FinWait1 => "FIN_WAIT1",
            TcpState::FinWait2 => "FIN_WAIT2",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::Listen => "LISTEN",
            TcpState::Closing => "CLOSING",
        }
    }

    /// The state for a kernel state number (`sk_state`, the `st` column of `/proc/net/tcp`,
    /// `idiag_state`). `NEW_SYN_RECV` (12) maps to [`TcpState::SynRecv`]; numbers the kernel
    /// does not use for TCP states (0, 13 and up) give `None`.
    pub const fn from_kernel(number: u8) -> Option<TcpState> {
        if number == KERNEL_NEW_SYN_RECV {
            return Some(TcpState::SynRecv);
        }
        if number == 0 || number as usize > TcpState::COUNT {
            return None;
        }
        Some(TcpState::ALL[number as usize - 1])
    }

    /// The kernel state number (1 for `ESTABLISHED` … 11 for `CLOSING`).
    pub const fn kernel_number(self) -> u8 {
        self.index() as u8 + 1
    }

    /// Position of this state in [`TcpState::ALL`] (0 for `ESTABLISHED` … 10 for `CLOSING`).
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for TcpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name given to [`TcpState::from_str`] is not a TCP state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseStateError {
    input: Box<str>,
}

impl fmt::Display for ParseStateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown TCP state name {:?}", self.input)
    }
}

impl std::error::Error for ParseStateError {}

impl FromStr for TcpState {
    type Err = ParseStateError;

    /// Accepts the names of [`TcpState::as_str`] in any case, with `-` or `_` between words,
    /// and the spellings `ss` prints and accepts as filters: `ESTAB`, `FIN-WAIT-1`,
    /// `FIN-WAIT-2`, `UNCONN` and `CLOSED` (for `CLOSE`), `LISTENING`, `NEW_SYN_RECV`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut buf = [0u8; 16];
        let bytes = s.as_bytes();
        let err = || ParseStateError { input: s.into() };
        let mut len = 0;
        for &b in bytes {
            // Drop separators: "close-wait", "CLOSE_WAIT", "fin-wait-1" all normalise.
            if b == b'-' || b == b'_' {
                continue;
            }
            if len == buf.len() {
                return Err(err());
            }
            buf[len] = b.to_ascii_uppercase();
            len += 1;
        }
        let state = match &buf[..len] {
            b"ESTABLISHED" | b"ESTAB" => TcpState::Established,
            b"SYNSENT" => TcpState::SynSent,
            b"SYNRECV" | b"NEWSYNRECV" => TcpState::SynRecv,
            b"FINWAIT1" => TcpState::FinWait1,
            b"FINWAIT2" => TcpState::FinWait2,
            b"TIMEWAIT" => TcpState::TimeWait,
            b"CLOSE" | b"CLOSED" | b"UNCONN" => TcpState::Close,
            b"CLOSEWAIT" => TcpState::CloseWait,
            b"LASTACK" => TcpState::LastAck,
            b"LISTEN" | b"LISTENING" => TcpState::Listen,
            b"CLOSING" => TcpState::Closing,
            _ => return Err(err()),
        };
        Ok(state)
    }
}

/// A set of TCP states, used to filter a walk.
///
/// The default is every state.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct StateSet {
    bits: u16,
}

impl StateSet {
    /// Every state.
    pub const ALL: StateSet = StateSet {
        bits: (1 << TcpState::COUNT) - 1,
    };

    /// No state.
    pub const EMPTY: StateSet = StateSet { bits: 0 };

    /// A set holding only `state`.
    pub const fn only(state: TcpState) -> StateSet {
        StateSet {
            bits: 1 << state.index(),
        }
    }

    /// This set with `state` added.
    pub const fn with(self, state: TcpState) -> StateSet {
        StateSet {
            bits: self.bits | (1 << state.index()),
        }
    }

    /// Whether `state` is in the set.
    pub const fn contains(self, state: TcpState) -> bool {
        self.bits & (1 << state.index()) != 0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.bits == 0
    }

    /// Adds `state`.
    pub fn insert(&mut self, state: TcpState) {
        *self = self.with(state);
    }

    /// Removes `state`.
    pub fn remove(&mut self, state: TcpState) {
        self.bits &= !(1 << state.index());
    }

    /// The states in the set, in kernel number order.
    pub fn iter(self) -> impl Iterator<Item = TcpState> {
        TcpState::ALL.into_iter().filter(move |s| self.contains(*s))
    }

    /// The `idiag_states` bit mask for `inet_diag_req_v2`: bit *n* for kernel state *n*;
    /// `SYN_RECV` also selects `NEW_SYN_RECV`.
    pub const fn kernel_mask(self) -> u32 {
        // Index i is kernel number i + 1.
        let mut mask = (self.bits as u32) << 1;
        if self.contains(TcpState::SynRecv) {
            mask |= 1 << KERNEL_NEW_SYN_RECV;
        }
        mask
    }
}

impl Default for StateSet {
    fn default() -> Self {
        StateSet::ALL
    }
}

impl fmt::Debug for StateSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl From<TcpState> for StateSet {
    fn from(state: TcpState) -> Self {
        StateSet::only(state)
    }
}

impl FromIterator<TcpState> for StateSet {
    fn from_iter<I: IntoIterator<Item = TcpState>>(iter: I) -> Self {
        iter.into_iter().fold(StateSet::EMPTY, StateSet::with)
    }
}

/// Number of sockets in each TCP state.
///
/// A fixed array indexed by state: cheap to copy, add and compare.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct StateCounts {
    counts: [u64; TcpState::COUNT],
}

impl StateCounts {
    /// All zero.
    pub const fn new() -> Self {
        StateCounts {
            counts: [0; TcpState::COUNT],
        }
    }

    /// Sockets counted in `state`.
    pub const fn get(&self, state: TcpState) -> u64 {
        self.counts[state.index()]
    }

    /// Sets the count for `state`.
    pub fn set(&mut self, state: TcpState, count: u64) {
        self.counts[state.index()] = count;
    }

    /// Counts one more socket in `state`.
    pub fn record(&mut self, state: TcpState) {
        self.counts[state.index()] += 1;
    }

    /// Counts `n` more sockets in `state`.
    pub fn record_many(&mut self, state: TcpState, n: u64) {
        self.counts[state.index()] += n;
    }

    /// Every state with its count, zeros included, in kernel number order.
    pub fn iter(&self) -> impl Iterator<Item = (TcpState, u64)> + '_ {
        TcpState::ALL.iter().map(|s| (*s, self.get(*s)))
    }

    /// Sum over all states.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
}

impl Index<TcpState> for StateCounts {
    type Output = u64;

    fn index(&self, state: TcpState) -> &u64 {
        &self.counts[state.index()]
    }
}

impl Add for StateCounts {
    type Output = StateCounts;

    fn add(mut self, rhs: StateCounts) -> StateCounts {
        self += rhs;
        self
    }
}

impl AddAssign for StateCounts {
    fn add_assign(&mut self, rhs: StateCounts) {
        for (a, b) in self.counts.iter_mut().zip(rhs.counts) {
            *a += b;
        }
    }
}

impl FromIterator<TcpState> for StateCounts {
    fn from_iter<I: IntoIterator<Item = TcpState>>(iter: I) -> Self {
        let mut counts = StateCounts::new();
        counts.extend(iter);
        counts
    }
}

impl Extend<TcpState> for StateCounts {
    fn extend<I: IntoIterator<Item = TcpState>>(&mut self, iter: I) {
        for state in iter {
            self.record(state);
        }
    }
}

impl fmt::Debug for StateCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(
                self.iter()
                    .filter(|(_, n)| *n != 0)
                    .map(|(s, n)| (s.as_str(), n)),
            )
            .finish()
    }
}

/// `STATE=count` for every non-zero state, space separated, in kernel number order.
impl fmt::Display for StateCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (state, n) in self.iter().filter(|(_, n)| *n != 0) {
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            write!(f, "{state}={n}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for state in TcpState::ALL {
            assert_eq!(state.as_str().parse::<TcpState>(), Ok(state));
            assert_eq!(
                state
                    .as_str()
                    .to_ascii_lowercase()
                    .replace('_', "-")
                    .parse(),
                Ok(state)
            );
            assert_eq!(TcpState::from_kernel(state.kernel_number()), Some(state));
            assert_eq!(TcpState::ALL[state.index()], state);
        }
    }

    #[test]
    fn accepts_ss_spellings() {
        let cases = [
            ("ESTAB", TcpState::Established),
            ("close-wait", TcpState::CloseWait),
            ("FIN-WAIT-1", TcpState::FinWait1),
            ("fin-wait-2", TcpState::FinWait2),
            ("TIME-WAIT", TcpState::TimeWait),
            ("UNCONN", TcpState::Close),
            ("closed", TcpState::Close),
            ("listening", TcpState::Listen),
            ("Syn-Recv", TcpState::SynRecv),
            ("NEW_SYN_RECV", TcpState::SynRecv),
            ("last-ack", TcpState::LastAck),
        ];
        for (name, state) in cases {
            assert_eq!(name.parse(), Ok(state), "{name}");
        }
        for bad in [
            "",
            "-",
            "ESTABLISHEDX",
            "time wait",
            "a-very-long-state-name-indeed",
            "é",
        ] {
            let err = bad.parse::<TcpState>().unwrap_err();
            assert!(err.to_string().contains("unknown TCP state"), "{bad}");
        }
    }

    #[test]
    fn kernel_numbers() {
        assert_eq!(TcpState::from_kernel(0), None);
        assert_eq!(TcpState::from_kernel(1), Some(TcpState::Established));
        assert_eq!(TcpState::from_kernel(10), Some(TcpState::Listen));
        assert_eq!(TcpState::from_kernel(11), Some(TcpState::Closing));
        assert_eq!(TcpState::from_kernel(12), Some(TcpState::SynRecv));
        assert_eq!(TcpState::from_kernel(13), None);
        assert_eq!(TcpState::from_kernel(255), None);
    }

    #[test]
    fn kernel_mask() {
        assert_eq!(StateSet::ALL.kernel_mask(), 0b1_1111_1111_1110);
        assert_eq!(StateSet::only(TcpState::Listen).kernel_mask(), 1 << 10);
        assert_eq!(
            StateSet::only(TcpState::SynRecv).kernel_mask(),
            (1 << 3) | (1 << 12)
        );
        assert_eq!(StateSet::EMPTY.kernel_mask(), 0);
        let set: StateSet = [TcpState::TimeWait, TcpState::CloseWait]
            .into_iter()
            .collect();
        assert_eq!(
            set.iter().collect::<Vec<_>>(),
            [TcpState::TimeWait, TcpState::CloseWait]
        );
        let mut set = set;
        set.remove(TcpState::TimeWait);
        assert_eq!(set, StateSet::only(TcpState::CloseWait));
    }

    #[test]
    fn counts_add_and_total() {
        let a: StateCounts = [TcpState::Listen, TcpState::TimeWait, TcpState::TimeWait]
            .into_iter()
            .collect();
        let mut b = StateCounts::new();
        b.set(TcpState::Established, 5);
        let c = a + b;
        assert_eq!(c.total(), 8);
        assert_eq!(c[TcpState::TimeWait], 2);
        assert_eq!(c.get(TcpState::Established), 5);
        assert_eq!(c.to_string(), "ESTABLISHED=5 TIME_WAIT=2 LISTEN=1");
        assert_eq!(c.iter().count(), TcpState::COUNT);
        assert_eq!(StateCounts::default().to_string(), "");
    }
}
