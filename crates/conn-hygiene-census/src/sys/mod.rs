//! System calls. Linux has the real ones; elsewhere every entry point reports
//! "unsupported" at run time so that the crate builds on every platform.

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub(crate) use linux::*;

#[cfg(not(target_os = "linux"))]
mod other;
#[cfg(not(target_os = "linux"))]
pub(crate) use other::*;
