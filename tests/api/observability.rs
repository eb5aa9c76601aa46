//! Metrics in Prometheus's text format, readiness per dependency.

use reqwest::StatusCode;

use crate::helpers::spawn_app;

/// The value of one sample line (`name{labels} value`) in a Prometheus text page, 0 if absent.
fn sample(page: &str, line_start: &str) -> f64 {
    page.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_count_and_time_requests_by_route_and_status_and_report_projection_lag() {
    let app = spawn_app().await;
    let series = r#"http_requests_total{method="GET",route="/api/v1/movies/{id}",status="404"}"#;
    let before = sample(&app.get("/metrics").await.text().await.unwrap(), series);
    for _ in 0..3 {
        let missing = format!("/api/v1/movies/{}", uuid::Uuid::now_v7());
        assert_eq!(app.get(&missing).await.status(), StatusCode::NOT_FOUND);
    }
    let response = app.get("/metrics").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let page = response.text().await.unwrap();
    assert!(sample(&page, series) >= before + 3.0, "three more 404s by route template:\n{page}");
    assert!(page.contains(r#"http_request_duration_seconds_bucket{method="GET",route="/api/v1/movies/{id}",status="404",le="0.005"}"#), "{page}");
    assert!(page.contains("movies_projection_lag_events "), "{page}");
    assert!(page.contains("movies_projection_lag_seconds "), "{page}");
}

#[tokio::test]
async fn ready_names_each_dependency() {
    let app = spawn_app().await;
    let response = app.get("/ready").await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["ready"], true);
    assert_eq!(body["dependencies"]["event log"], "up");
}
