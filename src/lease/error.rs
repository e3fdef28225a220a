use std::{fmt, time::Duration};

/// An invalid setting given to a [`LeaseTrackerBuilder`](super::LeaseTrackerBuilder), found by
/// [`build`](super::LeaseTrackerBuilder::build).
///
/// One variant per setting; the message names the setting and the value it refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaseConfigError {
    /// `leak_threshold` was `Some(Duration::ZERO)`: every lease would be a leak the moment it
    /// is taken. Pass `None` to turn leak detection off.
    ZeroLeakThreshold,
    /// `max_tracked` was 0: no lease could ever be listed. The bound must be at least 1.
    ZeroMaxTracked,
}

impl fmt::Display for LeaseConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LeaseConfigError::ZeroLeakThreshold => write!(
                f,
                "leak_threshold must be greater than zero, got {:?}; \
                 use None to turn leak detection off",
                Some(Duration::ZERO)
            ),
            LeaseConfigError::ZeroMaxTracked => {
                f.write_str("max_tracked must be at least 1, got 0")
            }
        }
    }
}

impl std::error::Error for LeaseConfigError {}
