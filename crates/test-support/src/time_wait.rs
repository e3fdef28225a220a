//! Many `TIME_WAIT` sockets, made fast: for benchmarks run in a private network namespace.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::ops::RangeInclusive;

use socket2::{Domain, Socket, Type};

/// Opens and closes `n` loopback connections to one new listener, each closed client first,
/// so that `n` client sockets go to `TIME_WAIT`. The clients bind their source ports in turn
/// from `ports`, one run of the range per destination (127.0.0.1, 127.0.0.2, …), so that
/// connect never searches a full range. Returns the listener (on every address, its port
/// chosen by the kernel) and the destinations used, in order.
///
/// The last sockets may still be closing on return: wait for the count to settle.
///
/// # Panics
///
/// When a socket cannot be made, bound or connected, naming which.
pub fn make_time_wait(n: usize, ports: RangeInclusive<u16>) -> (TcpListener, Vec<SocketAddr>) {
    let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("bind the listener");
    let port = listener.local_addr().expect("local_addr").port();
    // Every source port of the range but the listener's.
    let sources: Vec<u16> = ports.filter(|p| *p != port).collect();
    assert!(!sources.is_empty(), "no source port to use");
    let mut destinations = Vec::new();
    for i in 0..n {
        let dest = SocketAddr::from((
            Ipv4Addr::new(127, 0, 0, 1 + (i / sources.len()) as u8),
            port,
        ));
        if destinations.last() != Some(&dest) {
            destinations.push(dest);
        }
        let source = SocketAddr::from((Ipv4Addr::LOCALHOST, sources[i % sources.len()]));
        let client = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        // The source port may hold TIME_WAIT sockets towards other destinations.
        client.set_reuse_address(true).expect("SO_REUSEADDR");
        client
            .bind(&source.into())
            .unwrap_or_else(|e| panic!("bind #{i} to {source}: {e}"));
        client
            .connect(&dest.into())
            .unwrap_or_else(|e| panic!("connect #{i} from {source} to {dest}: {e}"));
        let (server, _) = listener.accept().expect("accept");
        drop(client);
        drop(server);
    }
    (listener, destinations)
}
