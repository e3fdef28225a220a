use std::{
    future::Future,
    pin::Pin,
    task::{ready, Context, Poll},
};

use http::{header, HeaderMap, HeaderValue, Response};
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

/// What the layer keeps of a request it tracks.
pub(crate) struct Tracked {
    pub(crate) guard: HandlerGuard,
    pub(crate) request: u64,
    pub(crate) http1: bool,
}

impl<F> ResponseFuture<F> {
    /// `tracked`: `None` for a request that passes through.
    #[inline(always)]
    pub(crate) fn new(inner: F, tracked: Option<Tracked>) -> Self {
        let (guard, request, http1) = match tracked {
            Some(t) => (Some(t.guard), t.request, t.http1),
            None => (None, 0, false),
        };
        Self {
            inner,
            guard,
            request,
            http1,
        }
    }
}

impl<F> ResponseFuture<F> {
    /// Polls the inner future; once it is ready, decorates the response and makes its body
    /// with `wrap` from the tracked one. An adapter that changes the body type again (axum's
    /// `Body`) passes its own `wrap`: the response is moved once, not once per layer.
    #[inline]
    pub(crate) fn poll_with<B, E, B2>(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        wrap: impl FnOnce(ResponseBody<B>) -> B2,
    ) -> Poll<Result<Response<B2>, E>>
    where
        F: Future<Output = Result<Response<B>, E>>,
    {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let guard = this.guard.take();
        Poll::Ready(result.map(|mut res| {
            if let Some(g) = &guard {
                decorate(&g.0, &mut res, *this.request, *this.http1);
            }
            res.map(|body| wrap(ResponseBody::new(body, guard)))
        }))
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.poll_with(cx, |body| body)
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
        if !names_connection_or_keep_alive(headers) {
            headers.append(KEEP_ALIVE, v.clone());
        }
    }
}

/// Up to this many names, [`names_connection_or_keep_alive`] looks at each.
const NAMES_LOOKED_AT: usize = 8;

/// `headers` has a `Connection` or a `Keep-Alive` field. The few names of a usual response are
/// looked at one by one, cheaper than two lookups, the second hashing `keep-alive` byte by byte
/// (a name `http` does not know); more are looked up.
fn names_connection_or_keep_alive(headers: &HeaderMap) -> bool {
    if headers.keys_len() <= NAMES_LOOKED_AT {
        headers
            .keys()
            .any(|k| *k == header::CONNECTION || *k == KEEP_ALIVE)
    } else {
        headers.contains_key(header::CONNECTION) || headers.contains_key(&KEEP_ALIVE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_and_keep_alive_are_found_however_many_names_there_are() {
        for others in [
            0,
            1,
            NAMES_LOOKED_AT - 1,
            NAMES_LOOKED_AT,
            3 * NAMES_LOOKED_AT,
        ] {
            for (extra, found) in [
                (None, false),
                (Some((header::CONNECTION, "close")), true),
                (Some((KEEP_ALIVE, "timeout=5")), true),
                (
                    Some((header::HeaderName::from_static("keep-alive-x"), "1")),
                    false,
                ),
                (Some((header::UPGRADE, "websocket")), false),
            ] {
                let mut headers = HeaderMap::new();
                for i in 0..others {
                    let name = header::HeaderName::try_from(format!("x-h{i}")).unwrap();
                    headers.insert(name, HeaderValue::from_static("v"));
                }
                headers.append(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
                if let Some((name, value)) = extra.clone() {
                    headers.append(name, HeaderValue::from_static(value));
                }
                assert_eq!(
                    names_connection_or_keep_alive(&headers),
                    found,
                    "{others} other names, {extra:?}"
                );
            }
        }
    }
}
