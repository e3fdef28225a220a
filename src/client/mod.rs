//! A pooled HTTP client over hyper-util with explicit close ordering, connection tracking and
//! leases that know the line that took them.
//!
//! - [`HygienicClient`] wraps hyper-util's legacy `Client` with [`HygienicConnector`], which
//!   applies the [`SocketPolicy`](crate::policy::SocketPolicy) to every outbound socket (linger
//!   included), caps open connections per upstream with a wait queue, spreads connections over
//!   source addresses, and tracks each connection from connect to close.
//! - `https://` upstreams (feature `rustls`): TLS runs between the tracked stream and the
//!   socket ([`ClientTls`] chooses the roots and ALPN; HTTP/2 when the server picks `h2`), so
//!   the policy, who closed first and census attribution are the same as over plain HTTP. Or
//!   any connector of your own ([`ClientBuilder::connector`]) whose stream is a
//!   [`Transport`](crate::Transport).
//! - [`CloseOrder`] decides who closes idle connections first, and so who holds TIME_WAIT.
//! - Every request is a lease from the call until its response body is read or dropped; an
//!   unread body holds its connection and is reported as a leak with the call's file:line.
//!
//! ```no_run
//! use std::time::Duration;
//! use conn_hygiene::client::{CloseOrder, HygienicClient, UpstreamConfig};
//! use http_body_util::{BodyExt, Empty};
//! use bytes::Bytes;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = HygienicClient::builder()
//!     .default_upstream(UpstreamConfig::new().close_order(CloseOrder::ClientFirst))
//!     .upstream("127.0.0.1:8080", UpstreamConfig::new().name("backend").max_connections(Some(64)))
//!     .build::<Empty<Bytes>>()?;
//! let res = client.get("http://127.0.0.1:8080/".parse()?).await?;
//! let body = res.into_body().collect().await?.to_bytes();
//! # let _ = body; Ok(()) }
//! ```
//!
//! # How requests address hyper-util's pool
//!
//! hyper-util keys its pool by each request's scheme and authority, and hashes the authority
//! byte by byte (SipHash, case-folded) three times per keep-alive request, besides comparing
//! it and formatting a `Host` header from it. An `http` request to one of the client's
//! upstreams goes to hyper-util with the upstream's four-byte pool key (`00:0` to `ff:0`) as
//! its authority and with the `Host` header hyper-util would have written (kept per upstream,
//! not formatted per request); the connector maps the key back to the upstream and connects to
//! its real address. On the wire nothing changes: an HTTP/1 request carries its path and its
//! `Host` header, never the authority its pool was keyed by. A `Host` header the caller set is
//! kept. HTTP/2 upstreams ([`ClientBuilder::http2_only`]), `CONNECT` requests, other schemes
//! and the shared `other` upstream keep their authority. hyper-util's own trace logs name
//! the pool by its key. Port 0 marks the keys: a request to port 0 fails (a connect error,
//! as for any port nothing listens on, or an invalid URI where the authority is kept).
//!
//! # What it costs
//!
//! `cargo bench --bench client_overhead` loads bare hyper-util's `Client` (set up to pool the
//! same way), this client, and this client keyed by authority
//! ([`ClientBuilder::upstream_pool_keys`]`(false)`) in one run and prints the ratios;
//! `BENCHMARKS.md` has the figures. Per request the client adds the lease (a short lock on the
//! upstream's tracker when it is taken, when the response head arrives and when it ends, and
//! three clock reads), the response head's timer, the copy of a replayable request kept for a
//! retry on a stale connection, the connection's accounting (state, reuse, idle deadline) and
//! the stream that follows each request and response to their ends (the HTTP/1 framing scan),
//! enforces the idle, age and write deadlines and records who closed first. On a minimal
//! keep-alive GET over loopback, where the server answers in a few microseconds, that is about
//! 15% more CPU than bare hyper-util when keyed by authority. Keyed per upstream (the default)
//! it saves hyper-util work that grows with the authority's length (hyper-util hashes and
//! compares it byte by byte, and formats `Host` from it when it has a port): for a 15-byte
//! authority such as `127.0.0.1:40123` the saving takes back about half, and the client costs
//! about 7% more CPU per request than bare hyper-util; for a short one such as `api` on port 80
//! there is little to save. A service doing any work per request
//! sees a far smaller share either way.

mod body;
#[allow(clippy::module_inception)]
mod client;
mod config;
mod conn;
mod connector;
mod error;
mod future;
mod io;
#[cfg(test)]
mod io_tests;
mod observer;
mod replay;
#[cfg(feature = "reqwest")]
mod reqwest;
mod routing;
mod stream;
#[cfg(feature = "rustls")]
mod tls;
mod upstream;
mod upstream_metrics;

pub use crate::close::Closer;

#[cfg(feature = "rustls")]
pub use self::tls::{ClientTls, ClientTlsBuilder, TlsConfigError};

#[cfg(feature = "reqwest")]
pub use self::reqwest::{
    ReqwestConnect, ReqwestConnectFuture, ReqwestConnectLayer, ReqwestHygiene, ReqwestUpstream,
    SendTracked, TrackedResponse,
};

pub use self::{
    body::LeasedBody,
    client::{is_replayable, ClientBuilder, ClientView, HygienicClient},
    config::{
        ClientConfigError, CloseOrder, ParseCloseOrderError, Timeouts, UpstreamConfig,
        DEFAULT_RESPONSE_HEAD_TIMEOUT,
    },
    conn::{CloseReason, ConnState, ConnectionHandle, ConnectionSnapshot},
    connector::HygienicConnector,
    error::{BodyError, Error},
    future::ResponseFuture,
    io::UpstreamStream,
    replay::ReplayBody,
    stream::UpstreamIo,
    upstream::{AcquireTimeout, ConnectErrorKind, UpstreamSnapshot, UpstreamTotals},
};
