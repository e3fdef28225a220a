//! The `/proc/net/tcp` and `/proc/net/tcp6` tables: the walk's fallback when netlink is refused.
//!
//! Each line is one socket: addresses as the kernel's in-memory words printed in hex, the
//! state number, the queues, the uid and the inode. The parser reads the words in the byte
//! order of the machine running it, which is the kernel's when the text comes from it.
//!
//! ```
//! use conn_hygiene_census::{proc_net, Family, TcpState};
//!
//! # if cfg!(target_endian = "little") {
//! let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
//!    0: 0100007F:1F90 00000000:0000 0A 00000000:00000002 00:00000000 00000000  1000        0 4242 1 0 100 0 0 10 0
//!    1: 0100007F:9C40 0100007F:1F90 06 00000000:00000000 03:000016F2 00000000     0        0 0 3 0";
//! let mut states = Vec::new();
//! let summary = proc_net::parse_table(text, Family::Ipv4, |s| states.push(s.state)).unwrap();
//! assert_eq!(summary.sockets, 2);
//! assert_eq!(states, [TcpState::Listen, TcpState::TimeWait]);
//!
//! let listener = proc_net::parse_line(text.lines().nth(1).unwrap(), Family::Ipv4).unwrap().unwrap();
//! assert_eq!(listener.local, "127.0.0.1:8080".parse().unwrap());
//! assert_eq!((listener.rqueue, listener.uid, listener.inode), (2, 1000, 4242));
//! # }
//! ```

use std::fs::File;
use std::io::Read;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::path::Path;

use crate::{CensusError, Family, SockInfo, StateSet, TcpState};

/// What a table held. See [`parse_table`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TableSummary {
    /// Sockets handed to the visitor.
    pub sockets: u64,
    /// Lines passed over: unknown state number, or (in a walk) a state outside the filter.
    pub skipped: u64,
}

/// Parses one socket line. `Ok(None)` for a state number this crate does not report.
pub fn parse_line(line: &str, family: Family) -> Result<Option<SockInfo>, CensusError> {
    parse_line_bytes(line.as_bytes(), family)
        .map_err(|detail| CensusError::malformed(table_name(family), detail))
}

/// Parses a whole table, header included, calling `f` for each socket.
pub fn parse_table<F: FnMut(&SockInfo)>(
    text: &str,
    family: Family,
    mut f: F,
) -> Result<TableSummary, CensusError> {
    let mut summary = TableSummary::default();
    for (n, line) in text.lines().enumerate() {
        visit_line(line.as_bytes(), family, StateSet::ALL, &mut summary, &mut f).map_err(
            |detail| {
                CensusError::malformed(table_name(family), format!("line {}: {detail}", n + 1))
            },
        )?;
    }
    Ok(summary)
}

/// Streams a table file through `buf` (reused; memory does not grow with the table).
pub(crate) fn read_table<F: FnMut(&SockInfo)>(
    path: &Path,
    family: Family,
    states: StateSet,
    buf: &mut [u8],
    f: &mut F,
) -> Result<TableSummary, CensusError> {
    let mut file = File::open(path).map_err(|e| CensusError::path_io(path, e))?;
    let mut summary = TableSummary::default();
    let mut filled = 0;
    let mut line_no = 0u64;
    loop {
        let n = loop {
            match file.read(&mut buf[filled..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(CensusError::path_io(path, e)),
            }
        };
        let eof = n == 0;
        filled += n;
        // Lines complete so far; at end of file, the rest is a last line without newline.
        let complete = if eof {
            filled
        } else {
            match buf[..filled].iter().rposition(|&b| b == b'\n') {
                Some(i) => i + 1,
                None if filled == buf.len() => {
                    return Err(CensusError::malformed(
                        table_name(family),
                        format!("line longer than the {}-byte buffer", buf.len()),
                    )
                    .at_path(path))
                }
                None => continue,
            }
        };
        for line in buf[..complete].split(|&b| b == b'\n') {
            line_no += 1;
            visit_line(line, family, states, &mut summary, f).map_err(|detail| {
                CensusError::malformed(table_name(family), format!("line {line_no}: {detail}"))
                    .at_path(path)
            })?;
        }
        if eof {
            return Ok(summary);
        }
        // `split` counted the empty piece after the final newline as a line.
        line_no -= 1;
        buf.copy_within(complete..filled, 0);
        filled -= complete;
    }
}

fn visit_line<F: FnMut(&SockInfo)>(
    line: &[u8],
    family: Family,
    states: StateSet,
    summary: &mut TableSummary,
    f: &mut F,
) -> Result<(), String> {
    let mut fields = line.split(|&b| b == b' ').filter(|t| !t.is_empty());
    match fields.next() {
        None => return Ok(()),
        Some(b"sl") => return Ok(()),
        Some(_) => {}
    }
    match parse_line_bytes(line, family)? {
        Some(info) if states.contains(info.state) => {
            summary.sockets += 1;
            f(&info);
        }
        _ => summary.skipped += 1,
    }
    Ok(())
}

fn parse_line_bytes(line: &[u8], family: Family) -> Result<Option<SockInfo>, String> {
    let mut fields = line.split(|&b| b == b' ').filter(|t| !t.is_empty());
    let mut next = |name: &str| fields.next().ok_or_else(|| format!("missing field {name}"));
    let slot = next("sl")?;
    if slot.last() != Some(&b':') {
        return Err(format!(
            "bad slot field {:?}",
            String::from_utf8_lossy(slot)
        ));
    }
    let local = parse_endpoint(next("local_address")?, family)?;
    let remote = parse_endpoint(next("rem_address")?, family)?;
    let st = next("st")?;
    let state_number = parse_hex(st).filter(|v| *v <= 0xff).ok_or("bad st field")? as u8;
    let (tx, rx) = split_pair(next("tx_queue:rx_queue")?).ok_or("bad queue field")?;
    let _timer = next("tr:tm->when")?;
    let _retransmits = next("retrnsmt")?;
    let uid = parse_dec(next("uid")?).ok_or("bad uid field")?;
    let _timeout = next("timeout")?;
    let inode = parse_dec(next("inode")?).ok_or("bad inode field")?;
    let Some(state) = TcpState::from_kernel(state_number) else {
        return Ok(None);
    };
    Ok(Some(SockInfo {
        family,
        state,
        local,
        remote,
        inode,
        uid: u32::try_from(uid).map_err(|_| "uid out of range")?,
        rqueue: u32::try_from(rx).map_err(|_| "rx_queue out of range")?,
        wqueue: u32::try_from(tx).map_err(|_| "tx_queue out of range")?,
    }))
}

fn parse_endpoint(field: &[u8], family: Family) -> Result<SocketAddr, String> {
    let bad = || format!("bad address {:?}", String::from_utf8_lossy(field));
    let colon = field.iter().position(|&b| b == b':').ok_or_else(bad)?;
    let (addr, port) = (&field[..colon], &field[colon + 1..]);
    if port.len() != 4 {
        return Err(bad());
    }
    let port = parse_hex(port).ok_or_else(bad)? as u16;
    match (family, addr.len()) {
        (Family::Ipv4, 8) => {
            let word = parse_hex(addr).ok_or_else(bad)? as u32;
            Ok(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(word.to_ne_bytes()),
                port,
            )))
        }
        (Family::Ipv6, 32) => {
            let mut octets = [0u8; 16];
            for (i, chunk) in addr.chunks_exact(8).enumerate() {
                let word = parse_hex(chunk).ok_or_else(bad)? as u32;
                octets[i * 4..i * 4 + 4].copy_from_slice(&word.to_ne_bytes());
            }
            Ok(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(octets),
                port,
                0,
                0,
            )))
        }
        _ => Err(bad()),
    }
}

fn split_pair(field: &[u8]) -> Option<(u64, u64)> {
    let colon = field.iter().position(|&b| b == b':')?;
    Some((parse_hex(&field[..colon])?, parse_hex(&field[colon + 1..])?))
}

/// Up to 16 hex digits.
fn parse_hex(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &b| {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => return None,
        };
        Some(acc << 4 | u64::from(d))
    })
}

fn parse_dec(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

pub(crate) const fn table_name(family: Family) -> &'static str {
    match family {
        Family::Ipv4 => "/proc/net/tcp",
        Family::Ipv6 => "/proc/net/tcp6",
    }
}

pub(crate) const fn table_file(family: Family) -> &'static str {
    match family {
        Family::Ipv4 => "net/tcp",
        Family::Ipv6 => "net/tcp6",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(parse_hex(b"0A"), Some(10));
        assert_eq!(parse_hex(b"ffffffff"), Some(u64::from(u32::MAX)));
        assert_eq!(parse_hex(b""), None);
        assert_eq!(parse_hex(b"0x"), None);
        assert_eq!(parse_dec(b"18446744073709551616"), None);
        assert_eq!(parse_dec(b"123"), Some(123));
    }

    #[test]
    fn bad_lines_are_errors() {
        for bad in [
            "0: 0100007F:1F90",
            "0: 0100007F:1F90 00000000:0000 0A",
            "0: 0100007F1F90 00000000:0000 0A 0:0 0:0 0 0 0 1",
            "0: 0100007F:1F90 00000000:0000 ZZ 0:0 0:0 0 0 0 1",
            "0: 0100007F:1F90 00000000:0000 0A 00000000 0:0 0 0 0 1",
            "0: 0100007F:1F90 00000000:0000 0A 0:0 0:0 0 -1 0 1",
            "0: 0100007F:1F9 00000000:0000 0A 0:0 0:0 0 0 0 1",
            "0 0100007F:1F90 00000000:0000 0A 0:0 0:0 0 0 0 1",
        ] {
            let e = parse_line(bad, Family::Ipv4).unwrap_err();
            assert!(e.is_malformed(), "{bad}");
        }
        // An IPv6-width address in the IPv4 table.
        let v6 = "0: 00000000000000000000000001000000:1F90 00000000:0000 0A 0:0 0:0 0 0 0 1";
        assert!(parse_line(v6, Family::Ipv4).is_err());
        // Unknown state number: passed over, not an error.
        let odd = "0: 0100007F:1F90 00000000:0000 0D 0:0 0:0 0 0 0 1";
        assert_eq!(parse_line(odd, Family::Ipv4).unwrap(), None);
    }
}
