//! The crate's own attribution sources: the server's listeners and the client's upstreams.

#[cfg(feature = "client")]
use std::net::SocketAddr;

use super::attribution::{AttributionSource, Claim, TrackedConnection};
#[cfg(feature = "client")]
use crate::client::ClientView;
#[cfg(feature = "server")]
use crate::server::ConnectionRegistry;

/// A listener: its address, and the connections it tracks.
#[cfg(feature = "server")]
impl AttributionSource for ConnectionRegistry {
    fn claims(&self) -> Vec<Claim> {
        vec![Claim::listener(self.name(), self.local_addr())]
    }

    fn connections(&self, _name: &str) -> Vec<TrackedConnection> {
        self.snapshot()
            .connections
            .iter()
            .map(|c| TrackedConnection::new(c.id, c.local_addr, c.peer_addr))
            .collect()
    }
}

/// Each upstream of a client: the addresses it connected to (and its authority, when that is
/// an address), and its connections with the lease sites of the requests they carry.
#[cfg(feature = "client")]
impl AttributionSource for ClientView {
    fn claims(&self) -> Vec<Claim> {
        self.snapshot()
            .into_iter()
            .map(|u| {
                let literal = u.authority.parse::<SocketAddr>().ok();
                let destinations = u.remote_addrs.iter().copied().chain(literal);
                Claim::upstream(u.name, u.authority, destinations)
            })
            .collect()
    }

    fn connections(&self, name: &str) -> Vec<TrackedConnection> {
        self.snapshot()
            .into_iter()
            .filter(|u| u.name == name)
            .flat_map(|u| u.connections)
            .map(|c| {
                TrackedConnection::new(c.id, c.local_addr, c.peer_addr).leased_at(c.lease_site)
            })
            .collect()
    }
}
