//! tonic integration: serve gRPC through the hygienic listener with
//! `Server::builder().layer(TrackConnectionLayer::new()).add_service(..)
//! .serve_with_incoming(listener.into_incoming())`.

use tonic::transport::server::Connected;

use super::{
    connection::ConnectionHandle,
    io::{TrackedStream, Transport},
};

/// tonic puts the [`ConnectionHandle`] into each request's extensions, where
/// [`TrackConnection`](super::TrackConnection) finds it.
impl<IO: Transport> Connected for TrackedStream<IO> {
    type ConnectInfo = ConnectionHandle;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.connection().clone()
    }
}
