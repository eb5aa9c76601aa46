//! Blue-green rebuilds: `movies replay` builds new generations beside the live ones; the running
//! server keeps serving, then follows the flipped pointers.

use indicatif::ProgressBar;
use movies::replay::{replay, Outcome, Which};
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::helpers::{movie, settings, spawn_seeded, spawn_with, TestApp};

fn never() -> watch::Receiver<bool> {
    watch::channel(false).1
}

async fn generations(app: &TestApp) -> (i64, i64) {
    let health = app.get_json("/health").await;
    (health["generations"]["read_store"].as_i64().unwrap(), health["generations"]["search"].as_i64().unwrap())
}

async fn follows(app: &TestApp, wanted: (i64, i64)) {
    for _ in 0..50 {
        if generations(app).await == wanted {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the server never followed to generations {wanted:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_rebuilds_beside_the_live_projections_and_the_server_follows() {
    let app = spawn_seeded().await;
    // Damage the live read store behind the server's back: only a rebuild from the log heals it.
    let file = movies_store::open_sqlite(&app.settings.data_dir.join("read.db")).await.unwrap();
    sqlx::query("DELETE FROM movies WHERE name = 'Casablanca'").execute(&file.writer).await.unwrap();
    assert_eq!(app.all_movies().await.len(), 247);

    let outcome = replay(&app.settings, Which::All, false, &ProgressBar::hidden(), never()).await.unwrap();
    assert!(matches!(outcome, Outcome::Swapped { events: 248, .. }), "{outcome:?}");
    follows(&app, (1, 1)).await;
    assert_eq!(app.all_movies().await.len(), 248);
    assert_eq!(app.get_json("/api/movies/?search=casablanca").await.as_array().unwrap().len(), 1);

    // The new generation was loaded without its secondary indexes, which were rebuilt after.
    let rebuilt = movies_store::open_sqlite(&app.settings.data_dir.join("read-g1.db")).await.unwrap();
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL ORDER BY name",
    )
    .fetch_all(&rebuilt.reader)
    .await
    .unwrap();
    assert_eq!(
        indexes,
        [
            "movie_genres_by_genre",
            "movies_by_director",
            "movies_by_name",
            "movies_by_popularity",
            "movies_by_score"
        ]
    );

    // The server's projector now writes the new generation.
    let token = app.admin_token().await;
    let created: Value = app.created(&token, &movie("Arrival")).await;
    assert_eq!(
        app.get_json(&format!("/api/v1/search?q=arrival&min_position={}", 249)).await["items"][0]["id"],
        created["id"]
    );

    let write = movies::open_write_side(&app.settings).await.unwrap();
    let read_store = movies::replay::open_read_store(&app.settings, 1).await.unwrap();
    let index =
        movies_search::TantivySearchIndex::open_read_only(&movies::replay::index_dir(&app.settings, 1))
            .unwrap();
    let report = movies_projector::verify::verify(write.events.as_ref(), read_store.as_ref(), &index, None)
        .await
        .unwrap();
    assert!(report.is_clean(), "{:?}", report.differences);
    assert_eq!(report.movies, 249);

    // A second replay moves on to generation 2 and clears generation 0.
    replay(&app.settings, Which::Search, false, &ProgressBar::hidden(), never()).await.unwrap();
    follows(&app, (1, 2)).await;
    assert!(!movies::replay::index_dir(&app.settings, 0).exists());
    assert_eq!(app.get_json("/api/v1/search?q=arrival").await["total"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_or_an_interrupted_replay_leaves_the_live_projections_untouched() {
    let app = spawn_seeded().await;
    let plan = replay(&app.settings, Which::All, true, &ProgressBar::hidden(), never()).await.unwrap();
    let Outcome::Planned(text) = plan else { panic!("{plan:?}") };
    assert!(text.contains("read-store: rebuild generation 1 from 248 events"), "{text}");
    assert!(text.contains("search: rebuild generation 1"), "{text}");

    let (stop, interrupted) = watch::channel(true);
    let outcome =
        replay(&app.settings, Which::All, false, &ProgressBar::hidden(), interrupted).await.unwrap();
    drop(stop);
    assert_eq!(outcome, Outcome::Interrupted);
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    assert_eq!(generations(&app).await, (0, 0));
    assert!(!movies::replay::index_dir(&app.settings, 1).exists());
    assert!(!app.settings.data_dir.join("read-g1.db").exists());
    assert_eq!(app.all_movies().await.len(), 248);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_on_postgres_builds_the_new_generation_in_its_own_schema() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings(dir.path().to_path_buf(), movies::Seed::Bundled);
    settings.database_url = Some(movies_store::testing::postgres_database().await);
    let app = spawn_with(settings).await;
    // Edits and deletes in the log: the rebuild's batch is split by stream over two connections,
    // and must fold to the same rows and genre counts as the live projection.
    let token = app.admin_token().await;
    let movies = app.all_movies().await;
    for (n, movie) in movies.iter().take(12).enumerate() {
        let path = format!("/api/v1/movies/{}", movie["id"].as_str().unwrap());
        let response = match n % 3 {
            0 => app.http.delete(app.url(&path)).bearer_auth(&token).send().await.unwrap(),
            _ => {
                let change = json!({ "genres": ["Replayed", format!("Edit {}", n % 2)], "imdb_score": 1.5 });
                app.http.patch(app.url(&path)).bearer_auth(&token).json(&change).send().await.unwrap()
            }
        };
        assert!(response.status().is_success(), "{path}: {}", response.status());
    }
    let head = app.get_json("/health").await["log_head"].as_i64().unwrap();
    app.wait_for(head).await;
    let (before, genres) = (app.all_movies().await, app.get_json("/api/v1/genres").await);
    assert_eq!(before.len(), 244);
    let outcome =
        replay(&app.settings, Which::ReadStore, false, &ProgressBar::hidden(), never()).await.unwrap();
    assert!(matches!(outcome, Outcome::Swapped { events: 260, .. }), "{outcome:?}");
    follows(&app, (1, 0)).await;
    assert_eq!(app.all_movies().await, before);
    assert_eq!(app.get_json("/api/v1/genres").await, genres);
    app.created(&token, &movie("Arrival")).await;
    assert_eq!(app.all_movies().await.len(), 245);
}
