//! `/proc/net/snmp` and `/proc/net/netstat` header/value tables.
#![no_main]

use conn_hygiene_census::counters::{parse_counter_table, TcpCounters};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(table) = parse_counter_table(text) {
        assert_eq!(table.iter().count(), table.len());
        let _ = TcpCounters::from_tables(&table, &table);
    }
});
