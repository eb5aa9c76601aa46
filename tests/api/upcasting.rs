//! Stored v1 events read as v2 everywhere: through the store, the projector and the API, on
//! SQLite and Postgres, while the stored rows stay exactly as written.

use chrono::Utc;
use movies::Seed;
use serde_json::Value;
use sqlx::Row;
use uuid::Uuid;

use crate::helpers::{settings, spawn_with};

fn fixture(name: &str) -> Value {
    // Where cargo runs the test from, not where the binary was built (see the events crate's test).
    let root = std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
    let path = std::path::Path::new(&root).join("events/tests/fixtures/v1").join(name);
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Writes the fixtures as raw rows, the way the first release stored them.
async fn store_v1<'c, DB: sqlx::Database>(pool: &sqlx::Pool<DB>, id: Uuid)
where
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'e> &'e sqlx::Pool<DB>: sqlx::Executor<'e, Database = DB>,
    i64: sqlx::Type<DB> + for<'q> sqlx::Encode<'q, DB>,
    i32: sqlx::Type<DB> + for<'q> sqlx::Encode<'q, DB>,
    String: sqlx::Type<DB> + for<'q> sqlx::Encode<'q, DB>,
    Uuid: sqlx::Type<DB> + for<'q> sqlx::Encode<'q, DB>,
    chrono::DateTime<Utc>: sqlx::Type<DB> + for<'q> sqlx::Encode<'q, DB>,
    sqlx::types::Json<Value>: sqlx::Type<DB> + for<'q> sqlx::Encode<'q, DB>,
{
    for (n, name) in ["movie.created.json", "movie.updated.json"].into_iter().enumerate() {
        let f = fixture(name);
        sqlx::query(
            "INSERT INTO events (position, event_id, stream_id, stream_version, event_type, schema_version, payload, \
             recorded_at, actor_subject, actor_role, request_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'first-release', 'admin', NULL)",
        )
        .bind(n as i64 + 1)
        .bind(Uuid::now_v7())
        .bind(id)
        .bind(n as i64 + 1)
        .bind(f["event_type"].as_str().unwrap().to_owned())
        .bind(f["schema_version"].as_i64().unwrap() as i32)
        .bind(sqlx::types::Json(f["payload"].clone()))
        .bind(Utc::now())
        .execute(pool)
        .await
        .unwrap();
    }
}

async fn assert_read_as_v2(app: &crate::helpers::TestApp, id: Uuid) {
    let movie = app.get_json(&format!("/api/v1/movies/{id}?min_position=2")).await;
    assert_eq!(movie["name"], "The Wizard of Oz");
    assert_eq!(movie["popularity"], 85.5);
    assert_eq!(movie["genres"], serde_json::json!(["Drama", "Music"]));
    assert_eq!(movie["version"], 2);
    let found = app.get_json("/api/v1/search?q=wizard").await;
    assert_eq!(found["items"][0]["id"], id.to_string());
}

#[tokio::test]
async fn v1_events_in_sqlite_read_as_v2_and_stay_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(dir.path().to_path_buf(), Seed::Nothing);
    let id = Uuid::now_v7();
    {
        movies::open_write_side(&settings).await.unwrap();
        let file = movies_store::open_sqlite(&dir.path().join("events.db")).await.unwrap();
        store_v1(&file.writer, id).await;
    }
    let app = spawn_with(settings).await;
    assert_read_as_v2(&app, id).await;
    let file = movies_store::open_sqlite(&dir.path().join("events.db")).await.unwrap();
    let rows = sqlx::query("SELECT schema_version, payload FROM events ORDER BY position")
        .fetch_all(&file.reader)
        .await
        .unwrap();
    for row in rows {
        assert_eq!(row.get::<i32, _>("schema_version"), 1);
        assert!(
            row.get::<String, _>("payload").contains("99popularity"),
            "stored events are never rewritten"
        );
    }
}

#[tokio::test]
async fn v1_events_in_postgres_read_as_v2_and_stay_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings(dir.path().to_path_buf(), Seed::Nothing);
    let url = movies_store::testing::postgres_database().await;
    settings.database_url = Some(url.clone());
    let id = Uuid::now_v7();
    movies::open_write_side(&settings).await.unwrap();
    let pool = movies_store::connect_postgres(&url, 2).await.unwrap();
    store_v1(&pool, id).await;
    let app = spawn_with(settings).await;
    assert_read_as_v2(&app, id).await;
    let versions: Vec<i32> = sqlx::query_scalar("SELECT schema_version FROM events ORDER BY position")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(versions, [1, 1]);
}
