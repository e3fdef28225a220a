//! [`LeasedBody`]: a response body that ends its request's lease when it ends.

use std::{
    fmt,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::CaptureConnection;
use pin_project_lite::pin_project;

use super::{
    conn::ConnectionHandle,
    error::BodyError,
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
        // The request's total timeout: when the body must have ended, and the timeout.
        pub(crate) deadline: Option<(tokio::time::Instant, std::time::Duration)>,
        // Armed at the first wait for a frame while a deadline is set.
        pub(crate) timer: Option<Pin<Box<tokio::time::Sleep>>>,
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

    /// Waiting for a frame: fails the body when the request's total timeout has passed.
    fn poll_deadline(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let Some((at, after)) = self.deadline else {
            return Poll::Pending;
        };
        if self.lease.is_none() {
            return Poll::Pending;
        }
        let this = self.as_mut().project();
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        if std::future::Future::poll(timer.as_mut(), cx).is_pending() {
            return Poll::Pending;
        }
        if let Some(lease) = this.lease.as_ref() {
            lease.upstream.timed_out();
        }
        // The rest of the body is not read: the connection must not carry another request
        // (over HTTP/1 the stack closes it when the body is dropped unread).
        poison(this.capture.as_ref());
        self.release();
        Poll::Ready(Some(Err(BodyError::timeout(after))))
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
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if self.deadline.is_some() && self.lease.is_none() && self.timer.is_some() {
            // Timed out already: nothing more comes.
            return Poll::Ready(None);
        }
        let polled = self.as_mut().project().inner.poll_frame(cx);
        let Poll::Ready(frame) = polled else {
            return self.poll_deadline(cx);
        };
        if !matches!(frame, Some(Ok(_))) || self.inner.is_end_stream() {
            self.release();
        }
        Poll::Ready(frame.map(|f| f.map_err(BodyError::from)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
