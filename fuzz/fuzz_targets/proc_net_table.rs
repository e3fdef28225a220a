//! `/proc/net/tcp` and `tcp6`: whole tables and single lines, both families.
#![no_main]

use conn_hygiene_census::proc_net::{parse_line, parse_table};
use conn_hygiene_census::Family;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for family in Family::BOTH {
        let mut visited = 0u64;
        if let Ok(summary) = parse_table(text, family, |_| visited += 1) {
            assert_eq!(summary.sockets, visited);
        }
        for line in text.lines() {
            let _ = parse_line(line, family);
        }
    }
});
