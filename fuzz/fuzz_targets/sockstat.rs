//! `/proc/net/sockstat` with and without `sockstat6` (the input split at its first NUL).
#![no_main]

use conn_hygiene_census::counters::parse_sockstat;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_sockstat(text, None);
    if let Some((v4, v6)) = text.split_once('\0') {
        let _ = parse_sockstat(v4, Some(v6));
    }
});
