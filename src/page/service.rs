//! [`ConnectionsService`]: the tower service that answers with the page.

use std::{
    convert::Infallible,
    fmt,
    future::{ready, Ready},
    task::{Context, Poll},
};

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use tower_service::Service;

use super::ConnectionsPage;

/// The path of the HTML page.
pub const CONNECTIONS_PATH: &str = "/connections";

/// The path of its JSON twin.
pub const CONNECTIONS_JSON_PATH: &str = "/connections.json";

/// Content type of the HTML page.
pub const HTML_CONTENT_TYPE: &str = "text/html; charset=utf-8";

/// Content type of the JSON twin.
pub const JSON_CONTENT_TYPE: &str = "application/json";

/// Nothing but inline style and inline SVG: the page fetches nothing, from anywhere.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; \
                   form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

/// Tower service answering with the page; see [`ConnectionsPage::service`].
#[derive(Clone)]
pub struct ConnectionsService {
    pub(crate) page: ConnectionsPage,
}

impl fmt::Debug for ConnectionsService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionsService").finish_non_exhaustive()
    }
}

impl ConnectionsService {
    /// The response to `method` on `path`.
    pub(crate) fn respond(&self, method: &Method, path: &str) -> Response<String> {
        let json = path.ends_with(".json");
        let body = match *method {
            Method::GET if json => self.page.render_json(),
            Method::GET => self.page.render_html(),
            Method::HEAD => String::new(),
            _ => {
                let mut res = Response::new("method not allowed\n".to_owned());
                *res.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
                res.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
                return res;
            }
        };
        let mut res = Response::new(body);
        let h = res.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(if json {
                JSON_CONTENT_TYPE
            } else {
                HTML_CONTENT_TYPE
            }),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
        res
    }
}

impl<B> Service<Request<B>> for ConnectionsService {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = Ready<Result<Response<String>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        ready(Ok(self.respond(req.method(), req.uri().path())))
    }
}
