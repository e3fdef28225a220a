use std::{
    future::Future,
    pin::Pin,
    task::{ready, Context, Poll},
};

use http::{header, HeaderValue, Response};
use pin_project_lite::pin_project;

use super::{body::HandlerGuard, ResponseBody};
use crate::server::connection::{CloseReason, ConnShared};

pin_project! {
    /// Response future of [`TrackConnection`](super::TrackConnection).
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        guard: Option<HandlerGuard>,
        request: u64,
        http1: bool,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn tracked(inner: F, guard: HandlerGuard, request: u64, http1: bool) -> Self {
        Self {
            inner,
            guard: Some(guard),
            request,
            http1,
        }
    }

    pub(crate) fn passthrough(inner: F) -> Self {
        Self {
            inner,
            guard: None,
            request: 0,
            http1: false,
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let guard = this.guard.take();
        Poll::Ready(result.map(|mut res| {
            if let Some(g) = &guard {
                decorate(&g.0, &mut res, *this.request, *this.http1);
            }
            res.map(|body| ResponseBody::new(body, guard))
        }))
    }
}

const KEEP_ALIVE: header::HeaderName = header::HeaderName::from_static("keep-alive");
const CLOSE: HeaderValue = HeaderValue::from_static("close");

/// Tells an HTTP/1 client that the connection closes after this response when it is retiring
/// and this is the last request read on it (a request already read behind it is served first:
/// the stream closes at the next message boundary), or advertises the idle timeout.
fn decorate<B>(c: &ConnShared, res: &mut Response<B>, request: u64, http1: bool) {
    if !http1 {
        return;
    }
    let limits = &c.config.limits;
    if !c.is_retiring() && limits.max_age.is_some_and(|age| c.opened.elapsed() >= age) {
        c.retire(CloseReason::MaxAge);
    }
    let last_read = c.requests.load(std::sync::atomic::Ordering::Acquire) <= request;
    let headers = res.headers_mut();
    if c.is_retiring() && last_read {
        headers.insert(header::CONNECTION, CLOSE);
        headers.remove(&KEEP_ALIVE);
    } else if let Some(v) = &c.config.keep_alive_value {
        // One lookup of the (non-standard, so hashed byte by byte) name: looked up and
        // inserted through its entry.
        if !headers.contains_key(header::CONNECTION) {
            if let header::Entry::Vacant(e) = headers.entry(KEEP_ALIVE) {
                e.insert(v.clone());
            }
        }
    }
}
