//! The projector's side of the cache: after each batch, the changed movies are written through to
//! Redis and announced, so every replica's L1 forgets them and cached pages move to a new
//! generation. Changes that could not be written (Redis down) are kept and written once it is
//! back, before anything newer.

use std::collections::BTreeSet;
use std::sync::Mutex;

use movies_read_model::{MovieDoc, ReadStore};
use uuid::Uuid;

use crate::{Invalidation, Redis};

/// Above this many unwritten changes, the writer stops tracking ids and clears every cached
/// document once Redis is back instead.
const MAX_PENDING: usize = 100_000;
const DOC_TTL_SECONDS: u64 = 24 * 3600;

pub struct CacheWriter {
    redis: Redis,
    pending: Mutex<Pending>,
}

#[derive(Default)]
struct Pending {
    ids: BTreeSet<Uuid>,
    overflowed: bool,
}

impl CacheWriter {
    pub fn new(redis: Redis) -> Self {
        Self { redis, pending: Mutex::new(Pending::default()) }
    }

    pub fn redis(&self) -> &Redis {
        &self.redis
    }

    /// Writes the current documents of `ids` (and of any change still pending) from `store` to
    /// Redis, moves the page generation on and announces the change. Returns whether Redis took
    /// it; if not, the ids stay pending for the next call.
    pub async fn refresh(&self, store: &dyn ReadStore, ids: impl IntoIterator<Item = Uuid>) -> bool {
        let (ids, overflowed) = {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            pending.ids.extend(ids);
            if pending.ids.len() > MAX_PENDING {
                pending.ids.clear();
                pending.overflowed = true;
            }
            (pending.ids.iter().copied().collect::<Vec<_>>(), pending.overflowed)
        };
        if ids.is_empty() && !overflowed {
            return true;
        }
        let written = match self.write(store, &ids, overflowed).await {
            Ok(written) => written,
            Err(error) => {
                tracing::warn!(error = format!("{error:#}"), pending = ids.len(), "cache refresh postponed");
                false
            }
        };
        if written {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            for id in &ids {
                pending.ids.remove(id);
            }
            pending.overflowed &= !overflowed;
        }
        written
    }

    async fn write(&self, store: &dyn ReadStore, ids: &[Uuid], clear: bool) -> anyhow::Result<bool> {
        if !self.redis.is_up() {
            return Ok(false);
        }
        if clear && (self.next_generation().await.is_none() || self.clear_documents().await.is_none()) {
            return Ok(false);
        }
        let docs = store.get_many(ids).await?;
        let mut pipe = redis::pipe();
        pipe.atomic();
        self.redis.generation(&mut pipe);
        pipe.ignore();
        let found: BTreeSet<Uuid> = docs.iter().map(|d| d.id).collect();
        for doc in &docs {
            let json = serde_json::to_vec(&Some(doc))?;
            pipe.set_ex(self.redis.doc_key(doc.id), json, DOC_TTL_SECONDS).ignore();
        }
        // A tombstone, not a delete: a replica that read the old row cannot put it back (it only
        // writes where nothing is).
        for id in ids.iter().filter(|id| !found.contains(id)) {
            pipe.set_ex(self.redis.doc_key(*id), "null", DOC_TTL_SECONDS).ignore();
        }
        pipe.incr(self.redis.generation_key(), 1);
        let generation: Option<(u64,)> =
            self.redis.call(|mut c| async move { pipe.query_async(&mut c).await }).await;
        let Some((generation,)) = generation else { return Ok(false) };
        Ok(self.announce(Invalidation { generation, ids: ids.to_vec(), all: clear }).await)
    }

    async fn announce(&self, announcement: Invalidation) -> bool {
        let Ok(payload) = serde_json::to_vec(&announcement) else { return false };
        let channel = self.redis.channel();
        let published: Option<i64> =
            self.redis
                .call(|mut c| async move {
                    redis::cmd("PUBLISH").arg(channel).arg(payload).query_async(&mut c).await
                })
                .await;
        published.is_some()
    }

    /// Empties the cache (every document, every page) and tells every replica to forget its L1:
    /// after a projection changed in ways not announced one by one (a catch-up, a rebuild). The
    /// generation moves on first, so no replica puts back what it read before.
    pub async fn reset(&self) -> bool {
        let reset = match self.next_generation().await {
            Some(generation) if self.clear_documents().await.is_some() => {
                self.announce(Invalidation { generation, ids: Vec::new(), all: true }).await
            }
            _ => false,
        };
        if !reset {
            // The next refresh empties it.
            self.pending.lock().unwrap_or_else(|p| p.into_inner()).overflowed = true;
        }
        reset
    }

    /// Moves the write generation on (see `Redis::generation`): what every replica read before
    /// is no longer put into the cache.
    async fn next_generation(&self) -> Option<u64> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        self.redis.generation(&mut pipe);
        pipe.ignore().incr(self.redis.generation_key(), 1);
        let generation: Option<(u64,)> =
            self.redis.call(|mut c| async move { pipe.query_async(&mut c).await }).await;
        generation.map(|(g,)| g)
    }

    /// Writes documents where the cache has none (the projector's newer writes stand): how a
    /// rebuilt cache is warmed from the read store. Returns whether Redis took them.
    pub async fn warm(&self, docs: &[MovieDoc]) -> bool {
        let mut pipe = redis::pipe();
        for doc in docs {
            let Ok(json) = serde_json::to_vec(&Some(doc)) else { return false };
            pipe.cmd("SET")
                .arg(self.redis.doc_key(doc.id))
                .arg(json)
                .arg("NX")
                .arg("EX")
                .arg(DOC_TTL_SECONDS)
                .ignore();
        }
        let done: Option<()> = self.redis.call(|mut c| async move { pipe.query_async(&mut c).await }).await;
        done.is_some()
    }

    /// Every cached document (`None` where the cache says "gone"): what `movies verify`
    /// compares with the log. `None` when Redis is unreachable.
    pub async fn documents(&self) -> Option<Vec<(Uuid, Option<MovieDoc>)>> {
        let mut documents = Vec::new();
        self.each_document_batch(async |keys| {
            let request = keys.clone();
            let values: Vec<Option<Vec<u8>>> = self
                .redis
                .call(|mut c| async move { redis::cmd("MGET").arg(request).query_async(&mut c).await })
                .await?;
            for (key, value) in keys.iter().zip(values) {
                let id = key.rsplit(':').next().and_then(|id| Uuid::parse_str(id).ok());
                let doc = value.and_then(|v| serde_json::from_slice::<Option<MovieDoc>>(&v).ok());
                if let (Some(id), Some(doc)) = (id, doc) {
                    documents.push((id, doc));
                }
            }
            Some(())
        })
        .await?;
        Some(documents)
    }

    /// Removes every cached document.
    async fn clear_documents(&self) -> Option<u64> {
        let mut removed = 0;
        self.each_document_batch(async |keys| {
            removed += self
                .redis
                .call(|mut c| async move { redis::cmd("DEL").arg(keys).query_async::<u64>(&mut c).await })
                .await?;
            Some(())
        })
        .await?;
        Some(removed)
    }

    /// Hands every cached document's key to `visit`, one SCAN batch at a time.
    async fn each_document_batch(&self, mut visit: impl AsyncFnMut(Vec<String>) -> Option<()>) -> Option<()> {
        let mut cursor = 0u64;
        loop {
            let pattern = self.redis.doc_pattern();
            let (next, keys): (u64, Vec<String>) = self
                .redis
                .call(|mut c| async move {
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(pattern)
                        .arg("COUNT")
                        .arg(1000)
                        .query_async(&mut c)
                        .await
                })
                .await?;
            if !keys.is_empty() {
                visit(keys).await?;
            }
            if next == 0 {
                return Some(());
            }
            cursor = next;
        }
    }
}
