//! A reqwest response under a lease: the lease ends when its body has been read to the end
//! or the response is dropped.

use std::{fmt, net::SocketAddr, panic::Location, sync::Arc};

use bytes::Bytes;
use hyper_util::client::legacy::connect::HttpInfo;

use super::hygiene::{Held, ReqwestHygiene, Shared};
use crate::lease::RawLease;

/// A request's lease: awaiting its response, then held until the body ends.
pub(super) struct ReqwestLease {
    shared: Arc<Shared>,
    raw: Option<RawLease>,
}

impl ReqwestLease {
    pub(super) fn take(shared: Arc<Shared>, site: &'static Location<'static>) -> Self {
        let raw = shared.tracker.lease_raw(site, tokio::time::Instant::now());
        Self {
            shared,
            raw: Some(raw),
        }
    }

    /// The response head arrived on the connection `info` names (when reqwest says): from
    /// here the application holds it.
    fn holding(&self, info: Option<&HttpInfo>) {
        let Some(raw) = &self.raw else { return };
        self.shared
            .tracker
            .holding(raw, tokio::time::Instant::now());
        if let Some(info) = info {
            self.shared.hold(
                raw.id,
                Held {
                    local: info.local_addr(),
                    remote: info.remote_addr(),
                    site: raw.site,
                },
            );
        }
    }

    fn end(&mut self) {
        if let Some(raw) = self.raw.take() {
            self.shared.unhold(raw.id);
            self.shared
                .tracker
                .release(raw, tokio::time::Instant::now());
        }
    }
}

impl Drop for ReqwestLease {
    fn drop(&mut self) {
        self.end();
    }
}

/// A `reqwest::Response` whose lease ends when its body has been read to its end (with
/// [`bytes`](Self::bytes), [`text`](Self::text), or [`chunk`](Self::chunk) until `None`) or
/// when it is dropped. Held unread past the tracker's leak threshold, it is reported as a leak
/// with the line that sent it.
pub struct TrackedResponse {
    inner: reqwest::Response,
    lease: ReqwestLease,
}

impl fmt::Debug for TrackedResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrackedResponse")
            .field("status", &self.inner.status())
            .field("site", &self.lease.raw.as_ref().map(|r| r.site))
            .finish_non_exhaustive()
    }
}

impl TrackedResponse {
    pub(super) fn new(inner: reqwest::Response, lease: ReqwestLease) -> Self {
        lease.holding(inner.extensions().get::<HttpInfo>());
        Self { inner, lease }
    }

    /// The response, to read its head (status, headers, version, extensions).
    pub fn response(&self) -> &reqwest::Response {
        &self.inner
    }

    /// The status.
    pub fn status(&self) -> http::StatusCode {
        self.inner.status()
    }

    /// The headers.
    pub fn headers(&self) -> &http::HeaderMap {
        self.inner.headers()
    }

    /// The connection's local address (source ip and ephemeral port), when reqwest says.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.inner
            .extensions()
            .get::<HttpInfo>()
            .map(HttpInfo::local_addr)
    }

    /// The server's address, when reqwest says.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.inner.remote_addr()
    }

    /// Where the request was sent from, while the lease lasts.
    pub fn site(&self) -> Option<&'static Location<'static>> {
        self.lease.raw.as_ref().map(|r| r.site)
    }

    /// The whole body; the lease ends with it.
    pub async fn bytes(self) -> reqwest::Result<Bytes> {
        let Self { inner, lease } = self;
        let body = inner.bytes().await;
        drop(lease);
        body
    }

    /// The whole body as text; the lease ends with it.
    pub async fn text(self) -> reqwest::Result<String> {
        let Self { inner, lease } = self;
        let body = inner.text().await;
        drop(lease);
        body
    }

    /// The next chunk of the body; the lease ends at the end (`Ok(None)`) or an error.
    pub async fn chunk(&mut self) -> reqwest::Result<Option<Bytes>> {
        let chunk = self.inner.chunk().await;
        if !matches!(chunk, Ok(Some(_))) {
            self.lease.end();
        }
        chunk
    }
}

/// `send_tracked` on a `reqwest::RequestBuilder`: [`ReqwestHygiene::send`] written the other
/// way round, its lease naming the line of this call.
pub trait SendTracked {
    /// Sends the request under a lease of `hygiene`'s tracker.
    #[track_caller]
    fn send_tracked(
        self,
        hygiene: &ReqwestHygiene,
    ) -> impl std::future::Future<Output = reqwest::Result<TrackedResponse>> + Send + 'static;
}

impl SendTracked for reqwest::RequestBuilder {
    #[track_caller]
    fn send_tracked(
        self,
        hygiene: &ReqwestHygiene,
    ) -> impl std::future::Future<Output = reqwest::Result<TrackedResponse>> + Send + 'static {
        hygiene.send(self)
    }
}
