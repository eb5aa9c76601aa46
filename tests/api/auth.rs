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

/// Polls `check` every 100 ms for at most the account cache's lifetime and a margin.
async fn within_account_ttl<F, Fut>(mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + movies_command_api::ACCOUNT_STATE_TTL * 3;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "the account change did not apply in time");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_signed_token_for_an_account_that_does_not_exist_cannot_write() {
    let app = spawn_app().await;
    let before = app.snapshot().await;
    let ours = JwtKeys::load_or_create(&app.settings.data_dir.join("keys")).unwrap();
    let ghost = ours.issue("ghost", Role::Admin, chrono::Utc::now().timestamp(), 3600).unwrap();
    let body = assert_problem(app.create(&ghost, &movie("Alien")).await, StatusCode::UNAUTHORIZED).await;
    assert!(body["detail"].as_str().unwrap().contains("does not exist or is disabled"), "{body}");
    assert_eq!(app.snapshot().await, before);
}

#[tokio::test]
async fn disabling_or_demoting_an_admin_stops_their_token_writing_within_seconds() {
    let app = spawn_app().await;
    let write = movies::open_write_side(&app.settings).await.unwrap();
    for (name, change, status) in [
        ("dora", movies_store::AccountChange { disabled: Some(true), ..Default::default() }, 401),
        ("dean", movies_store::AccountChange { role: Some(Role::User), ..Default::default() }, 403),
    ] {
        let account = movies_store::Account {
            username: name.into(),
            password_hash: app.settings.hasher.hash("pw-for-tests"),
            role: Role::Admin,
            created_at: chrono::Utc::now(),
            disabled: false,
        };
        write.accounts.create(&account).await.unwrap();
        let token: Value = app.token(name, "pw-for-tests").await.json().await.unwrap();
        let token = token["access_token"].as_str().unwrap().to_owned();
        assert_eq!(app.create(&token, &movie("Before")).await.status(), StatusCode::CREATED);
        assert!(write.accounts.update(name, &change).await.unwrap());
        within_account_ttl(|| {
            let (app, token) = (&app, token.clone());
            async move { app.create(&token, &movie("After")).await.status().as_u16() == status }
        })
        .await;
    }
    // A disabled account cannot sign in either.
    assert_problem(app.token("dora", "pw-for-tests").await, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn failed_sign_ins_are_throttled_per_username_with_retry_after() {
    let app = spawn_app().await;
    for _ in 0..movies_command_api::FAILURES_PER_USERNAME {
        assert_problem(app.token("admin", "guess").await, StatusCode::UNAUTHORIZED).await;
    }
    let refused = app.token("admin", ADMIN_PASSWORD).await;
    let retry_after: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry_after >= 1, "{retry_after}");
    assert_problem(refused, StatusCode::TOO_MANY_REQUESTS).await;
    // Another name from the same address is not locked out by these.
    app.user_token().await;
    // A huge made-up username is refused without keeping it.
    let long = "x".repeat(10_000);
    assert_problem(app.token(&long, "guess").await, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn the_jwks_document_holds_the_key_tokens_name() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').next().unwrap()).unwrap()).unwrap();
    let jwks = app.get_json("/.well-known/jwks.json").await;
    let key = &jwks["keys"][0];
    assert_eq!((key["kty"].as_str(), key["crv"].as_str()), (Some("OKP"), Some("Ed25519")));
    assert_eq!(key["kid"], header["kid"], "{jwks}");
    assert!(key.get("d").is_none(), "the private key is not published");
}
