//! The one runtime error type of the crate.
// Some constructors serve the Linux system calls only.
#![cfg_attr(not(target_os = "linux"), allow(dead_code))]

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a census step failed.
///
/// The kind is private; ask with the `is_*` predicates. [`Display`](fmt::Display) names the
/// step that failed: a path under the proc root, a netlink step, or a parsed text.
#[derive(Debug, Clone)]
pub struct CensusError {
    kind: Kind,
    what: What,
    detail: Option<Box<str>>,
    source: Option<Arc<io::Error>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The platform or the kernel does not offer this.
    Unsupported,
    /// The kernel refused for lack of privilege.
    PermissionDenied,
    /// A file or process does not exist.
    NotFound,
    /// Any other I/O failure.
    Io,
    /// The kernel answered with something that does not parse.
    Malformed,
    /// The kernel answered a netlink request with an error code.
    Kernel(i32),
    /// The kernel did not answer in time.
    TimedOut,
}

#[derive(Debug, Clone)]
enum What {
    Path(PathBuf),
    Netlink(&'static str),
    Text(&'static str),
    Call(&'static str),
}

impl CensusError {
    #[cfg_attr(target_os = "linux", allow(dead_code))]
    pub(crate) fn unsupported(what: &'static str) -> Self {
        Self::new(Kind::Unsupported, What::Call(what))
    }

    pub(crate) fn path_io(path: &Path, err: io::Error) -> Self {
        Self::new(classify(&err), What::Path(path.to_path_buf())).with_source(err)
    }

    pub(crate) fn netlink_io(step: &'static str, err: io::Error) -> Self {
        let kind =
            if err.kind() == io::ErrorKind::WouldBlock || err.kind() == io::ErrorKind::TimedOut {
                Kind::TimedOut
            } else {
                classify(&err)
            };
        Self::new(kind, What::Netlink(step)).with_source(err)
    }

    pub(crate) fn netlink_kernel(step: &'static str, errno: i32) -> Self {
        Self::new(Kind::Kernel(errno), What::Netlink(step))
    }

    pub(crate) fn netlink_malformed(step: &'static str, detail: impl Into<Box<str>>) -> Self {
        Self::new(Kind::Malformed, What::Netlink(step)).with_detail(detail)
    }

    pub(crate) fn call_io(call: &'static str, err: io::Error) -> Self {
        Self::new(classify(&err), What::Call(call)).with_source(err)
    }

    pub(crate) fn malformed(text: &'static str, detail: impl Into<Box<str>>) -> Self {
        Self::new(Kind::Malformed, What::Text(text)).with_detail(detail)
    }

    /// Re-points a parse error at the file it came from.
    pub(crate) fn at_path(mut self, path: &Path) -> Self {
        self.what = What::Path(path.to_path_buf());
        self
    }

    fn new(kind: Kind, what: What) -> Self {
        Self {
            kind,
            what,
            detail: None,
            source: None,
        }
    }

    fn with_source(mut self, err: io::Error) -> Self {
        self.source = Some(Arc::new(err));
        self
    }

    fn with_detail(mut self, detail: impl Into<Box<str>>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// The platform or the running kernel does not offer what was asked: a non-Linux build,
    /// a kernel without `NETLINK_SOCK_DIAG`, a missing address family.
    pub fn is_unsupported(&self) -> bool {
        match self.kind {
            Kind::Unsupported => true,
            Kind::Kernel(errno) => matches!(
                errno,
                libc_errno::EPROTONOSUPPORT | libc_errno::EAFNOSUPPORT | libc_errno::EOPNOTSUPP
            ),
            _ => false,
        }
    }

    /// The kernel refused for lack of privilege (`EPERM` or `EACCES`).
    pub fn is_permission_denied(&self) -> bool {
        match self.kind {
            Kind::PermissionDenied => true,
            Kind::Kernel(errno) => matches!(errno, libc_errno::EPERM | libc_errno::EACCES),
            _ => false,
        }
    }

    /// A file, or the process it belongs to, does not exist.
    pub fn is_not_found(&self) -> bool {
        match self.kind {
            Kind::NotFound => true,
            Kind::Kernel(errno) => errno == libc_errno::ENOENT,
            _ => false,
        }
    }

    /// The kernel's answer (text or netlink message) did not parse: truncated, garbage,
    /// or in a layout this crate does not know.
    pub fn is_malformed(&self) -> bool {
        self.kind == Kind::Malformed
    }

    /// The kernel answered a netlink request with `NLMSG_ERROR` (or a failed `NLMSG_DONE`).
    pub fn is_kernel_error(&self) -> bool {
        matches!(self.kind, Kind::Kernel(_))
    }

    /// A netlink receive did not complete within its timeout.
    pub fn is_timed_out(&self) -> bool {
        self.kind == Kind::TimedOut
    }

    /// The `errno` behind this error, if one is known.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self.kind {
            Kind::Kernel(errno) => Some(errno),
            _ => self.source.as_ref().and_then(|e| e.raw_os_error()),
        }
    }

    /// The file this error is about, if it is about one.
    pub fn path(&self) -> Option<&Path> {
        match &self.what {
            What::Path(p) => Some(p),
            _ => None,
        }
    }

    /// Netlink refused in a way that the `/proc` tables can stand in for.
    pub(crate) fn netlink_refused(&self) -> bool {
        if !matches!(self.what, What::Netlink(_)) {
            return false;
        }
        // ENOENT: no sock_diag handler for the family (module not loaded or not built).
        self.is_permission_denied() || self.is_unsupported() || self.is_not_found()
    }
}

impl fmt::Display for CensusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.what {
            What::Path(p) => write!(f, "{}", p.display())?,
            What::Netlink(step) => write!(f, "netlink sock_diag {step}")?,
            What::Text(name) => write!(f, "parsing {name}")?,
            What::Call(call) => write!(f, "{call}")?,
        }
        match self.kind {
            Kind::Unsupported if self.source.is_none() => {
                f.write_str(": not supported on this platform")?
            }
            Kind::Malformed => f.write_str(": malformed")?,
            Kind::Kernel(errno) => write!(
                f,
                ": kernel returned {}",
                io::Error::from_raw_os_error(errno)
            )?,
            Kind::TimedOut => f.write_str(": timed out")?,
            _ => {}
        }
        if let Some(detail) = &self.detail {
            write!(f, ": {detail}")?;
        }
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for CensusError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

fn classify(err: &io::Error) -> Kind {
    match err.raw_os_error() {
        Some(libc_errno::EPERM | libc_errno::EACCES) => return Kind::PermissionDenied,
        Some(libc_errno::ENOENT | libc_errno::ESRCH) => return Kind::NotFound,
        Some(libc_errno::EPROTONOSUPPORT | libc_errno::EAFNOSUPPORT) => return Kind::Unsupported,
        _ => {}
    }
    match err.kind() {
        io::ErrorKind::PermissionDenied => Kind::PermissionDenied,
        io::ErrorKind::NotFound => Kind::NotFound,
        io::ErrorKind::Unsupported => Kind::Unsupported,
        io::ErrorKind::InvalidData => Kind::Malformed,
        _ => Kind::Io,
    }
}

/// Linux errno values. Netlink errors carry Linux numbers whatever the build platform, and the
/// fixture parsers run everywhere, so these are spelled out rather than taken from `libc`.
pub(crate) mod libc_errno {
    pub(crate) const EPERM: i32 = 1;
    pub(crate) const ENOENT: i32 = 2;
    pub(crate) const ESRCH: i32 = 3;
    pub(crate) const EACCES: i32 = 13;
    pub(crate) const EOPNOTSUPP: i32 = 95;
    pub(crate) const EPROTONOSUPPORT: i32 = 93;
    pub(crate) const EAFNOSUPPORT: i32 = 97;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_step() {
        let e = CensusError::netlink_kernel("dump (IPv4)", 1);
        assert!(e.is_permission_denied());
        assert!(e.is_kernel_error());
        assert!(e.netlink_refused());
        assert!(e
            .to_string()
            .starts_with("netlink sock_diag dump (IPv4): kernel returned"));

        let e = CensusError::path_io(Path::new("/proc/net/tcp"), io::Error::from_raw_os_error(13));
        assert!(e.is_permission_denied());
        assert!(!e.netlink_refused());
        assert_eq!(e.path(), Some(Path::new("/proc/net/tcp")));
        assert!(e.to_string().starts_with("/proc/net/tcp: "));

        let e = CensusError::malformed("sockstat", "no TCP line").at_path(Path::new("/x"));
        assert!(e.is_malformed());
        assert_eq!(e.to_string(), "/x: malformed: no TCP line");

        let e = CensusError::unsupported("netlink sock_diag");
        assert!(e.is_unsupported());
        assert_eq!(
            e.to_string(),
            "netlink sock_diag: not supported on this platform"
        );
    }
}
