//! What every request passes through, as one layer: its id (the client's `x-request-id` when it
//! is sensible, else a new one) on every log line it causes and echoed in the response, a panic
//! turned into a 500 problem, any error response not yet problem+json made one, a URL or headers
//! past their limits and bodies in an encoding it does not decode refused (414, 431, 415) before
//! any handler runs, and the request counted and timed by method, route and status (`/metrics`),
//! each label from a fixed set.
//!
//! One layer, not a stack of them: each layer of the usual kind costs a cached read about 5 % of
//! its throughput (an allocation, a clone of the service beneath, a future to poll), and a
//! cached read is little more than that.

use std::convert::Infallible;
use std::panic::AssertUnwindSafe;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use futures::FutureExt;
use tower::{Layer, Service};

use crate::{logs, metrics, problem_layer, Problem, REQUEST_ID};

/// The longest client-sent request id kept; longer (or non-printable) ones are replaced.
const MAX_REQUEST_ID: usize = 128;
/// The longest URL (path and query) a request may have, in bytes.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// The most bytes a request's header names and values may take together.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, Default)]
pub struct EdgeLayer;

impl<S> Layer<S> for EdgeLayer {
    type Service = Edge<S>;

    fn layer(&self, inner: S) -> Edge<S> {
        Edge { inner }
    }
}

#[derive(Debug, Clone)]
pub struct Edge<S> {
    inner: S,
}

impl<S> Service<Request> for Edge<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let mut inner = crate::take_ready(&mut self.inner);
        let name = HeaderName::from_static(REQUEST_ID);
        let id = match request.headers().get(&name) {
            Some(id) if sensible(id) => id.clone(),
            _ => {
                let mut text = [0; uuid::fmt::Hyphenated::LENGTH];
                let text = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut text);
                let id = HeaderValue::from_str(text).expect("a uuid is a valid header");
                request.headers_mut().insert(name.clone(), id.clone());
                id
            }
        };
        let route = request.extensions().get::<MatchedPath>().cloned();
        let method = request.method().clone();
        // Shares its bytes: no copy.
        let uri = request.uri().clone();
        let encoding = crate::compress::accepted(request.headers());
        // Every log line of the request carries its id (also stored with the events it causes).
        Box::pin(logs::scope(id.clone(), async move {
            let started = Instant::now();
            let outcome = match refused(&request) {
                Some(refused) => Ok(Ok(refused.into_response())),
                None => AssertUnwindSafe(inner.call(request)).catch_unwind().await,
            };
            let response = match outcome {
                Ok(Ok(response)) => problem_layer(response).await,
                Ok(Err(never)) => match never {},
                Err(_) => {
                    tracing::error!(%method, path = uri.path(), "the handler panicked");
                    Problem::for_status(StatusCode::INTERNAL_SERVER_ERROR, None).into_response()
                }
            };
            let status = response.status();
            let elapsed = started.elapsed();
            let latency_ms = elapsed.as_secs_f64() * 1000.0;
            match status.is_server_error() {
                true => {
                    tracing::error!(%method, path = uri.path(), status = status.as_u16(), latency_ms, "request failed")
                }
                false => {
                    tracing::debug!(%method, path = uri.path(), status = status.as_u16(), latency_ms, "request finished")
                }
            }
            let mut response = crate::compress::compress(response, encoding).await;
            response.headers_mut().insert(name, id);
            let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
            let (count, duration) = metrics::series(&method, route, status);
            count.increment(1);
            duration.record(elapsed.as_secs_f64());
            Ok(response)
        }))
    }
}

/// The problem for a request refused before any handler: its URL or headers past their limits,
/// or a body in a `Content-Encoding` the server does not decode (it would be read as garbage).
fn refused(request: &Request) -> Option<Problem> {
    let uri = request.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if uri > MAX_URI_BYTES {
        let detail = format!("the URL must be at most {MAX_URI_BYTES} bytes, not {uri}");
        return Some(Problem::new(StatusCode::URI_TOO_LONG, "uri-too-long", detail));
    }
    let headers: usize =
        request.headers().iter().map(|(name, value)| name.as_str().len() + value.len()).sum();
    if headers > MAX_HEADER_BYTES {
        let detail = format!("the request's headers must be at most {MAX_HEADER_BYTES} bytes, not {headers}");
        return Some(Problem::new(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "headers-too-large", detail));
    }
    if let Some(encoding) = request.headers().get(axum::http::header::CONTENT_ENCODING) {
        if !encoding.as_bytes().eq_ignore_ascii_case(b"identity") {
            let detail =
                "the server does not decode a Content-Encoding: send the body uncompressed".to_owned();
            return Some(Problem::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type", detail));
        }
    }
    None
}

/// Whether a client's request id is worth keeping: short and printable.
fn sensible(id: &HeaderValue) -> bool {
    let bytes = id.as_bytes();
    !bytes.is_empty() && bytes.len() <= MAX_REQUEST_ID && bytes.iter().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Method;
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt;

    use super::*;

    fn app() -> Router {
        Router::new()
            .route("/ok", get(|| async { "fine" }))
            .route("/teapot", get(|| async { (StatusCode::IM_A_TEAPOT, "short and stout") }))
            .route("/panic", get(|| async { panic!("a handler bug") as &'static str }))
            .layer(EdgeLayer)
    }

    async fn call(path: &str, id: Option<&str>) -> Response {
        let mut request = Request::builder().uri(path);
        if let Some(id) = id {
            request = request.header(REQUEST_ID, id);
        }
        app().oneshot(request.body(Body::empty()).unwrap()).await.unwrap()
    }

    async fn json(response: Response) -> serde_json::Value {
        serde_json::from_slice(&axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap()).unwrap()
    }

    #[tokio::test]
    async fn a_client_request_id_is_echoed_and_a_missing_one_is_made() {
        let kept = call("/ok", Some("client-7")).await;
        assert_eq!(kept.headers()[REQUEST_ID], "client-7");
        let made = call("/ok", None).await;
        let id = made.headers()[REQUEST_ID].to_str().unwrap();
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
    }

    #[tokio::test]
    async fn an_unreasonable_request_id_is_replaced() {
        let long = "x".repeat(MAX_REQUEST_ID + 1);
        for sent in [long.as_str(), "has space"] {
            let response = call("/ok", Some(sent)).await;
            let id = response.headers()[REQUEST_ID].to_str().unwrap();
            assert!(uuid::Uuid::parse_str(id).is_ok(), "{sent:?} kept as {id}");
        }
    }

    #[tokio::test]
    async fn a_panic_becomes_a_500_problem_with_the_request_id() {
        let response = call("/panic", Some("boom-1")).await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(response.headers()[REQUEST_ID], "boom-1");
        assert_eq!(response.headers()["content-type"], crate::PROBLEM_JSON);
        let body = json(response).await;
        assert_eq!(body["status"], 500);
        assert!(!body.to_string().contains("a handler bug"), "panic text leaked: {body}");
    }

    #[tokio::test]
    async fn a_plain_error_becomes_a_problem_keeping_its_text() {
        let response = call("/teapot", None).await;
        assert_eq!(response.status(), StatusCode::IM_A_TEAPOT);
        assert_eq!(response.headers()["content-type"], crate::PROBLEM_JSON);
        assert_eq!(json(response).await["detail"], "short and stout");
    }

    #[tokio::test]
    async fn a_long_url_or_large_headers_are_refused_with_a_problem_naming_the_limit() {
        let long = format!("/ok?q={}", "a".repeat(MAX_URI_BYTES));
        let response = call(&long, None).await;
        assert_eq!(response.status(), StatusCode::URI_TOO_LONG);
        assert!(json(response).await["detail"].as_str().unwrap().contains(&MAX_URI_BYTES.to_string()));

        let mut request = Request::builder().uri("/ok");
        for n in 0..20 {
            request = request.header(format!("x-filler-{n}"), "b".repeat(1000));
        }
        let response = app().oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(response.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        assert_eq!(response.headers()["content-type"], crate::PROBLEM_JSON);
        assert!(json(response).await["detail"].as_str().unwrap().contains(&MAX_HEADER_BYTES.to_string()));

        let within = format!("/ok?q={}", "a".repeat(MAX_URI_BYTES - 10));
        assert_eq!(call(&within, None).await.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn unknown_methods_share_one_metrics_label_so_the_registry_stays_bounded() {
        for n in 0..50 {
            let method = Method::from_bytes(format!("WEIRD{n}{}", "X".repeat(2000)).as_bytes()).unwrap();
            let request = Request::builder().method(method).uri("/nowhere").body(Body::empty()).unwrap();
            app().oneshot(request).await.unwrap();
        }
        let text = crate::metrics::registry().render();
        assert!(!text.contains("WEIRD"), "a client's method became a label");
        assert!(text.contains("method=\"other\""), "{text}");
    }

    #[tokio::test]
    async fn requests_are_counted_by_route_and_status() {
        let before = crate::metrics::registry().render();
        call("/teapot", None).await;
        let after = crate::metrics::registry().render();
        let count = |text: &str| {
            text.lines()
                .find(|l| {
                    l.starts_with("http_requests_total")
                        && l.contains("route=\"/teapot\"")
                        && l.contains("status=\"418\"")
                })
                .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
                .unwrap_or(0)
        };
        assert_eq!(count(&after), count(&before) + 1, "{after}");
    }
}
