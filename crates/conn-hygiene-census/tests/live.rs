//! The readers on the live host's /proc (values vary; their relations do not).
#![cfg(target_os = "linux")]

use conn_hygiene_census::{fd_usage_self, ProcRoot};

#[test]
fn live_readers() {
    let root = ProcRoot::default();
    let me = std::process::id();

    // Descriptors: ten more files are ten more descriptors, against getrlimit's limit, which
    // /proc/PID/limits shows too. The only test of this binary, so no other thread opens any.
    let before = fd_usage_self().unwrap();
    let files: Vec<_> = (0..10)
        .map(|_| std::fs::File::open("/proc/self/stat").unwrap())
        .collect();
    let after = fd_usage_self().unwrap();
    assert_eq!(after.open, before.open + 10);
    let limits = root.limits(me).unwrap();
    let nofile = limits.open_files().unwrap();
    assert_eq!(
        (after.soft_limit, after.hard_limit),
        (nofile.soft, nofile.hard)
    );
    let by_pid = root.fd_usage(me).unwrap();
    assert_eq!(by_pid.soft_limit, after.soft_limit);
    // Listing /proc/PID/fd holds one descriptor of its own.
    assert_eq!(by_pid.open, after.open + 1);
    drop(files);

    let file_nr = root.file_nr().unwrap();
    assert!(file_nr.allocated > 0 && file_nr.allocated <= file_nr.max);

    let sockstat = root.sockstat().unwrap();
    assert!(sockstat.tcp_alloc >= sockstat.tcp_orphan);
    let tcp = root.tcp_counters().unwrap();
    assert!(tcp.curr_estab.is_some() && tcp.listen_overflows.is_some());

    let sysctls = root.sysctls().unwrap();
    let (lo, hi) = sysctls.ip_local_port_range.unwrap();
    assert!(lo <= hi);
    assert!(sysctls.tcp_congestion_control.is_some());

    // Connection tracking is optional: absent is None, present is consistent.
    if let Some(ct) = root.conntrack().unwrap() {
        assert!(ct.count <= ct.max);
    }

    let err = root.limits(u32::MAX).unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(err.to_string().contains("4294967295/limits"), "{err}");
}
