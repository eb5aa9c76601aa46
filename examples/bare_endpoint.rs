//! The machine's ceiling for `bench/load.sh`: a bare axum server answering every GET with a
//! movie-sized JSON document serialized per request, with no store, cache or middleware.
//!
//! Usage: bare_endpoint ADDRESS

use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

#[derive(Serialize)]
struct Movie {
    id: &'static str,
    name: &'static str,
    director: &'static str,
    popularity: f64,
    imdb_score: f64,
    genres: [&'static str; 2],
    version: i64,
    created_at: &'static str,
    updated_at: &'static str,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let address = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8090".into());
    let app = Router::new().fallback(get(|| async {
        Json(Movie {
            id: "01a20893-866e-7358-a513-a7112f467bde",
            name: "The Golden River",
            director: "Ann Example",
            popularity: 81.5,
            imdb_score: 7.9,
            genres: ["Drama", "Adventure"],
            version: 1,
            created_at: "2026-11-23T12:00:00Z",
            updated_at: "2026-11-23T12:00:00Z",
        })
    }));
    let listener = tokio::net::TcpListener::bind(&address).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
