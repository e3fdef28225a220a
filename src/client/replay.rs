//! Which request bodies can be sent twice: a replayable request (an idempotent method, or an
//! `Idempotency-Key`) whose connection turned out closed before any byte of its response is
//! sent again, and that needs a second copy of its body.

use http_body::Body;

/// A request body the client can copy to send a replayable request again, or not.
///
/// A body whose bytes are at hand (`Full`, `Empty`, `String`) copies itself; a
/// streaming body (`hyper::body::Incoming`, a stream, a boxed body) does not, and a request
/// carrying it is sent once, never retried: so an axum handler can forward its request body
/// upstream as it arrives, without buffering it. Implement it for a body type of your own:
/// return a copy when one can be made, `None` otherwise.
pub trait ReplayBody: Body + Sized {
    /// A copy of the body as it was before any of it was read, if one can be made.
    fn try_clone(&self) -> Option<Self>;
}

impl<D: bytes::Buf + Clone> ReplayBody for http_body_util::Full<D> {
    fn try_clone(&self) -> Option<Self> {
        Some(self.clone())
    }
}

impl<D: bytes::Buf> ReplayBody for http_body_util::Empty<D> {
    fn try_clone(&self) -> Option<Self> {
        Some(http_body_util::Empty::new())
    }
}

impl ReplayBody for String {
    fn try_clone(&self) -> Option<Self> {
        Some(self.clone())
    }
}

/// Streaming: never copied.
impl ReplayBody for hyper::body::Incoming {
    fn try_clone(&self) -> Option<Self> {
        None
    }
}

/// Boxed: copied only when it is already at its end (an empty body).
impl<D: bytes::Buf + Send + 'static, E: 'static> ReplayBody
    for http_body_util::combinators::BoxBody<D, E>
{
    fn try_clone(&self) -> Option<Self> {
        self.is_end_stream().then(|| {
            http_body_util::combinators::BoxBody::new(
                http_body_util::Empty::<D>::new().map_err(|never| match never {}),
            )
        })
    }
}

/// Streaming: never copied.
impl<S> ReplayBody for http_body_util::StreamBody<S>
where
    Self: Body,
{
    fn try_clone(&self) -> Option<Self> {
        None
    }
}

/// axum's body: copied only when it is already at its end (an empty body, as a `GET` forwarded
/// from a handler has); a body with bytes is streamed once.
#[cfg(feature = "axum")]
impl ReplayBody for axum::body::Body {
    fn try_clone(&self) -> Option<Self> {
        self.is_end_stream().then(axum::body::Body::empty)
    }
}

use http_body_util::BodyExt as _;

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty, Full};

    #[tokio::test]
    async fn bytes_at_hand_copy_themselves_and_streams_do_not() {
        let full = Full::new(Bytes::from_static(b"abc"));
        let copy = full.try_clone().expect("full copies");
        assert_eq!(&copy.collect().await.unwrap().to_bytes()[..], b"abc");
        assert!(Empty::<Bytes>::new().try_clone().is_some());
        assert_eq!(String::from("x").try_clone().as_deref(), Some("x"));
        let stream = http_body_util::StreamBody::new(futures_util::stream::iter(vec![Ok::<
            _,
            std::io::Error,
        >(
            http_body::Frame::data(Bytes::from_static(b"a")),
        )]));
        assert!(stream.try_clone().is_none());
        let boxed: http_body_util::combinators::BoxBody<Bytes, std::io::Error> =
            Full::new(Bytes::from_static(b"a"))
                .map_err(|never| match never {})
                .boxed();
        assert!(
            boxed.try_clone().is_none(),
            "a boxed body with bytes is streamed once"
        );
        let empty: http_body_util::combinators::BoxBody<Bytes, std::io::Error> =
            Empty::new().map_err(|never| match never {}).boxed();
        assert!(empty.try_clone().is_some());
    }

    #[cfg(feature = "axum")]
    #[test]
    fn an_empty_axum_body_copies_and_one_with_bytes_does_not() {
        assert!(axum::body::Body::empty().try_clone().is_some());
        assert!(axum::body::Body::from("abc").try_clone().is_none());
    }
}
