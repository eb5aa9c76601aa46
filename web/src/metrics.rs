//! Prometheus metrics: one process-wide registry, the request series the edge layer counts and
//! times every request in (by method, route and status), and the `/metrics` text. Roles add
//! their own gauges (projection and relay lag, cache hits per tier) just before rendering.

use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};

use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static REGISTRY: OnceLock<PrometheusHandle> = OnceLock::new();

/// Request latency buckets, in seconds: fine below 10 ms, where reads should be.
const BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// How often histogram samples are folded into their buckets when nobody scrapes `/metrics`.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The process's registry, installed on first use, with a thread folding histogram samples into
/// their buckets every few seconds: the recorder keeps every recorded sample until then (a render
/// also folds them), so a server nobody scrapes grew by ~20 bytes a request without it.
pub fn registry() -> &'static PrometheusHandle {
    REGISTRY.get_or_init(|| {
        let handle = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("duration_seconds".into()), BUCKETS)
            .and_then(|builder| builder.install_recorder())
            // Only this function installs a recorder, once.
            .expect("installing the metrics recorder");
        let upkept = handle.clone();
        std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || loop {
                std::thread::sleep(UPKEEP_EVERY);
                upkept.run_upkeep();
            })
            .expect("spawning the metrics upkeep thread");
        handle
    })
}

type Series = (metrics::Counter, metrics::Histogram);
/// Series by method and status, then by route (looked up by `&str`, without allocating).
type SeriesMap = HashMap<(&'static str, StatusCode), HashMap<String, Series>>;

/// A method's label: the methods of HTTP's own, and "other" for every other token a client may
/// send (each would otherwise become a series of its own, growing `/metrics` without bound).
fn method_label(method: &Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        "CONNECT" => "CONNECT",
        "TRACE" => "TRACE",
        _ => "other",
    }
}

/// The request count and duration handles of one method, route and status: looked up in the
/// registry once, then kept (a registry lookup per request costs more than the request's work
/// on a cached read). Routes are the router's own patterns or "unmatched", so every label comes
/// from a fixed set.
pub(crate) fn series(method: &Method, route: &str, status: StatusCode) -> Series {
    static SERIES: OnceLock<RwLock<SeriesMap>> = OnceLock::new();
    let all = SERIES.get_or_init(Default::default);
    let method = method_label(method);
    let key = (method, status);
    if let Some(found) = all.read().unwrap_or_else(|p| p.into_inner()).get(&key).and_then(|r| r.get(route)) {
        return found.clone();
    }
    registry();
    let labels =
        [("method", method.to_owned()), ("route", route.to_owned()), ("status", status.as_u16().to_string())];
    let series = (
        metrics::counter!("http_requests_total", &labels),
        metrics::histogram!("http_request_duration_seconds", &labels),
    );
    let mut all = all.write().unwrap_or_else(|p| p.into_inner());
    all.entry(key).or_default().insert(route.to_owned(), series.clone());
    series
}

/// The registry in Prometheus's text format.
pub fn render() -> Response {
    let body = registry().render();
    ([(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"))], body).into_response()
}
