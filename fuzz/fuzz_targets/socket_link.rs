//! `/proc/PID/fd` link targets, `socket:[INODE]`.
#![no_main]

use conn_hygiene_census::process::parse_socket_link;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(inode) = parse_socket_link(data) {
        let canonical = format!("socket:[{inode}]");
        assert_eq!(parse_socket_link(canonical.as_bytes()), Some(inode));
    }
});
