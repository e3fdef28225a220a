//! Who closed a connection first: the fact that decides which side holds TIME_WAIT.

use std::fmt;

/// Who ended a connection first, which decides who holds TIME_WAIT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Closer {
    /// We sent the first FIN (or the reset of an abort-close): this host holds TIME_WAIT
    /// (none after an abort).
    Local,
    /// The peer sent the first FIN: the peer holds TIME_WAIT.
    Peer,
    /// The peer reset the connection.
    Reset,
    /// An I/O error ended it.
    Error,
    /// A timer cut it mid-message: our header timeout, or the kernel's keepalive / user timeout
    /// giving up on a dead peer. (An idle timeout is an orderly close at a message boundary and
    /// counts as [`Local`](Closer::Local).)
    Timeout,
}

impl Closer {
    /// Every closer, in label order.
    pub const ALL: [Closer; 5] = [
        Closer::Local,
        Closer::Peer,
        Closer::Reset,
        Closer::Error,
        Closer::Timeout,
    ];

    /// The closer's name as used in metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Closer::Local => "local",
            Closer::Peer => "peer",
            Closer::Reset => "reset",
            Closer::Error => "error",
            Closer::Timeout => "timeout",
        }
    }
}

/// Whether a close by `closer` can have a reason whose closer is `forced` (`None`: the reason
/// does not decide it, and the FIN order does, local or peer). Only these pairs are ever
/// recorded, so only these are registered as series.
pub(crate) fn possible(closer: Closer, forced: Option<Closer>) -> bool {
    match forced {
        Some(f) => closer == f,
        None => matches!(closer, Closer::Local | Closer::Peer),
    }
}

impl fmt::Display for Closer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `Debug` map of the named counts that are not zero.
pub(crate) struct NonZero<const N: usize>(pub(crate) [(&'static str, u64); N]);

impl<const N: usize> std::fmt::Debug for NonZero<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.iter().filter(|(_, n)| *n > 0).map(|(k, n)| (k, n)))
            .finish()
    }
}
