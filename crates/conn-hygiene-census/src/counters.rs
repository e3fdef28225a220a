//! Cheap kernel counters: a few small files, no socket walk.
//!
//! `/proc/net/sockstat` and `sockstat6` count sockets per protocol; `/proc/net/snmp` and
//! `/proc/net/netstat` hold the MIB counters (listen queue overflows, SYN cookies, aborts,
//! resets…); `/proc/sys/fs/file-nr` the open files of the whole host; `/proc/PID/fd` and
//! `/proc/PID/limits` a process's descriptors and its limit; `nf_conntrack_count` and
//! `nf_conntrack_max` the connection tracking table when netfilter tracks connections.
//! Each is parsed by a pure function over the file's text and read by a
//! [`ProcRoot`] method.
//!
//! ```
//! use conn_hygiene_census::counters::{parse_counter_table, parse_sockstat, TcpCounters};
//!
//! let sockstat = parse_sockstat(
//!     "sockets: used 15\nTCP: inuse 2 orphan 0 tw 1 alloc 2 mem 203\n",
//!     Some("TCP6: inuse 3\n"),
//! ).unwrap();
//! assert_eq!((sockstat.tcp_inuse, sockstat.tcp_tw, sockstat.tcp6_inuse), (2, 1, Some(3)));
//!
//! let snmp = parse_counter_table("Tcp: ActiveOpens CurrEstab MaxConn\nTcp: 41 1 -1\n").unwrap();
//! let netstat = parse_counter_table("TcpExt: ListenOverflows ListenDrops\nTcpExt: 7 9\n").unwrap();
//! assert_eq!(snmp.get("Tcp", "MaxConn"), Some(-1));
//! let tcp = TcpCounters::from_tables(&snmp, &netstat);
//! assert_eq!((tcp.active_opens, tcp.listen_overflows, tcp.listen_drops), (Some(41), Some(7), Some(9)));
//! assert_eq!(tcp.syncookies_sent, None);
//! ```

use crate::{CensusError, ProcRoot};

/// `/proc/net/sockstat` and `/proc/net/sockstat6`, TCP lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Sockstat {
    /// Sockets of every kind allocated (`sockets: used`).
    pub sockets_used: Option<u64>,
    /// IPv4 TCP sockets in the hash tables (`TCP: inuse`): listeners and connections,
    /// `TIME_WAIT` excluded.
    pub tcp_inuse: u64,
    /// TCP sockets no process holds any more, still closing (`orphan`).
    pub tcp_orphan: u64,
    /// `TIME_WAIT` sockets of both families (`tw`).
    pub tcp_tw: u64,
    /// TCP sockets allocated, both families (`alloc`).
    pub tcp_alloc: u64,
    /// Memory used by TCP buffers, in pages (`mem`).
    pub tcp_mem_pages: u64,
    /// IPv6 TCP sockets in the hash tables (`TCP6: inuse`); `None` without `sockstat6`.
    pub tcp6_inuse: Option<u64>,
}

/// Parses `sockstat` and, if given, `sockstat6`.
pub fn parse_sockstat(v4: &str, v6: Option<&str>) -> Result<Sockstat, CensusError> {
    let need = |key: &str| {
        keyed(v4, "TCP", key)
            .ok_or_else(|| CensusError::malformed("sockstat", format!("no TCP {key} value")))
    };
    let tcp6_inuse = match v6 {
        None => None,
        Some(text) => Some(
            keyed(text, "TCP6", "inuse")
                .ok_or_else(|| CensusError::malformed("sockstat6", "no TCP6 inuse value"))?,
        ),
    };
    Ok(Sockstat {
        sockets_used: keyed(v4, "sockets", "used"),
        tcp_inuse: need("inuse")?,
        tcp_orphan: need("orphan")?,
        tcp_tw: need("tw")?,
        tcp_alloc: need("alloc")?,
        tcp_mem_pages: need("mem")?,
        tcp6_inuse,
    })
}

/// The value after `key` on the line starting with `proto:`.
fn keyed(text: &str, proto: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| {
        l.strip_prefix(proto)
            .is_some_and(|rest| rest.starts_with(':'))
    })?;
    let mut words = line[proto.len() + 1..].split_ascii_whitespace();
    while let Some(word) = words.next() {
        let value = words.next()?;
        if word == key {
            return value.parse().ok();
        }
    }
    None
}

/// Counters from files made of header/value line pairs, as `/proc/net/snmp` and
/// `/proc/net/netstat`: `Tcp: ActiveOpens PassiveOpens …` followed by `Tcp: 41 2 …`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CounterTable {
    groups: Vec<CounterGroup>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct CounterGroup {
    name: String,
    fields: Vec<(String, i64)>,
}

impl CounterTable {
    /// The value of `field` in `group` (`"Tcp"`, `"TcpExt"`, `"Ip"`, …). Values above
    /// `i64::MAX` read as `i64::MAX`; `Tcp MaxConn` is the one negative value the kernel prints.
    pub fn get(&self, group: &str, field: &str) -> Option<i64> {
        self.groups
            .iter()
            .filter(|g| g.name == group)
            .flat_map(|g| g.fields.iter())
            .find(|(name, _)| name == field)
            .map(|(_, v)| *v)
    }

    /// [`CounterTable::get`] for a counter that cannot be negative.
    pub fn get_u64(&self, group: &str, field: &str) -> Option<u64> {
        self.get(group, field).and_then(|v| u64::try_from(v).ok())
    }

    /// Every `(group, field, value)`, in file order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str, i64)> + '_ {
        self.groups.iter().flat_map(|g| {
            g.fields
                .iter()
                .map(move |(f, v)| (g.name.as_str(), f.as_str(), *v))
        })
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.groups.iter().map(|g| g.fields.len()).sum()
    }

    /// Whether the table holds no value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends the groups of `other` (for one table over `snmp` and `netstat`).
    pub fn extend(&mut self, other: CounterTable) {
        self.groups.extend(other.groups);
    }
}

/// Parses a header/value table. A header without its value line, a value line whose group
/// differs from its header's, or a count mismatch is malformed.
pub fn parse_counter_table(text: &str) -> Result<CounterTable, CensusError> {
    let err = |line: usize, detail: &str| {
        CensusError::malformed("counter table", format!("line {line}: {detail}"))
    };
    let mut groups = Vec::new();
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    while let Some((n, header)) = lines.next() {
        let (name, names) = header
            .split_once(':')
            .ok_or_else(|| err(n + 1, "no group name"))?;
        let (m, values) = lines
            .next()
            .ok_or_else(|| err(n + 1, "header without a value line"))?;
        let (vname, values) = values
            .split_once(':')
            .ok_or_else(|| err(m + 1, "no group name"))?;
        if vname != name {
            return Err(err(m + 1, "value line of another group"));
        }
        let names: Vec<&str> = names.split_ascii_whitespace().collect();
        let values: Vec<&str> = values.split_ascii_whitespace().collect();
        if names.len() != values.len() {
            return Err(err(m + 1, "value count differs from header"));
        }
        let mut fields = Vec::with_capacity(names.len());
        for (field, value) in names.into_iter().zip(values) {
            let value = parse_counter(value).ok_or_else(|| err(m + 1, "value is not a number"))?;
            fields.push((field.to_owned(), value));
        }
        groups.push(CounterGroup {
            name: name.to_owned(),
            fields,
        });
    }
    Ok(CounterTable { groups })
}

fn parse_counter(s: &str) -> Option<i64> {
    s.parse::<i64>()
        .ok()
        .or_else(|| s.parse::<u64>().ok().map(|_| i64::MAX))
}

/// The TCP counters worth watching, by name, from `snmp` (`Tcp`) and `netstat` (`TcpExt`).
/// Each is `None` when the running kernel does not print it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TcpCounters {
    /// `Tcp ActiveOpens`: connections opened by `connect`.
    pub active_opens: Option<u64>,
    /// `Tcp PassiveOpens`: connections accepted from listeners.
    pub passive_opens: Option<u64>,
    /// `Tcp AttemptFails`: connection attempts that failed.
    pub attempt_fails: Option<u64>,
    /// `Tcp EstabResets`: resets received in `ESTABLISHED` or `CLOSE_WAIT`.
    pub estab_resets: Option<u64>,
    /// `Tcp CurrEstab`: sockets now in `ESTABLISHED` or `CLOSE_WAIT` (a gauge).
    pub curr_estab: Option<u64>,
    /// `Tcp InSegs`.
    pub in_segs: Option<u64>,
    /// `Tcp OutSegs`.
    pub out_segs: Option<u64>,
    /// `Tcp RetransSegs`.
    pub retrans_segs: Option<u64>,
    /// `Tcp InErrs`: segments received with errors.
    pub in_errs: Option<u64>,
    /// `Tcp OutRsts`: resets sent.
    pub out_rsts: Option<u64>,
    /// `TcpExt ListenOverflows`: completed connections dropped because an accept queue was full.
    pub listen_overflows: Option<u64>,
    /// `TcpExt ListenDrops`: connection requests a listener dropped, overflows included.
    pub listen_drops: Option<u64>,
    /// `TcpExt TCPTimeWaitOverflow`: `TIME_WAIT` sockets not created because
    /// `tcp_max_tw_buckets` was reached.
    pub time_wait_overflow: Option<u64>,
    /// `TcpExt TW`: `TIME_WAIT` sockets that ran their full time.
    pub time_wait_done: Option<u64>,
    /// `TcpExt SyncookiesSent`.
    pub syncookies_sent: Option<u64>,
    /// `TcpExt SyncookiesRecv`.
    pub syncookies_recv: Option<u64>,
    /// `TcpExt SyncookiesFailed`.
    pub syncookies_failed: Option<u64>,
    /// `TcpExt TCPReqQFullDrop`: SYNs dropped because the SYN queue was full.
    pub req_queue_full_drop: Option<u64>,
    /// `TcpExt TCPReqQFullDoCookies`: SYN cookies sent because the SYN queue was full.
    pub req_queue_full_do_cookies: Option<u64>,
    /// `TcpExt TCPAbortOnData`: resets sent on close with unread data, or on data after close.
    pub abort_on_data: Option<u64>,
    /// `TcpExt TCPAbortOnClose`: resets sent on close with unread data.
    pub abort_on_close: Option<u64>,
    /// `TcpExt TCPAbortOnMemory`: connections aborted for lack of memory (orphans).
    pub abort_on_memory: Option<u64>,
    /// `TcpExt TCPAbortOnTimeout`: connections aborted after retransmission timeouts.
    pub abort_on_timeout: Option<u64>,
    /// `TcpExt TCPAbortOnLinger`: connections aborted by `SO_LINGER` with a zero timeout,
    /// or by the `FIN_WAIT2` timeout.
    pub abort_on_linger: Option<u64>,
    /// `TcpExt TCPAbortFailed`: aborts whose reset could not be sent.
    pub abort_failed: Option<u64>,
}

impl TcpCounters {
    /// Picks the named counters out of the `snmp` and `netstat` tables.
    pub fn from_tables(snmp: &CounterTable, netstat: &CounterTable) -> Self {
        let tcp = |f: &str| snmp.get_u64("Tcp", f);
        let ext = |f: &str| netstat.get_u64("TcpExt", f);
        TcpCounters {
            active_opens: tcp("ActiveOpens"),
            passive_opens: tcp("PassiveOpens"),
            attempt_fails: tcp("AttemptFails"),
            estab_resets: tcp("EstabResets"),
            curr_estab: tcp("CurrEstab"),
            in_segs: tcp("InSegs"),
            out_segs: tcp("OutSegs"),
            retrans_segs: tcp("RetransSegs"),
            in_errs: tcp("InErrs"),
            out_rsts: tcp("OutRsts"),
            listen_overflows: ext("ListenOverflows"),
            listen_drops: ext("ListenDrops"),
            time_wait_overflow: ext("TCPTimeWaitOverflow"),
            time_wait_done: ext("TW"),
            syncookies_sent: ext("SyncookiesSent"),
            syncookies_recv: ext("SyncookiesRecv"),
            syncookies_failed: ext("SyncookiesFailed"),
            req_queue_full_drop: ext("TCPReqQFullDrop"),
            req_queue_full_do_cookies: ext("TCPReqQFullDoCookies"),
            abort_on_data: ext("TCPAbortOnData"),
            abort_on_close: ext("TCPAbortOnClose"),
            abort_on_memory: ext("TCPAbortOnMemory"),
            abort_on_timeout: ext("TCPAbortOnTimeout"),
            abort_on_linger: ext("TCPAbortOnLinger"),
            abort_failed: ext("TCPAbortFailed"),
        }
    }
}

/// `/proc/sys/fs/file-nr`: open files of the whole host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FileNr {
    /// File handles allocated.
    pub allocated: u64,
    /// Allocated but unused (always 0 on current kernels).
    pub unused: u64,
    /// `fs.file-max`.
    pub max: u64,
}

/// Parses `file-nr`: three numbers.
pub fn parse_file_nr(text: &str) -> Result<FileNr, CensusError> {
    let mut it = text.split_ascii_whitespace().map(str::parse::<u64>);
    let mut next = || {
        it.next()
            .and_then(Result::ok)
            .ok_or_else(|| CensusError::malformed("file-nr", "expected three numbers"))
    };
    Ok(FileNr {
        allocated: next()?,
        unused: next()?,
        max: next()?,
    })
}

/// One line of `/proc/PID/limits`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limit {
    /// Name, as `Max open files`.
    pub name: String,
    /// Soft limit; `None` is unlimited.
    pub soft: Option<u64>,
    /// Hard limit; `None` is unlimited.
    pub hard: Option<u64>,
    /// Unit, as `files`; some limits have none.
    pub unit: Option<String>,
}

/// `/proc/PID/limits`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    limits: Vec<Limit>,
}

impl Limits {
    /// The limit named `name` (as printed, for instance `Max open files`).
    pub fn get(&self, name: &str) -> Option<&Limit> {
        self.limits.iter().find(|l| l.name == name)
    }

    /// `Max open files`: `RLIMIT_NOFILE`.
    pub fn open_files(&self) -> Option<&Limit> {
        self.get("Max open files")
    }

    /// Every limit, in file order.
    pub fn iter(&self) -> impl Iterator<Item = &Limit> + '_ {
        self.limits.iter()
    }
}

/// Parses a `limits` file: a header line, then `Name  soft  hard  [unit]` lines where the
/// name has spaces in it and a value is a number or `unlimited`.
pub fn parse_limits(text: &str) -> Result<Limits, CensusError> {
    let mut limits = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if n == 0 && line.starts_with("Limit") || line.trim().is_empty() {
            continue;
        }
        let words: Vec<&str> = line.split_ascii_whitespace().collect();
        let is_value = |w: &&str| *w == "unlimited" || w.bytes().all(|b| b.is_ascii_digit());
        let bad = || CensusError::malformed("limits", format!("line {}: {line:?}", n + 1));
        let first_value = words.iter().position(is_value).ok_or_else(bad)?;
        if first_value == 0 || words.len() < first_value + 2 || !is_value(&words[first_value + 1]) {
            return Err(bad());
        }
        let value = |w: &str| (w != "unlimited").then(|| w.parse().ok()).flatten();
        limits.push(Limit {
            name: words[..first_value].join(" "),
            soft: value(words[first_value]),
            hard: value(words[first_value + 1]),
            unit: words.get(first_value + 2).map(|u| (*u).to_owned()),
        });
    }
    Ok(Limits { limits })
}

/// A process's open descriptors against its `RLIMIT_NOFILE`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FdUsage {
    /// Open descriptors.
    pub open: u64,
    /// Soft limit; `None` is unlimited or unknown.
    pub soft_limit: Option<u64>,
    /// Hard limit; `None` is unlimited or unknown.
    pub hard_limit: Option<u64>,
}

impl FdUsage {
    /// Descriptors left before the soft limit.
    pub fn headroom(&self) -> Option<u64> {
        self.soft_limit.map(|l| l.saturating_sub(self.open))
    }

    /// Open descriptors as a fraction of the soft limit.
    pub fn ratio(&self) -> Option<f64> {
        self.soft_limit
            .filter(|l| *l > 0)
            .map(|l| self.open as f64 / l as f64)
    }
}

/// The netfilter connection tracking table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Conntrack {
    /// `nf_conntrack_count`: tracked connections.
    pub count: u64,
    /// `nf_conntrack_max`: the table's limit.
    pub max: u64,
}

pub(crate) fn parse_number<T: std::str::FromStr>(
    what: &'static str,
    text: &str,
) -> Result<T, CensusError> {
    text.trim()
        .parse()
        .map_err(|_| CensusError::malformed(what, format!("not a number: {:?}", text.trim())))
}

impl ProcRoot {
    /// `net/sockstat` and, when present, `net/sockstat6`.
    pub fn sockstat(&self) -> Result<Sockstat, CensusError> {
        let (path, v4) = self.read("net/sockstat")?;
        let v6 = self.read_optional("net/sockstat6")?;
        parse_sockstat(&v4, v6.as_ref().map(|(_, t)| t.as_str())).map_err(|e| {
            match (&v6, e.to_string().contains("sockstat6")) {
                (Some((p6, _)), true) => e.at_path(p6),
                _ => e.at_path(&path),
            }
        })
    }

    /// `net/snmp`.
    pub fn snmp(&self) -> Result<CounterTable, CensusError> {
        let (path, text) = self.read("net/snmp")?;
        parse_counter_table(&text).map_err(|e| e.at_path(&path))
    }

    /// `net/netstat`.
    pub fn netstat(&self) -> Result<CounterTable, CensusError> {
        let (path, text) = self.read("net/netstat")?;
        parse_counter_table(&text).map_err(|e| e.at_path(&path))
    }

    /// The named TCP counters of `net/snmp` and `net/netstat`.
    pub fn tcp_counters(&self) -> Result<TcpCounters, CensusError> {
        Ok(TcpCounters::from_tables(&self.snmp()?, &self.netstat()?))
    }

    /// `sys/fs/file-nr`.
    pub fn file_nr(&self) -> Result<FileNr, CensusError> {
        let (path, text) = self.read("sys/fs/file-nr")?;
        parse_file_nr(&text).map_err(|e| e.at_path(&path))
    }

    /// `PID/limits`.
    pub fn limits(&self, pid: u32) -> Result<Limits, CensusError> {
        let (path, text) = self.read(format!("{pid}/limits"))?;
        parse_limits(&text).map_err(|e| e.at_path(&path))
    }

    /// Number of entries in `PID/fd`.
    pub fn fd_count(&self, pid: u32) -> Result<u64, CensusError> {
        self.count_entries(format!("{pid}/fd"))
    }

    /// `PID/fd` entries against the `Max open files` line of `PID/limits`.
    pub fn fd_usage(&self, pid: u32) -> Result<FdUsage, CensusError> {
        let limits = self.limits(pid)?;
        let limit = limits.open_files();
        Ok(FdUsage {
            open: self.fd_count(pid)?,
            soft_limit: limit.and_then(|l| l.soft),
            hard_limit: limit.and_then(|l| l.hard),
        })
    }

    /// `sys/net/netfilter/nf_conntrack_count` and `nf_conntrack_max`; `None` when connection
    /// tracking is not loaded in this network namespace.
    pub fn conntrack(&self) -> Result<Option<Conntrack>, CensusError> {
        let count = self.read_optional("sys/net/netfilter/nf_conntrack_count")?;
        let max = self.read_optional("sys/net/netfilter/nf_conntrack_max")?;
        match (count, max) {
            (Some((cp, count)), Some((mp, max))) => Ok(Some(Conntrack {
                count: parse_number("nf_conntrack_count", &count).map_err(|e| e.at_path(&cp))?,
                max: parse_number("nf_conntrack_max", &max).map_err(|e| e.at_path(&mp))?,
            })),
            _ => Ok(None),
        }
    }
}

/// This process's descriptors (`/proc/self/fd`, not counting the one used to list it) against
/// its `RLIMIT_NOFILE` from `getrlimit`.
pub fn fd_usage_self() -> Result<FdUsage, CensusError> {
    let (soft_limit, hard_limit) = crate::sys::nofile_limit()?;
    let root = ProcRoot::default();
    let listed = root.count_entries("self/fd")?;
    Ok(FdUsage {
        open: listed.saturating_sub(1),
        soft_limit,
        hard_limit,
    })
}

impl ProcRoot {
    fn count_entries(&self, rel: impl AsRef<std::path::Path>) -> Result<u64, CensusError> {
        let path = self.join(rel);
        crate::root::check_supported(&path)?;
        let dir = std::fs::read_dir(&path).map_err(|e| CensusError::path_io(&path, e))?;
        let mut n = 0;
        for entry in dir {
            entry.map_err(|e| CensusError::path_io(&path, e))?;
            n += 1;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_lines() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max open files            1024                 524288               files     \n\
                    Max nice priority         0                    0                    \n\
                    Max cpu time              unlimited            unlimited            seconds   \n";
        let limits = parse_limits(text).unwrap();
        let nofile = limits.open_files().unwrap();
        assert_eq!((nofile.soft, nofile.hard), (Some(1024), Some(524288)));
        assert_eq!(nofile.unit.as_deref(), Some("files"));
        let nice = limits.get("Max nice priority").unwrap();
        assert_eq!((nice.soft, nice.unit.as_deref()), (Some(0), None));
        assert_eq!(limits.get("Max cpu time").unwrap().soft, None);
        assert!(parse_limits("Limit\nMax open files lots\n")
            .unwrap_err()
            .is_malformed());
        assert!(parse_limits("Limit\n1 2\n").is_err());
    }

    #[test]
    fn counter_table_errors() {
        assert!(parse_counter_table("Tcp: A B\n").is_err());
        assert!(parse_counter_table("Tcp: A B\nTcp: 1\n").is_err());
        assert!(parse_counter_table("Tcp: A B\nUdp: 1 2\n").is_err());
        assert!(parse_counter_table("Tcp: A\nTcp: x\n").is_err());
        assert!(parse_counter_table("garbage\n").is_err());
        let t = parse_counter_table("Ip: Big\nIp: 18446744073709551615\n").unwrap();
        assert_eq!(t.get("Ip", "Big"), Some(i64::MAX));
        assert_eq!(t.get_u64("Ip", "Nope"), None);
        assert!(parse_counter_table("").unwrap().is_empty());
    }

    #[test]
    fn sockstat_errors() {
        assert!(parse_sockstat("TCP: inuse 1\n", None)
            .unwrap_err()
            .is_malformed());
        let e = parse_sockstat(
            "TCP: inuse 1 orphan 0 tw 0 alloc 1 mem 0\n",
            Some("RAW6: inuse 0\n"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("sockstat6"));
        assert!(parse_file_nr("1 2").is_err());
        assert!(parse_file_nr("1\t0\tx").is_err());
    }

    #[test]
    fn fd_usage_math() {
        let u = FdUsage {
            open: 750,
            soft_limit: Some(1000),
            hard_limit: None,
        };
        assert_eq!(u.headroom(), Some(250));
        assert_eq!(u.ratio(), Some(0.75));
        assert_eq!(FdUsage::default().ratio(), None);
    }
}
