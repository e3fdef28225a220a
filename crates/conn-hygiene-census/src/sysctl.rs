//! The sysctls that decide how TCP connections pile up.
//!
//! Read from `/proc/sys`; a sysctl the running kernel does not have is `None`. The network
//! ones are per network namespace.
//!
//! ```
//! use conn_hygiene_census::sysctl::parse_port_range;
//!
//! assert_eq!(parse_port_range("32768\t60999\n").unwrap(), (32768, 60999));
//! assert!(parse_port_range("60999").is_err());
//! ```

use crate::counters::parse_number;
use crate::{CensusError, ProcRoot};

/// TCP-related sysctls. See the [module docs](crate::sysctl).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Sysctls {
    /// `net.ipv4.ip_local_port_range`: the ports `connect` picks from, inclusive.
    pub ip_local_port_range: Option<(u16, u16)>,
    /// `net.ipv4.tcp_tw_reuse`: 0 off, 1 on, 2 loopback only.
    pub tcp_tw_reuse: Option<u32>,
    /// `net.ipv4.tcp_max_tw_buckets`: `TIME_WAIT` sockets kept at most.
    pub tcp_max_tw_buckets: Option<u64>,
    /// `net.ipv4.tcp_fin_timeout`: seconds an orphaned socket stays in `FIN_WAIT2`.
    pub tcp_fin_timeout: Option<u32>,
    /// `net.core.somaxconn`: upper bound of every accept queue.
    pub somaxconn: Option<u32>,
    /// `net.ipv4.tcp_max_syn_backlog`: SYN queue bound.
    pub tcp_max_syn_backlog: Option<u32>,
    /// `net.ipv4.tcp_syncookies`: 0 off, 1 when the SYN queue overflows, 2 always.
    pub tcp_syncookies: Option<u32>,
    /// `net.ipv4.tcp_keepalive_time`: idle seconds before the first keepalive probe.
    pub tcp_keepalive_time: Option<u32>,
    /// `net.ipv4.tcp_keepalive_intvl`: seconds between probes.
    pub tcp_keepalive_intvl: Option<u32>,
    /// `net.ipv4.tcp_keepalive_probes`: unanswered probes before the connection is dropped.
    pub tcp_keepalive_probes: Option<u32>,
    /// `net.ipv4.tcp_congestion_control`.
    pub tcp_congestion_control: Option<String>,
}

/// Parses `ip_local_port_range`: two port numbers.
pub fn parse_port_range(text: &str) -> Result<(u16, u16), CensusError> {
    let mut it = text.split_ascii_whitespace().map(str::parse::<u16>);
    match (it.next(), it.next(), it.next()) {
        (Some(Ok(lo)), Some(Ok(hi)), None) => Ok((lo, hi)),
        _ => Err(CensusError::malformed(
            "ip_local_port_range",
            format!("expected two ports, got {:?}", text.trim()),
        )),
    }
}

impl ProcRoot {
    /// Reads the [`Sysctls`] under `sys/`.
    pub fn sysctls(&self) -> Result<Sysctls, CensusError> {
        Ok(Sysctls {
            ip_local_port_range: self.sysctl("net/ipv4/ip_local_port_range", parse_port_range)?,
            tcp_tw_reuse: self.sysctl_number("net/ipv4/tcp_tw_reuse")?,
            tcp_max_tw_buckets: self.sysctl_number("net/ipv4/tcp_max_tw_buckets")?,
            tcp_fin_timeout: self.sysctl_number("net/ipv4/tcp_fin_timeout")?,
            somaxconn: self.sysctl_number("net/core/somaxconn")?,
            tcp_max_syn_backlog: self.sysctl_number("net/ipv4/tcp_max_syn_backlog")?,
            tcp_syncookies: self.sysctl_number("net/ipv4/tcp_syncookies")?,
            tcp_keepalive_time: self.sysctl_number("net/ipv4/tcp_keepalive_time")?,
            tcp_keepalive_intvl: self.sysctl_number("net/ipv4/tcp_keepalive_intvl")?,
            tcp_keepalive_probes: self.sysctl_number("net/ipv4/tcp_keepalive_probes")?,
            tcp_congestion_control: self.sysctl("net/ipv4/tcp_congestion_control", |t| {
                Ok(t.trim().to_owned())
            })?,
        })
    }

    fn sysctl<T>(
        &self,
        name: &'static str,
        parse: impl FnOnce(&str) -> Result<T, CensusError>,
    ) -> Result<Option<T>, CensusError> {
        match self.read_optional(format!("sys/{name}"))? {
            None => Ok(None),
            Some((path, text)) => parse(&text).map(Some).map_err(|e| e.at_path(&path)),
        }
    }

    fn sysctl_number<T: std::str::FromStr>(
        &self,
        name: &'static str,
    ) -> Result<Option<T>, CensusError> {
        self.sysctl(name, |t| parse_number(name, t))
    }
}
