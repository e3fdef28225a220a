//! `/proc/sys/fs/file-nr`.
#![no_main]

use conn_hygiene_census::counters::parse_file_nr;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_file_nr(text);
    }
});
