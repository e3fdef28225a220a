//! One census sample's memory, for `benches/census_memory.sh`: the peak resident set
//! (`VmHWM`) before and after a full sample of whatever the namespace holds. The script runs
//! it in namespaces holding 10k to 200k `TIME_WAIT` sockets; memory is flat when the growth
//! does not follow the number of sockets.
#![cfg(feature = "census")]

use conn_hygiene::census::Sampler;
use conn_hygiene::census::TcpState;

/// `VmHWM` of this process, in KiB.
fn vm_hwm_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[test]
#[ignore = "run by benches/census_memory.sh"]
fn one_census_sample() {
    let before = vm_hwm_kib();
    let snap = Sampler::builder().sample_once();
    let after = vm_hwm_kib();
    println!(
        "census_memory time_wait={} sockets={} walk_ms={:.1} vmhwm_before_kib={} vmhwm_after_kib={}",
        snap.host[TcpState::TimeWait],
        snap.cost.sockets_walked,
        snap.cost.walk.unwrap_or_default().as_secs_f64() * 1e3,
        before.unwrap_or(0),
        after.unwrap_or(0),
    );
    assert!(snap.degraded.is_none(), "{:?}", snap.degraded);
}
