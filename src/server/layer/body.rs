use std::{
    pin::Pin,
    sync::{atomic::Ordering, Arc},
    task::{ready, Context, Poll},
};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::server::connection::ConnShared;

/// Counts one request in its handler or response body on its connection; dropping it ends
/// the count.
pub(crate) struct HandlerGuard(pub(crate) Arc<ConnShared>);

impl HandlerGuard {
    pub(crate) fn new(conn: Arc<ConnShared>) -> Self {
        conn.handlers.fetch_add(1, Ordering::AcqRel);
        Self(conn)
    }
}

impl Drop for HandlerGuard {
    fn drop(&mut self) {
        self.0.handlers.fetch_sub(1, Ordering::AcqRel);
    }
}

pin_project! {
    /// Response body of [`TrackConnection`](super::TrackConnection): the request counts as
    /// handled (see [`ConnectionSnapshot::handlers`](crate::server::ConnectionSnapshot)) until
    /// this body ends, fails, or is dropped.
    ///
    /// Whether the connection is at a message boundary does not depend on it: the stream
    /// follows the bytes for that.
    pub struct ResponseBody<B> {
        #[pin]
        inner: B,
        guard: Option<HandlerGuard>,
    }
}

impl<B> ResponseBody<B> {
    pub(crate) fn new(inner: B, guard: Option<HandlerGuard>) -> Self {
        Self { inner, guard }
    }

    /// The inner body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// The inner body, mutably.
    pub fn get_mut(&mut self) -> &mut B {
        &mut self.inner
    }

    /// The inner body; the request ends now.
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B: Body> Body for ResponseBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if !matches!(frame, Some(Ok(_))) {
            this.guard.take();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> std::fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody")
            .field("in_flight", &self.guard.is_some())
            .finish_non_exhaustive()
    }
}
