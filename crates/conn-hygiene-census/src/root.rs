//! Where the proc file system is.

use std::io;
use std::path::{Path, PathBuf};

use crate::CensusError;

/// The mount point of a proc file system: `/proc` by default, a fixture directory in tests.
///
/// Every reader of this crate is a method on `ProcRoot` (or takes one through
/// [`WalkOptions::proc_root`](crate::WalkOptions::proc_root)), and every reader is a thin
/// layer over a pure parser that takes the text. Off Linux, every reader returns an error for
/// which [`CensusError::is_unsupported`] is true.
///
/// ```
/// use conn_hygiene_census::ProcRoot;
///
/// let root = ProcRoot::default();
/// assert_eq!(root.path(), std::path::Path::new("/proc"));
/// let fixtures = ProcRoot::new("tests/fixtures/proc");
/// assert!(fixtures.path().ends_with("proc"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProcRoot {
    path: PathBuf,
}

impl Default for ProcRoot {
    fn default() -> Self {
        ProcRoot {
            path: PathBuf::from("/proc"),
        }
    }
}

impl ProcRoot {
    /// A proc file system mounted at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        ProcRoot { path: path.into() }
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.path.join(rel)
    }

    /// Reads a whole file under the root.
    pub(crate) fn read(&self, rel: impl AsRef<Path>) -> Result<(PathBuf, String), CensusError> {
        let path = self.join(rel);
        check_supported(&path)?;
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok((path, text)),
            Err(e) => Err(CensusError::path_io(&path, e)),
        }
    }

    /// Reads a file that may legitimately be absent.
    pub(crate) fn read_optional(
        &self,
        rel: impl AsRef<Path>,
    ) -> Result<Option<(PathBuf, String)>, CensusError> {
        match self.read(rel) {
            Ok(found) => Ok(Some(found)),
            Err(e) if e.is_not_found() && !e.is_unsupported() => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Off Linux there is no proc file system to read.
pub(crate) fn check_supported(path: &Path) -> Result<(), CensusError> {
    if crate::sys::SUPPORTED {
        Ok(())
    } else {
        Err(CensusError::path_io(
            path,
            io::Error::new(io::ErrorKind::Unsupported, "not supported on this platform"),
        ))
    }
}
