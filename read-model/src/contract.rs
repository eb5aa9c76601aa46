//! The read store's contract, one suite every adapter runs (`read_store_contract!`): the
//! Postgres and SQLite stores, `Live` over one, and (reads only) the cache over one. Each case
//! writes through the projection port first, then checks what the read port answers.

use std::any::Any;
use std::sync::Arc;

use movies_events::{EventEnvelope, MovieChanges, MovieEvent, MovieFields};
use movies_store::testing::recorded;
use uuid::Uuid;

use crate::{Filters, ListQuery, Order, ProjectionError, ProjectionStore, ReadStore, SortField};

/// A read store under test: where a case reads, where it writes (the same store, or the store
/// beneath a cache), and whatever must live as long as they do.
pub struct ReadFixture {
    pub reads: Arc<dyn ReadStore>,
    pub writes: Arc<dyn ProjectionStore>,
    pub guard: Box<dyn Any + Send>,
}

/// A fresh SQLite read store in a directory of its own.
pub async fn sqlite_store() -> (Arc<crate::SqliteReadStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("create temp dir");
    let file = movies_store::open_sqlite(&dir.path().join("read.db")).await.expect("open sqlite");
    let store = crate::SqliteReadStore::open(file.writer, file.reader).await.expect("migrate");
    (Arc::new(store), dir)
}

pub async fn sqlite_fixture() -> ReadFixture {
    let (store, dir) = sqlite_store().await;
    ReadFixture { reads: store.clone(), writes: store, guard: Box::new(dir) }
}

pub async fn postgres_fixture() -> ReadFixture {
    let url = movies_store::testing::postgres_database().await;
    let pool = movies_store::connect_postgres(&url, 8).await.expect("connect test database");
    let store = Arc::new(crate::PgReadStore::open(pool).await.expect("migrate"));
    ReadFixture { reads: store.clone(), writes: store, guard: Box::new(()) }
}

/// `Live` over a SQLite store: what servers hold so a rebuild can be swapped in.
pub async fn live_fixture() -> ReadFixture {
    let (store, dir) = sqlite_store().await;
    let live: Arc<crate::Live<dyn ProjectionStore>> = Arc::new(crate::Live::new(store));
    ReadFixture { reads: live.clone(), writes: live, guard: Box::new(dir) }
}

fn fields(name: &str, popularity: f64, genres: &[&str]) -> MovieFields {
    MovieFields {
        name: name.into(),
        director: "Jane Doe".into(),
        popularity,
        imdb_score: 7.0,
        genres: genres.iter().map(|g| (*g).to_owned()).collect(),
    }
}

fn query(sort: SortField, order: Order, limit: i64) -> ListQuery {
    ListQuery { sort, order, filters: Filters::default(), limit, after: None }
}

/// A movie reads back as its events left it, by id, as JSON and among others; an id never
/// recorded, or deleted, reads as nothing.
pub async fn a_movie_reads_back_as_its_events_left_it(f: ReadFixture) {
    let (alien, gone) = (Uuid::now_v7(), Uuid::now_v7());
    let rescored = MovieChanges { imdb_score: Some(8.5), ..Default::default() };
    f.writes
        .apply(&[
            recorded(1, alien, 1, MovieEvent::Created(fields("Alien", 80.0, &["Horror"]))),
            recorded(2, gone, 1, MovieEvent::Created(fields("Gone", 10.0, &["Drama"]))),
            recorded(3, alien, 2, MovieEvent::Updated(rescored)),
            recorded(4, gone, 2, MovieEvent::Deleted),
        ])
        .await
        .unwrap();
    let movie = f.reads.get(alien).await.unwrap().expect("Alien is there");
    assert_eq!((movie.name.as_str(), movie.imdb_score, movie.version), ("Alien", 8.5, 2));
    let json = f.reads.get_json(alien).await.unwrap().expect("Alien as JSON");
    let value: serde_json::Value = serde_json::from_slice(&json.body).unwrap();
    assert_eq!(json.version, 2);
    assert_eq!((value["name"].as_str(), value["imdb_score"].as_f64()), (Some("Alien"), Some(8.5)));
    assert_eq!(f.reads.get(gone).await.unwrap(), None, "a deleted movie reads as nothing");
    assert_eq!(f.reads.get(Uuid::now_v7()).await.unwrap(), None);
    let many = f.reads.get_many(&[alien, gone, Uuid::now_v7()]).await.unwrap();
    assert_eq!(many.iter().map(|m| m.id).collect::<Vec<_>>(), [alien]);
    assert_eq!(f.reads.checkpoint().await.unwrap(), 4);
}

/// Pages come in the asked order, each cursor leading to the next without repeats or holes,
/// and filters narrow them.
pub async fn lists_page_in_order_and_filter(f: ReadFixture) {
    let events: Vec<EventEnvelope> = (1..=7)
        .map(|n| {
            let genre = if n % 2 == 0 { "Drama" } else { "Comedy" };
            let movie = fields(&format!("Movie {n}"), f64::from(n) * 10.0, &[genre]);
            recorded(i64::from(n), Uuid::now_v7(), 1, MovieEvent::Created(movie))
        })
        .collect();
    f.writes.apply(&events).await.unwrap();
    let mut listed = Vec::new();
    let mut page_query = query(SortField::Popularity, Order::Desc, 3);
    loop {
        let page = f.reads.list(&page_query).await.unwrap();
        assert!(page.items.len() <= 3);
        listed.extend(page.items.iter().map(|m| m.popularity));
        match page.next {
            Some(cursor) => page_query.after = Some(cursor),
            None => break,
        }
    }
    assert_eq!(listed, [70.0, 60.0, 50.0, 40.0, 30.0, 20.0, 10.0]);
    let dramas = ListQuery {
        filters: Filters { genre: Some("drama".into()), ..Filters::default() },
        ..query(SortField::Name, Order::Asc, 10)
    };
    let names: Vec<String> = f.reads.list(&dramas).await.unwrap().items.into_iter().map(|m| m.name).collect();
    assert_eq!(names, ["Movie 2", "Movie 4", "Movie 6"]);
    let json = f.reads.list_json(&dramas).await.unwrap();
    let value: serde_json::Value = serde_json::from_slice(&json.items).unwrap();
    assert_eq!(value.as_array().map(Vec::len), Some(3));
}

/// Genre counts follow creations, genre changes and deletions.
pub async fn genres_count_the_live_movies_that_carry_them(f: ReadFixture) {
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    let regenred = MovieChanges { genres: Some(vec!["War".into()]), ..Default::default() };
    f.writes
        .apply(&[
            recorded(1, a, 1, MovieEvent::Created(fields("A", 1.0, &["Drama", "Comedy"]))),
            recorded(2, b, 1, MovieEvent::Created(fields("B", 1.0, &["Drama"]))),
            recorded(3, a, 2, MovieEvent::Updated(regenred)),
            recorded(4, b, 2, MovieEvent::Deleted),
        ])
        .await
        .unwrap();
    let genres: Vec<(String, i64)> =
        f.reads.genres().await.unwrap().into_iter().map(|g| (g.genre, g.movies)).collect();
    assert_eq!(genres, [("War".to_owned(), 1)]);
}

/// An event at or below a stream's projected version changes nothing; one past the next
/// version is a gap, and its batch writes nothing, checkpoint included.
pub async fn repeats_change_nothing_and_a_gap_writes_nothing(f: ReadFixture) {
    let id = Uuid::now_v7();
    let created = recorded(1, id, 1, MovieEvent::Created(fields("Alien", 1.0, &["Horror"])));
    let renamed = MovieChanges { name: Some("Aliens".into()), ..Default::default() };
    let renamed = recorded(2, id, 2, MovieEvent::Updated(renamed));
    f.writes.apply(&[created.clone(), renamed.clone()]).await.unwrap();
    f.writes.apply(&[created.clone(), renamed]).await.unwrap();
    assert_eq!(f.writes.stream_version(id).await.unwrap(), 2);
    let other = Uuid::now_v7();
    let skipped = MovieChanges { name: Some("Never".into()), ..Default::default() };
    let gap = f
        .writes
        .apply(&[
            recorded(3, other, 1, MovieEvent::Created(fields("Brazil", 1.0, &["Drama"]))),
            recorded(4, id, 4, MovieEvent::Updated(skipped)),
        ])
        .await
        .expect_err("version 3 is missing");
    assert!(matches!(gap, ProjectionError::Gap { have: 2, got: 4, .. }), "{gap:?}");
    assert_eq!(f.reads.get(other).await.unwrap(), None, "nothing of the refused batch is written");
    assert_eq!(f.reads.checkpoint().await.unwrap(), 2);
    let movie = f.reads.get(id).await.unwrap().unwrap();
    assert_eq!((movie.name.as_str(), movie.version), ("Aliens", 2));
}

/// Events applied out of log order leave the checkpoint where it was; it moves past the longest
/// prefix of the log that is applied, and never back.
pub async fn the_checkpoint_moves_past_what_is_applied_and_never_back(f: ReadFixture) {
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    let log = [
        recorded(1, a, 1, MovieEvent::Created(fields("A", 1.0, &["Drama"]))),
        recorded(2, b, 1, MovieEvent::Created(fields("B", 1.0, &["Drama"]))),
    ];
    f.writes.apply_unordered(&log[1..]).await.unwrap();
    assert_eq!(f.writes.advance_checkpoint(&log).await.unwrap(), 0, "position 1 is not applied yet");
    f.writes.apply_unordered(&log[..1]).await.unwrap();
    assert_eq!(f.writes.advance_checkpoint(&log).await.unwrap(), 2);
    assert_eq!(f.writes.advance_checkpoint(&log[..1]).await.unwrap(), 2, "never back");
    assert_eq!(f.reads.checkpoint().await.unwrap(), 2);
}

/// Runs the read store's contract against `$fixture` (an async fn returning a `ReadFixture`).
/// `reads_only` runs the cases that check what the read port answers, for adapters that only
/// read (a cache).
#[macro_export]
macro_rules! read_store_contract {
    ($fixture:path) => {
        $crate::read_store_contract!(reads_only $fixture);
        $crate::read_store_contract!(@cases $fixture;
            repeats_change_nothing_and_a_gap_writes_nothing,
            the_checkpoint_moves_past_what_is_applied_and_never_back,
        );
    };
    (reads_only $fixture:path) => {
        $crate::read_store_contract!(@cases $fixture;
            a_movie_reads_back_as_its_events_left_it,
            lists_page_in_order_and_filter,
            genres_count_the_live_movies_that_carry_them,
        );
    };
    (@cases $fixture:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                $crate::contract::$case($fixture().await).await;
            }
        )*
    };
}
