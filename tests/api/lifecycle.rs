//! Starting, restarting and serving the documentation; the same API on Postgres.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{movie, settings, spawn_seeded, spawn_with, start};

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

#[tokio::test]
async fn a_server_with_a_backlog_answers_at_once_and_says_it_is_catching_up_until_it_has() {
    // A log of 30,000 movies that no projection has applied yet (as after `movies ingest`).
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(dir.path().to_path_buf(), movies::Seed::Nothing);
    let mut file = Vec::new();
    movies::generate::write(&mut file, 30_000, 7).unwrap();
    let write = movies::open_write_side(&settings).await.unwrap();
    let service = movies_command_api::CommandService::new(write.events);
    movies::ingest::ingest(&service, &file, &indicatif::ProgressBar::hidden()).await.unwrap();

    let app = start(settings).await;
    let health = app.get_json("/health").await;
    let lag = health["projection_lag"].as_i64().unwrap();
    assert!(lag > movies::HEALTHY_LAG, "the first health check came after catching up: {health}");
    assert_eq!(health["status"], "catching_up", "{health}");
    let ready = app.get("/ready").await;
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(ready.text().await.unwrap().contains("projections"));
    // Reads are served meanwhile, saying how far the projections have got.
    let list = app.get("/api/v1/movies?limit=1").await;
    assert_eq!(list.status(), StatusCode::OK);
    assert!(list.headers().contains_key("movies-projected-position"));

    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(300);
    while app.get("/ready").await.status() != StatusCode::OK {
        assert!(tokio::time::Instant::now() < deadline, "never caught up");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let health = app.get_json("/health").await;
    assert_eq!((health["status"].as_str(), health["projection_lag"].as_i64()), (Some("ok"), Some(0)));
    assert_eq!(app.get_json("/api/v1/search?q=&limit=1").await["total"], 30_000);
}
