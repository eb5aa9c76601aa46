//! The distributed deployment's roles, each its own process of this binary:
//! `command-api` (writes to the Postgres event log), `relay` (log to Kafka), `projector` (Kafka to
//! the read store and Redis, or to a replica's local search index) and `query-api` (reads from
//! the read store through the two-tier cache, and from a local search index).
//!
//! Each role checks what it needs when it starts and exits with a one-line reason if something
//! is missing or malformed; a dependency that is merely down is waited for (with backoff), so the
//! roles can start in any order.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use backon::Retryable;
use movies_cache::{CacheWriter, CachedReadStore, L1Settings, Redis, RedisCounter};
use movies_command_api::{CommandService, CommandState};
use movies_events::Position;
use movies_kafka::{ConsumerSettings, Relay, RelaySettings, RelayState};
use movies_query_api::QueryState;
use movies_read_model::{Live, ProjectionStore, ReadStore};
use movies_search::TantivySearchIndex;
use movies_store::{connect_postgres, EventStore, GenerationStore, PgEventStore};
use movies_web::{ApiError, HitCounter, JwtKeys, PasswordHasher, RateLimiter, RateLimits};
use sqlx::postgres::PgPool;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::http::{serve, HttpLimits};

/// The Postgres URL a distributed role needs (the event log lives there).
pub fn require_postgres(url: Option<&str>) -> anyhow::Result<&str> {
    match url {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => Ok(url),
        Some(url) => {
            anyhow::bail!("DATABASE_URL must be a postgres:// URL for this role (got {:?})", scheme(url))
        }
        None => anyhow::bail!("DATABASE_URL is not set: this role needs the Postgres event log"),
    }
}

fn scheme(url: &str) -> &str {
    url.split_once("://").map_or(url, |(scheme, _)| scheme)
}

pub fn require<'a>(value: Option<&'a str>, what: &str) -> anyhow::Result<&'a str> {
    value.filter(|v| !v.trim().is_empty()).with_context(|| format!("{what} is not set: this role needs it"))
}

/// Connects to Postgres, waiting for it (every 500 ms, up to `patience`) if it is not up yet. A
/// refusal (bad URL, credentials, unknown database) is not waited out.
async fn postgres(url: &str, connections: u32, patience: Duration) -> anyhow::Result<PgPool> {
    const EVERY: Duration = Duration::from_millis(500);
    let tries = (patience.as_millis() / EVERY.as_millis()) as usize;
    (|| connect_postgres(url, connections))
        .retry(backon::ConstantBuilder::default().with_delay(EVERY).with_max_times(tries))
        .when(|error| !matches!(error, sqlx::Error::Configuration(_) | sqlx::Error::Database(_)))
        .notify(|error, _| tracing::info!(%error, "waiting for Postgres"))
        .await
        .context("connecting to Postgres")
}

const STARTUP_PATIENCE: Duration = Duration::from_secs(60);

async fn event_store(url: &str) -> anyhow::Result<(PgPool, Arc<PgEventStore>)> {
    let pool = postgres(url, 16, STARTUP_PATIENCE).await?;
    let store = Arc::new(PgEventStore::open(pool.clone()).await.context("migrating the event log")?);
    Ok((pool, store))
}

fn read_key(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading the JWT {what} key {}", path.display()))
}

fn retired_keys(paths: &[PathBuf]) -> Result<Vec<Vec<u8>>, movies_web::AuthError> {
    paths.iter().map(|path| std::fs::read(path).map_err(movies_web::AuthError::from)).collect()
}

/// Writes a new signing key pair into `dir` (the private key readable by its owner only) and
/// returns the private and public key paths.
pub fn keygen(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let (private, public) = (dir.join(movies_web::PRIVATE_KEY_FILE), dir.join(movies_web::PUBLIC_KEY_FILE));
    anyhow::ensure!(!private.exists(), "{} already holds a key pair", dir.display());
    JwtKeys::load_or_create(dir).context("writing the key pair")?;
    Ok((private, public))
}

async fn bind(listen: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))
}

// ---- command-api ----

pub struct CommandApiSettings {
    pub listen: SocketAddr,
    pub database_url: String,
    pub private_key: PathBuf,
    pub public_key: PathBuf,
    /// Retired public keys that still verify during a key rollover.
    pub retired_public_keys: Vec<PathBuf>,
    pub admin_password: Option<String>,
    pub hasher: PasswordHasher,
    pub rate: RateLimits,
    pub http: HttpLimits,
}

pub async fn command_api(
    settings: CommandApiSettings,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let keys = Arc::new(
        JwtKeys::from_pem(
            &read_key(&settings.private_key, "private")?,
            &read_key(&settings.public_key, "public")?,
        )
        .and_then(|keys| keys.also_verifying(&retired_keys(&settings.retired_public_keys)?))
        .context("loading the JWT key pair")?,
    );
    let listener = bind(settings.listen).await?;
    let (_, store) = event_store(&settings.database_url).await?;
    crate::ensure_admin(store.as_ref(), settings.admin_password.as_deref(), &settings.hasher).await?;
    let events: Arc<dyn EventStore> = store.clone();
    let ready_events = events.clone();
    let limiter = RateLimiter::new(settings.rate.clone(), keys.clone(), None);
    let router = movies_command_api::router(CommandState::new(
        Arc::new(CommandService::new(events.clone())),
        store,
        keys,
        settings.hasher,
    ))
    .route(
        "/health",
        get(move || {
            let events = events.clone();
            async move {
                let head =
                    events.head().await.map_err(|e| ApiError::Unavailable(format!("event log: {e}")))?;
                Ok::<_, ApiError>(Json(
                    serde_json::json!({ "status": "ok", "role": "command-api", "log_head": head }),
                ))
            }
        }),
    );
    let router = router
        .route("/metrics", get(|| async { movies_web::metrics::render() }))
        .route("/ready", crate::event_log_ready(ready_events))
        // The admin pages' stylesheet and script.
        .merge(movies_console::assets());
    // The whole API's description (reads included) is served here, with the bundled UI.
    let router = router
        .merge(utoipa_swagger_ui::SwaggerUi::new("/docs").url("/api/v1/openapi.json", crate::openapi()));
    tracing::info!(listen = %listener.local_addr()?, "command-api serving");
    serve(listener, crate::layers(router, limiter), settings.http, shutdown).await
}

// ---- relay ----

/// The `status` of a role's health report that is answered with 503: the role is running but
/// cannot do its work.
const FAILING: &str = "failing";

/// Serves `/health` for a role without an API (relay, projector), for orchestrators and
/// operators: `report` says where the role stands (503 when its status is `FAILING`).
async fn health_server<F, Fut>(
    listen: SocketAddr,
    report: F,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()>
where
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = serde_json::Value> + Send + 'static,
{
    let listener = bind(listen).await?;
    let metrics = report.clone();
    let router = Router::new()
        .route(
            "/health",
            get(move || {
                let report = report.clone();
                async move {
                    let report = report().await;
                    let status = if report["status"] == FAILING {
                        axum::http::StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        axum::http::StatusCode::OK
                    };
                    (status, Json(report))
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let report = metrics.clone();
                async move {
                    // The report sets the role's gauges.
                    report().await;
                    movies_web::metrics::render()
                }
            }),
        );
    tokio::spawn(async move {
        if let Err(error) = serve(listener, router, HttpLimits::default(), shutdown).await {
            tracing::warn!(error = format!("{error:#}"), "the health endpoint stopped");
        }
    });
    Ok(())
}

pub async fn relay(
    database_url: &str,
    settings: RelaySettings,
    health: SocketAddr,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    anyhow::ensure!(settings.partitions > 0, "--partitions must be at least 1");
    let (pool, store) = event_store(database_url).await?;
    let relay = Relay::new(pool, store.clone(), settings);
    let (published, state) = (relay.published(), relay.state());
    health_server(
        health,
        move || {
            let (store, published, state) = (store.clone(), *published.borrow(), state.borrow().clone());
            async move {
                let head = store.head().await.ok();
                if let Some(head) = head {
                    metrics::gauge!("movies_relay_lag_events").set(crate::lag(head, published) as f64);
                }
                let (status, error) = match state {
                    RelayState::Starting => ("starting", None),
                    RelayState::StandingBy => ("standing_by", None),
                    RelayState::Publishing => ("ok", None),
                    RelayState::Failing(error) => (FAILING, Some(error)),
                };
                serde_json::json!({
                    "status": status, "role": "relay", "log_head": head, "published_position": published,
                    "relay_lag": head.map(|h| crate::lag(h, published)), "error": error,
                })
            }
        },
        shutdown.clone(),
    )
    .await?;
    relay.run(shutdown).await;
    Ok(())
}

// ---- projector ----

/// The read-store generation `movies replay` made live, followed while the role runs: the
/// returned store swaps to a rebuilt generation within a second of the flip, and the receiver
/// changes when it does.
async fn live_read_store(
    database_url: &str,
    replica: Option<String>,
    generations: Arc<dyn GenerationStore>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<(Arc<Live<dyn ProjectionStore>>, watch::Receiver<i64>)> {
    let settings = crate::Settings::for_tools(PathBuf::new(), Some(database_url.to_owned()));
    let open = move |generation: i64| {
        let (settings, replica) = (settings.clone(), replica.clone());
        async move {
            match replica {
                Some(url) => crate::replay::attach_read_replica(&url, generation).await,
                None => {
                    let store: Arc<dyn ProjectionStore> =
                        crate::replay::open_read_store(&settings, generation).await?;
                    Ok(store)
                }
            }
        }
    };
    let current = generations.generation(crate::replay::READ_STORE).await?;
    let live: Arc<Live<dyn ProjectionStore>> =
        Arc::new(Live::new(open(current).await.context("opening the read store")?));
    let (flipped, flips) = watch::channel(current);
    let follower = live.clone();
    tokio::spawn(async move {
        while !*shutdown.borrow() {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => break,
            }
            let Ok(wanted) = generations.generation(crate::replay::READ_STORE).await else { continue };
            if wanted == *flipped.borrow() {
                continue;
            }
            match open(wanted).await {
                Ok(store) => {
                    follower.replace(store);
                    flipped.send_replace(wanted);
                    tracing::info!(generation = wanted, "now using a rebuilt read store");
                }
                Err(error) => {
                    tracing::warn!(error = format!("{error:#}"), "cannot open the rebuilt read store yet")
                }
            }
        }
    });
    Ok((live, flips))
}

pub enum ProjectorTarget {
    /// The shared read store (and Redis, when given), in a consumer group.
    ReadStore { redis_url: Option<String>, namespace: String },
    /// A query replica's local search index.
    Search { index_dir: PathBuf },
}

pub async fn projector(
    database_url: &str,
    consumer: ConsumerSettings,
    target: ProjectorTarget,
    health: SocketAddr,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let (pool, events) = event_store(database_url).await?;
    // Where the projection stands, read when asked.
    type Where = Arc<dyn Fn() -> Position + Send + Sync>;
    let report = |role: &'static str, events: Arc<PgEventStore>, position: Where| {
        move || {
            let (events, position) = (events.clone(), position());
            async move {
                let head = events.head().await.ok();
                if let Some(head) = head {
                    metrics::gauge!("movies_projection_lag_events", "role" => role)
                        .set(crate::lag(head, position) as f64);
                }
                serde_json::json!({
                    "status": "ok", "role": role, "log_head": head, "position": position,
                    "lag": head.map(|h| crate::lag(h, position)),
                })
            }
        }
    };
    match target {
        ProjectorTarget::ReadStore { redis_url, namespace } => {
            let cache = match redis_url {
                Some(url) => {
                    Some(CacheWriter::new(Redis::connect(&url, &namespace).await.context("REDIS_URL")?))
                }
                None => None,
            };
            drop(pool);
            let (store, flips) =
                live_read_store(database_url, None, events.clone(), shutdown.clone()).await?;
            let store: Arc<dyn ProjectionStore> = store;
            let progress = watch::Sender::new(0);
            let projected = progress.subscribe();
            let position: Where = Arc::new(move || *projected.borrow());
            health_server(health, report("projector", events.clone(), position), shutdown.clone()).await?;
            movies_kafka::project_read_store(events, store, cache, consumer, progress, flips, shutdown).await
        }
        ProjectorTarget::Search { index_dir } => {
            let index = Arc::new(TantivySearchIndex::open(&index_dir).context("opening the search index")?);
            let indexed = index.clone();
            let position: Where = Arc::new(move || indexed.checkpoint());
            health_server(health, report("search-projector", events.clone(), position), shutdown.clone())
                .await?;
            movies_kafka::project_search(events, index, consumer, shutdown).await
        }
    }
}

// ---- query-api ----

pub struct QueryApiSettings {
    pub listen: SocketAddr,
    pub database_url: String,
    /// A read replica for the read store's queries (migrations and the event log use the primary).
    pub read_replica_url: Option<String>,
    pub redis_url: Option<String>,
    pub redis_namespace: String,
    pub index_dir: PathBuf,
    pub public_key: PathBuf,
    /// Retired public keys that still verify during a key rollover.
    pub retired_public_keys: Vec<PathBuf>,
    pub l1: L1Settings,
    pub topic: String,
    pub rate: RateLimits,
    pub http: HttpLimits,
}

pub async fn query_api(settings: QueryApiSettings, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let keys = Arc::new(
        JwtKeys::verify_only(&read_key(&settings.public_key, "public")?)
            .and_then(|keys| keys.also_verifying(&retired_keys(&settings.retired_public_keys)?))
            .context("loading the JWT public key")?,
    );
    let listener = bind(settings.listen).await?;
    let (pool, events) = event_store(&settings.database_url).await?;
    let (store, _) = live_read_store(
        &settings.database_url,
        settings.read_replica_url.clone(),
        events.clone(),
        shutdown.clone(),
    )
    .await?;
    let store: Arc<dyn ReadStore> = store;
    let redis = match &settings.redis_url {
        Some(url) => Some(Redis::connect(url, &settings.redis_namespace).await.context("REDIS_URL")?),
        None => None,
    };
    let cached = CachedReadStore::new(store.clone(), redis.clone(), settings.l1).await;
    let index = open_index_when_ready(&settings.index_dir, shutdown.clone()).await?;
    let search = Arc::new(Live::new(Arc::new(index)));

    // The read store's checkpoint, followed: what `min_position` waits on and lag reports show.
    let (progress_tx, progress) = watch::channel(store.checkpoint().await.unwrap_or(0));
    let moved = Arc::new(Mutex::new(Instant::now()));
    tokio::spawn(follow_checkpoint(store.clone(), progress_tx, moved.clone(), shutdown.clone()));

    let health = {
        let health = Arc::new(Health {
            events: events.clone(),
            search: search.clone(),
            progress: progress.clone(),
            moved,
            redis: redis.clone(),
            cached: cached.clone(),
            pool: pool.clone(),
            topic: settings.topic.clone(),
        });
        get(move || {
            let health = health.clone();
            async move { health.report().await }
        })
    };
    let metrics = {
        let (events, progress, cached, pool, topic) =
            (events.clone(), progress.clone(), cached.clone(), pool.clone(), settings.topic.clone());
        get(move || {
            let (events, projected, cached, pool, topic) =
                (events.clone(), *progress.borrow(), cached.clone(), pool.clone(), topic.clone());
            async move {
                crate::record_lag(events.as_ref(), projected).await;
                if let (Ok(head), Some(published)) =
                    (events.head().await, movies_kafka::published_position(&pool, &topic).await)
                {
                    metrics::gauge!("movies_relay_lag_events").set(crate::lag(head, published) as f64);
                }
                cached.stats().record();
                movies_web::metrics::render()
            }
        })
    };
    let ready = {
        let store = store.clone();
        get(move || {
            let store = store.clone();
            async move { crate::readiness(&[("read store", store.checkpoint().await.is_ok())]) }
        })
    };
    // Replicas share each caller's count through Redis when they have it.
    let counter = redis.clone().map(|r| Arc::new(SharedHits(RedisCounter::new(r))) as Arc<dyn HitCounter>);
    let limiter = RateLimiter::new(settings.rate.clone(), keys.clone(), counter);
    let router = movies_query_api::router(QueryState {
        read_store: cached.clone(),
        uncached: store,
        search,
        keys,
        progress,
        history: Some(events),
        search_cache: Default::default(),
    })
    .route("/health", health)
    .route("/metrics", metrics)
    .route("/ready", ready)
    .merge(movies_console::assets());
    tracing::info!(listen = %listener.local_addr()?, "query-api serving");
    serve(listener, crate::layers(router, limiter), settings.http, shutdown).await
}

/// The search index a co-located search projector writes: waits for it to exist (the projector
/// may start after this replica).
async fn open_index_when_ready(
    dir: &Path,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<TantivySearchIndex> {
    let deadline = tokio::time::Instant::now() + STARTUP_PATIENCE;
    loop {
        if dir.join("meta.json").exists() {
            return TantivySearchIndex::open_read_only(dir)
                .with_context(|| format!("opening the search index in {}", dir.display()));
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "no search index in {} (start `movies projector --search-only --index-dir` there)",
            dir.display()
        );
        tracing::info!(dir = %dir.display(), "waiting for the search projector to create the index");
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = shutdown.changed() => anyhow::bail!("stopped while waiting for the search index"),
        }
    }
}

async fn follow_checkpoint(
    store: Arc<dyn ReadStore>,
    progress: watch::Sender<Position>,
    moved: Arc<Mutex<Instant>>,
    mut shutdown: watch::Receiver<bool>,
) {
    while !*shutdown.borrow() {
        if let Ok(position) = store.checkpoint().await {
            if progress.send_if_modified(|p| std::mem::replace(p, position) != position) {
                *moved.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// A projection this long behind without moving counts as stalled.
const STALLED_AFTER: Duration = Duration::from_secs(3);

/// What a query replica's `/health` looks at.
struct Health {
    events: Arc<PgEventStore>,
    search: Arc<Live<TantivySearchIndex>>,
    progress: watch::Receiver<Position>,
    /// When the checkpoint last moved.
    moved: Arc<Mutex<Instant>>,
    redis: Option<Redis>,
    cached: Arc<CachedReadStore>,
    pool: PgPool,
    topic: String,
}

impl Health {
    /// Always 200 while this replica serves; `status` says `degraded` and why when a dependency
    /// is down or the projection is stalled behind the log.
    async fn report(&self) -> axum::response::Response {
        let mut degraded = Vec::new();
        let head = match self.events.head().await {
            Ok(head) => Some(head),
            Err(_) => {
                degraded.push("postgres: unreachable (serving cached reads only)");
                None
            }
        };
        let redis_up = self.redis.as_ref().map(Redis::is_up);
        if redis_up == Some(false) {
            degraded.push("redis: unreachable (reads go to the read store)");
        }
        let projected = *self.progress.borrow();
        let lag = head.map(|h| crate::lag(h, projected));
        let still = self.moved.lock().unwrap_or_else(|p| p.into_inner()).elapsed();
        if lag.is_some_and(|l| l > 0) && still > STALLED_AFTER {
            degraded.push("projector: behind the event log and not moving (reads are stale)");
        }
        let published = match head {
            Some(_) => movies_kafka::published_position(&self.pool, &self.topic).await,
            None => None,
        };
        Json(serde_json::json!({
            "status": if degraded.is_empty() { "ok" } else { "degraded" },
            "role": "query-api",
            "degraded": degraded,
            "log_head": head,
            "projected_position": projected,
            "projection_lag": lag,
            "relay_position": published,
            "relay_lag": head.zip(published).map(|(h, p)| crate::lag(h, p)),
            "search_position": self.search.get().checkpoint(),
            "redis": redis_up.map(|up| if up { "up" } else { "down" }),
            "cache": self.cached.stats().snapshot(),
        }))
        .into_response()
    }
}

/// Rate-limit counts in Redis, as the rate limiter counts: what lets every replica count a
/// caller once.
struct SharedHits(RedisCounter);

#[async_trait::async_trait]
impl HitCounter for SharedHits {
    async fn hit(&self, key: &str, window: u64) -> Option<u64> {
        self.0.hit(key, window).await
    }
}
