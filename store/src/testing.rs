//! Test fixtures: a fresh database per test on the run's throwaway Postgres, or a fresh SQLite
//! file. The Postgres server itself is started once per run by `scripts/test`, which exports
//! `MOVIES_TEST_POSTGRES` (a URL to its `postgres` maintenance database).

use std::any::Any;
use std::sync::Arc;

use sqlx::Connection;

use crate::{connect_postgres, open_sqlite, AccountStore, EventStore, PgEventStore, SqliteEventStore};

pub const POSTGRES_ENV: &str = "MOVIES_TEST_POSTGRES";

/// Creates an empty database on the test Postgres server and returns its URL.
/// Panics (a test failure, never a skip) when the server is not there.
pub async fn postgres_database() -> String {
    postgres_database_with("").await
}

/// The same, created with `options` after its name (`CREATE DATABASE name options`): a locale
/// of its own, say.
pub async fn postgres_database_with(options: &str) -> String {
    let admin_url = std::env::var(POSTGRES_ENV).unwrap_or_else(|_| {
        panic!(
            "{POSTGRES_ENV} is not set: run the suite with scripts/test, which starts a throwaway Postgres"
        )
    });
    let name = format!("test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&admin_url)
        .await
        .unwrap_or_else(|e| panic!("cannot reach the test Postgres at {admin_url}: {e}"));
    sqlx::query(&format!("CREATE DATABASE {name} {options}"))
        .execute(&mut admin)
        .await
        .expect("create test database");
    let base = admin_url.rsplit_once('/').map(|(base, _)| base).expect("URL with a database");
    format!("{base}/{name}")
}

/// A store under test and whatever must live as long as it (a temp dir).
pub struct Fixture {
    pub events: Arc<dyn EventStore>,
    pub accounts: Arc<dyn AccountStore>,
    pub guard: Box<dyn Any + Send>,
}

pub async fn postgres_fixture() -> Fixture {
    let url = postgres_database().await;
    let pool = connect_postgres(&url, 16).await.expect("connect test database");
    let store = Arc::new(PgEventStore::open(pool).await.expect("migrate"));
    Fixture { events: store.clone(), accounts: store, guard: Box::new(()) }
}

pub async fn sqlite_fixture() -> Fixture {
    let dir = tempfile::Builder::new().prefix("movies-test-").tempdir().expect("create temp dir");
    let file = open_sqlite(&dir.path().join("events.db")).await.expect("open sqlite");
    let store = Arc::new(SqliteEventStore::open(file).await.expect("migrate"));
    Fixture { events: store.clone(), accounts: store, guard: Box::new(dir) }
}

/// An event as the log would hand it to a projection: at `position`, version `stream_version`
/// of `stream_id`, recorded now by the system.
pub fn recorded(
    position: movies_events::Position,
    stream_id: uuid::Uuid,
    stream_version: movies_events::Version,
    event: movies_events::MovieEvent,
) -> movies_events::EventEnvelope {
    use movies_events::{Actor, EventMetadata, Role};
    movies_events::EventEnvelope {
        event_id: uuid::Uuid::now_v7(),
        stream_id,
        stream_version,
        position,
        recorded_at: chrono::Utc::now(),
        metadata: EventMetadata {
            actor: Actor { subject: "test".into(), role: Role::System },
            request_id: None,
        },
        event,
    }
}
