//! Keeps a service's TCP connections healthy and tells the truth about them.
//!
//! - [`policy`]: one [`SocketPolicy`](policy::SocketPolicy) (keepalive, user timeout, linger,
//!   nodelay, buffers, backlog), validated when built and applied the same way to every socket,
//!   with what the kernel refused reported and counted.
//! - [`server`] (feature `server`): a [`HygienicListener`](server::HygienicListener) and a tower
//!   layer that track every connection from accept to close, enforce idle, header, age and
//!   request limits, close half-closed connections, drain on shutdown, and count who closed
//!   first. Works with `axum::serve`, the crate's own hyper-util loop, and tonic.
//! - [`client`] (feature `client`): a pooled HTTP client over hyper-util with explicit close
//!   ordering, per-upstream pool limits, and leases that record the line that took them.
//! - [`lease`] (feature `lease`): lease tracking and leak reports for any pool; [`testing`] fails
//!   a test that leaks.
//! - `pools` (features `deadpool`, `bb8`, `sqlx`, `redis`): other libraries' pools with every
//!   checkout a lease at its line, the connection's socket recorded where the pool shows it,
//!   and the pool's own statistics exported.
//! - `census` (feature `census`, Linux): the host's TCP table through netlink, attributed to your
//!   listeners, upstreams and lease sites by a background sampler, with findings.
//! - `exporter` (feature `exporter`): a Prometheus page for all of it.
//! - `page` (feature `page`): a live connections page (HTML and JSON) for people during an
//!   incident: listeners, upstreams, pools, old leases with their lines, CLOSE_WAIT with its
//!   holders, findings and charts.
//! - [`metrics`]: every metric name, emitted through the `metrics` facade.
//!
//! # Example
//!
//! A service behind the hygienic listener, called through the pooled client; both ends then
//! report what happened to the connection.
//!
//! ```
//! # #[cfg(all(feature = "axum", feature = "client"))]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use axum::{routing::get, Router};
//! use bytes::Bytes;
//! use conn_hygiene::{
//!     client::{Closer, HygienicClient},
//!     server::{HygienicListener, MakeTrackConnection},
//! };
//! use http_body_util::{BodyExt, Empty};
//!
//! let app = Router::new().route("/", get(|| async { "hello" }));
//! let listener = HygienicListener::bind("127.0.0.1:0").await?;
//! let (addr, registry) = (listener.local_addr(), listener.registry().clone());
//! tokio::spawn(async move { axum::serve(listener, MakeTrackConnection::new(app)).await });
//!
//! let client = HygienicClient::builder().build::<Empty<Bytes>>()?;
//! for _ in 0..3 {
//!     let res = client.get(format!("http://{addr}/").parse()?).await?;
//!     assert_eq!(res.into_body().collect().await?.to_bytes(), "hello");
//! }
//! // One pooled connection carried the three requests; the server advertised its idle timeout.
//! let upstream = &client.view().snapshot()[0];
//! assert_eq!(upstream.totals.connects, 1);
//! assert_eq!(upstream.learned_keep_alive, Some(std::time::Duration::from_secs(75)));
//! assert_eq!(registry.snapshot().connections[0].requests, 3);
//!
//! // Dropping the client closes its idle connection: the client closed first, and the server
//! // saw it that way.
//! drop(client);
//! tokio::time::timeout(std::time::Duration::from_secs(10), async {
//!     while registry.totals().closed == 0 {
//!         tokio::task::yield_now().await;
//!     }
//! })
//! .await?;
//! assert_eq!(registry.totals().closed_by(Closer::Peer), 1);
//! # Ok(()) }
//! # #[cfg(not(all(feature = "axum", feature = "client")))]
//! # fn main() {}
//! ```
#![deny(missing_docs)]
#![warn(missing_debug_implementations, rust_2018_idioms, unreachable_pub)]
#![deny(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

// Every Rust block of the README compiles as written.
#[cfg(all(
    doctest,
    feature = "axum",
    feature = "client",
    feature = "census",
    feature = "exporter",
    feature = "page",
    feature = "rustls",
    feature = "webpki-roots"
))]
#[doc = include_str!("../README.md")]
mod readme {}

#[cfg(feature = "census")]
pub mod census;
#[cfg(feature = "client")]
pub mod client;
#[cfg(any(feature = "server", feature = "client"))]
mod close;
#[cfg(any(feature = "server", feature = "client"))]
mod conn;
#[cfg(feature = "exporter")]
pub mod exporter;
#[cfg(feature = "lease")]
pub mod lease;
pub mod metrics;
#[cfg(feature = "page")]
pub mod page;
pub mod policy;
#[cfg(any(
    feature = "deadpool",
    feature = "bb8",
    feature = "sqlx",
    feature = "redis"
))]
pub mod pools;
#[cfg(feature = "server")]
pub mod server;
mod sys;
#[cfg(feature = "lease")]
pub mod testing;
#[cfg(any(feature = "server", feature = "client"))]
mod transport;
#[cfg(any(feature = "server", feature = "client"))]
pub use transport::Transport;
