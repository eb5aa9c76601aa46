//! The query side's cached read store: a `ReadStore` that answers from L1, then Redis, then the
//! read store beneath, and forgets what the projector announces as changed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use movies_events::Position;
use movies_read_model::{
    GenreCount, JsonDoc, JsonPage, ListQuery, MovieDoc, Page, ProjectionResult as Result, ReadCache,
    ReadStore,
};
use redis::AsyncCommands;
use uuid::Uuid;

use crate::batch::Gathered;
use crate::{Invalidation, Redis};

/// How long Redis keeps a list page a replica loaded (pages of an old generation are never read
/// again; this only frees their memory).
const PAGE_TTL_SECONDS: u64 = 300;
/// How long Redis keeps a document a replica loaded on a miss (the projector refreshes the ones
/// that change).
const DOC_TTL_SECONDS: u64 = 24 * 3600;

/// SET `KEYS[1]` to `ARGV[1]` for `ARGV[3]` seconds where nothing is, and only while the write
/// generation (`KEYS[2]`) is still `ARGV[2]`.
const PUT_IF_UNCHANGED: &str = "if redis.call('GET', KEYS[2]) == ARGV[2] then \
    return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[3]) end return false";

#[derive(Debug, Clone, Copy)]
pub struct L1Settings {
    /// Entries in each in-process tier (documents, pages).
    pub capacity: u64,
    /// The longest an L1 entry lives. Announced changes drop entries at once; this bounds
    /// staleness when announcements cannot arrive (Redis down).
    pub ttl: Duration,
}

impl Default for L1Settings {
    fn default() -> Self {
        Self { capacity: 100_000, ttl: Duration::from_secs(5) }
    }
}

/// Hits and misses per tier, for health and metrics.
#[derive(Debug, Default)]
pub struct CacheStats {
    pub l1_hits: AtomicU64,
    pub l2_hits: AtomicU64,
    pub misses: AtomicU64,
}

impl CacheStats {
    /// Publishes the counts as Prometheus counters (`movies_cache_requests_total` by outcome).
    pub fn record(&self) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        metrics::counter!("movies_cache_requests_total", "outcome" => "l1_hit").absolute(get(&self.l1_hits));
        metrics::counter!("movies_cache_requests_total", "outcome" => "l2_hit").absolute(get(&self.l2_hits));
        metrics::counter!("movies_cache_requests_total", "outcome" => "miss").absolute(get(&self.misses));
    }

    pub fn snapshot(&self) -> serde_json::Value {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        serde_json::json!({ "l1_hits": get(&self.l1_hits), "l2_hits": get(&self.l2_hits), "misses": get(&self.misses) })
    }
}

pub struct CachedReadStore {
    inner: Arc<dyn ReadStore>,
    /// Single misses of `inner`, gathered into one read while others are under way.
    gathered: Gathered,
    redis: Option<Redis>,
    docs: moka::future::Cache<Uuid, Option<Arc<Cached>>>,
    pages: moka::future::Cache<String, Arc<(Page<MovieDoc>, JsonPage)>>,
    genres: moka::future::Cache<u64, Arc<Vec<GenreCount>>>,
    /// The generation of cached pages, as last announced.
    generation: AtomicU64,
    /// Counts announcements received: a document loaded while one arrived may predate it.
    epoch: AtomicU64,
    stats: CacheStats,
}

/// A cached movie with the JSON it is served as, serialized once when it was loaded.
struct Cached {
    doc: MovieDoc,
    json: JsonDoc,
}

impl CachedReadStore {
    /// Caches `inner`; with `redis`, shares an L2 with the other replicas and follows the
    /// projector's announcements (a background task, for as long as the store lives).
    pub async fn new(inner: Arc<dyn ReadStore>, redis: Option<Redis>, l1: L1Settings) -> Arc<Self> {
        let store = Arc::new(Self {
            gathered: Gathered::new(inner.clone()),
            inner,
            redis,
            docs: tier(l1),
            pages: tier(l1),
            genres: tier(l1),
            generation: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
            stats: CacheStats::default(),
        });
        if store.redis.is_some() {
            tokio::spawn(follow_invalidations(Arc::downgrade(&store)));
        }
        store
    }

    pub fn stats(&self) -> &CacheStats {
        &self.stats
    }

    pub fn redis(&self) -> Option<&Redis> {
        self.redis.as_ref()
    }

    /// The store beneath the cache, for reads that must see a position (read-your-writes).
    pub fn uncached(&self) -> Arc<dyn ReadStore> {
        self.inner.clone()
    }

    async fn forget(&self, invalidation: &Invalidation) {
        self.generation.fetch_max(invalidation.generation, Ordering::SeqCst);
        if invalidation.all {
            self.forget_everything();
        } else {
            self.forget_movies(&invalidation.ids).await;
        }
    }

    /// Forgets these movies and every cached page: how an in-process projector (the embedded
    /// server, no Redis) keeps this cache current. Call it before the projection's progress is
    /// published, so a reader who waited for that progress never sees an older entry.
    pub async fn invalidate(&self, ids: &[Uuid]) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.forget_movies(ids).await;
    }

    async fn forget_movies(&self, ids: &[Uuid]) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        for id in ids {
            self.docs.invalidate(id).await;
        }
        self.pages.invalidate_all();
        self.genres.invalidate_all();
    }

    /// Forgets everything: after the store beneath was replaced (a rebuilt generation).
    pub async fn invalidate_all(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.forget_everything();
    }

    fn forget_everything(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.docs.invalidate_all();
        self.pages.invalidate_all();
        self.genres.invalidate_all();
    }

    async fn l2_get<T: serde::de::DeserializeOwned>(&self, key: Option<&str>) -> Option<T> {
        let (redis, key) = (self.redis.as_ref()?, key?);
        let bytes: Option<Vec<u8>> = redis.call(|mut c| async move { c.get(key).await }).await?;
        let value = serde_json::from_slice(&bytes?).ok()?;
        self.stats.l2_hits.fetch_add(1, Ordering::Relaxed);
        Some(value)
    }

    /// The write generation now (`None` when Redis does not answer): read on a miss before the
    /// store beneath, so that `l2_put` can tell whether the projector wrote anything since.
    async fn l2_generation(&self) -> Option<String> {
        let redis = self.redis.as_ref()?;
        let mut pipe = redis::pipe();
        redis.generation(&mut pipe);
        let (generation,): (String,) =
            redis.call(|mut c| async move { pipe.query_async(&mut c).await }).await?;
        Some(generation)
    }

    /// Keeps what this replica read in Redis, unless something is there already (the projector
    /// writes newer documents) or the projector wrote or emptied anything since `generation` was
    /// read: then what this replica read may be older than what the cache has held since (a
    /// replica paused between its read and this write must not put back what a later write
    /// replaced, after a reset or a flush emptied its place).
    async fn l2_put<T: serde::Serialize>(&self, key: Option<&str>, value: &T, ttl: u64, generation: String) {
        let (Some(redis), Some(key)) = (&self.redis, key) else { return };
        let Ok(bytes) = serde_json::to_vec(value) else { return };
        let mut put = redis::cmd("EVAL");
        put.arg(PUT_IF_UNCHANGED)
            .arg(2)
            .arg(key)
            .arg(redis.generation_key())
            .arg(bytes)
            .arg(generation)
            .arg(ttl);
        let _: Option<Option<String>> =
            redis.call(|mut c| async move { put.query_async(&mut c).await }).await;
    }

    /// `key`'s value from Redis, else from `load` (a miss), then kept in Redis for `ttl` seconds.
    async fn read_through<T, F>(&self, key: Option<&str>, ttl: u64, load: F) -> Result<T>
    where
        T: serde::Serialize + serde::de::DeserializeOwned,
        F: std::future::Future<Output = Result<T>>,
    {
        if let Some(value) = self.l2_get::<T>(key).await {
            return Ok(value);
        }
        self.stats.misses.fetch_add(1, Ordering::Relaxed);
        let generation = self.l2_generation().await;
        let value = load.await?;
        if let Some(generation) = generation {
            self.l2_put(key, &value, ttl, generation).await;
        }
        Ok(value)
    }

    async fn load_doc(&self, id: Uuid) -> Result<Option<Arc<Cached>>> {
        let key = self.redis.as_ref().map(|r| r.doc_key(id));
        let doc = self.read_through(key.as_deref(), DOC_TTL_SECONDS, self.gathered.get(id)).await?;
        Ok(doc.map(|doc| Arc::new(Cached { json: JsonDoc::from(&doc), doc })))
    }

    /// `ids` (none of them in L1) from Redis, then the rest from the store beneath in one query,
    /// kept in Redis as `load_doc` keeps one: `None` for a movie that is not there.
    async fn load_docs(&self, ids: &[Uuid]) -> Result<std::collections::HashMap<Uuid, Option<Arc<Cached>>>> {
        let cached = |doc: MovieDoc| Arc::new(Cached { json: JsonDoc::from(&doc), doc });
        let mut loaded = std::collections::HashMap::with_capacity(ids.len());
        let mut rest: Vec<Uuid> = ids.to_vec();
        if let Some(redis) = &self.redis {
            let keys: Vec<String> = ids.iter().map(|id| redis.doc_key(*id)).collect();
            let mut mget = redis::cmd("MGET");
            mget.arg(&keys);
            let values: Option<Vec<Option<Vec<u8>>>> =
                redis.call(|mut c| async move { mget.query_async(&mut c).await }).await;
            if let Some(values) = values.filter(|v| v.len() == ids.len()) {
                rest.clear();
                for (id, value) in ids.iter().zip(values) {
                    match value.and_then(|bytes| serde_json::from_slice::<Option<MovieDoc>>(&bytes).ok()) {
                        Some(doc) => {
                            self.stats.l2_hits.fetch_add(1, Ordering::Relaxed);
                            loaded.insert(*id, doc.map(cached));
                        }
                        None => rest.push(*id),
                    }
                }
            }
        }
        if rest.is_empty() {
            return Ok(loaded);
        }
        self.stats.misses.fetch_add(rest.len() as u64, Ordering::Relaxed);
        let generation = self.l2_generation().await;
        let mut docs: std::collections::HashMap<Uuid, MovieDoc> =
            self.inner.get_many(&rest).await?.into_iter().map(|d| (d.id, d)).collect();
        let read: Vec<(Uuid, Option<String>, Option<MovieDoc>)> = rest
            .iter()
            .map(|id| (*id, self.redis.as_ref().map(|r| r.doc_key(*id)), docs.remove(id)))
            .collect();
        if let Some(generation) = generation {
            // Concurrent on the one multiplexed connection: pipelined, not a round trip each.
            let puts = read
                .iter()
                .map(|(_, key, doc)| self.l2_put(key.as_deref(), doc, DOC_TTL_SECONDS, generation.clone()));
            futures::future::join_all(puts).await;
        }
        loaded.extend(read.into_iter().map(|(id, _, doc)| (id, doc.map(cached))));
        Ok(loaded)
    }

    /// One page (of the current generation) from the first tier that has it, with its items
    /// serialized once when it was loaded; a miss loads it once for every caller waiting.
    async fn cached_page(&self, query: &ListQuery) -> Result<Arc<(Page<MovieDoc>, JsonPage)>> {
        let generation = self.generation.load(Ordering::SeqCst);
        // A query always serializes (plain values).
        let query_key = serde_json::to_string(query).unwrap_or_default();
        let l2_key = self.redis.as_ref().map(|r| r.page_key(generation, &query_key));
        let mut loaded = false;
        let page = self
            .pages
            .try_get_with(format!("{generation}:{query_key}"), async {
                loaded = true;
                let page =
                    self.read_through(l2_key.as_deref(), PAGE_TTL_SECONDS, self.inner.list(query)).await?;
                let json = JsonPage::from(&page);
                Ok(Arc::new((page, json)))
            })
            .await?;
        if !loaded {
            self.stats.l1_hits.fetch_add(1, Ordering::Relaxed);
        }
        Ok(page)
    }

    /// One movie from the first tier that has it; a miss loads it once for every caller waiting.
    async fn cached(&self, id: Uuid) -> Result<Option<Arc<Cached>>> {
        let epoch = self.epoch.load(Ordering::SeqCst);
        let mut loaded = false;
        let doc = self
            .docs
            .try_get_with(id, async {
                loaded = true;
                self.load_doc(id).await
            })
            .await?;
        if !loaded {
            self.stats.l1_hits.fetch_add(1, Ordering::Relaxed);
        } else if self.epoch.load(Ordering::SeqCst) != epoch {
            // An announcement arrived while this loaded: what it read may be older than the
            // change announced, so it is not kept.
            self.docs.invalidate(&id).await;
        }
        Ok(doc)
    }
}

fn tier<K, V>(l1: L1Settings) -> moka::future::Cache<K, V>
where
    K: std::hash::Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    moka::future::Cache::builder().max_capacity(l1.capacity).time_to_live(l1.ttl).build()
}

/// Drops L1 entries the projector announces as changed. Resubscribes after Redis comes back,
/// forgetting everything first (announcements may have been missed meanwhile).
async fn follow_invalidations(store: std::sync::Weak<CachedReadStore>) {
    loop {
        let Some(redis) = store.upgrade().and_then(|s| s.redis.clone()) else {
            return;
        };
        let subscribed = async {
            let client = redis.client();
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(redis.channel()).await?;
            let mut connection = client.get_multiplexed_async_connection().await?;
            let generation: Option<u64> = connection.get(redis.generation_key()).await?;
            if let Some(store) = store.upgrade() {
                store.forget_everything();
                store.generation.fetch_max(generation.unwrap_or(0), Ordering::SeqCst);
            }
            let mut messages = pubsub.into_on_message();
            while let Some(message) = messages.next().await {
                let Some(store) = store.upgrade() else { break };
                match serde_json::from_slice::<Invalidation>(message.get_payload_bytes()) {
                    Ok(invalidation) => store.forget(&invalidation).await,
                    Err(error) => {
                        tracing::warn!(%error, "an unreadable cache announcement; forgetting everything")
                    }
                }
            }
            redis::RedisResult::Ok(())
        };
        if let Err(error) = subscribed.await {
            tracing::debug!(%error, "the cache announcements subscription ended");
        }
        match store.upgrade() {
            Some(store) => store.forget_everything(),
            None => return,
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[async_trait]
impl ReadStore for CachedReadStore {
    async fn get(&self, id: Uuid) -> Result<Option<MovieDoc>> {
        Ok(self.cached(id).await?.map(|c| c.doc.clone()))
    }

    async fn get_json(&self, id: Uuid) -> Result<Option<JsonDoc>> {
        Ok(self.cached(id).await?.map(|c| c.json.clone()))
    }

    /// The cached documents from L1, and every one missing there from Redis in one round trip,
    /// then from the store beneath in one query (a search's page of twenty misses was twenty
    /// trips). Concurrent misses of one document may each load it, unlike `get`.
    async fn get_many(&self, ids: &[Uuid]) -> Result<Vec<MovieDoc>> {
        let epoch = self.epoch.load(Ordering::SeqCst);
        let mut found = Vec::with_capacity(ids.len());
        let mut missing = Vec::new();
        for id in ids {
            let cached = self.docs.get(id).await;
            if cached.is_none() && !missing.contains(id) {
                missing.push(*id);
            }
            found.push((*id, cached));
        }
        let hits = found.iter().filter(|(_, cached)| cached.is_some()).count();
        self.stats.l1_hits.fetch_add(hits as u64, Ordering::Relaxed);
        if !missing.is_empty() {
            let loaded = self.load_docs(&missing).await?;
            for (id, cached) in &mut found {
                if cached.is_none() {
                    let doc = loaded.get(id).cloned().flatten();
                    self.docs.insert(*id, doc.clone()).await;
                    *cached = Some(doc);
                }
            }
            if self.epoch.load(Ordering::SeqCst) != epoch {
                // As in `cached`: an announcement arrived while these loaded.
                for id in &missing {
                    self.docs.invalidate(id).await;
                }
            }
        }
        Ok(found.into_iter().filter_map(|(_, cached)| cached.flatten()).map(|c| c.doc.clone()).collect())
    }

    async fn list(&self, query: &ListQuery) -> Result<Page<MovieDoc>> {
        Ok(self.cached_page(query).await?.0.clone())
    }

    async fn list_json(&self, query: &ListQuery) -> Result<JsonPage> {
        Ok(self.cached_page(query).await?.1.clone())
    }

    async fn genres(&self) -> Result<Vec<GenreCount>> {
        let generation = self.generation.load(Ordering::SeqCst);
        let genres =
            self.genres.try_get_with(generation, async { self.inner.genres().await.map(Arc::new) }).await?;
        Ok((*genres).clone())
    }

    async fn checkpoint(&self) -> Result<Position> {
        self.inner.checkpoint().await
    }
}

#[async_trait]
impl ReadCache for CachedReadStore {
    async fn changed(&self, ids: &[Uuid]) {
        self.invalidate(ids).await;
    }
}
