//! [`MetricsService`]: the tower service that answers with the metrics page.

use std::{
    convert::Infallible,
    fmt,
    future::{ready, Ready},
    sync::Arc,
    task::{Context, Poll},
};

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use tower_service::Service;

use super::exporter::Shared;

/// Content type of the metrics page: the Prometheus text exposition format, version 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The path the metrics page is served at by [`router`](super::PrometheusExporter::router) and by the
/// exporter's own listener.
pub const METRICS_PATH: &str = "/metrics";

/// Tower service answering with the metrics page; see
/// [`PrometheusExporter::service`](super::PrometheusExporter::service).
#[derive(Clone)]
pub struct MetricsService {
    pub(crate) shared: Arc<Shared>,
    pub(crate) only_metrics_path: bool,
    /// The connections page, answered at its paths, on the exporter's own listener.
    #[cfg(feature = "page")]
    pub(crate) page: Option<crate::page::ConnectionsService>,
}

impl fmt::Debug for MetricsService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsService")
            .field("only_metrics_path", &self.only_metrics_path)
            .finish_non_exhaustive()
    }
}

impl MetricsService {
    fn respond(&self, method: &Method, path: &str) -> Response<String> {
        #[cfg(feature = "page")]
        if let Some(page) = &self.page {
            if path == crate::page::CONNECTIONS_PATH || path == crate::page::CONNECTIONS_JSON_PATH {
                return page.respond(method, path);
            }
        }
        if self.only_metrics_path && path != METRICS_PATH {
            return plain(
                StatusCode::NOT_FOUND,
                format!("not found; metrics are at {METRICS_PATH}\n"),
            );
        }
        let body = match *method {
            Method::GET => {
                crate::metrics::collect();
                self.shared.handle.render()
            }
            Method::HEAD => String::new(),
            _ => {
                let mut res = plain(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method not allowed\n".into(),
                );
                res.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
                return res;
            }
        };
        let mut res = Response::new(body);
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        res
    }
}

fn plain(status: StatusCode, body: String) -> Response<String> {
    let mut res = Response::new(body);
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}

impl<B> Service<Request<B>> for MetricsService {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exporter::PrometheusExporter;

    #[test]
    fn service_answers_methods_and_paths() {
        let (_recorder, exporter) = PrometheusExporter::builder()
            .upkeep_interval(None)
            .build()
            .unwrap();
        let svc = exporter.service();
        let res = svc.respond(&Method::GET, "/anything");
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()[header::CONTENT_TYPE], CONTENT_TYPE);
        let res = svc.respond(&Method::HEAD, "/metrics");
        assert_eq!(res.status(), StatusCode::OK);
        assert!(res.body().is_empty());
        let res = svc.respond(&Method::POST, "/metrics");
        assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(res.headers()[header::ALLOW], "GET, HEAD");

        let own = MetricsService {
            shared: exporter.shared.clone(),
            only_metrics_path: true,
            #[cfg(feature = "page")]
            page: None,
        };
        assert_eq!(
            own.respond(&Method::GET, "/other").status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            own.respond(&Method::GET, METRICS_PATH).status(),
            StatusCode::OK
        );
    }
}
