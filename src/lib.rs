//! The `movies` application: wires the ports to adapters (chosen by URL), serves the APIs and
//! runs the operator commands. The only crate that names adapters.

/// Every binary of the project allocates through mimalloc: the ingest frees on one thread what
/// another allocated, which glibc's allocator serialises on its arena locks.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod generate;
pub mod http;
pub mod ingest;
mod openapi;
pub mod replay;
pub mod roles;
mod status;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use chrono::Utc;
pub use http::HttpLimits;
use indicatif::ProgressBar;
use movies_command_api::{CommandService, CommandState};
use movies_events::Role;
use movies_projector::Projector;
use movies_query_api::QueryState;
use movies_read_model::ReadStore;
use movies_store::{
    connect_postgres, open_sqlite, Account, AccountError, AccountStore, EventStore, GenerationStore,
    PgEventStore, SqliteEventStore,
};
use movies_web::{
    ApiError, EdgeLayer, JwtKeys, PasswordHasher, RateLimitLayer, RateLimiter, RateLimits, MAX_BODY_BYTES,
};
pub use openapi::openapi;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The assignment's data set, bundled so a fresh start is seeded wherever it runs.
pub const BUNDLED_SEED: &[u8] = include_bytes!("../data/imdb.json");

/// What a new deployment is seeded with when its event log is empty.
#[derive(Debug, Clone)]
pub enum Seed {
    Bundled,
    File(PathBuf),
    Nothing,
}

#[derive(Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    /// Keys, the SQLite files and the search index live here.
    pub data_dir: PathBuf,
    /// `postgres://...` for the event log and read store; `None` for SQLite files in `data_dir`.
    pub database_url: Option<String>,
    pub admin_password: Option<String>,
    pub seed: Seed,
    pub hasher: PasswordHasher,
    pub rate: RateLimits,
    pub http: HttpLimits,
}

impl Settings {
    /// Settings for tools and benchmarks that open the stores without serving: no seed, no
    /// admin, cheap hashing, no rate limits.
    pub fn for_tools(data_dir: PathBuf, database_url: Option<String>) -> Self {
        Self {
            listen: ([127, 0, 0, 1], 0).into(),
            data_dir,
            database_url,
            admin_password: None,
            seed: Seed::Nothing,
            hasher: PasswordHasher::cheap_for_tests(),
            rate: RateLimits::unlimited(),
            http: HttpLimits::default(),
        }
    }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("database_url", &self.database_url.as_ref().map(|_| "<set>"))
            .field("admin_password", &self.admin_password.as_ref().map(|_| "<set>"))
            .field("seed", &self.seed)
            .finish()
    }
}

/// The write side's stores, opened by URL.
pub struct WriteSide {
    pub events: Arc<dyn EventStore>,
    pub accounts: Arc<dyn AccountStore>,
    pub generations: Arc<dyn GenerationStore>,
}

pub async fn open_write_side(settings: &Settings) -> anyhow::Result<WriteSide> {
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("creating the data directory {}", settings.data_dir.display()))?;
    match &settings.database_url {
        Some(url) if url.starts_with("postgres") => {
            let pool = connect_postgres(url, 16).await.context("connecting to Postgres")?;
            let store = Arc::new(PgEventStore::open(pool).await.context("migrating the event log")?);
            Ok(WriteSide { events: store.clone(), accounts: store.clone(), generations: store })
        }
        Some(url) => {
            anyhow::bail!("unsupported DATABASE_URL scheme in {url:?}: use postgres://, or none for SQLite")
        }
        None => {
            let file =
                open_sqlite(&settings.data_dir.join("events.db")).await.context("opening events.db")?;
            let store = Arc::new(SqliteEventStore::open(file).await.context("migrating events.db")?);
            Ok(WriteSide { events: store.clone(), accounts: store.clone(), generations: store })
        }
    }
}

/// Makes sure an admin can sign in: creates `admin` with the configured password, or with a
/// generated one printed this once (only its hash is stored).
pub async fn ensure_admin(
    accounts: &dyn AccountStore,
    admin_password: Option<&str>,
    hasher: &PasswordHasher,
) -> anyhow::Result<()> {
    if accounts.find("admin").await?.is_some() {
        return Ok(());
    }
    let (password, generated) = match admin_password {
        Some(password) => (password.to_owned(), false),
        None => (generate_password(), true),
    };
    let account = Account {
        username: "admin".into(),
        password_hash: hasher.hash(&password),
        role: Role::Admin,
        created_at: Utc::now(),
        disabled: false,
    };
    match accounts.create(&account).await {
        Ok(()) if generated => {
            println!("Created the account `admin` with the password: {password}");
            println!(
                "  (printed only this once; set MOVIES_ADMIN_PASSWORD before the first start to choose it)"
            );
        }
        // Another process created it first: theirs stands.
        Ok(()) | Err(AccountError::Exists(_)) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

pub fn generate_password() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rngs::OsRng;
    (0..20).map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char).collect()
}

pub fn keys(settings: &Settings) -> anyhow::Result<JwtKeys> {
    JwtKeys::load_or_create(&settings.data_dir.join("keys")).context("loading the JWT signing keys")
}

/// Everything one all-in-one process runs.
pub struct Embedded {
    pub router: Router,
    pub projector: Arc<Projector>,
    pub generations: Arc<replay::Generations>,
    /// The in-process cache over the read store.
    pub cache: Arc<movies_cache::CachedReadStore>,
    pub generation_store: Arc<dyn GenerationStore>,
    pub settings: Settings,
}

pub async fn build(settings: &Settings) -> anyhow::Result<Embedded> {
    let write = open_write_side(settings).await?;
    let keys = Arc::new(keys(settings)?);
    ensure_admin(write.accounts.as_ref(), settings.admin_password.as_deref(), &settings.hasher).await?;
    let generations = Arc::new(replay::Generations::open(settings, write.generations.as_ref()).await?);
    let read_store: Arc<dyn ReadStore> = generations.read_store.clone();
    let search = generations.search.clone();
    // Reads go through an in-process cache (the embedded deployment has no Redis) that the
    // projector keeps current.
    let cached =
        movies_cache::CachedReadStore::new(read_store.clone(), None, movies_cache::L1Settings::default())
            .await;
    let projector = Arc::new(
        Projector::new(write.events.clone(), generations.read_store.clone(), search.clone())
            .with_cache(cached.clone()),
    );
    let service = Arc::new(CommandService::new(write.events.clone()));

    if write.events.head().await? == 0 {
        let bytes = match &settings.seed {
            Seed::Bundled => Some(BUNDLED_SEED.to_vec()),
            Seed::File(path) => {
                Some(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?)
            }
            Seed::Nothing => None,
        };
        if let Some(bytes) = bytes {
            let report = ingest::ingest(&service, &bytes, &ProgressBar::new(0)).await?;
            println!(
                "Seeded the empty catalogue: {} movies created, {} rejected",
                report.created,
                report.rejected.len()
            );
        }
    }
    // The projections catch up in the background (`run`): the server answers at once, its
    // reads saying how far the projections have got, `/health` saying it is catching up and
    // `/ready` refusing until they have reached the log's head as it was at start.
    let start_head = write.events.head().await?;

    let keys_for_limits = keys.clone();
    let status = status::EmbeddedStatus {
        events: write.events.clone(),
        progress: projector.progress(),
        generations: generations.clone(),
        cache: cached.clone(),
        data_dir: settings.data_dir.clone(),
    };
    let command = movies_command_api::router(
        CommandState::new(service, write.accounts.clone(), keys.clone(), settings.hasher.clone())
            .with_status(Arc::new(status)),
    );
    let query = movies_query_api::router(QueryState {
        read_store: cached.clone(),
        uncached: read_store.clone(),
        search,
        keys,
        progress: projector.progress(),
        history: Some(write.events.clone()),
        search_cache: Default::default(),
    });
    let health = {
        let (events, progress, live) = (write.events.clone(), projector.progress(), generations.clone());
        get(move || async move {
            let head = events.head().await.map_err(|e| ApiError::Unavailable(format!("event log: {e}")))?;
            let projected = *progress.borrow();
            let (read_store, search) = live.numbers();
            let status = if lag(head, projected) <= HEALTHY_LAG { "ok" } else { "catching_up" };
            Ok::<_, ApiError>(Json(serde_json::json!({
                "status": status, "log_head": head, "projected_position": projected, "projection_lag": head - projected,
                "generations": { "read_store": read_store, "search": search },
            })))
        })
    };
    let limiter = RateLimiter::new(settings.rate.clone(), keys_for_limits, None);
    let api = Router::new().merge(command).merge(query);
    let (metrics, ready) = {
        let (events, progress) = (write.events.clone(), projector.progress());
        let metrics = get(move || {
            let (events, projected) = (events.clone(), *progress.borrow());
            async move {
                record_lag(events.as_ref(), projected).await;
                movies_web::metrics::render()
            }
        });
        let (events, progress) = (write.events.clone(), projector.progress());
        let ready = get(move || {
            let (events, projected) = (events.clone(), *progress.borrow());
            async move {
                let caught_up = projected >= start_head;
                readiness(&[("event log", events.head().await.is_ok()), ("projections", caught_up)])
            }
        });
        (metrics, ready)
    };
    let router = Router::new()
        .merge(api)
        .route("/health", health)
        .route("/metrics", metrics)
        .route("/ready", ready)
        .merge(movies_console::assets())
        .merge(utoipa_swagger_ui::SwaggerUi::new("/docs").url("/api/v1/openapi.json", openapi()));
    Ok(Embedded {
        router: layers(router, limiter),
        projector,
        generations,
        cache: cached,
        generation_store: write.generations.clone(),
        settings: settings.clone(),
    })
}

/// The most events the projections may be behind the log while `/health` says "ok"; beyond it
/// it says "catching_up" (after a restart with a backlog, or during a bulk load).
pub const HEALTHY_LAG: i64 = 1_000;

/// How far `at` is behind the log's `head`, in events (never negative: the two are read at
/// different moments).
pub fn lag(head: movies_events::Position, at: movies_events::Position) -> i64 {
    (head - at).max(0)
}

/// Sets the projection lag gauges: events the log has beyond `projected`, and how long the
/// oldest of them has waited.
pub async fn record_lag(events: &dyn EventStore, projected: movies_events::Position) {
    if let Ok(head) = events.head().await {
        metrics::gauge!("movies_projection_lag_events").set(lag(head, projected) as f64);
    }
    if let Ok(next) = events.read_all(projected, 1).await {
        let waited =
            next.first().map_or(0.0, |e| (Utc::now() - e.recorded_at).num_milliseconds() as f64 / 1000.0);
        metrics::gauge!("movies_projection_lag_seconds").set(waited.max(0.0));
    }
}

/// `/ready` of a role whose one dependency is the event log.
pub(crate) fn event_log_ready(events: Arc<dyn EventStore>) -> axum::routing::MethodRouter {
    get(move || {
        let events = events.clone();
        async move { readiness(&[("event log", events.head().await.is_ok())]) }
    })
}

/// `/ready`: 200 naming each dependency's state when every one a role needs to serve answers,
/// else a 503 problem naming those that do not.
pub fn readiness(dependencies: &[(&str, bool)]) -> axum::response::Response {
    let states: serde_json::Map<String, serde_json::Value> = dependencies
        .iter()
        .map(|(name, up)| ((*name).to_owned(), (if *up { "up" } else { "down" }).into()))
        .collect();
    let down: Vec<&str> = dependencies.iter().filter(|(_, up)| !*up).map(|(name, _)| *name).collect();
    if !down.is_empty() {
        return ApiError::Unavailable(format!("not ready: waiting for {}", down.join(", "))).into_response();
    }
    Json(serde_json::json!({ "ready": true, "dependencies": states })).into_response()
}

/// The layers every deployment's HTTP server wears, the API's rate limits among them.
pub fn layers(router: Router, limiter: Arc<RateLimiter>) -> Router {
    let stack = tower::ServiceBuilder::new()
        .layer(EdgeLayer)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(RateLimitLayer::new(limiter));
    router
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async { StatusCode::METHOD_NOT_ALLOWED.into_response() })
        // One layer call: one boxed service per route to clone per request, not one a layer.
        .layer(stack)
}

/// Serves the embedded all-in-one process on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    settings: Settings,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    run(listener, build(&settings).await?, shutdown).await
}

/// Runs a built process: the projector in the background, HTTP in front, both stopping
/// gracefully when `shutdown` turns true.
pub async fn run(
    listener: TcpListener,
    embedded: Embedded,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let projector = tokio::spawn(embedded.projector.clone().run(shutdown.clone()));
    let follower = tokio::spawn(embedded.generations.clone().run(
        embedded.settings.clone(),
        embedded.generation_store.clone(),
        Some(embedded.cache.clone()),
        shutdown.clone(),
    ));
    let limits = embedded.settings.http;
    http::serve(listener, embedded.router, limits, shutdown).await?;
    projector.await.context("stopping the projector")?;
    follower.await.context("stopping the generation follower")?;
    Ok(())
}

/// Audit events as a table for people, or as JSON lines for tools.
pub fn audit_table(events: &[movies_command_api::audit::AuditEvent], json: bool) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    if json {
        for event in events {
            // A struct of plain values always serializes.
            let _ = writeln!(out, "{}", serde_json::to_string(event).expect("audit event serializes"));
        }
        return out;
    }
    let _ = writeln!(
        out,
        "{:>8}  {:<24}  {:<16}  {:<15}  {:>3}  {:<36}  changes",
        "position", "recorded", "actor", "type", "ver", "movie"
    );
    for e in events {
        let changes: Vec<String> =
            e.changes.iter().map(|c| format!("{}: {} -> {}", c.field, c.before, c.after)).collect();
        let _ = writeln!(
            out,
            "{:>8}  {:<24}  {:<16}  {:<15}  {:>3}  {:<36}  {}",
            e.position,
            e.recorded_at.format("%Y-%m-%d %H:%M:%S%.3f"),
            e.actor.subject,
            e.event_type,
            e.version,
            e.movie_id,
            changes.join("; ")
        );
    }
    out
}
