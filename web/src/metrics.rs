//! Prometheus metrics: one process-wide registry, a layer that counts and times every request
//! by route and status, and the `/metrics` text. Roles add their own gauges (projection and
//! relay lag, cache hits per tier) just before rendering.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static REGISTRY: OnceLock<PrometheusHandle> = OnceLock::new();

/// Request latency buckets, in seconds: fine below 10 ms, where reads should be.
const BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// The process's registry, installed on first use.
pub fn registry() -> &'static PrometheusHandle {
    REGISTRY.get_or_init(|| {
        PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("duration_seconds".into()), BUCKETS)
            .and_then(|builder| builder.install_recorder())
            // Only this function installs a recorder, once.
            .expect("installing the metrics recorder")
    })
}

/// Counts (`http_requests_total`) and times (`http_request_duration_seconds`) every request by
/// method, route template and status.
pub async fn track(request: Request, next: Next) -> Response {
    registry();
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str).to_owned();
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [("method", method), ("route", route), ("status", status)];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels).record(started.elapsed().as_secs_f64());
    response
}

/// The registry in Prometheus's text format.
pub fn render() -> Response {
    let body = registry().render();
    ([(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"))], body).into_response()
}
