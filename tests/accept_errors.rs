//! The listener survives running out of file descriptors: accept errors are counted, it backs
//! off instead of spinning, and it serves again as soon as a descriptor frees up.
//!
//! This lowers the process's RLIMIT_NOFILE, so it lives alone in its own test binary.

mod support;

use std::time::Duration;

use conn_hygiene::server::HygienicListener;
use support::*;
use tokio::{io::AsyncWriteExt, net::TcpStream};

/// The lowest free descriptor number: the kernel hands out the lowest free number, and fails
/// with EMFILE when that number reaches the soft RLIMIT_NOFILE.
fn lowest_free_fd() -> u64 {
    use std::os::fd::AsRawFd;
    let probe = std::fs::File::open("/dev/null").unwrap();
    probe.as_raw_fd() as u64
}

#[allow(unsafe_code)]
fn set_soft_nofile(limit: u64) -> u64 {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `rl` is a valid rlimit for getrlimit/setrlimit to read and write.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl), 0);
        let old = rl.rlim_cur;
        rl.rlim_cur = limit;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &rl), 0);
        old
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emfile_backs_off_and_recovers_when_fds_free_up() {
    let listener = HygienicListener::builder()
        .name("fd-starved")
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = listener.local_addr();
    // Both clients complete their handshake in the kernel's accept queue before serving starts.
    let mut first = TcpStream::connect(addr).await.unwrap();
    let mut second = TcpStream::connect(addr).await.unwrap();
    // Room for exactly one accepted socket.
    let old = set_soft_nofile(lowest_free_fd() + 1);
    let server = start_with(Mode::Axum, listener);
    let registry = server.registry.clone();
    eventually("EMFILE counted", Duration::from_secs(5), || {
        registry.totals().accept_errors >= 1
    })
    .await;
    assert_eq!(registry.live(), 1);
    assert_eq!(get(&mut first, "/").await.unwrap().status, 200);
    second
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    // Still starved: the second connection waits in the accept queue.
    let waiting =
        tokio::time::timeout(Duration::from_millis(300), read_response(&mut second)).await;
    assert!(
        waiting.is_err(),
        "second connection must wait for a descriptor"
    );
    let errors = registry.totals().accept_errors;
    assert!(errors <= 20, "backoff, not a spin: {errors} accept errors");

    // Closing the first connection frees a descriptor: the listener serves again.
    drop(first);
    let res = tokio::time::timeout(Duration::from_secs(5), read_response(&mut second))
        .await
        .expect("served once a descriptor frees up")
        .unwrap();
    assert_eq!(res.status, 200);
    set_soft_nofile(old);
    assert_eq!(registry.totals().opened, 2);
    drop(second);
    server.stop().await;
}
