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

/// Sends `body` as raw bytes with the admin token and the given extra header.
async fn send_raw(
    app: &TestApp,
    token: &str,
    method: &str,
    target: &str,
    body: Vec<u8>,
    header: Option<(&str, &str)>,
) -> reqwest::Response {
    let mut request = app
        .http
        .request(method.parse().unwrap(), app.url(target))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body);
    if let Some((name, value)) = header {
        request = request.header(name, value);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn unknown_fields_in_full_bodies_are_refused_on_v1_and_the_compatibility_routes() {
    let (app, token, path) = app_with_a_movie().await;
    let id = path.rsplit('/').next().unwrap().to_owned();
    let before = app.snapshot().await;
    let mut v1 = movie("Heat");
    v1["id"] = json!(uuid::Uuid::now_v7());
    v1["version"] = json!(7);
    let compat = json!({ "name": "Heat", "director": "M", "popularity": 1, "imdb_score": 1,
        "genre": [{ "name": "Crime" }], "id": 3 });
    for (method, target, body) in [
        ("POST", "/api/v1/movies".to_owned(), &v1),
        ("PUT", path.clone(), &v1),
        ("POST", "/api/movies/".to_owned(), &compat),
        ("PUT", format!("/api/movie/{id}/"), &compat),
    ] {
        let response = send_raw(&app, &token, method, &target, serde_json::to_vec(body).unwrap(), None).await;
        let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert!(
            problem["detail"].as_str().unwrap().contains("unknown field"),
            "{method} {target}: {problem}"
        );
    }
    assert_eq!(app.snapshot().await, before);
}

#[tokio::test]
async fn duplicate_keys_a_byte_order_mark_and_an_undecoded_content_encoding_are_refused() {
    let (app, token, path) = app_with_a_movie().await;
    let before = app.snapshot().await;
    let duplicated = br#"{"name": "Heat", "name": "Ronin", "director": "M", "popularity": 1, "imdb_score": 1, "genres": ["A"]}"#;
    for (method, target) in [("POST", "/api/v1/movies"), ("PUT", path.as_str()), ("PATCH", path.as_str())] {
        let response = send_raw(&app, &token, method, target, duplicated.to_vec(), None).await;
        let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
        assert!(problem["detail"].as_str().unwrap().contains("appears twice"), "{method}: {problem}");
    }
    let mut with_bom = b"\xEF\xBB\xBF".to_vec();
    with_bom.extend(serde_json::to_vec(&movie("Heat")).unwrap());
    let response = send_raw(&app, &token, "POST", "/api/v1/movies", with_bom, None).await;
    let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
    assert!(problem["detail"].as_str().unwrap().contains("byte-order mark"), "{problem}");
    let plain = serde_json::to_vec(&movie("Heat")).unwrap();
    for encoding in ["gzip", "br", "deflate"] {
        let response = send_raw(
            &app,
            &token,
            "POST",
            "/api/v1/movies",
            plain.clone(),
            Some(("content-encoding", encoding)),
        )
        .await;
        assert_problem(response, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    }
    assert_eq!(app.snapshot().await, before);
}

#[tokio::test]
async fn names_of_only_invisible_characters_are_refused_on_every_write_route() {
    let (app, token, path) = app_with_a_movie().await;
    let id = path.rsplit('/').next().unwrap().to_owned();
    let before = app.snapshot().await;
    let invisible = "\u{200B}\u{2060}";
    let v1 = json!({ "name": invisible, "director": "M", "popularity": 1, "imdb_score": 1, "genres": ["A"] });
    let compat = json!({ "name": invisible, "director": "M", "popularity": 1, "imdb_score": 1, "genre": [{ "name": "A" }] });
    for (method, target, body) in [
        ("POST", "/api/v1/movies".to_owned(), &v1),
        ("PUT", path.clone(), &v1),
        ("PATCH", path.clone(), &json!({ "name": invisible })),
        ("POST", "/api/movies/".to_owned(), &compat),
        ("PUT", format!("/api/movie/{id}/"), &compat),
    ] {
        let response = send_raw(&app, &token, method, &target, serde_json::to_vec(body).unwrap(), None).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{method} {target}");
        let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(problem["errors"][0]["field"], "name", "{method} {target}: {problem}");
    }
    assert_eq!(app.snapshot().await, before);
}
