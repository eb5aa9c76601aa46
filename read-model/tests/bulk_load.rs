//! A rebuild loads a new read store with its secondary indexes and the genres' foreign key
//! suspended: edits and deletes in the log must still leave exactly the genres each movie has,
//! and everything suspended comes back.

use movies_events::{MovieChanges, MovieEvent, MovieFields};
use movies_read_model::{
    BulkLoad, Filters, ListQuery, Order, PgReadStore, ReadStore, SortField, SqliteReadStore,
};
use movies_store::connect_postgres;
use movies_store::testing::{postgres_database, recorded};
use std::future::Future;
use std::time::Duration;
use tokio::sync::oneshot;
use uuid::Uuid;

fn created(name: &str, genres: &[&str]) -> MovieEvent {
    MovieEvent::Created(MovieFields {
        name: name.into(),
        director: "Someone".into(),
        popularity: 50.0,
        imdb_score: 7.0,
        genres: genres.iter().map(|g| (*g).to_owned()).collect(),
    })
}

async fn names_in(store: &dyn ReadStore, genre: &str) -> Vec<String> {
    let query = ListQuery {
        sort: SortField::Name,
        order: Order::Asc,
        filters: Filters { genre: Some(genre.into()), ..Filters::default() },
        limit: 100,
        after: None,
    };
    store.list(&query).await.unwrap().items.into_iter().map(|m| m.name).collect()
}

async fn edits_and_deletes_keep_genres_exact_while_suspended(store: &dyn BulkLoad) {
    let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let suspended = store.suspend_indexes().await.unwrap();
    assert!(!suspended.is_empty());
    let count = suspended.len();
    store
        .apply(&[
            recorded(1, a, 1, created("Alpha", &["Drama", "War"])),
            recorded(2, b, 1, created("Beta", &["Drama"])),
            recorded(3, c, 1, created("Gamma", &["Comedy"])),
        ])
        .await
        .unwrap();
    // A later batch changes Alpha's genres (keeping one) and deletes Beta.
    let changes = MovieChanges { genres: Some(vec!["Drama".into(), "Horror".into()]), ..Default::default() };
    store
        .apply(&[recorded(4, a, 2, MovieEvent::Updated(changes)), recorded(5, b, 2, MovieEvent::Deleted)])
        .await
        .unwrap();
    store.restore_indexes(suspended).await.unwrap();
    assert_eq!(names_in(store, "drama").await, ["Alpha"]);
    assert_eq!(names_in(store, "horror").await, ["Alpha"]);
    assert!(names_in(store, "war").await.is_empty());
    assert_eq!(names_in(store, "comedy").await, ["Gamma"]);
    // Everything suspended is back: suspending again finds as much to suspend.
    assert_eq!(store.suspend_indexes().await.unwrap().len(), count);
}

/// Batches write rows in bulk (Postgres: `COPY` as CSV): text with quotes, commas, newlines,
/// backslashes and CSV's end marker, and numbers with long fractions, read back exactly.
async fn awkward_text_and_numbers_read_back_exactly(store: &dyn BulkLoad) {
    let id = Uuid::now_v7();
    let fields = MovieFields {
        name: "He said \"no\", then\n\\. left; \\N O'Brien — Amélie".into(),
        director: "\"Quoted\", Director\r\n".into(),
        popularity: 0.1 + 0.2,
        imdb_score: 7.123_456_789_012_345,
        genres: vec!["Sci-Fi".into(), "Film \"Noir\"".into(), "a,b".into()],
    };
    let event = recorded(1, id, 1, MovieEvent::Created(fields.clone()));
    store.apply(std::slice::from_ref(&event)).await.unwrap();
    let stored = store.get(id).await.unwrap().expect("the movie is stored");
    assert_eq!(stored.fields(), fields);
    assert_eq!(stored.created_at.timestamp_micros(), event.recorded_at.timestamp_micros());
    assert_eq!(names_in(store, "film \"noir\"").await, std::slice::from_ref(&fields.name));
}

/// A rebuild's batch of several `COPY` pieces is stored whole; the streams a batch creates are
/// not looked up (a rebuild is given the log once, in order), and those a later batch goes on
/// with are, so their changes land on the rows the first batch wrote.
async fn a_rebuild_stores_batches_of_many_pieces_and_continues_their_streams(store: &dyn BulkLoad) {
    let ids: Vec<Uuid> = (0..2500).map(|_| Uuid::now_v7()).collect();
    let suspended = store.suspend_indexes().await.unwrap();
    let creations: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(n, id)| recorded(n as i64 + 1, *id, 1, created(&format!("Movie {n:04}"), &["Drama"])))
        .collect();
    store.apply(&creations).await.unwrap();
    let renamed = |name: &str| MovieChanges { name: Some(name.into()), ..Default::default() };
    let (first, last) = (ids[0], ids[2499]);
    let fresh = Uuid::now_v7();
    store
        .apply(&[
            recorded(2501, first, 2, MovieEvent::Updated(renamed("First"))),
            recorded(2502, fresh, 1, created("Fresh", &["War"])),
            recorded(2503, last, 2, MovieEvent::Deleted),
            recorded(2504, fresh, 2, MovieEvent::Updated(renamed("Fresher"))),
        ])
        .await
        .unwrap();
    store.restore_indexes(suspended).await.unwrap();
    let stored = store.get_many(&ids).await.unwrap();
    assert_eq!(stored.len(), 2499, "every movie but the deleted one");
    assert_eq!(store.get(first).await.unwrap().map(|m| (m.name, m.version)), Some(("First".into(), 2)));
    assert_eq!(store.get(fresh).await.unwrap().map(|m| (m.name, m.version)), Some(("Fresher".into(), 2)));
    assert_eq!(store.get(last).await.unwrap(), None);
    assert_eq!(store.checkpoint().await.unwrap(), 2504);
}

#[tokio::test]
async fn postgres_bulk_load_keeps_genres_exact_and_restores_its_indexes_and_key() {
    let pool = connect_postgres(&postgres_database().await, 4).await.unwrap();
    let store = PgReadStore::open(pool.clone()).await.unwrap();
    edits_and_deletes_keep_genres_exact_while_suspended(&store).await;
    awkward_text_and_numbers_read_back_exactly(&store).await;
    a_rebuild_stores_batches_of_many_pieces_and_continues_their_streams(&store).await;
}

#[tokio::test]
async fn sqlite_bulk_load_keeps_genres_exact_and_restores_its_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let file = movies_store::open_sqlite(&dir.path().join("read.db")).await.unwrap();
    let store = SqliteReadStore::open(file.writer, file.reader).await.unwrap();
    edits_and_deletes_keep_genres_exact_while_suspended(&store).await;
    awkward_text_and_numbers_read_back_exactly(&store).await;
    a_rebuild_stores_batches_of_many_pieces_and_continues_their_streams(&store).await;
}

/// Rebuilding the indexes must not start more builds than the pool has connections: a build
/// that waits (here for a lock another connection holds; at 5M movies, for its own sort) would
/// leave the rest waiting for a connection past the pool's limit, and the rebuild would fail.
/// `hold` takes a lock the builds wait for, says so on its sender, and keeps it for `HELD`.
async fn indexes_come_back_when_one_build_outlasts_the_pools_wait<F>(
    store: &dyn BulkLoad,
    hold: impl FnOnce(oneshot::Sender<()>) -> F,
) where
    F: Future<Output = ()> + Send + 'static,
{
    let suspended = store.suspend_indexes().await.unwrap();
    let count = suspended.len();
    assert!(count > 1, "more than one build, so one can wait behind another");
    let (taken, wait) = oneshot::channel();
    let held = tokio::spawn(hold(taken));
    wait.await.expect("the lock is taken");
    store.restore_indexes(suspended).await.expect("the indexes are rebuilt");
    held.await.unwrap();
    assert_eq!(store.suspend_indexes().await.unwrap().len(), count);
}

/// How long a build is held up, against how long the pool lets a caller wait for a connection.
const HELD: Duration = Duration::from_millis(2500);
const POOL_WAIT: Duration = Duration::from_millis(800);

#[tokio::test]
async fn postgres_index_rebuild_outlasting_the_pools_wait_still_completes() {
    let url = postgres_database().await;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(POOL_WAIT)
        .connect(&url)
        .await
        .unwrap();
    let store = PgReadStore::open(pool).await.unwrap();
    indexes_come_back_when_one_build_outlasts_the_pools_wait(&store, |taken| async move {
        use sqlx::Connection;
        let mut other = sqlx::PgConnection::connect(&url).await.unwrap();
        let mut tx = other.begin().await.unwrap();
        // Conflicts with the lock each index's and the foreign key's build takes.
        sqlx::query("LOCK TABLE movies, movie_genres IN ROW EXCLUSIVE MODE").execute(&mut *tx).await.unwrap();
        taken.send(()).unwrap();
        tokio::time::sleep(HELD).await;
        tx.commit().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn sqlite_index_rebuild_outlasting_the_pools_wait_still_completes() {
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
    let dir = tempfile::tempdir().unwrap();
    let options = SqliteConnectOptions::new()
        .filename(dir.path().join("read.db"))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(Duration::from_secs(20));
    let writer = SqlitePoolOptions::new()
        .max_connections(1)
        .acquire_timeout(POOL_WAIT)
        .connect_with(options.clone())
        .await
        .unwrap();
    let reader = SqlitePoolOptions::new().max_connections(2).connect_with(options.clone()).await.unwrap();
    let store = SqliteReadStore::open(writer, reader).await.unwrap();
    indexes_come_back_when_one_build_outlasts_the_pools_wait(&store, |taken| async move {
        use sqlx::{ConnectOptions, Connection};
        let mut other = options.connect().await.unwrap();
        // SQLite's one writer lock.
        let tx = other.begin_with("BEGIN IMMEDIATE").await.unwrap();
        taken.send(()).unwrap();
        tokio::time::sleep(HELD).await;
        tx.commit().await.unwrap();
    })
    .await;
}
