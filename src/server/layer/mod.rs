//! The tower layer that ties requests to their connection.
//!
//! [`TrackConnection`] adds a [`ConnectionInfo`](super::ConnectionInfo) extension to every
//! request, keeps the request "in flight" until its response body ends (a drop guard, so a
//! cancelled handler or a dropped body ends it too), adds `Keep-Alive: timeout=N` to HTTP/1.1
//! responses, and `Connection: close` when the connection is retiring (max requests, max age,
//! shutdown, [`ConnectionHandle::retire`](super::ConnectionHandle::retire)).
//!
//! The connection comes from one of three places:
//! - `axum::serve(listener, MakeTrackConnection::new(app))`: the make-service binds each
//!   connection as it is accepted;
//! - [`Server`](super::Server): the serve loop binds it;
//! - a request extension: [`ConnectionHandle`](super::ConnectionHandle) (tonic's `serve_with_incoming` puts
//!   the stream's connect info there) or axum's `ConnectInfo<ConnectionHandle>` (with
//!   `Router::layer(TrackConnectionLayer::new())` and `into_make_service_with_connect_info`).
//!
//! Requests with none of these pass through untouched.

mod body;
mod future;
#[allow(clippy::module_inception)]
mod layer;
mod service;

pub use self::{
    body::ResponseBody, future::ResponseFuture, layer::TrackConnectionLayer,
    service::TrackConnection,
};
