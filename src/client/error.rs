//! [`Error`]: a failed request, opaque, with predicates for what went wrong. Its `Display` is
//! its own message; the cause is its [`source`](std::error::Error::source) chain (print it with
//! your error reporter, e.g. anyhow's `{:#}`).

use std::{fmt, sync::Arc};

use super::{config::ClientConfigError, upstream::AcquireTimeout};

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    InvalidUri,
    Config,
    AcquireTimeout,
    Connect,
    Request,
    Timeout,
}

/// A failed request: opaque, with predicates for what went wrong.
pub struct Error {
    kind: Kind,
    upstream: Arc<str>,
    source: Option<BoxError>,
}

impl Error {
    pub(crate) fn new(kind: Kind, upstream: Arc<str>, source: Option<BoxError>) -> Self {
        Self {
            kind,
            upstream,
            source,
        }
    }

    pub(crate) fn polled_after_completion() -> Self {
        Self::new(
            Kind::Request,
            Arc::from("-"),
            Some("response future polled after it completed".into()),
        )
    }

    pub(crate) fn config(e: ClientConfigError) -> Self {
        Self::new(Kind::Config, Arc::from("-"), Some(Box::new(e)))
    }

    pub(crate) fn from_client(e: hyper_util::client::legacy::Error, upstream: Arc<str>) -> Self {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        let mut acquire = false;
        while let Some(s) = source {
            if s.is::<AcquireTimeout>() {
                acquire = true;
                break;
            }
            source = s.source();
        }
        let kind = if acquire {
            Kind::AcquireTimeout
        } else if e.is_connect() {
            Kind::Connect
        } else {
            Kind::Request
        };
        Self::new(kind, upstream, Some(Box::new(e)))
    }

    /// The response head did not arrive within the request's timeout (its upstream's
    /// [`response_head_timeout`](super::UpstreamConfig::response_head_timeout) or
    /// [`timeout`](super::UpstreamConfig::timeout), or its [`Timeouts`](super::Timeouts)).
    pub(crate) fn timeout(upstream: Arc<str>, after: std::time::Duration) -> Self {
        Self::new(
            Kind::Timeout,
            upstream,
            Some(format!("no response head within {after:?}").into()),
        )
    }

    /// True when the request timed out waiting for its response head (see
    /// [`UpstreamConfig::response_head_timeout`](super::UpstreamConfig::response_head_timeout)
    /// and [`UpstreamConfig::timeout`](super::UpstreamConfig::timeout)).
    pub fn is_timeout(&self) -> bool {
        self.kind == Kind::Timeout
    }

    /// True when no connection slot freed up within the upstream's acquire timeout.
    pub fn is_acquire_timeout(&self) -> bool {
        self.kind == Kind::AcquireTimeout
    }

    /// True when connecting to the upstream failed.
    pub fn is_connect(&self) -> bool {
        matches!(self.kind, Kind::Connect | Kind::AcquireTimeout)
    }

    /// True when the connection closed or was reset before a whole response arrived: the
    /// keep-alive race (the upstream closed a pooled connection as the request went out; a
    /// replayable request is retried before this is returned), or an upstream that dropped
    /// the request.
    pub fn is_closed_before_response(&self) -> bool {
        let mut source = self
            .source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static));
        while let Some(s) = source {
            if let Some(h) = s.downcast_ref::<hyper::Error>() {
                if h.is_incomplete_message() || h.is_canceled() {
                    return true;
                }
            }
            if let Some(io) = s.downcast_ref::<std::io::Error>() {
                if matches!(
                    io.kind(),
                    std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::BrokenPipe
                        | std::io::ErrorKind::UnexpectedEof
                ) {
                    return true;
                }
            }
            source = s.source();
        }
        false
    }

    /// True when the client's configuration or the request's URI is invalid.
    pub fn is_invalid(&self) -> bool {
        matches!(self.kind, Kind::Config | Kind::InvalidUri)
    }

    /// The upstream's name.
    pub fn upstream(&self) -> &str {
        &self.upstream
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("upstream", &self.upstream)
            .field("source", &self.source)
            .finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            Kind::InvalidUri => "invalid request URI",
            Kind::Config => "invalid client configuration",
            Kind::AcquireTimeout => "no connection slot within the acquire timeout",
            Kind::Connect => "connect failed",
            Kind::Request => "request failed",
            Kind::Timeout => "request timed out",
        };
        // Its own message only: the cause is `source()`, which error reporters print.
        write!(f, "upstream {}: {what}", self.upstream)
    }
}

/// A failed upstream request as the response of a handler that calls it: `504 Gateway
/// Timeout` when the request timed out or no connection slot freed up in time, `500` for an invalid request or client
/// configuration (the handler's fault), `502 Bad Gateway` otherwise. The body says only that;
/// the upstream's name and the cause stay in the server's logs.
#[cfg(feature = "axum")]
impl axum::response::IntoResponse for Error {
    fn into_response(self) -> axum::response::Response {
        let status = match self.kind {
            Kind::AcquireTimeout | Kind::Timeout => http::StatusCode::GATEWAY_TIMEOUT,
            Kind::InvalidUri | Kind::Config => http::StatusCode::INTERNAL_SERVER_ERROR,
            Kind::Connect | Kind::Request => http::StatusCode::BAD_GATEWAY,
        };
        tracing::debug!(error = %self, cause = ?std::error::Error::source(&self), "upstream request failed");
        let body = status
            .canonical_reason()
            .unwrap_or("upstream request failed");
        (status, body).into_response()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|s| s as _)
    }
}

/// A response body that could not be read to its end: the connection failed, or the request's
/// total timeout passed while the body was still coming.
pub struct BodyError {
    timeout: Option<std::time::Duration>,
    source: Option<hyper::Error>,
}

impl BodyError {
    pub(crate) fn timeout(after: std::time::Duration) -> Self {
        Self {
            timeout: Some(after),
            source: None,
        }
    }

    /// True when the request's total timeout passed while the body was still coming.
    pub fn is_timeout(&self) -> bool {
        self.timeout.is_some()
    }
}

impl From<hyper::Error> for BodyError {
    fn from(e: hyper::Error) -> Self {
        Self {
            timeout: None,
            source: Some(e),
        }
    }
}

impl fmt::Debug for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyError")
            .field("timeout", &self.timeout)
            .field("source", &self.source)
            .finish()
    }
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.timeout {
            Some(after) => write!(
                f,
                "response body not read within the request's timeout of {after:?}"
            ),
            None => f.write_str("response body failed"),
        }
    }
}

impl std::error::Error for BodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| e as _)
    }
}
