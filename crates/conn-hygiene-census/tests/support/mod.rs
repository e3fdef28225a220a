//! Helpers for tests that run in a network namespace of their own
//! (`conn_hygiene_test_support::run_in_netns`), where the kernel tables hold only the test's
//! sockets: [`Mix`] crafts sockets in known states, [`ss_counts`] counts them as `ss` sees them.

#![allow(dead_code)]

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use conn_hygiene_census::{StateCounts, TcpState};
use conn_hygiene_test_support::wait_until;

/// Counts the states column of `ss -Hant`. Panics if `ss` cannot run.
pub(crate) fn ss_counts() -> StateCounts {
    let out = Command::new("ss")
        .arg("-Hant")
        .output()
        .unwrap_or_else(|e| panic!("`ss` (iproute2) is needed to cross-check counts: {e}"));
    assert!(out.status.success(), "ss -Hant failed: {out:?}");
    let text = String::from_utf8(out.stdout).expect("ss output is UTF-8");
    text.lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(|name| {
            name.parse::<TcpState>()
                .unwrap_or_else(|e| panic!("ss printed a state this crate does not know: {e}"))
        })
        .collect()
}

/// How many sockets of each kind [`Mix::build`] creates.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MixSpec {
    /// Listeners, alternately on 127.0.0.1 and ::1.
    pub(crate) listeners: usize,
    /// Connections kept open: two `ESTABLISHED` sockets each.
    pub(crate) established: usize,
    /// Connections closed client first: one `TIME_WAIT` socket each.
    pub(crate) time_wait: usize,
    /// Connections whose client shut down its side: one `CLOSE_WAIT` and one `FIN_WAIT2`.
    pub(crate) close_wait: usize,
    /// Backlog of the listener that never accepts.
    pub(crate) backlog: i32,
    /// Clients connected to it and never accepted.
    pub(crate) queued: usize,
}

/// A crafted set of loopback sockets with known states. Dropping it closes them.
#[derive(Debug)]
pub(crate) struct Mix {
    pub(crate) spec: MixSpec,
    pub(crate) listeners: Vec<TcpListener>,
    pub(crate) established: Vec<(TcpStream, TcpStream)>,
    pub(crate) close_wait: Vec<(TcpStream, TcpStream)>,
    pub(crate) backlog_listener: TcpListener,
    pub(crate) queued: Vec<TcpStream>,
}

impl Mix {
    /// Builds the sockets and waits until the kernel shows them in their final states.
    pub(crate) fn build(spec: MixSpec) -> Mix {
        assert!(spec.listeners > 0);
        let listeners: Vec<TcpListener> = (0..spec.listeners)
            .map(|i| {
                let addr: SocketAddr = if i % 2 == 0 {
                    (Ipv4Addr::LOCALHOST, 0).into()
                } else {
                    (Ipv6Addr::LOCALHOST, 0).into()
                };
                TcpListener::bind(addr).expect("bind listener")
            })
            .collect();
        let mut pair = |i: usize| {
            let l = &listeners[i % listeners.len()];
            let client = TcpStream::connect(l.local_addr().unwrap()).expect("connect");
            let (server, _) = l.accept().expect("accept");
            (client, server)
        };
        let established = (0..spec.established).map(&mut pair).collect();
        for i in 0..spec.time_wait {
            let (client, server) = pair(i);
            drop(client);
            drop(server);
        }
        let close_wait: Vec<_> = (0..spec.close_wait)
            .map(|i| {
                let (client, server) = pair(i);
                client.shutdown(std::net::Shutdown::Write).unwrap();
                (client, server)
            })
            .collect();

        let backlog_socket = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )
        .unwrap();
        backlog_socket
            .bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())
            .unwrap();
        backlog_socket.listen(spec.backlog).unwrap();
        let backlog_listener: TcpListener = backlog_socket.into();
        let queued = (0..spec.queued)
            .map(|_| TcpStream::connect(backlog_listener.local_addr().unwrap()).unwrap())
            .collect();

        let mix = Mix {
            spec,
            listeners,
            established,
            close_wait,
            backlog_listener,
            queued,
        };
        let expected = mix.expected();
        wait_until(
            "the kernel to show the crafted states",
            Duration::from_secs(10),
            || {
                conn_hygiene_census::count_states(&conn_hygiene_census::WalkOptions::new())
                    .map(|c| c == expected)
                    .unwrap_or(false)
            },
        );
        mix
    }

    /// Every socket of the namespace, by state, once settled.
    pub(crate) fn expected(&self) -> StateCounts {
        Mix::expected_for(self.spec)
    }

    /// The sockets this process holds a descriptor for, by state.
    pub(crate) fn expected_mine(&self) -> StateCounts {
        Mix::expected_mine_for(self.spec)
    }

    /// [`Mix::expected`] for a spec.
    pub(crate) fn expected_for(s: MixSpec) -> StateCounts {
        let mut c = StateCounts::new();
        c.set(TcpState::Listen, s.listeners as u64 + 1);
        c.set(TcpState::Established, 2 * (s.established + s.queued) as u64);
        c.set(TcpState::TimeWait, s.time_wait as u64);
        c.set(TcpState::CloseWait, s.close_wait as u64);
        c.set(TcpState::FinWait2, s.close_wait as u64);
        c
    }

    /// [`Mix::expected_mine`] for a spec: all but `TIME_WAIT` and the queued connections'
    /// server ends, which no process holds.
    pub(crate) fn expected_mine_for(s: MixSpec) -> StateCounts {
        let mut c = Mix::expected_for(s);
        c.set(TcpState::TimeWait, 0);
        c.set(TcpState::Established, (2 * s.established + s.queued) as u64);
        c
    }
}
