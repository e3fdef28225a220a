//! The connection core shared by the server and the client: what a connection's bytes say
//! about its messages ([`wire`]), the limits and deadlines that follow from that and the time
//! ([`lifecycle`]), and one timer per connection ([`timer`]).
//!
//! Connection state is decided here from the bytes themselves, not from when the HTTP stack
//! happens to poll a service: a request whose head was read is in flight from that moment,
//! whether or not a handler has started, so a peer's FIN, a retirement or a shutdown never
//! drops it.

// The client takes the write watch so far; the rest serves the server.
#[cfg(feature = "server")]
pub(crate) mod h1;
#[cfg(feature = "server")]
pub(crate) mod h2;
#[cfg(feature = "server")]
pub(crate) mod lifecycle;
#[cfg(feature = "server")]
pub(crate) mod timer;
#[cfg(feature = "server")]
pub(crate) mod wire;
pub(crate) mod write_watch;
