//! Rate limits: anonymous callers by address, users by subject, admins exempt; 429 problems
//! with Retry-After and RateLimit headers; X-Forwarded-For believed only from trusted proxies.

use movies::Seed;
use movies_web::RateLimits;
use reqwest::StatusCode;

use crate::helpers::{assert_problem, settings, spawn_with, TestApp};

async fn limited(
    anonymous: u64,
    user: u64,
    trusted_proxies: Vec<std::net::IpAddr>,
) -> (TestApp, tempfile::TempDir) {
    // Limits count in one-minute windows: start well inside one, so a test's requests share it.
    let second = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() % 60;
    if second > 50 {
        tokio::time::sleep(std::time::Duration::from_secs(61 - second)).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings(dir.path().to_path_buf(), Seed::Nothing);
    settings.rate = RateLimits { anonymous_per_minute: anonymous, user_per_minute: user, trusted_proxies };
    (spawn_with(settings).await, dir)
}

async fn get_as(app: &TestApp, token: Option<&str>, forwarded_for: Option<&str>) -> reqwest::Response {
    let mut request = app.http.get(app.url("/api/v1/movies"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(address) = forwarded_for {
        request = request.header("x-forwarded-for", address);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn an_anonymous_client_over_its_limit_gets_429_with_when_to_retry() {
    let (app, _dir) = limited(5, 0, vec![]).await;
    for n in 0..5u64 {
        let response = get_as(&app, None, None).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["ratelimit-limit"], "5");
        assert_eq!(response.headers()["ratelimit-remaining"].to_str().unwrap(), (4 - n).to_string());
    }
    let response = get_as(&app, None, None).await;
    let retry: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "retry within the window: {retry}");
    assert_eq!(response.headers()["ratelimit-remaining"], "0");
    let problem = assert_problem(response, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(problem["type"], "urn:movies:problem:rate-limited");
    // Health, readiness, metrics and static files answer over the limit.
    for path in ["/health", "/ready", "/metrics", "/assets/console.css", "/.well-known/jwks.json"] {
        assert_eq!(app.get(path).await.status(), StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn users_count_by_subject_and_admins_are_exempt() {
    let (app, _dir) = limited(2, 3, vec![]).await;
    // Tokens are issued before the anonymous budget is spent (the token endpoint counts too).
    let (user, admin) = (app.user_token().await, app.admin_token().await);
    for _ in 0..3 {
        assert_eq!(get_as(&app, Some(&user), None).await.status(), StatusCode::OK);
    }
    assert_eq!(get_as(&app, Some(&user), None).await.status(), StatusCode::TOO_MANY_REQUESTS);
    for _ in 0..20 {
        let response = get_as(&app, Some(&admin), None).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers().get("ratelimit-limit").is_none(), "admins are not counted");
    }
}

#[tokio::test]
async fn forwarded_addresses_count_only_from_trusted_proxies() {
    // Not trusted: every forwarded address is the same (the peer's) bucket.
    let (app, _dir) = limited(2, 0, vec![]).await;
    assert_eq!(get_as(&app, None, Some("203.0.113.1")).await.status(), StatusCode::OK);
    assert_eq!(get_as(&app, None, Some("203.0.113.2")).await.status(), StatusCode::OK);
    assert_eq!(get_as(&app, None, Some("203.0.113.3")).await.status(), StatusCode::TOO_MANY_REQUESTS);

    // Trusted (the test client is the proxy): each forwarded client has its own bucket, and a
    // client cannot pose as another by prepending addresses.
    let (app, _dir) = limited(2, 0, vec!["127.0.0.1".parse().unwrap()]).await;
    for _ in 0..2 {
        assert_eq!(get_as(&app, None, Some("203.0.113.1")).await.status(), StatusCode::OK);
    }
    assert_eq!(get_as(&app, None, Some("203.0.113.1")).await.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(get_as(&app, None, Some("203.0.113.2")).await.status(), StatusCode::OK);
    assert_eq!(
        get_as(&app, None, Some("198.51.100.7, 203.0.113.1")).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn the_console_pages_count_against_the_same_limit_as_the_api() {
    let (app, _dir) = limited(3, 0, vec![]).await;
    for path in ["/?q=heat", "/movies/00000000-0000-0000-0000-000000000000", "/api/v1/search?q=heat"] {
        assert_ne!(app.get(path).await.status(), StatusCode::TOO_MANY_REQUESTS, "{path}");
    }
    // Searching from the page is searching: over the limit, it waits like the API.
    let response = app.get("/?q=heat").await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().contains_key("retry-after"));
    // So does the sign-in form, whose failures are then counted by address as well.
    let form = app.http.post(app.url("/admin/sign-in")).form(&[
        ("username", "admin"),
        ("password", "x"),
        ("csrf", ""),
    ]);
    assert_eq!(form.send().await.unwrap().status(), StatusCode::TOO_MANY_REQUESTS);
}
