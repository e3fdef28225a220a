//! State names as `ss` and the kernel spell them.
#![no_main]

use conn_hygiene_census::TcpState;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(state) = text.parse::<TcpState>() {
            assert_eq!(state.as_str().parse::<TcpState>(), Ok(state));
        }
    }
    if let Some(b) = data.first() {
        let _ = TcpState::from_kernel(*b);
    }
});
