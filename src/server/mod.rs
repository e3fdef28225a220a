//! The hygienic server: a listener, a tracked stream, a tower layer and a serve loop that follow
//! every connection from accept to close.
//!
//! - [`HygienicListener`] binds with a [`SocketPolicy`](crate::policy::SocketPolicy), applies it
//!   to every accepted socket, backs off on accept errors, can cap concurrent connections.
//! - [`TrackedStream`] follows the bytes both ways (HTTP/1 framing, HTTP/2 frames), so it knows
//!   where every request and response starts and ends whatever the HTTP stack and the service
//!   do, and enforces [`ConnectionLimits`] from that: the header timeout until a request head is
//!   complete (an HTTP/2 preface and SETTINGS included), the idle timeout, max age, max requests
//!   and retirement only at a message boundary, and the write timeout on output that makes no
//!   progress. A peer's FIN after complete requests is held back until they are answered
//!   ([`HalfClose::Finish`]); on an idle connection, or on HTTP/2, it closes at once (no
//!   CLOSE_WAIT left behind). Every request read is answered or counted in
//!   [`RegistryTotals::requests_unanswered`]; at close it records [who closed first](Closer)
//!   (on HTTP/2, whoever sent GOAWAY first).
//! - [`TrackConnection`] / [`TrackConnectionLayer`] mark request boundaries, add
//!   [`ConnectionInfo`] to requests, advertise `Keep-Alive: timeout=N` and retire connections
//!   with `Connection: close`; [`MakeTrackConnection`] is the make-service that gives
//!   `axum::serve` one per accepted connection.
//! - [`ConnectionRegistry`] lists live connections, keeps cumulative counters, runs hooks on
//!   state changes and performs graceful shutdown with a deadline.
//! - [`Server`] is the crate's own accept loop over hyper-util (HTTP/1 and HTTP/2).
//! - [`HygienicListener::with_handshake`] puts a [`Handshake`] (TLS: a
//!   `tokio_rustls::TlsAcceptor` with the `rustls` feature) beneath the tracking: the tracked
//!   stream follows the decrypted HTTP bytes, so every limit holds as over plain TCP, while the
//!   socket beneath ([`Transport`]) still gives the FIN order, the send queue and resets.
//!   Handshakes run concurrently, bounded by the header timeout; a failed one is counted
//!   ([`CloseReason::HandshakeFailed`]).
//!
//! # With axum
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use conn_hygiene::server::{HygienicListener, MakeTrackConnection};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let app = Router::new().route("/", get(|| async { "hello" }));
//! let listener = HygienicListener::bind("0.0.0.0:8080").await?;
//! axum::serve(listener, MakeTrackConnection::new(app)).await?;
//! # Ok(()) }
//! ```
//!
//! # `axum::serve` or [`Server`]
//!
//! Both track every connection and enforce every limit. `axum::serve` owns its connections, so
//! there a retiring HTTP/2 connection (max requests, max age, shutdown) is closed at a moment no
//! stream is in flight rather than with a GOAWAY, and a graceful shutdown's deadline is applied
//! through [`ConnectionRegistry::graceful_shutdown`]. [`Server`] sends GOAWAY, takes hyper-util's
//! HTTP/1 and HTTP/2 settings, and returns a [`ShutdownReport`] of what drained and what was cut.
//!
//! # Who closes first
//!
//! The side that sends the first FIN holds TIME_WAIT for 60 s. By default the listener
//! advertises its idle timeout (`Keep-Alive: timeout=75`), so a pooled client that honours it
//! closes idle connections first and holds the TIME_WAIT itself, spread over its ephemeral
//! ports. Whatever the server ends (idle and header timeouts, max age, max requests, shutdown)
//! leaves TIME_WAIT on the server's own port. Every close is counted by closer in
//! `conn_hygiene_server_connections_closed_total{closer}`.

#[cfg(feature = "axum")]
mod axum;
mod connection;
mod handshake;
mod io;
#[cfg(test)]
mod io_tests;
pub mod layer;
mod limits;
mod listener;
mod observer;
mod registry;
mod serve;
#[cfg(feature = "tonic")]
mod tonic;

#[cfg(feature = "axum")]
pub use self::axum::{
    AxumConnection, AxumResponseFuture, MakeTrackConnection, MakeTrackConnectionFuture,
};
pub use self::{
    connection::{
        CloseInfo, CloseReason, Closer, ConnState, ConnectionHandle, ConnectionInfo,
        ConnectionSnapshot,
    },
    handshake::{handshake_fn, Handshake, HandshakeFn, HandshakeListener, TrackedListener},
    io::{TrackedStream, Transport},
    layer::{TrackConnection, TrackConnectionLayer},
    limits::{
        ConnectionLimits, ConnectionLimitsBuilder, HalfClose, LimitsError, DEFAULT_GOAWAY_GRACE,
        DEFAULT_SHUTDOWN_DEADLINE, DEFAULT_WRITE_TIMEOUT,
    },
    listener::{HygienicListener, ListenerBuilder},
    registry::{
        AcceptErrorKind, ConnectionEvent, ConnectionRegistry, RegistrySnapshot, RegistryTotals,
        ShutdownReport,
    },
    serve::Server,
};
