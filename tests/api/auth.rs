use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use movies_events::Role;
use movies_web::JwtKeys;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, movie, spawn_app, ADMIN_PASSWORD};

#[tokio::test]
async fn the_token_endpoint_issues_a_bearer_token_for_valid_credentials() {
    let app = spawn_app().await;
    let response = app.token("admin", ADMIN_PASSWORD).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(token.split('.').count(), 3);
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').next().unwrap()).unwrap()).unwrap();
    assert_eq!(header["alg"], "EdDSA");
}

#[tokio::test]
async fn a_wrong_password_or_unknown_user_gets_401() {
    let app = spawn_app().await;
    assert_problem(app.token("admin", "not the password").await, StatusCode::UNAUTHORIZED).await;
    assert_problem(app.token("nobody", ADMIN_PASSWORD).await, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn a_write_without_a_token_gets_401_and_with_a_user_token_403() {
    let app = spawn_app().await;
    let before = app.snapshot().await;
    let anonymous = app.http.post(app.url("/api/v1/movies")).json(&movie("Alien")).send().await.unwrap();
    assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");
    assert_problem(anonymous, StatusCode::UNAUTHORIZED).await;
    let user = app.user_token().await;
    assert_problem(app.create(&user, &movie("Alien")).await, StatusCode::FORBIDDEN).await;
    let compat =
        app.http.post(app.url("/api/movies/")).bearer_auth(&user).json(&json!({})).send().await.unwrap();
    assert_problem(compat, StatusCode::FORBIDDEN).await;
    assert_eq!(app.snapshot().await, before);
}

fn segment(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

#[tokio::test]
async fn expired_tampered_foreign_and_unsigned_tokens_get_401_on_writes_and_reads() {
    let app = spawn_app().await;
    let before = app.snapshot().await;
    let now = chrono::Utc::now().timestamp();
    let ours = JwtKeys::load_or_create(&app.settings.data_dir.join("keys")).unwrap();
    let (private, public) = JwtKeys::generate_pem().unwrap();
    let theirs = JwtKeys::from_pem(private.as_bytes(), public.as_bytes()).unwrap();

    let expired = ours.issue("admin", Role::Admin, now - 7200, 3600).unwrap();
    let foreign = theirs.issue("admin", Role::Admin, now, 3600).unwrap();
    let user = ours.issue("reader", Role::User, now, 3600).unwrap();
    let parts: Vec<&str> = user.split('.').collect();
    let mut claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims["role"] = json!("admin");
    let tampered = format!("{}.{}.{}", parts[0], segment(&claims), parts[2]);
    let unsigned = format!("{}.{}.", segment(&json!({ "alg": "none", "typ": "JWT" })), segment(&claims));
    let hmac =
        format!("{}.{}.{}", segment(&json!({ "alg": "HS256", "typ": "JWT" })), segment(&claims), parts[2]);

    for token in [expired, foreign, tampered, unsigned, hmac, "garbage".to_owned()] {
        assert_problem(app.create(&token, &movie("Alien")).await, StatusCode::UNAUTHORIZED).await;
        let read = app.http.get(app.url("/api/v1/movies")).bearer_auth(&token).send().await.unwrap();
        assert_problem(read, StatusCode::UNAUTHORIZED).await;
    }
    let not_bearer =
        app.http.get(app.url("/api/v1/movies")).header("authorization", "Basic YTpi").send().await.unwrap();
    assert_problem(not_bearer, StatusCode::UNAUTHORIZED).await;
    assert_eq!(app.snapshot().await, before);
}

#[tokio::test]
async fn reads_are_open_to_anonymous_callers_users_and_admins() {
    let app = spawn_app().await;
    let (user, admin) = (app.user_token().await, app.admin_token().await);
    assert_eq!(app.get("/api/v1/movies").await.status(), StatusCode::OK);
    for token in [user, admin] {
        let response = app.http.get(app.url("/api/v1/genres")).bearer_auth(token).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
}
