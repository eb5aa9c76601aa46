//! The two-tier cache against a real Redis (the suite's, under a namespace of each test's own)
//! and a real SQLite read store beneath.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use movies_cache::{CacheWriter, CachedReadStore, L1Settings, Redis};
use movies_events::{MovieEvent, Position, Version};
use movies_read_model::{
    GenreCount, ListQuery, MovieDoc, Page, ProjectionResult as Result, ProjectionStore, ReadStore,
    SqliteReadStore,
};
use movies_store::contract::{created, new_event, renamed};
use movies_store::{open_sqlite, EventStore, SqliteEventStore};
use uuid::Uuid;

/// The read store beneath, counting the reads that reach it (single misses reach it as
/// `get_many`, gathered). A test holding `pause` stops each read after it read and before it
/// returns: a replica paused (a long GC, a SIGSTOP, a slow link) between reading the store and
/// caching what it read.
struct Counting {
    inner: SqliteReadStore,
    reads: AtomicUsize,
    lists: AtomicUsize,
    pause: tokio::sync::Mutex<()>,
}

impl Counting {
    fn reads(&self) -> usize {
        self.reads.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl ReadStore for Counting {
    async fn get(&self, id: Uuid) -> Result<Option<MovieDoc>> {
        Ok(self.get_many(&[id]).await?.pop())
    }
    async fn get_many(&self, ids: &[Uuid]) -> Result<Vec<MovieDoc>> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let docs = self.inner.get_many(ids).await;
        drop(self.pause.lock().await);
        docs
    }
    async fn list(&self, query: &ListQuery) -> Result<Page<MovieDoc>> {
        self.lists.fetch_add(1, Ordering::SeqCst);
        self.inner.list(query).await
    }
    async fn genres(&self) -> Result<Vec<GenreCount>> {
        self.inner.genres().await
    }
    async fn checkpoint(&self) -> Result<Position> {
        self.inner.checkpoint().await
    }
}

struct Setup {
    events: SqliteEventStore,
    store: Arc<Counting>,
    namespace: String,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let events =
        SqliteEventStore::open(open_sqlite(&dir.path().join("events.db")).await.unwrap()).await.unwrap();
    let file = open_sqlite(&dir.path().join("read.db")).await.unwrap();
    let inner = SqliteReadStore::open(file.writer, file.reader).await.unwrap();
    let store = Arc::new(Counting {
        inner,
        reads: AtomicUsize::new(0),
        lists: AtomicUsize::new(0),
        pause: tokio::sync::Mutex::new(()),
    });
    let namespace = format!("test-{}", Uuid::now_v7().simple());
    Setup { events, store, namespace, _dir: dir }
}

impl Setup {
    async fn redis(&self) -> Redis {
        let url = std::env::var("MOVIES_TEST_REDIS")
            .expect("MOVIES_TEST_REDIS is not set: run the suite with scripts/test");
        let redis = Redis::connect(&url, &self.namespace).await.unwrap();
        assert!(redis.is_up(), "the test Redis at {url} is reachable");
        redis
    }

    /// Appends and projects `event` on `id`'s stream.
    async fn record(&self, id: Uuid, expected: Version, event: MovieEvent) {
        self.events.append(id, expected, vec![new_event(event)]).await.unwrap();
        let log = self.events.load(id).await.unwrap();
        self.store.inner.apply(&log).await.unwrap();
    }

    async fn replica(&self, redis: Option<Redis>) -> Arc<CachedReadStore> {
        CachedReadStore::new(self.store.clone(), redis, L1Settings::default()).await
    }
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..100 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn a_hot_miss_loads_once() {
    let s = setup().await;
    let id = Uuid::now_v7();
    s.record(id, 0, created("Alien")).await;
    let replica = s.replica(None).await;
    let reads = (0..50).map(|_| replica.get(id));
    let docs = futures::future::join_all(reads).await;
    assert!(docs.iter().all(|d| d.as_ref().unwrap().as_ref().unwrap().name == "Alien"));
    assert_eq!(s.store.reads(), 1, "fifty concurrent misses, one load");
}

/// A search's page of documents: what L1 lacks is read in one query, a missing movie is
/// remembered as gone, and a second replica finds them all in Redis.
#[tokio::test]
async fn many_documents_missing_from_the_cache_are_read_in_one_query_and_shared() {
    let s = setup().await;
    let (alien, heat, gone) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    s.record(alien, 0, created("Alien")).await;
    s.record(heat, 0, created("Heat")).await;
    let (a, b) = (s.replica(Some(s.redis().await)).await, s.replica(Some(s.redis().await)).await);
    assert_eq!(a.get(alien).await.unwrap().unwrap().name, "Alien");
    let names = |docs: Vec<MovieDoc>| docs.into_iter().map(|d| d.name).collect::<Vec<_>>();

    let ids = [heat, gone, alien, heat];
    assert_eq!(names(a.get_many(&ids).await.unwrap()), ["Heat", "Alien", "Heat"]);
    assert_eq!(s.store.reads(), 2, "the two misses, one query");
    assert_eq!(names(a.get_many(&ids).await.unwrap()), ["Heat", "Alien", "Heat"]);
    assert_eq!(a.get(gone).await.unwrap(), None);
    assert_eq!(s.store.reads(), 2, "then all from L1, the missing one as gone");

    assert_eq!(names(b.get_many(&ids).await.unwrap()), ["Heat", "Alien", "Heat"]);
    assert_eq!(s.store.reads(), 2, "the second replica read Redis");
}

/// Misses of many movies at once (random details under load) reach the store as a few reads
/// of many movies, not one read each; each caller gets its own movie, or none.
#[tokio::test]
async fn concurrent_misses_of_many_movies_are_gathered_into_few_reads() {
    let s = setup().await;
    let mut ids = Vec::new();
    for n in 0..50 {
        let id = Uuid::now_v7();
        s.record(id, 0, created(&format!("Movie {n}"))).await;
        ids.push(id);
    }
    ids.push(Uuid::now_v7());
    let replica = s.replica(None).await;
    let docs = futures::future::join_all(ids.iter().map(|id| replica.get(*id))).await;
    for (n, doc) in docs.into_iter().enumerate() {
        let expected = (n < 50).then(|| format!("Movie {n}"));
        assert_eq!(doc.unwrap().map(|d| d.name), expected);
    }
    assert!(s.store.reads() <= 4, "{} reads for 51 misses", s.store.reads());
}

#[tokio::test]
async fn replicas_share_what_one_loaded_and_follow_what_the_projector_writes_through() {
    let s = setup().await;
    let id = Uuid::now_v7();
    s.record(id, 0, created("Alien")).await;
    let (a, b) = (s.replica(Some(s.redis().await)).await, s.replica(Some(s.redis().await)).await);
    assert_eq!(a.get(id).await.unwrap().unwrap().name, "Alien");
    assert_eq!(b.get(id).await.unwrap().unwrap().name, "Alien");
    assert_eq!(s.store.reads(), 1, "the second replica read Redis, not the store");
    let page = ListQuery { limit: 10, ..ListQuery::default() };
    a.list(&page).await.unwrap();
    b.list(&page).await.unwrap();
    assert_eq!(s.store.lists.load(Ordering::SeqCst), 1, "one page load for both replicas");

    // A change: the projector applies it, writes it through and announces it.
    s.record(id, 1, renamed("Aliens")).await;
    let writer = CacheWriter::new(s.redis().await);
    assert!(writer.refresh(&s.store.inner, [id]).await);
    for replica in [&a, &b] {
        eventually("the replica to forget the old name", async || {
            replica.get(id).await.unwrap().unwrap().name == "Aliens"
                && replica.list(&page).await.unwrap().items[0].name == "Aliens"
        })
        .await;
    }
    assert_eq!(s.store.reads(), 1, "the new document came from Redis");
}

#[tokio::test]
async fn a_deleted_movie_is_cached_as_gone_and_never_put_back() {
    let s = setup().await;
    let id = Uuid::now_v7();
    s.record(id, 0, created("Heat")).await;
    s.record(id, 1, MovieEvent::Deleted).await;
    let writer = CacheWriter::new(s.redis().await);
    assert!(writer.refresh(&s.store.inner, [id]).await);
    let replica = s.replica(Some(s.redis().await)).await;
    assert_eq!(replica.get(id).await.unwrap(), None);
    assert_eq!(s.store.reads(), 0, "the tombstone answered");
    let cached = writer.documents().await.unwrap();
    assert_eq!(cached, vec![(id, None)]);
}

/// A replica reads `id` from the store and pauses before caching what it read; meanwhile
/// `change` is recorded at `expected`, written through, and the cache emptied (a projector's
/// restart resets it; so do FLUSHALL and a Redis restart). Returns what the paused replica
/// answered once it went on, and a second replica that reads after all that.
async fn read_paused_across_a_write(
    s: &Setup,
    id: Uuid,
    expected: Version,
    change: MovieEvent,
) -> (Option<MovieDoc>, Arc<CachedReadStore>) {
    let writer = CacheWriter::new(s.redis().await);
    let replica = s.replica(Some(s.redis().await)).await;
    let paused = s.store.pause.lock().await;
    let read = tokio::spawn({
        let replica = replica.clone();
        async move { replica.get(id).await.unwrap() }
    });
    eventually("the replica to read the store", async || s.store.reads() == 1).await;
    s.record(id, expected, change).await;
    assert!(writer.refresh(&s.store.inner, [id]).await);
    assert!(writer.reset().await);
    drop(paused);
    (read.await.unwrap(), s.replica(Some(s.redis().await)).await)
}

/// The fault campaign's seeds 16 and 30 over 100,000 movies: a replica read "no such movie"
/// from the store, the movie was created and written through, the cache was emptied, and only
/// then did the replica cache what it had read: a tombstone for a live movie, for a day.
#[tokio::test]
async fn a_replica_paused_between_reading_and_caching_never_caches_what_a_later_write_replaced() {
    let s = setup().await;
    let id = Uuid::now_v7();
    let (read, other) = read_paused_across_a_write(&s, id, 0, created("Alien")).await;
    assert_eq!(read, None, "the paused replica answers what it read");

    let cached = CacheWriter::new(s.redis().await).documents().await.unwrap();
    assert!(cached.iter().all(|(_, doc)| doc.is_some()), "a tombstone for a live movie: {cached:?}");
    assert_eq!(other.get(id).await.unwrap().map(|d| d.name).as_deref(), Some("Alien"));
}

/// The same pause over a rename: the old name the replica read is not cached once the new one
/// was written through and the cache emptied.
#[tokio::test]
async fn a_replica_paused_between_reading_and_caching_never_caches_a_replaced_version() {
    let s = setup().await;
    let id = Uuid::now_v7();
    s.record(id, 0, created("Alien")).await;
    let (read, other) = read_paused_across_a_write(&s, id, 1, renamed("Aliens")).await;
    assert_eq!(read.unwrap().name, "Alien", "the paused replica answers what it read");
    assert_eq!(other.get(id).await.unwrap().unwrap().name, "Aliens", "the old name was not cached");
}

#[tokio::test]
async fn without_redis_reads_fall_through_to_the_store_at_once() {
    let s = setup().await;
    let id = Uuid::now_v7();
    s.record(id, 0, created("Ran")).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dead = Redis::connect(&format!("redis://127.0.0.1:{port}"), &s.namespace).await.unwrap();
    assert!(!dead.is_up());
    let replica = s.replica(Some(dead.clone())).await;
    let started = std::time::Instant::now();
    assert_eq!(replica.get(id).await.unwrap().unwrap().name, "Ran");
    assert!(started.elapsed() < Duration::from_secs(1), "no waiting on the dead server");
    assert!(!CacheWriter::new(dead).refresh(&s.store.inner, [id]).await, "the change stays pending");
}

#[tokio::test]
async fn replicas_count_a_caller_once_through_redis() {
    let s = setup().await;
    let (a, b) =
        (movies_cache::RedisCounter::new(s.redis().await), movies_cache::RedisCounter::new(s.redis().await));
    assert_eq!(a.hit("ip:203.0.113.1", 7).await, Some(1));
    assert_eq!(b.hit("ip:203.0.113.1", 7).await, Some(2));
    assert_eq!(a.hit("ip:203.0.113.1", 7).await, Some(3));
    assert_eq!(b.hit("ip:203.0.113.1", 8).await, Some(1), "a new window starts at one");
    assert_eq!(b.hit("ip:203.0.113.2", 7).await, Some(1), "another caller");
}
