//! One shared link to Redis that never makes a request wait on a dead server: a background task
//! pings it and reconnects, and while it is down every cache call skips it at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;

/// How long one Redis call may take before it counts as a failure.
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(250);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
const PING_EVERY: Duration = Duration::from_millis(500);

/// The write generation, set first where Redis has none to `ARGV[1]`.
const GENERATION: &str =
    "local g = redis.call('GET', KEYS[1]) if not g then g = ARGV[1] redis.call('SET', KEYS[1], g) end return g";

#[derive(Clone)]
pub struct Redis {
    client: redis::Client,
    connection: Arc<RwLock<Option<MultiplexedConnection>>>,
    up: Arc<AtomicBool>,
    namespace: Arc<str>,
}

impl Redis {
    /// Parses the URL and starts the link; a server that is down now is retried in the
    /// background (the cache is skipped meanwhile). Fails only on a malformed URL. Keys live
    /// under `namespace` (several catalogues can share one Redis).
    pub async fn connect(url: &str, namespace: &str) -> redis::RedisResult<Self> {
        let client = redis::Client::open(url)?;
        let redis =
            Self { client, connection: Arc::default(), up: Arc::default(), namespace: namespace.into() };
        redis.check().await;
        let link = redis.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(PING_EVERY).await;
                link.check().await;
                // Stop when the last user is gone (this task holds one of two references).
                if Arc::strong_count(&link.up) <= 1 {
                    break;
                }
            }
        });
        Ok(redis)
    }

    /// Whether the last call or ping reached Redis.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    pub fn doc_key(&self, id: uuid::Uuid) -> String {
        format!("{}:doc:{id}", self.namespace)
    }

    pub(crate) fn doc_pattern(&self) -> String {
        format!("{}:doc:*", self.namespace)
    }

    pub(crate) fn page_key(&self, generation: u64, query: &str) -> String {
        format!("{}:page:{generation}:{query}", self.namespace)
    }

    pub(crate) fn generation_key(&self) -> String {
        format!("{}:pages:generation", self.namespace)
    }

    /// Adds to `pipe` a command that answers the write generation (a decimal string): the
    /// projector moves it on with every write to the cache (documents written through, the cache
    /// emptied), and list pages are cached under it. Where Redis has none (new, flushed,
    /// restarted), it starts at the clock's nanoseconds: above, and never equal to, any value a
    /// replica read before.
    pub(crate) fn generation(&self, pipe: &mut redis::Pipeline) {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        // Nanoseconds since 1970 fit in an i64 (Redis's counters) until 2262.
        pipe.cmd("EVAL").arg(GENERATION).arg(1).arg(self.generation_key()).arg(now.as_nanos() as u64);
    }

    pub(crate) fn rate_key(&self, caller: &str, window: u64) -> String {
        format!("{}:rate:{caller}:{window}", self.namespace)
    }

    pub(crate) fn channel(&self) -> String {
        format!("{}:invalidations", self.namespace)
    }

    /// The connection while Redis is up; `None` (at once) while it is down.
    pub(crate) fn connection(&self) -> Option<MultiplexedConnection> {
        if !self.is_up() {
            return None;
        }
        self.connection.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Runs a call, marking Redis down when it fails.
    pub(crate) async fn call<T, F, Fut>(&self, call: F) -> Option<T>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let connection = self.connection()?;
        match call(connection).await {
            Ok(value) => Some(value),
            Err(error) => {
                if error.is_io_error() || error.is_timeout() || error.is_connection_dropped() {
                    tracing::warn!(%error, "Redis is unreachable; serving without it");
                    self.up.store(false, Ordering::Relaxed);
                } else {
                    tracing::warn!(%error, "a Redis call failed");
                }
                None
            }
        }
    }

    async fn check(&self) {
        let existing = self.connection.read().unwrap_or_else(|p| p.into_inner()).clone();
        let alive = match existing {
            Some(mut connection) => redis::cmd("PING").query_async::<String>(&mut connection).await.is_ok(),
            None => false,
        };
        if alive {
            self.up.store(true, Ordering::Relaxed);
            return;
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        match self.client.get_multiplexed_async_connection_with_config(&config).await {
            Ok(connection) => {
                *self.connection.write().unwrap_or_else(|p| p.into_inner()) = Some(connection);
                if !self.up.swap(true, Ordering::Relaxed) {
                    tracing::info!("Redis is reachable");
                }
            }
            Err(error) => {
                if self.up.swap(false, Ordering::Relaxed) {
                    tracing::warn!(%error, "Redis is unreachable; serving without it");
                }
            }
        }
    }
}
