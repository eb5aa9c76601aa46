//! Every kind of bad input gets a problem+json 4xx, and nothing stored changes.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, movie, spawn_app, TestApp};

async fn app_with_a_movie() -> (TestApp, String, String) {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let created = app.created(&token, &movie("Alien")).await;
    let path = format!("/api/v1/movies/{}", created["id"].as_str().unwrap());
    (app, token, path)
}

#[tokio::test]
async fn unknown_routes_get_404_and_wrong_methods_405() {
    let (app, token, path) = app_with_a_movie().await;
    let before = app.snapshot().await;
    assert_problem(app.get("/api/v1/nothing-here").await, StatusCode::NOT_FOUND).await;
    let wrong = app.http.post(app.url(&path)).bearer_auth(&token).json(&movie("X")).send().await.unwrap();
    assert!(wrong.headers().contains_key("allow"));
    assert_problem(wrong, StatusCode::METHOD_NOT_ALLOWED).await;
    let wrong = app.http.delete(app.url("/api/v1/movies")).bearer_auth(&token).send().await.unwrap();
    assert_problem(wrong, StatusCode::METHOD_NOT_ALLOWED).await;
    assert_eq!(app.snapshot().await, before);
}

#[tokio::test]
async fn malformed_json_gets_400() {
    let (app, token, path) = app_with_a_movie().await;
    let before = app.snapshot().await;
    for (method, target) in [("POST", "/api/v1/movies"), ("PUT", path.as_str()), ("PATCH", path.as_str())] {
        let response = app
            .http
            .request(method.parse().unwrap(), app.url(target))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(r#"{"name": "Alien", "#)
            .send()
            .await
            .unwrap();
        assert_problem(response, StatusCode::BAD_REQUEST).await;
    }
    let not_object =
        app.http.patch(app.url(&path)).bearer_auth(&token).json(&json!([1, 2])).send().await.unwrap();
    assert_problem(not_object, StatusCode::BAD_REQUEST).await;
    assert_eq!(app.snapshot().await, before);
}

#[tokio::test]
async fn a_body_that_is_not_json_gets_415() {
    let (app, token, path) = app_with_a_movie().await;
    let before = app.snapshot().await;
    let body = serde_json::to_string(&movie("Heat")).unwrap();
    for (method, target, content_type) in [
        ("POST", "/api/v1/movies", "text/plain"),
        ("PUT", path.as_str(), "application/xml"),
        ("POST", "/api/v1/movies", ""),
    ] {
        let mut request =
            app.http.request(method.parse().unwrap(), app.url(target)).bearer_auth(&token).body(body.clone());
        if !content_type.is_empty() {
            request = request.header("content-type", content_type);
        }
        assert_problem(request.send().await.unwrap(), StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    }
    assert_eq!(app.snapshot().await, before);
}

#[tokio::test]
async fn a_body_over_64_kib_gets_413() {
    let (app, token, path) = app_with_a_movie().await;
    let before = app.snapshot().await;
    let mut huge = movie("Heat");
    huge["director"] = json!("x".repeat(70 * 1024));
    assert_problem(app.create(&token, &huge).await, StatusCode::PAYLOAD_TOO_LARGE).await;
    let put = app.http.put(app.url(&path)).bearer_auth(&token).json(&huge).send().await.unwrap();
    assert_problem(put, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert_eq!(app.snapshot().await, before);
}

#[tokio::test]
async fn rule_breaking_movies_get_422_listing_every_failing_field() {
    let (app, token, path) = app_with_a_movie().await;
    let before = app.snapshot().await;
    let bad = json!({
        "name": "   ",
        "director": "d".repeat(201),
        "popularity": 101,
        "imdb_score": -1,
        "genres": [],
    });
    let body = assert_problem(app.create(&token, &bad).await, StatusCode::UNPROCESSABLE_ENTITY).await;
    let fields: Vec<&str> =
        body["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["name", "director", "popularity", "imdb_score", "genres"]);

    let too_many = json!({ "genres": (0..21).map(|n| format!("g{n}")).collect::<Vec<_>>() });
    let patch = app.http.patch(app.url(&path)).bearer_auth(&token).json(&too_many).send().await.unwrap();
    assert_problem(patch, StatusCode::UNPROCESSABLE_ENTITY).await;

    let patch = app
        .http
        .patch(app.url(&path))
        .bearer_auth(&token)
        .json(&json!({"name": null, "budget": 5, "imdb_score": "high"}))
        .send()
        .await
        .unwrap();
    let body: Value = assert_problem(patch, StatusCode::UNPROCESSABLE_ENTITY).await;
    let mut fields: Vec<&str> =
        body["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    fields.sort();
    assert_eq!(fields, ["budget", "imdb_score", "name"]);

    // A NUL byte would be stored by SQLite but refused by Postgres: the domain refuses it for both.
    let nul = app
        .create(
            &token,
            &json!({ "name": "A\u{0}", "director": "B", "popularity": 1, "imdb_score": 1, "genres": ["C"] }),
        )
        .await;
    assert_problem(nul, StatusCode::UNPROCESSABLE_ENTITY).await;

    // Missing fields and wrong types in a full body are refused before the domain sees them.
    let missing = app.create(&token, &json!({ "name": "Heat" })).await;
    assert_problem(missing, StatusCode::UNPROCESSABLE_ENTITY).await;
    let wrong_type = app.create(&token, &json!({ "name": "Heat", "director": "M", "popularity": "hot", "imdb_score": 1, "genres": ["A"] })).await;
    assert_problem(wrong_type, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(app.snapshot().await, before);
}

#[tokio::test]
async fn malformed_headers_and_paths_get_400() {
    let (app, token, path) = app_with_a_movie().await;
    let before = app.snapshot().await;
    let put = app
        .http
        .put(app.url(&path))
        .bearer_auth(&token)
        .header("if-match", "version one")
        .json(&movie("X"))
        .send()
        .await
        .unwrap();
    assert_problem(put, StatusCode::BAD_REQUEST).await;
    let put = app
        .http
        .put(app.url("/api/v1/movies/123"))
        .bearer_auth(&token)
        .json(&movie("X"))
        .send()
        .await
        .unwrap();
    assert_problem(put, StatusCode::BAD_REQUEST).await;
    let missing = format!("/api/v1/movies/{}", uuid::Uuid::now_v7());
    let put = app.http.put(app.url(&missing)).bearer_auth(&token).json(&movie("X")).send().await.unwrap();
    assert_problem(put, StatusCode::NOT_FOUND).await;
    let token_body = app
        .http
        .post(app.url("/api/v1/auth/token"))
        .json(&json!({"username": "admin"}))
        .send()
        .await
        .unwrap();
    assert_problem(token_body, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(app.snapshot().await, before);
}
