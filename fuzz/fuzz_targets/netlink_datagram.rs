//! `netlink::parse_datagram` on any bytes: a sock_diag dump answer as the kernel might send it.
#![no_main]

use conn_hygiene_census::netlink::parse_datagram;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut visited = 0u64;
    if let Ok(summary) = parse_datagram(data, |_| visited += 1) {
        assert_eq!(summary.sockets, visited);
    }
});
