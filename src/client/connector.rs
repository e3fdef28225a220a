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
    stream::UpstreamIo,
    upstream::{ConnectErrorKind, Upstream},
};
use crate::{policy::SocketSide, transport::Transport};

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
    type Response = TokioIo<UpstreamStream<UpstreamIo>>;
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
            let io = match &upstreams.custom {
                Some(custom) => custom_connect(custom, &upstream, uri).await?,
                None => builtin_connect(&upstreams, &upstream, uri).await?,
            };
            let socket = io.socket();
            let (local, peer) = (socket.local_addr()?, socket.peer_addr()?);
            let http2 = upstreams.http2_only || io.negotiated_h2();
            let conn = upstream.register(local, peer, http2, io.is_tls());
            Ok(TokioIo::new(UpstreamStream::new(io, conn, permit)))
        })
    }
}

/// What a connect error was, for the upstream's `connect_errors{kind}`: the first
/// `io::Error` in its chain says.
fn error_kind(err: &(dyn std::error::Error + 'static)) -> ConnectErrorKind {
    let mut source = Some(err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return match io.kind() {
                io::ErrorKind::ConnectionRefused => ConnectErrorKind::Refused,
                io::ErrorKind::TimedOut => ConnectErrorKind::Timeout,
                _ => ConnectErrorKind::Other,
            };
        }
        source = e.source();
    }
    if err.to_string().contains("timed out") {
        ConnectErrorKind::Timeout
    } else {
        ConnectErrorKind::Other
    }
}

/// The crate's own connect: a TCP socket from the upstream's next source address, the policy
/// on it, then TLS for `https://`.
async fn builtin_connect(
    upstreams: &Upstreams,
    upstream: &Upstream,
    uri: Uri,
) -> Result<UpstreamIo, BoxError> {
    let tls = match uri.scheme_str() {
        Some("https") => true,
        Some("http") | None => false,
        Some(other) => {
            upstream.connect_error(ConnectErrorKind::Other);
            return Err(format!("unsupported scheme {other}:// in {uri}").into());
        }
    };
    let mut http = upstream.connector();
    let stream = match http.call(uri.clone()).await {
        Ok(io) => io.into_inner(),
        Err(e) => {
            upstream.connect_error(error_kind(&e));
            return Err(e.into());
        }
    };
    // The policy goes on the socket before any byte of TLS does.
    upstream
        .policy
        .apply(SockRef::from(&stream), SocketSide::Outbound);
    if tls {
        handshake(upstreams, upstream, &uri, stream).await
    } else {
        Ok(UpstreamIo::tcp(stream))
    }
}

/// A connector of the user's: it makes the stream, the policy goes on its socket.
async fn custom_connect(
    custom: &CustomConnector,
    upstream: &Upstream,
    uri: Uri,
) -> Result<UpstreamIo, BoxError> {
    match (custom.0)(uri).await {
        Ok(io) => {
            upstream
                .policy
                .apply(SockRef::from(io.socket()), SocketSide::Outbound);
            Ok(UpstreamIo::custom(io))
        }
        Err(e) => {
            upstream.connect_error(error_kind(&*e));
            Err(e)
        }
    }
}

/// A connector of the user's, type-erased: any `tower::Service<Uri>` whose streams are a
/// [`Transport`] (see [`ClientBuilder::connector`](super::ClientBuilder::connector)).
#[derive(Clone)]
pub(crate) struct CustomConnector(Arc<ConnectFn>);

type ConnectFn = dyn Fn(Uri) -> Pin<Box<dyn Future<Output = Result<Box<dyn Transport>, BoxError>> + Send>>
    + Send
    + Sync;

impl CustomConnector {
    pub(crate) fn new<C>(connector: C) -> Self
    where
        C: Service<Uri> + Clone + Send + Sync + 'static,
        C::Response: Transport,
        C::Error: Into<BoxError>,
        C::Future: Send + 'static,
    {
        Self(Arc::new(move |uri| {
            let mut c = connector.clone();
            Box::pin(async move {
                std::future::poll_fn(|cx| c.poll_ready(cx))
                    .await
                    .map_err(Into::into)?;
                let io = c.call(uri).await.map_err(Into::into)?;
                Ok(Box::new(io) as Box<dyn Transport>)
            })
        }))
    }
}

impl std::fmt::Debug for CustomConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CustomConnector")
    }
}

/// The TLS handshake over a connected socket, bounded by the upstream's connect timeout; a
/// failure is counted as the upstream's `tls` connect error (`timeout` when it took too long).
#[cfg(feature = "rustls")]
async fn handshake(
    upstreams: &Upstreams,
    upstream: &Upstream,
    uri: &Uri,
    stream: tokio::net::TcpStream,
) -> Result<UpstreamIo, BoxError> {
    let Some(tls) = upstreams.tls.as_ref() else {
        upstream.connect_error(ConnectErrorKind::Tls);
        return Err(format!(
            "{uri}: https needs TLS: give the client ClientBuilder::tls, or build with the \
             webpki-roots or native-roots feature"
        )
        .into());
    };
    let host = uri.host().unwrap_or_default();
    let handshake = tls.connect(host, stream);
    let result = match upstream.config.connect_timeout {
        Some(limit) => match tokio::time::timeout(limit, handshake).await {
            Ok(r) => r,
            Err(_) => {
                upstream.connect_error(ConnectErrorKind::Timeout);
                return Err(format!(
                    "{uri}: TLS handshake did not finish within the connect timeout ({limit:?})"
                )
                .into());
            }
        },
        None => handshake.await,
    };
    match result {
        Ok(s) => Ok(UpstreamIo::tls(s)),
        Err(e) => {
            upstream.connect_error(ConnectErrorKind::Tls);
            Err(format!("{uri}: TLS handshake failed: {e}").into())
        }
    }
}

#[cfg(not(feature = "rustls"))]
async fn handshake(
    _: &Upstreams,
    upstream: &Upstream,
    uri: &Uri,
    _: tokio::net::TcpStream,
) -> Result<UpstreamIo, BoxError> {
    upstream.connect_error(ConnectErrorKind::Tls);
    Err(format!("{uri}: https needs TLS: build conn-hygiene with the rustls feature").into())
}
