//! The connection core shared by the server and the client: what a connection's bytes say
//! about its messages ([`wire`]), the limits and deadlines that follow from that and the time
//! ([`lifecycle`]), and one timer per connection ([`timer`]).
//!
//! Connection state is decided here from the bytes themselves, not from when the HTTP stack
//! happens to poll a service: a request whose head was read is in flight from that moment,
//! whether or not a handler has started, so a peer's FIN, a retirement or a shutdown never
//! drops it.

// With one side off, the other side's parts go unused.
#![cfg_attr(not(all(feature = "server", feature = "client")), allow(dead_code))]

pub(crate) mod h1;
pub(crate) mod h2;
pub(crate) mod lifecycle;
pub(crate) mod timer;
pub(crate) mod wire;
pub(crate) mod write_watch;

#[cfg(test)]
pub(crate) mod client_tests;
