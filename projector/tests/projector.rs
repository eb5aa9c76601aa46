//! The projector against real stores: every event applied once, duplicates ignored, gaps healed
//! from the log; for both read store dialects.

use std::sync::Arc;

use movies_events::{EventEnvelope, MovieChanges, MovieEvent};
use movies_projector::Projector;
use movies_read_model::{ListQuery, Live, PgReadStore, ProjectionError, ProjectionStore, SqliteReadStore};
use movies_search::{SearchQuery, TantivySearchIndex};
use movies_store::contract::{created, new_event, renamed};
use movies_store::testing::postgres_database;
use movies_store::{connect_postgres, open_sqlite, EventStore, SqliteEventStore};
use uuid::Uuid;

struct Setup {
    events: Arc<dyn EventStore>,
    read: Arc<dyn ProjectionStore>,
    search: Arc<TantivySearchIndex>,
    dir: tempfile::TempDir,
}

async fn setup(postgres: bool) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let events = Arc::new(
        SqliteEventStore::open(open_sqlite(&dir.path().join("events.db")).await.unwrap()).await.unwrap(),
    );
    let read: Arc<dyn ProjectionStore> = if postgres {
        let pool = connect_postgres(&postgres_database().await, 8).await.unwrap();
        Arc::new(PgReadStore::open(pool).await.unwrap())
    } else {
        let file = open_sqlite(&dir.path().join("read.db")).await.unwrap();
        Arc::new(SqliteReadStore::open(file.writer, file.reader).await.unwrap())
    };
    let search = Arc::new(TantivySearchIndex::open(&dir.path().join("index")).unwrap());
    Setup { events, read, search, dir }
}

async fn log(setup: &Setup) -> Vec<EventEnvelope> {
    setup.events.read_all(0, 1000).await.unwrap()
}

async fn duplicates_and_replays_change_nothing(postgres: bool) {
    let s = setup(postgres).await;
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    s.events.append(a, 0, vec![new_event(created("Alien")), new_event(renamed("Aliens"))]).await.unwrap();
    s.events.append(b, 0, vec![new_event(created("Heat"))]).await.unwrap();
    s.events.append(b, 1, vec![new_event(MovieEvent::Deleted)]).await.unwrap();
    let projector = Projector::new(s.events.clone(), s.read.clone(), Arc::new(Live::new(s.search.clone())));
    assert_eq!(projector.catch_up().await.unwrap(), 4);

    let all = log(&s).await;
    s.read.apply(&all).await.unwrap();
    s.read.apply(&all[..2]).await.unwrap();
    s.search.apply(&all).unwrap();
    let page = s.read.list(&ListQuery { limit: 10, ..Default::default() }).await.unwrap();
    let names: Vec<_> = page.items.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["Aliens"]);
    assert_eq!(page.items[0].version, 2);
    assert_eq!(s.read.stream_version(b).await.unwrap(), 2);
    assert_eq!(s.read.checkpoint().await.unwrap(), 4);
    assert_eq!(s.search.len(), 1);
    let hits =
        s.search.search(&SearchQuery { text: "aliens".into(), limit: 10, ..Default::default() }).unwrap();
    assert_eq!(hits.hits.iter().map(|h| h.id).collect::<Vec<_>>(), vec![a]);
    let genres = s.read.genres().await.unwrap();
    assert_eq!(genres.len(), 1);
    assert_eq!((genres[0].genre.as_str(), genres[0].movies), ("Drama", 1));
}

async fn a_gap_in_a_stream_is_healed_from_the_log(postgres: bool) {
    let s = setup(postgres).await;
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    s.events.append(a, 0, vec![new_event(created("Alien"))]).await.unwrap();
    let score = MovieEvent::Updated(MovieChanges { imdb_score: Some(9.9), ..Default::default() });
    s.events.append(a, 1, vec![new_event(score)]).await.unwrap();
    s.events.append(b, 0, vec![new_event(created("Heat"))]).await.unwrap();
    let all = log(&s).await;
    // The read store's checkpoint passes A's second event without applying it: a gap.
    s.read.apply(&[all[0].clone(), all[2].clone()]).await.unwrap();
    s.search.apply(&all).unwrap();
    s.events.append(a, 2, vec![new_event(renamed("Aliens"))]).await.unwrap();
    let next = s.events.read_all(3, 10).await.unwrap();
    let refused = s.read.apply(&next).await;
    assert!(matches!(refused, Err(ProjectionError::Gap { have: 1, got: 3, .. })), "{refused:?}");

    let projector = Projector::new(s.events.clone(), s.read.clone(), Arc::new(Live::new(s.search.clone())));
    assert_eq!(projector.catch_up().await.unwrap(), 4);
    let movie = s.read.get(a).await.unwrap().unwrap();
    assert_eq!((movie.name.as_str(), movie.imdb_score, movie.version), ("Aliens", 9.9, 3));
}

#[tokio::test]
async fn sqlite_duplicates_and_replays_change_nothing() {
    duplicates_and_replays_change_nothing(false).await;
}

#[tokio::test]
async fn postgres_duplicates_and_replays_change_nothing() {
    duplicates_and_replays_change_nothing(true).await;
}

#[tokio::test]
async fn sqlite_a_gap_in_a_stream_is_healed_from_the_log() {
    a_gap_in_a_stream_is_healed_from_the_log(false).await;
}

#[tokio::test]
async fn postgres_a_gap_in_a_stream_is_healed_from_the_log() {
    a_gap_in_a_stream_is_healed_from_the_log(true).await;
}

#[tokio::test]
async fn the_index_checkpoint_survives_a_reopen() {
    let s = setup(false).await;
    s.events.append(Uuid::now_v7(), 0, vec![new_event(created("Alien"))]).await.unwrap();
    s.search.apply(&log(&s).await).unwrap();
    assert_eq!(s.search.checkpoint(), 1);
    let dir = s.dir.path().join("index");
    drop(s.search);
    let reopened = TantivySearchIndex::open(&dir).unwrap();
    assert_eq!((reopened.checkpoint(), reopened.len()), (1, 1));
}

#[tokio::test]
async fn a_read_store_built_by_another_version_is_refused_with_how_to_rebuild_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("read.db");
    let file = open_sqlite(&path).await.unwrap();
    SqliteReadStore::open(file.writer.clone(), file.reader.clone()).await.unwrap();
    sqlx::query("UPDATE projection_meta SET version = 0").execute(&file.writer).await.unwrap();
    let refused = SqliteReadStore::open(file.writer.clone(), file.reader.clone()).await.err().unwrap();
    assert!(matches!(refused, ProjectionError::Outdated { found: 0, .. }));
    assert!(refused.to_string().contains("movies replay --projection read-store"), "{refused}");
}

/// Kafka delivers partitions independently: the read store applies what arrives and moves its
/// checkpoint only past a prefix of the log that is wholly applied.
async fn out_of_order_batches_move_the_checkpoint_past_a_complete_prefix_only(postgres: bool) {
    let s = setup(postgres).await;
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    s.events.append(a, 0, vec![new_event(created("Alien"))]).await.unwrap();
    s.events.append(b, 0, vec![new_event(created("Heat"))]).await.unwrap();
    s.events.append(a, 1, vec![new_event(renamed("Aliens"))]).await.unwrap();
    s.events.append(b, 1, vec![new_event(MovieEvent::Deleted)]).await.unwrap();
    let all = log(&s).await;
    let (of_a, of_b): (Vec<_>, Vec<_>) = all.iter().cloned().partition(|e| e.stream_id == a);

    s.read.apply_unordered(&of_b).await.unwrap();
    assert_eq!(s.read.advance_checkpoint(&all).await.unwrap(), 0, "position 1 (movie a) is not applied yet");
    s.read.apply_unordered(&of_a).await.unwrap();
    s.read.apply_unordered(&of_b).await.unwrap();
    assert_eq!(s.read.advance_checkpoint(&all).await.unwrap(), all[3].position);
    assert_eq!(s.read.advance_checkpoint(&all[..1]).await.unwrap(), all[3].position, "never moves back");
    let genres = s.read.genres().await.unwrap();
    assert_eq!(genres.len(), 1);
    assert_eq!(
        (genres[0].genre.as_str(), genres[0].movies),
        ("Drama", 1),
        "redelivery counted nothing twice"
    );
}

#[tokio::test]
async fn sqlite_out_of_order_batches_move_the_checkpoint_past_a_complete_prefix_only() {
    out_of_order_batches_move_the_checkpoint_past_a_complete_prefix_only(false).await;
}

#[tokio::test]
async fn postgres_out_of_order_batches_move_the_checkpoint_past_a_complete_prefix_only() {
    out_of_order_batches_move_the_checkpoint_past_a_complete_prefix_only(true).await;
}

/// Two projector processes handed the same events at once (a consumer-group rebalance) apply
/// each stream once: per-stream locks serialize them and versions skip the second.
#[tokio::test]
async fn concurrent_projectors_applying_the_same_events_count_them_once() {
    let s = setup(true).await;
    for n in 0..200 {
        s.events.append(Uuid::now_v7(), 0, vec![new_event(created(&format!("Movie {n}")))]).await.unwrap();
    }
    let all = log(&s).await;
    let mut reversed = all.clone();
    reversed.reverse();
    let (one, two) = (s.read.clone(), s.read.clone());
    let (all2, reversed2) = (all.clone(), reversed.clone());
    let first = tokio::spawn(async move {
        for chunk in all2.chunks(20) {
            one.apply_unordered(chunk).await.unwrap();
        }
    });
    let second = tokio::spawn(async move {
        for chunk in reversed2.chunks(20) {
            two.apply_unordered(chunk).await.unwrap();
        }
    });
    first.await.unwrap();
    second.await.unwrap();
    let genres = s.read.genres().await.unwrap();
    assert_eq!(genres[0].movies, 200, "{genres:?}");
    assert_eq!(s.read.advance_checkpoint(&all).await.unwrap(), all.last().unwrap().position);
}
