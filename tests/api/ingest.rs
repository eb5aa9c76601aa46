//! `movies ingest` semantics, through the library the CLI calls.

use std::sync::Arc;

use indicatif::ProgressBar;
use movies::ingest::{ingest, IngestError, IngestReport};
use movies_command_api::CommandService;
use movies_store::{open_sqlite, EventStore, SqliteEventStore};
use serde_json::json;

async fn service() -> (CommandService, Arc<SqliteEventStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        SqliteEventStore::open(open_sqlite(&dir.path().join("events.db")).await.unwrap()).await.unwrap(),
    );
    (CommandService::new(store.clone()), store, dir)
}

#[tokio::test]
async fn ingesting_twice_creates_each_movie_once() {
    let (service, store, _dir) = service().await;
    let first = ingest(&service, movies::BUNDLED_SEED, &ProgressBar::hidden()).await.unwrap();
    assert_eq!(first, IngestReport { created: 248, ..Default::default() });
    let head = store.head().await.unwrap();
    let again = ingest(&service, movies::BUNDLED_SEED, &ProgressBar::hidden()).await.unwrap();
    assert_eq!(again, IngestReport { unchanged: 248, ..Default::default() });
    assert_eq!(store.head().await.unwrap(), head);
    let events = store.read_all(0, 1000).await.unwrap();
    assert!(events.iter().all(|e| e.metadata.actor.subject == "system:ingest"));
    // Event ids are time-ordered: a bulk load adds them at one end of the log's id index.
    assert!(events.windows(2).all(|pair| pair[0].event_id < pair[1].event_id));
}

#[tokio::test]
async fn a_changed_record_is_updated_and_bad_records_are_reported_by_index() {
    let (service, store, _dir) = service().await;
    let file = json!([
        { "99popularity": 83.0, "director": "Victor Fleming", "genre": ["Adventure", " Family"], "imdb_score": 8.3, "name": "The Wizard of Oz" },
        { "99popularity": 101.0, "director": "Nobody", "genre": ["Drama"], "imdb_score": 5.0, "name": "Too Popular" },
        { "director": "Nobody", "genre": ["Drama"], "imdb_score": 5.0, "name": "No Popularity" },
        { "99popularity": 53.0, "director": "Larry Semon", "genre": ["Adventure"], "imdb_score": 5.3, "name": "The Wizard of Oz" },
        { "99popularity": 10.0, "director": " victor fleming ", "genre": ["Drama"], "imdb_score": 1.0, "name": "the wizard of oz" },
        "not a record",
    ]);
    let report = ingest(&service, file.to_string().as_bytes(), &ProgressBar::hidden()).await.unwrap();
    assert_eq!((report.created, report.updated, report.unchanged), (2, 0, 0));
    let rejected: Vec<usize> = report.rejected.iter().map(|(index, _)| *index).collect();
    assert_eq!(rejected, [1, 2, 4, 5]);
    assert!(report.rejected[0].1.contains("popularity"));
    assert!(report.rejected[1].1.contains("missing field `99popularity`"), "{:?}", report.rejected[1]);
    assert!(
        !report.rejected[1].1.contains(" at line "),
        "a record's position is its index: {:?}",
        report.rejected[1]
    );
    assert!(report.rejected[2].1.contains("record 0"));

    let changed = json!([
        { "99popularity": 84.0, "director": "Victor Fleming", "genre": ["Adventure", " Family"], "imdb_score": 8.3, "name": "The Wizard of Oz" },
    ]);
    let report = ingest(&service, changed.to_string().as_bytes(), &ProgressBar::hidden()).await.unwrap();
    assert_eq!((report.created, report.updated), (0, 1));
    assert_eq!(store.head().await.unwrap(), 3);
}

#[tokio::test]
async fn a_malformed_file_writes_nothing() {
    let (service, store, _dir) = service().await;
    for file in [&b"[{\"name\": \"Alien\""[..], b"{\"not\": \"an array\"}", b""] {
        let result = ingest(&service, file, &ProgressBar::hidden()).await;
        assert!(matches!(result, Err(IngestError::Malformed(_))), "{result:?}");
    }
    assert_eq!(store.head().await.unwrap(), 0);
}
