//! `/proc/PID/limits`.
#![no_main]

use conn_hygiene_census::counters::parse_limits;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(limits) = parse_limits(text) {
            let _ = limits.open_files();
        }
    }
});
