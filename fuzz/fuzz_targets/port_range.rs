//! `net.ipv4.ip_local_port_range`.
#![no_main]

use conn_hygiene_census::sysctl::parse_port_range;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_port_range(text);
    }
});
