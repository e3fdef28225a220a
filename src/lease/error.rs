use std::{fmt, time::Duration};

/// An invalid setting given to a [`LeaseTrackerBuilder`](super::LeaseTrackerBuilder), found by
/// [`build`](super::LeaseTrackerBuilder::build).
///
/// One variant per setting; the message names the setting and the value it refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaseConfigError {
    /// `leak_threshold` below 1 ms: every lease would be a leak the moment it is taken (the
    /// same bound as an HTTP client upstream's `leak_threshold`). Pass `None` to turn leak
    /// detection off.
    LeakThreshold {
        /// The rejected value.
        value: Duration,
    },
    /// `max_tracked` was 0: no lease could ever be listed. The bound must be at least 1.
    MaxTracked {
        /// The rejected value.
        value: usize,
    },
}

impl fmt::Display for LeaseConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LeaseConfigError::LeakThreshold { value } => write!(
                f,
                "invalid lease tracker: leak_threshold = {value:?}: expected at least 1ms, or \
                 None to turn leak detection off"
            ),
            LeaseConfigError::MaxTracked { value } => write!(
                f,
                "invalid lease tracker: max_tracked = {value}: expected at least 1"
            ),
        }
    }
}

impl std::error::Error for LeaseConfigError {}
