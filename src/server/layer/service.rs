use std::task::{Context, Poll};

use http::{Extensions, Request, Response, Version};
use tower_service::Service;

use super::{
    body::HandlerGuard, future::Tracked, ResponseBody, ResponseFuture, TrackConnectionLayer,
};
use crate::server::connection::{ConnectionHandle, ConnectionInfo};

/// Ties each request to its tracked connection. See the [module docs](super) for where the
/// connection comes from.
#[derive(Debug, Clone)]
pub struct TrackConnection<S> {
    pub(crate) inner: S,
    pub(crate) conn: Option<ConnectionHandle>,
}

impl<S> TrackConnection<S> {
    /// Wraps a service (an axum `Router`, a hyper-util `service_fn` made a tower service, a
    /// tonic router, …).
    pub fn new(inner: S) -> Self {
        Self { inner, conn: None }
    }

    /// A [`TrackConnectionLayer`].
    pub fn layer() -> TrackConnectionLayer {
        TrackConnectionLayer::new()
    }

    pub(crate) fn bound(inner: S, conn: ConnectionHandle) -> Self {
        Self {
            inner,
            conn: Some(conn),
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

fn connection_from(ext: &Extensions) -> Option<ConnectionHandle> {
    if let Some(c) = ext.get::<ConnectionHandle>() {
        return Some(c.clone());
    }
    #[cfg(feature = "axum")]
    if let Some(c) = ext.get::<axum::extract::ConnectInfo<ConnectionHandle>>() {
        return Some(c.0.clone());
    }
    None
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for TrackConnection<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        // The request is looked at apart, and the inner service called at one place with the
        // future built in place: the future (often hundreds of bytes) is not copied from a
        // temporary of each branch.
        let tracked = track(self.conn.as_ref(), &mut req);
        ResponseFuture::new(self.inner.call(req), tracked)
    }
}

/// Ties `req` to its connection (`None`: the request passes through untouched).
fn track<ReqBody>(bound: Option<&ConnectionHandle>, req: &mut Request<ReqBody>) -> Option<Tracked> {
    if req.extensions().get::<ConnectionInfo>().is_some() {
        // An outer TrackConnection already tracks this request.
        return None;
    }
    let conn = match bound {
        Some(c) => c.clone(),
        None => connection_from(req.extensions())?,
    };
    let http2 = req.version() == Version::HTTP_2;
    let request = conn.0.layer_request(http2);
    let guard = HandlerGuard::new(conn.0.clone());
    req.extensions_mut().insert(ConnectionInfo {
        connection: conn,
        request,
    });
    Some(Tracked {
        guard,
        request,
        http1: !http2,
    })
}
