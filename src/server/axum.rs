//! axum 0.8 integration: the listener is an `axum::serve::Listener`, and
//! [`MakeTrackConnection`] is a make-service that binds every accepted connection.

use std::{
    convert::Infallible,
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    task::{ready as ready_poll, Context, Poll},
};

use axum::{
    body::Body,
    extract::connect_info::Connected,
    response::Response,
    serve::{IncomingStream, Listener, TapIo},
};
use bytes::Bytes;
use http::Request;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::{
    connection::ConnectionHandle,
    handshake::{Handshake, HandshakeListener},
    io::{TrackedStream, Transport},
    layer::{ResponseBody, ResponseFuture, TrackConnection},
    listener::HygienicListener,
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Listener for HygienicListener {
    type Io = TrackedStream;
    type Addr = SocketAddr;

    fn accept(&mut self) -> impl Future<Output = (Self::Io, Self::Addr)> + Send {
        HygienicListener::accept(self)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(HygienicListener::local_addr(self))
    }
}

impl<H: Handshake> Listener for HandshakeListener<H> {
    type Io = TrackedStream<H::Io>;
    type Addr = SocketAddr;

    fn accept(&mut self) -> impl Future<Output = (Self::Io, Self::Addr)> + Send {
        HandshakeListener::accept(self)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(HandshakeListener::local_addr(self))
    }
}

/// `ConnectInfo<ConnectionHandle>` for
/// `into_make_service_with_connect_info::<ConnectionHandle>()`.
impl Connected<IncomingStream<'_, HygienicListener>> for ConnectionHandle {
    fn connect_info(stream: IncomingStream<'_, HygienicListener>) -> Self {
        stream.io().connection().clone()
    }
}

/// The same through axum's `ListenerExt::tap_io`.
impl<F> Connected<IncomingStream<'_, TapIo<HygienicListener, F>>> for ConnectionHandle
where
    F: FnMut(&mut TrackedStream) + Send + 'static,
{
    fn connect_info(stream: IncomingStream<'_, TapIo<HygienicListener, F>>) -> Self {
        stream.io().connection().clone()
    }
}

/// The same with a [handshake](HygienicListener::with_handshake) (TLS).
impl<H: Handshake> Connected<IncomingStream<'_, HandshakeListener<H>>> for ConnectionHandle {
    fn connect_info(stream: IncomingStream<'_, HandshakeListener<H>>) -> Self {
        stream.io().connection().clone()
    }
}

/// The same with a handshake, through axum's `ListenerExt::tap_io`.
impl<H, F> Connected<IncomingStream<'_, TapIo<HandshakeListener<H>, F>>> for ConnectionHandle
where
    H: Handshake,
    F: FnMut(&mut TrackedStream<H::Io>) + Send + 'static,
{
    fn connect_info(stream: IncomingStream<'_, TapIo<HandshakeListener<H>, F>>) -> Self {
        stream.io().connection().clone()
    }
}

/// The make-service for `axum::serve`: `axum::serve(listener, MakeTrackConnection::new(app))`
/// binds every accepted connection to a [`TrackConnection`] around the service `app` makes for
/// it.
///
/// `listener` is any listener whose streams are tracked: the hygienic listener, one with a
/// [handshake](HygienicListener::with_handshake) (TLS), or an adapter of either that keeps its
/// stream (axum's `ListenerExt::tap_io`). `app` is what `axum::serve` takes: a `Router`, or a
/// make-service such as `router.into_make_service_with_connect_info::<SocketAddr>()`. Its own
/// per-connection step runs for each connection (a `Router` turns its handlers into routes
/// there, once per connection rather than once per request), then the connection's service
/// is tracked.
#[derive(Debug, Clone)]
pub struct MakeTrackConnection<M> {
    inner: M,
}

impl<M> MakeTrackConnection<M> {
    /// Wraps what `axum::serve` would take: a `Router` or a make-service.
    pub fn new(app: M) -> Self {
        Self { inner: app }
    }

    /// The wrapped app.
    pub fn into_inner(self) -> M {
        self.inner
    }
}

impl<'a, L, IO, M, S> Service<IncomingStream<'a, L>> for MakeTrackConnection<M>
where
    L: Listener<Io = TrackedStream<IO>>,
    IO: Transport,
    M: Service<IncomingStream<'a, L>, Response = S, Error = Infallible>,
{
    type Response = AxumConnection<S>;
    type Error = Infallible;
    type Future = MakeTrackConnectionFuture<M::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, stream: IncomingStream<'a, L>) -> Self::Future {
        let conn = stream.io().connection().clone();
        MakeTrackConnectionFuture {
            inner: self.inner.call(stream),
            conn: Some(conn),
        }
    }
}

pin_project! {
    /// The future of [`MakeTrackConnection`]'s per-connection step under `axum::serve`.
    pub struct MakeTrackConnectionFuture<F> {
        #[pin]
        inner: F,
        conn: Option<ConnectionHandle>,
    }
}

impl<F, S> Future for MakeTrackConnectionFuture<F>
where
    F: Future<Output = Result<S, Infallible>>,
{
    type Output = Result<AxumConnection<S>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(svc) = ready_poll!(this.inner.poll(cx));
        let Some(conn) = this.conn.take() else {
            panic!("MakeTrackConnectionFuture polled after completion");
        };
        Poll::Ready(Ok(AxumConnection {
            inner: TrackConnection::bound(svc, conn),
        }))
    }
}

impl<F> std::fmt::Debug for MakeTrackConnectionFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MakeTrackConnectionFuture")
            .finish_non_exhaustive()
    }
}

/// The per-connection service `axum::serve` gets from [`MakeTrackConnection`]: tracked requests,
/// with response bodies as axum [`Body`].
#[derive(Debug, Clone)]
pub struct AxumConnection<S> {
    inner: TrackConnection<S>,
}

impl<S, ResBody> Service<Request<Body>> for AxumConnection<S>
where
    S: Service<Request<Body>, Response = http::Response<ResBody>, Error = Infallible>,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = AxumResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, req: Request<Body>) -> Self::Future {
        AxumResponseFuture {
            inner: self.inner.call(req),
        }
    }
}

pin_project! {
    /// Response future of [`AxumConnection`].
    pub struct AxumResponseFuture<F> {
        #[pin]
        inner: ResponseFuture<F>,
    }
}

impl<F, ResBody> Future for AxumResponseFuture<F>
where
    F: Future<Output = Result<http::Response<ResBody>, Infallible>>,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project()
            .inner
            .poll_with(cx, |b: ResponseBody<ResBody>| Body::new(b))
    }
}

impl<F> std::fmt::Debug for AxumResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AxumResponseFuture").finish_non_exhaustive()
    }
}
