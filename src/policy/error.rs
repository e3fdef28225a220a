use std::{fmt, time::Duration};

/// A [`SocketPolicy`](super::SocketPolicy) setting that cannot work, found when the policy is built.
///
/// Each variant names one setting and carries the rejected value; the message says what range
/// would be accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyError {
    /// `keepalive.idle` is zero, not whole seconds, or above the kernel's 32767 s limit.
    KeepaliveIdle {
        /// The rejected value.
        value: Duration,
    },
    /// `keepalive.interval` is zero, not whole seconds, or above the kernel's 32767 s limit.
    KeepaliveInterval {
        /// The rejected value.
        value: Duration,
    },
    /// `keepalive.probes` is zero or above the kernel's limit of 127.
    KeepaliveProbes {
        /// The rejected value.
        value: u32,
    },
    /// `user_timeout` is zero, too large for the kernel, or shorter than the keepalive probing
    /// window (`idle + interval * probes`), which would cut keepalive short.
    UserTimeout {
        /// The rejected value.
        value: Duration,
        /// The keepalive probing window it must not undercut, when keepalive is on.
        probing_window: Option<Duration>,
    },
    /// `linger` is `Graceful` with a zero or over five-minute timeout.
    LingerTimeout {
        /// The rejected value.
        value: Duration,
    },
    /// `recv_buffer_size` is outside 1 KiB ..= 256 MiB.
    RecvBufferSize {
        /// The rejected value.
        value: usize,
    },
    /// `send_buffer_size` is outside 1 KiB ..= 256 MiB.
    SendBufferSize {
        /// The rejected value.
        value: usize,
    },
    /// `backlog` is zero or above 65535.
    Backlog {
        /// The rejected value.
        value: u32,
    },
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::KeepaliveIdle { value } => write!(
                f,
                "invalid socket policy: keepalive.idle = {value:?}: expected whole seconds in 1..=32767"
            ),
            Self::KeepaliveInterval { value } => write!(
                f,
                "invalid socket policy: keepalive.interval = {value:?}: expected whole seconds in 1..=32767"
            ),
            Self::KeepaliveProbes { value } => write!(
                f,
                "invalid socket policy: keepalive.probes = {value}: expected 1..=127"
            ),
            Self::UserTimeout {
                value,
                probing_window: Some(window),
            } if !value.is_zero() && *value < *window => write!(
                f,
                "invalid socket policy: user_timeout = {value:?}: expected at least the keepalive \
                 probing window, idle + interval * probes = {window:?} (shorter, it would cut \
                 keepalive short)"
            ),
            Self::UserTimeout { value, .. } => write!(
                f,
                "invalid socket policy: user_timeout = {value:?}: expected 1 ms ..= 24 days"
            ),
            Self::LingerTimeout { value } => write!(
                f,
                "invalid socket policy: linger = Graceful({value:?}): expected a timeout of 1 ms ..= 300 s \
                 (use Linger::Abort for an immediate reset)"
            ),
            Self::RecvBufferSize { value } => write!(
                f,
                "invalid socket policy: recv_buffer_size = {value} bytes: expected 1024..=268435456"
            ),
            Self::SendBufferSize { value } => write!(
                f,
                "invalid socket policy: send_buffer_size = {value} bytes: expected 1024..=268435456"
            ),
            Self::Backlog { value } => write!(
                f,
                "invalid socket policy: backlog = {value}: expected 1..=65535"
            ),
        }
    }
}

impl std::error::Error for PolicyError {}
