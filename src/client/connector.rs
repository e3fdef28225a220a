use std::{
    future::Future,
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use http::Uri;
use hyper_util::rt::TokioIo;
use socket2::SockRef;
use tower_service::Service;

use super::{
    io::UpstreamStream,
    routing::{authority_of, Upstreams},
    upstream::ConnectErrorKind,
};
use crate::policy::SocketSide;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The connector of a [`HygienicClient`](super::HygienicClient), from
/// [`ClientView::connector`](super::ClientView::connector): waits for a slot under the
/// upstream's `max_connections`, connects from the next source address, applies the socket
/// policy and tracks the connection. A `tower::Service<Uri>` as hyper-util's and tonic's
/// connectors are.
#[derive(Clone)]
pub struct HygienicConnector {
    pub(crate) upstreams: Arc<Upstreams>,
}

impl std::fmt::Debug for HygienicConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HygienicConnector").finish_non_exhaustive()
    }
}

impl Service<Uri> for HygienicConnector {
    type Response = TokioIo<UpstreamStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let upstreams = self.upstreams.clone();
        Box::pin(async move {
            // A routed upstream's pool key, or (the `other` upstream's requests) an authority.
            let (upstream, uri) = match upstreams.routed(&uri) {
                Some(up) => {
                    let origin = up.route.as_ref().map_or(uri, |r| r.origin.clone());
                    (up, origin)
                }
                None => {
                    let authority = authority_of(&uri).ok_or_else(|| {
                        io::Error::new(io::ErrorKind::InvalidInput, format!("no host in URI {uri}"))
                    })?;
                    (upstreams.get(&authority)?, uri)
                }
            };
            let permit = upstream.acquire().await?;
            let mut http = upstream.connector();
            let io = match http.call(uri).await {
                Ok(io) => io,
                Err(e) => {
                    let msg = e.to_string();
                    let kind = match std::error::Error::source(&e)
                        .and_then(|s| s.downcast_ref::<io::Error>())
                        .map(io::Error::kind)
                    {
                        Some(io::ErrorKind::ConnectionRefused) => ConnectErrorKind::Refused,
                        Some(io::ErrorKind::TimedOut) => ConnectErrorKind::Timeout,
                        _ if msg.contains("timed out") => ConnectErrorKind::Timeout,
                        _ => ConnectErrorKind::Other,
                    };
                    upstream.connect_error(kind);
                    return Err(e.into());
                }
            };
            let stream = io.into_inner();
            upstream
                .policy
                .apply(SockRef::from(&stream), SocketSide::Outbound);
            let local = stream.local_addr()?;
            let peer = stream.peer_addr()?;
            let conn = upstream.register(local, peer, upstreams.http2_only);
            Ok(TokioIo::new(UpstreamStream::new(stream, conn, permit)))
        })
    }
}
