//! Keeps a service's TCP connections healthy and tells the truth about them.
//!
//! - [`policy`]: one [`SocketPolicy`](policy::SocketPolicy) (keepalive, user timeout, linger,
//!   nodelay, buffers, backlog), validated when built and applied the same way to every socket,
//!   with what the kernel refused reported and counted.
//! - [`server`] (feature `server`): a [`HygienicListener`](server::HygienicListener) and a tower
//!   layer that track every connection from accept to close, enforce idle, header, age and
//!   request limits, close half-closed connections, drain on shutdown, and count who closed
//!   first.
//! - [`metrics`]: every metric name, emitted through the `metrics` facade.
//!
//! # Example
//!
//! Two lines turn an axum service into a hygienic one:
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use conn_hygiene::server::{HygienicListener, TrackConnection};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let app = Router::new().route("/", get(|| async { "hello" }));
//! let listener = HygienicListener::bind("0.0.0.0:8080").await?;
//! axum::serve(listener, TrackConnection::new(app)).await?;
//! # Ok(()) }
//! ```
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]
#![deny(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "census")]
pub mod census;
#[cfg(feature = "client")]
pub mod client;
#[cfg(any(feature = "server", feature = "client"))]
mod close;
#[cfg(feature = "exporter")]
pub mod exporter;
#[cfg(feature = "lease")]
pub mod lease;
pub mod metrics;
pub mod policy;
#[cfg(feature = "server")]
pub mod server;
mod sys;
#[cfg(feature = "lease")]
pub mod testing;
