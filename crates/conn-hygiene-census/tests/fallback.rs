//! When netlink is refused, the walk reads `/proc` and says why.
//!
//! A seccomp filter on one thread makes `socket(AF_NETLINK, …)` fail with `EPERM`, as it does
//! in sandboxes that forbid netlink.
#![cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]

use conn_hygiene_census::{
    count_states, listeners, Backend, Source, TcpState, WalkOptions, Walker,
};

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;

/// Installs, on the calling thread only, a filter failing netlink `socket` calls with EPERM.
#[allow(unsafe_code)]
fn forbid_netlink_on_this_thread() {
    const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    let stmt = |code, k| libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    };
    let jump = |k, jt, jf| libc::sock_filter {
        code: JEQ_K,
        jt,
        jf,
        k,
    };
    // struct seccomp_data: nr at 0, arch at 4, args[0] low word at 16 (little endian).
    let mut program = [
        stmt(LD_W_ABS, 4),
        jump(AUDIT_ARCH, 0, 5),
        stmt(LD_W_ABS, 0),
        jump(libc::SYS_socket as u32, 0, 3),
        stmt(LD_W_ABS, 16),
        jump(libc::AF_NETLINK as u32, 0, 1),
        stmt(RET_K, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32),
        stmt(RET_K, libc::SECCOMP_RET_ALLOW),
    ];
    let prog = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_mut_ptr(),
    };
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    assert_eq!(
        rc,
        0,
        "PR_SET_NO_NEW_PRIVS: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: `prog` points to `program`, both alive for the call; the kernel copies them.
    let rc = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &prog as *const libc::sock_fprog,
        )
    };
    assert_eq!(rc, 0, "PR_SET_SECCOMP: {}", std::io::Error::last_os_error());
}

#[test]
fn refused_netlink_falls_back_to_proc() {
    std::thread::spawn(|| {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        forbid_netlink_on_this_thread();

        let forced = count_states(&WalkOptions::new().backend(Backend::Netlink)).unwrap_err();
        assert!(forced.is_permission_denied(), "{forced}");
        assert_eq!(forced.raw_os_error(), Some(libc::EPERM));
        assert!(
            forced.to_string().starts_with("netlink sock_diag socket: "),
            "{forced}"
        );

        let mut walker = Walker::new(WalkOptions::new().states(TcpState::Listen));
        let mut found = false;
        let stats = walker.walk(|s| found |= s.local == addr).unwrap();
        assert!(found, "the /proc tables show the listener");
        assert_eq!(stats.ipv4, Some(Source::Proc));
        assert_eq!(stats.ipv6, Some(Source::Proc));
        assert!(!stats.used_netlink_only());
        let reason = stats.fallback.expect("fallback reason");
        assert!(reason.error().is_permission_denied());
        assert!(
            reason.to_string().contains("read /proc instead"),
            "{reason}"
        );

        let l = listeners(&WalkOptions::new())
            .unwrap()
            .into_iter()
            .find(|l| l.local == addr)
            .unwrap();
        assert_eq!(l.queue_max, None, "/proc does not show the maximum");
        drop(listener);
    })
    .join()
    .unwrap();
}

#[test]
fn netlink_is_used_when_allowed() {
    let (counts, stats) = Walker::new(WalkOptions::new()).count_states().unwrap();
    assert!(stats.used_netlink_only(), "{stats:?}");
    assert!(stats.fallback.is_none());
    // TIME_WAIT comes from the kernel's count; every other socket was walked.
    let timewait = stats
        .timewait_counted
        .expect("TIME_WAIT from the kernel's count");
    assert_eq!(counts[TcpState::TimeWait], timewait);
    assert_eq!(counts.total(), stats.sockets + timewait);
}
