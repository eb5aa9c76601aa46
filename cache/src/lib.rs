//! The read side's cache, in two tiers: an in-process L1 (moka's TinyLFU: frequently read
//! entries stay) over Redis as the shared L2. The projector writes movie documents through to
//! Redis after each batch and announces what changed; every query replica drops those entries
//! from its L1. Concurrent misses of one key load it once (request coalescing).
//!
//! Redis is an accelerator, never a dependency: when it is down, reads go to the read store and
//! `Redis::is_up` says so (the health endpoint reports it as degraded).

mod batch;
mod redis_link;
mod store;
mod writer;

pub use redis_link::Redis;
pub use store::{CacheStats, CachedReadStore, L1Settings};
pub use writer::CacheWriter;

/// The namespace keys and the announcement channel live under unless told otherwise: documents
/// under `<ns>:doc:<id>` (`null` for a movie that is gone), list pages under
/// `<ns>:page:<generation>:<query>` (the generation moves on with every write the projector makes,
/// so old pages are never read again and expire, and a replica caches what it read only if the
/// generation has not moved since), announcements on `<ns>:invalidations`.
pub const DEFAULT_NAMESPACE: &str = "movies";

/// What the projector announces after a batch: the movies that changed and the new generation
/// of cached pages.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Invalidation {
    pub generation: u64,
    pub ids: Vec<uuid::Uuid>,
    /// Everything may have changed: forget every entry.
    #[serde(default)]
    pub all: bool,
}

/// Rate-limit counts shared by every replica: one Redis counter per caller and window. (The
/// application hands it to the rate limiter as its `HitCounter`.)
pub struct RedisCounter {
    redis: Redis,
}

impl RedisCounter {
    pub fn new(redis: Redis) -> Self {
        Self { redis }
    }

    /// Adds one hit to `key` in `window` and returns the window's count; `None` when Redis does
    /// not answer.
    pub async fn hit(&self, key: &str, window: u64) -> Option<u64> {
        let key = self.redis.rate_key(key, window);
        let mut pipe = redis::pipe();
        pipe.incr(&key, 1u64).expire(&key, 120).ignore();
        let (count,): (u64,) = self.redis.call(|mut c| async move { pipe.query_async(&mut c).await }).await?;
        Some(count)
    }
}
