//! Starting, restarting and serving the documentation; the same API on Postgres.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{movie, settings, spawn_seeded, spawn_with};

#[tokio::test]
async fn a_restart_keeps_every_movie_and_ingests_nothing_twice() {
    let app = spawn_seeded().await;
    let token = app.admin_token().await;
    app.created(&token, &movie("Alien")).await;
    let before = app.snapshot().await;
    assert_eq!(before.1.len(), 249);
    let settings = app.settings.clone();
    let dir = app.stop().await;

    let app = spawn_with(settings).await;
    assert_eq!(app.snapshot().await, before);
    // The same admin password still works; the signing key survived the restart too.
    app.created(&app.admin_token().await, &movie("Heat")).await;
    assert_eq!(app.all_movies().await.len(), 250);
    drop(dir);
}

#[tokio::test]
async fn the_openapi_document_and_interactive_docs_are_served_offline() {
    let app = spawn_seeded().await;
    let doc = app.get_json("/api/v1/openapi.json").await;
    for path in [
        "/api/v1/movies",
        "/api/v1/movies/{id}",
        "/api/v1/search",
        "/api/v1/genres",
        "/api/v1/auth/token",
        "/api/movies/",
        "/api/movie/{id}/",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} is documented");
    }
    let docs = app.get("/docs/").await;
    assert_eq!(docs.status(), StatusCode::OK);
    let html = docs.text().await.unwrap();
    assert!(html.contains("swagger-ui"));
    assert!(!html.contains("https://"), "no asset comes from a CDN");
    let script = app.get("/docs/swagger-ui-bundle.js").await;
    assert_eq!(script.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_api_works_the_same_on_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings(dir.path().to_path_buf(), movies::Seed::Bundled);
    settings.database_url = Some(movies_store::testing::postgres_database().await);
    let app = spawn_with(settings).await;
    assert_eq!(app.all_movies().await.len(), 248);
    let token = app.admin_token().await;
    let created = app.created(&token, &movie("Alien")).await;
    let read: Value = app.get_json(&format!("/api/v1/movies/{}", created["id"].as_str().unwrap())).await;
    assert_eq!(read, created);
    let found = app.get_json("/api/movies/?search=alien").await;
    assert!(found.as_array().unwrap().iter().any(|m| m["name"] == "Alien"));
}
