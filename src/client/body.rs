//! [`LeasedBody`]: a response body that ends its request's lease when it ends.

use std::{
    fmt,
    pin::Pin,
    task::{ready, Context, Poll},
};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::CaptureConnection;
use pin_project_lite::pin_project;

use super::{
    conn::ConnectionHandle,
    future::{poison, ClientLease},
};

pin_project! {
    /// A response body that holds its lease (and its connection) until it is fully read or
    /// dropped.
    pub struct LeasedBody {
        #[pin]
        pub(crate) inner: Incoming,
        pub(crate) lease: Option<ClientLease>,
        pub(crate) conn: Option<ConnectionHandle>,
        pub(crate) capture: Option<CaptureConnection>,
    }

    impl PinnedDrop for LeasedBody {
        fn drop(this: Pin<&mut Self>) {
            this.release();
        }
    }
}

impl LeasedBody {
    /// The connection this response came on (`None` once the body ended: the connection may
    /// already carry another request).
    pub fn connection(&self) -> Option<&ConnectionHandle> {
        self.conn.as_ref()
    }

    #[inline]
    fn release(self: Pin<&mut Self>) {
        if self.lease.is_some() {
            self.end_lease();
        }
    }

    fn end_lease(self: Pin<&mut Self>) {
        let this = self.project();
        if let Some(lease) = this.lease.take() {
            lease.end();
            if let Some(c) = this.conn.take() {
                if c.0.response_finished() {
                    poison(this.capture.as_ref());
                }
            }
        }
    }
}

impl fmt::Debug for LeasedBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeasedBody")
            .field("leased", &self.lease.is_some())
            .field("connection", &self.conn)
            .finish_non_exhaustive()
    }
}

impl Body for LeasedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let frame = ready!(self.as_mut().project().inner.poll_frame(cx));
        if !matches!(frame, Some(Ok(_))) || self.inner.is_end_stream() {
            self.release();
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
