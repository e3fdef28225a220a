//! Every parser on arbitrary input and on mutated real fixtures: no panic, bounded time.
//!
//! Each property runs a few hundred cases so the whole file takes a few seconds; the
//! `fuzz/` targets at the repository root explore the same parsers without bounds.

use std::time::{Duration, Instant};

use conn_hygiene_census::counters::{
    parse_counter_table, parse_file_nr, parse_limits, parse_sockstat,
};
use conn_hygiene_census::netlink::parse_datagram;
use conn_hygiene_census::proc_net::{parse_line, parse_table};
use conn_hygiene_census::process::parse_socket_link;
use conn_hygiene_census::sysctl::parse_port_range;
use conn_hygiene_census::{Family, TcpState};
use proptest::prelude::*;

/// One parse of inputs this small never takes this long.
const BOUND: Duration = Duration::from_millis(250);

macro_rules! fixture {
    ($path:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/",
            $path
        ))
        .as_slice()
    };
}

const FIXTURES: &[(&str, &[u8])] = &[
    ("sock_diag_inet", fixture!("sock_diag_inet.bin")),
    ("sock_diag_inet6", fixture!("sock_diag_inet6.bin")),
    ("tcp", fixture!("proc/net/tcp")),
    ("tcp6", fixture!("proc/net/tcp6")),
    ("sockstat", fixture!("proc/net/sockstat")),
    ("sockstat6", fixture!("proc/net/sockstat6")),
    ("snmp", fixture!("proc/net/snmp")),
    ("netstat", fixture!("proc/net/netstat")),
    ("file-nr", fixture!("proc/sys/fs/file-nr")),
    ("limits", fixture!("proc/4242/limits")),
    (
        "port_range",
        fixture!("proc/sys/net/ipv4/ip_local_port_range"),
    ),
];

fn fixture(name: &str) -> &'static [u8] {
    FIXTURES.iter().find(|(n, _)| *n == name).unwrap().1
}

/// Runs every parser that takes `name`'s kind of input over `bytes`.
fn parse_all(name: &str, bytes: &[u8]) {
    let started = Instant::now();
    let text = String::from_utf8_lossy(bytes);
    match name {
        "sock_diag_inet" | "sock_diag_inet6" => {
            let mut n = 0u64;
            if let Ok(summary) = parse_datagram(bytes, |_| n += 1) {
                assert_eq!(summary.sockets, n);
            }
        }
        "tcp" | "tcp6" => {
            for family in Family::BOTH {
                let mut n = 0u64;
                if let Ok(summary) = parse_table(&text, family, |_| n += 1) {
                    assert_eq!(summary.sockets, n);
                }
                for line in text.lines().take(64) {
                    let _ = parse_line(line, family);
                }
            }
        }
        "sockstat" | "sockstat6" => {
            let _ = parse_sockstat(&text, None);
            let _ = parse_sockstat(&text, Some(&text));
        }
        "snmp" | "netstat" => {
            if let Ok(table) = parse_counter_table(&text) {
                assert_eq!(table.iter().count(), table.len());
            }
        }
        "file-nr" => {
            let _ = parse_file_nr(&text);
        }
        "limits" => {
            let _ = parse_limits(&text);
        }
        "port_range" => {
            if let Ok((lo, hi)) = parse_port_range(&text) {
                let _ = (lo, hi);
            }
        }
        _ => unreachable!("{name}"),
    }
    let _ = parse_socket_link(bytes);
    let _ = text.trim().parse::<TcpState>();
    assert!(started.elapsed() < BOUND, "{name}: {:?}", started.elapsed());
}

/// A fixture with some bytes replaced, some cut, some inserted.
fn mutated() -> impl Strategy<Value = (&'static str, Vec<u8>)> {
    (
        0..FIXTURES.len(),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 0..12),
        any::<prop::sample::Index>(),
        any::<bool>(),
    )
        .prop_map(|(i, edits, cut, do_cut)| {
            let (name, bytes) = FIXTURES[i];
            let mut b = bytes.to_vec();
            for (at, byte, op) in edits {
                if b.is_empty() {
                    b.push(byte);
                    continue;
                }
                let at = at.index(b.len());
                match op {
                    0 => b[at] = byte,
                    1 => b.insert(at, byte),
                    _ => {
                        b.remove(at);
                    }
                }
            }
            if do_cut && !b.is_empty() {
                b.truncate(cut.index(b.len()));
            }
            (name, b)
        })
}

/// Netlink messages whose headers claim odd lengths, types and flags.
fn netlink_like() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        (
            any::<u32>(),
            any::<u16>(),
            any::<u16>(),
            prop::collection::vec(any::<u8>(), 0..96),
        ),
        0..6,
    )
    .prop_map(|msgs| {
        let mut out = Vec::new();
        for (len, kind, flags, payload) in msgs {
            // Often a plausible length, sometimes anything.
            let len = if len % 3 == 0 {
                len
            } else {
                16 + payload.len() as u32
            };
            out.extend_from_slice(&len.to_ne_bytes());
            // Mostly SOCK_DIAG_BY_FAMILY, NLMSG_ERROR or NLMSG_DONE, sometimes anything.
            let kind = if kind % 2 == 0 {
                [20u16, 2, 3][usize::from(kind / 2 % 3)]
            } else {
                kind
            };
            out.extend_from_slice(&kind.to_ne_bytes());
            out.extend_from_slice(&flags.to_ne_bytes());
            out.extend_from_slice(&[0; 8]);
            out.extend_from_slice(&payload);
            while out.len() % 4 != 0 {
                out.push(0);
            }
        }
        out
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        for (name, _) in FIXTURES {
            parse_all(name, &bytes);
        }
    }

    #[test]
    fn arbitrary_text(text in "[ -~\t\n:\\[\\]]{0,512}") {
        for (name, _) in FIXTURES {
            parse_all(name, text.as_bytes());
        }
    }

    #[test]
    fn mutated_fixtures((name, bytes) in mutated()) {
        parse_all(name, &bytes);
    }

    #[test]
    fn netlink_headers(bytes in netlink_like()) {
        parse_all("sock_diag_inet", &bytes);
    }

    #[test]
    fn socket_links(digits in "[0-9]{0,24}", junk in "[ -~]{0,4}") {
        let link = format!("socket:[{digits}]{junk}");
        let parsed = parse_socket_link(link.as_bytes());
        if junk.is_empty() && !digits.is_empty() {
            prop_assert_eq!(parsed, digits.parse::<u64>().ok());
        } else {
            prop_assert_eq!(parsed, None);
        }
    }
}

#[test]
fn fixtures_parse_as_recorded() {
    parse_all("tcp", fixture("tcp"));
    let mut n = 0;
    parse_datagram(fixture("sock_diag_inet"), |_| n += 1).unwrap();
    assert!(n > 0);
    assert!(parse_counter_table(&String::from_utf8_lossy(fixture("netstat"))).is_ok());
    assert!(parse_limits(&String::from_utf8_lossy(fixture("limits"))).is_ok());
}
