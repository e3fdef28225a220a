//! [`ExporterError`]: a builder setting that cannot work, or a recorder already installed.

use std::{error::Error as StdError, fmt};

use super::Matcher;

/// A setting of the [`ExporterBuilder`](super::ExporterBuilder) that cannot work, or a recorder
/// already installed.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ExporterError {
    /// A bucket override has no bounds.
    EmptyBuckets {
        /// The matcher the buckets were given for.
        matcher: Matcher,
    },
    /// A bucket override has a bound that is not finite, or bounds not strictly increasing.
    InvalidBuckets {
        /// The matcher the buckets were given for.
        matcher: Matcher,
        /// The rejected bounds.
        bounds: Vec<f64>,
    },
    /// `upkeep_interval` is `Some(Duration::ZERO)`.
    ZeroUpkeepInterval,
    /// The process already has a global `metrics` recorder; there can be only one.
    RecorderAlreadyInstalled,
}

impl fmt::Display for ExporterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EmptyBuckets { matcher } => write!(
                f,
                "invalid exporter setting: buckets for {matcher:?} = []: expected at least one bound"
            ),
            Self::InvalidBuckets { matcher, bounds } => write!(
                f,
                "invalid exporter setting: buckets for {matcher:?} = {bounds:?}: expected finite, \
                 strictly increasing bounds"
            ),
            Self::ZeroUpkeepInterval => f.write_str(
                "invalid exporter setting: upkeep_interval = 0s: expected more than 0, or None to turn \
                 upkeep off",
            ),
            Self::RecorderAlreadyInstalled => f.write_str(
                "cannot install the Prometheus recorder: a global metrics recorder is already \
                 installed in this process",
            ),
        }
    }
}

impl StdError for ExporterError {}
