//! Postgres and SQLite adapters. The dialects share one body of code, written once in the
//! `sql_event_store!` macro and type-checked separately for each database; the few real
//! differences (Postgres's advisory lock and NOTIFY, SQLite's single writer) are its arguments.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use movies_events::{Actor, EventEnvelope, EventMetadata, MovieEvent, NewEvent, Position, Role, Version};
use serde_json::Value;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::types::Json;
use sqlx::{QueryBuilder, Row};
use tokio::sync::watch;
use uuid::Uuid;

use crate::accounts::{Account, AccountChange, AccountError, AccountStore, GenerationStore};
use crate::copy::copy_in;
use crate::port::{Appended, EventFilter, EventStore, Result, Snapshot, StoreError};

/// Serializes appends across all writers so positions are assigned in commit order. The lock is
/// transaction-scoped: it is released only after the commit is visible to readers.
const PG_APPEND_LOCK: &str = "SELECT pg_advisory_xact_lock(7283145901)";
/// Wakes `LISTEN movies_events` sessions (the relay) when an append commits.
const PG_NOTIFY: &str = "SELECT pg_notify('movies_events', $1::text)";

/// Connects a Postgres pool with bounded waits, so an unreachable database fails fast.
pub async fn connect_postgres(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect(url)
        .await
}

/// A Postgres pool whose connections find unqualified tables in `schema` (created if missing):
/// how a read-store generation other than the first lives beside the live one.
pub async fn connect_postgres_schema(
    url: &str,
    schema: &str,
    max_connections: u32,
) -> Result<PgPool, sqlx::Error> {
    let valid = !schema.is_empty()
        && schema.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid {
        return Err(sqlx::Error::Configuration(format!("invalid schema name {schema:?}").into()));
    }
    let admin = connect_postgres(url, 1).await?;
    sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {schema}")).execute(&admin).await?;
    admin.close().await;
    let options = sqlx::postgres::PgConnectOptions::from_str(url)?.options([("search_path", schema)]);
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
}

/// Drops a schema made by `connect_postgres_schema`, with everything in it.
pub async fn drop_postgres_schema(url: &str, schema: &str) -> Result<(), sqlx::Error> {
    let admin = connect_postgres(url, 1).await?;
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).execute(&admin).await?;
    admin.close().await;
    Ok(())
}

/// One SQLite database file: a single-connection writer pool (SQLite allows one writer at a time,
/// so queueing in the pool beats retrying on `SQLITE_BUSY`) and a pool of readers (WAL mode lets
/// them read while the writer writes).
#[derive(Clone, Debug)]
pub struct SqliteFile {
    pub writer: SqlitePool,
    pub reader: SqlitePool,
}

/// Opens (creating if missing) a SQLite file readable by its owner only: the event log's file
/// holds the accounts' password hashes. SQLite gives its `-wal` and `-shm` files the database
/// file's mode.
pub async fn open_sqlite(path: &Path) -> Result<SqliteFile, sqlx::Error> {
    owner_only(path).map_err(sqlx::Error::Io)?;
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true);
    // The one writer keeps 64 MiB of pages (SQLite's default is 2 MiB): bulk appends and
    // projections insert into indexes keyed by random ids, which touch pages all over them.
    let writer = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options.clone().pragma("cache_size", "-65536"))
        .await?;
    let reader = SqlitePoolOptions::new().max_connections(8).connect_with(options).await?;
    Ok(SqliteFile { writer, reader })
}

/// Creates `path` empty with mode 0600 if it is missing, and takes group and other access away
/// from one that exists (files made by earlier releases were 0644).
fn owner_only(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            for file in [path.to_path_buf(), suffixed(path, "-wal"), suffixed(path, "-shm")] {
                match std::fs::metadata(&file) {
                    Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
                        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))?
                    }
                    _ => {}
                }
            }
            Ok(())
        }
        Err(error) => Err(error),
    }
}

fn suffixed(path: &Path, suffix: &str) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    name.into()
}

fn migrator(mut migrator: sqlx::migrate::Migrator) -> sqlx::migrate::Migrator {
    // The event and read-store migrations may share one database (and its `_sqlx_migrations`
    // table) in Postgres; each migrator must not trip over the other's rows.
    migrator.set_ignore_missing(true);
    migrator
}

pub struct PgEventStore {
    pool: PgPool,
    appended: watch::Sender<Position>,
}

impl PgEventStore {
    /// Applies the event-log migrations and opens the store.
    pub async fn open(pool: PgPool) -> Result<Self> {
        migrator(sqlx::migrate!("../migrations/postgres/events"))
            .run(&pool)
            .await
            .map_err(|e| StoreError::Unavailable(e.into()))?;
        Ok(Self { pool, appended: watch::Sender::new(0) })
    }

    fn writer(&self) -> &PgPool {
        &self.pool
    }

    fn reader(&self) -> &PgPool {
        &self.pool
    }
}

pub struct SqliteEventStore {
    file: SqliteFile,
    appended: watch::Sender<Position>,
}

impl SqliteEventStore {
    pub async fn open(file: SqliteFile) -> Result<Self> {
        migrator(sqlx::migrate!("../migrations/sqlite/events"))
            .run(&file.writer)
            .await
            .map_err(|e| StoreError::Unavailable(e.into()))?;
        Ok(Self { file, appended: watch::Sender::new(0) })
    }

    fn writer(&self) -> &SqlitePool {
        &self.file.writer
    }

    fn reader(&self) -> &SqlitePool {
        &self.file.reader
    }
}

fn is_unique_violation(error: &sqlx::Error) -> bool {
    error.as_database_error().is_some_and(|e| e.is_unique_violation())
}

macro_rules! sql_event_store {
    ($store:ident, $db:ty, lock: $lock:expr, notify: $notify:expr,
     insert_rows: |$tx:ident, $rows:ident| $insert_rows:block) => {
        impl $store {
            /// Appends inside a caller's transaction (the caller commits). Public so batch
            /// writers and tests can compose it; `EventStore::append` is this plus a commit.
            pub async fn append_in(
                tx: &mut sqlx::Transaction<'_, $db>,
                stream_id: Uuid,
                expected: Version,
                events: &[NewEvent],
            ) -> Result<Appended> {
                let (Some(first), Some(last)) = (events.first(), events.last()) else {
                    return Err(StoreError::NothingToAppend);
                };
                if let Some(lock) = $lock {
                    sqlx::query(lock).execute(&mut **tx).await?;
                }
                if let Some(original) = Self::original(&mut **tx, first.event_id, last.event_id).await? {
                    return Ok(original);
                }
                // The first id was checked above; a later one already stored is a malformed retry.
                // Checked before inserting: a failed insert would abort a Postgres transaction.
                for event in &events[1..] {
                    let stored: Option<i64> = sqlx::query_scalar("SELECT position FROM events WHERE event_id = $1")
                        .bind(event.event_id)
                        .fetch_optional(&mut **tx)
                        .await?;
                    if stored.is_some() {
                        return Err(StoreError::DuplicateEvent(event.event_id));
                    }
                }
                let actual: i64 =
                    sqlx::query_scalar("SELECT COALESCE(MAX(stream_version), 0) FROM events WHERE stream_id = $1")
                        .bind(stream_id)
                        .fetch_one(&mut **tx)
                        .await?;
                if actual != expected {
                    return Err(StoreError::Conflict { stream_id, expected, actual });
                }
                let mut head: i64 = sqlx::query_scalar(HEAD).fetch_one(&mut **tx).await?;
                let mut rows = Vec::with_capacity(events.len());
                let appended = place(stream_id, expected, events, &mut head, &mut rows);
                Self::insert_rows(tx, &rows).await?;
                Self::notify_appended(tx, std::slice::from_ref(&appended)).await?;
                Ok(appended)
            }

            /// Appends to many streams inside a caller's transaction with a handful of statements:
            /// one lock, one look-up of ids and versions per chunk, multi-row inserts. Streams
            /// whose first event id is stored already fall back to `append_in` (a retry).
            pub async fn append_many_in(
                tx: &mut sqlx::Transaction<'_, $db>,
                appends: &[(Uuid, Version, Vec<NewEvent>)],
            ) -> Result<Vec<Appended>> {
                if appends.iter().any(|(_, _, events)| events.is_empty()) {
                    return Err(StoreError::NothingToAppend);
                }
                if appends.is_empty() {
                    return Ok(Vec::new());
                }
                if let Some(lock) = $lock {
                    sqlx::query(lock).execute(&mut **tx).await?;
                }
                // Only new streams (a bulk load's creations): the unique keys on event ids and
                // stream versions refuse a retry or a stream that exists, so the rows go in with
                // nothing looked up first. If a key trips, that is undone and the batch is
                // checked the exact way below.
                if appends.iter().all(|(_, expected, _)| *expected == 0) {
                    let mut head: i64 = sqlx::query_scalar(HEAD).fetch_one(&mut **tx).await?;
                    let mut rows = Vec::new();
                    let results: Vec<Appended> = appends
                        .iter()
                        .map(|(stream_id, expected, events)| place(*stream_id, *expected, events, &mut head, &mut rows))
                        .collect();
                    let mut savepoint = sqlx::Connection::begin(&mut **tx).await?;
                    match Self::insert_rows(&mut savepoint, &rows).await {
                        Ok(()) => {
                            savepoint.commit().await?;
                            Self::notify_appended(tx, &results).await?;
                            return Ok(results);
                        }
                        Err(StoreError::Unavailable(sqlx::Error::Database(e))) if e.is_unique_violation() => {
                            savepoint.rollback().await?;
                        }
                        Err(error) => return Err(error),
                    }
                }
                let mut stored_ids = std::collections::HashSet::new();
                // One index probe per id (correlated subqueries): planners turn a long `IN` list
                // into a scan of the whole log, which grows with every batch of a bulk load.
                for chunk in appends.chunks(500) {
                    let mut query = QueryBuilder::<$db>::new("WITH k(id) AS (");
                    query.push_values(chunk.iter().flat_map(|(_, _, events)| events), |mut row, e| { row.push_bind(e.event_id); });
                    query.push(") SELECT k.id AS event_id, (SELECT e.position FROM events e WHERE e.event_id = k.id) AS position FROM k");
                    for row in query.build().fetch_all(&mut **tx).await? {
                        if row.try_get::<Option<i64>, _>("position")?.is_some() {
                            stored_ids.insert(row.try_get::<Uuid, _>("event_id")?);
                        }
                    }
                }
                let ids: Vec<Uuid> = appends.iter().map(|(id, _, _)| *id).collect();
                let mut versions = Self::versions_in(&mut **tx, &ids).await?;
                let mut head: i64 = sqlx::query_scalar(HEAD).fetch_one(&mut **tx).await?;
                let mut results = Vec::with_capacity(appends.len());
                let mut rows: Vec<(i64, Uuid, i64, &NewEvent)> = Vec::new();
                let mut seen = std::collections::HashSet::new();
                for (stream_id, expected, events) in appends {
                    if stored_ids.contains(&events[0].event_id) {
                        // A retry: resolve it (and any partial-duplicate error) the slow, exact way.
                        results.push(Self::append_in(tx, *stream_id, *expected, events).await?);
                        continue;
                    }
                    if let Some(dup) = events.iter().find(|e| stored_ids.contains(&e.event_id) || !seen.insert(e.event_id)) {
                        return Err(StoreError::DuplicateEvent(dup.event_id));
                    }
                    let actual = versions.get(stream_id).copied().unwrap_or(0);
                    if actual != *expected {
                        return Err(StoreError::Conflict { stream_id: *stream_id, expected: *expected, actual });
                    }
                    versions.insert(*stream_id, expected + events.len() as i64);
                    results.push(place(*stream_id, *expected, events, &mut head, &mut rows));
                }
                Self::insert_rows(tx, &rows).await?;
                Self::notify_appended(tx, &results).await?;
                Ok(results)
            }

            /// Tells listeners (the dialect's way, if it has one) how far the log now reaches.
            async fn notify_appended(tx: &mut sqlx::Transaction<'_, $db>, results: &[Appended]) -> Result<()> {
                if let (Some(notify), Some(last)) = ($notify, results.iter().map(|a| a.last_position).max()) {
                    sqlx::query(notify).bind(last).execute(&mut **tx).await?;
                }
                Ok(())
            }

            /// Inserts event rows (position, stream, version, event): the dialect's fastest way.
            async fn insert_rows(
                tx: &mut sqlx::Transaction<'_, $db>,
                rows: &[(i64, Uuid, i64, &NewEvent)],
            ) -> Result<()> {
                let ($tx, $rows) = (tx, rows);
                $insert_rows
                Ok(())
            }

            /// The current version of each of `ids` that has a stream, one index probe per id (a
            /// correlated MAX): planners turn a long `IN` list into a scan of the whole log, which
            /// grows with every batch of a bulk load.
            async fn versions_in(
                conn: &mut <$db as sqlx::Database>::Connection,
                ids: &[Uuid],
            ) -> Result<std::collections::HashMap<Uuid, Version>> {
                let mut versions = std::collections::HashMap::new();
                for chunk in ids.chunks(1000) {
                    let mut query = QueryBuilder::<$db>::new("WITH k(id) AS (");
                    query.push_values(chunk, |mut row, id| { row.push_bind(*id); });
                    query.push(
                        ") SELECT k.id AS stream_id, \
                         (SELECT MAX(e.stream_version) FROM events e WHERE e.stream_id = k.id) AS version FROM k",
                    );
                    for row in query.build().fetch_all(&mut *conn).await? {
                        if let Some(version) = row.try_get::<Option<Version>, _>("version")? {
                            versions.insert(row.try_get("stream_id")?, version);
                        }
                    }
                }
                Ok(versions)
            }

            /// The outcome of an earlier append of the same events, if there was one.
            async fn original(
                conn: &mut <$db as sqlx::Database>::Connection,
                first: Uuid,
                last: Uuid,
            ) -> Result<Option<Appended>> {
                let find = "SELECT stream_id, stream_version, position FROM events WHERE event_id = $1";
                let Some(first_row) = sqlx::query(find).bind(first).fetch_optional(&mut *conn).await? else {
                    return Ok(None);
                };
                let Some(last_row) = sqlx::query(find).bind(last).fetch_optional(&mut *conn).await? else {
                    return Err(StoreError::DuplicateEvent(first));
                };
                Ok(Some(Appended {
                    stream_id: first_row.try_get("stream_id")?,
                    version: last_row.try_get("stream_version")?,
                    first_position: first_row.try_get("position")?,
                    last_position: last_row.try_get("position")?,
                    replayed: true,
                }))
            }

            fn decode(row: &<$db as sqlx::Database>::Row) -> Result<EventEnvelope> {
                let position: i64 = row.try_get("position")?;
                let event_type: String = row.try_get("event_type")?;
                let schema_version: i32 = row.try_get("schema_version")?;
                let Json(payload): Json<Value> = row.try_get("payload")?;
                let role: String = row.try_get("actor_role")?;
                let event = MovieEvent::decode(&event_type, schema_version, payload)
                    .map_err(|source| StoreError::Decode { position, source })?;
                Ok(EventEnvelope {
                    event_id: row.try_get("event_id")?,
                    stream_id: row.try_get("stream_id")?,
                    stream_version: row.try_get("stream_version")?,
                    position,
                    recorded_at: row.try_get::<DateTime<Utc>, _>("recorded_at")?,
                    metadata: EventMetadata {
                        actor: Actor {
                            subject: row.try_get("actor_subject")?,
                            role: Role::parse(&role).unwrap_or(Role::System),
                        },
                        request_id: row.try_get("request_id")?,
                    },
                    event,
                })
            }
        }

        #[async_trait]
        impl EventStore for $store {
            async fn load(&self, stream_id: Uuid) -> Result<Vec<EventEnvelope>> {
                let rows = sqlx::query("SELECT * FROM events WHERE stream_id = $1 ORDER BY stream_version")
                    .bind(stream_id)
                    .fetch_all(self.reader())
                    .await?;
                rows.iter().map(Self::decode).collect()
            }

            async fn load_from_snapshot(
                &self,
                stream_id: Uuid,
            ) -> Result<(Option<Snapshot>, Vec<EventEnvelope>)> {
                // Events appended between the two reads are read too: the state is then newer.
                let mut conn = self.reader().acquire().await?;
                let row = sqlx::query(
                    "SELECT version, position, schema_version, state FROM snapshots WHERE stream_id = $1",
                )
                .bind(stream_id)
                .fetch_optional(&mut *conn)
                .await?;
                let snapshot = match row {
                    Some(row) => Some(Snapshot {
                        version: row.try_get("version")?,
                        position: row.try_get("position")?,
                        schema: row.try_get("schema_version")?,
                        state: row.try_get::<Json<Value>, _>("state")?.0,
                    }),
                    None => None,
                };
                let after = snapshot.as_ref().map_or(0, |s| s.version);
                let rows = sqlx::query(
                    "SELECT * FROM events WHERE stream_id = $1 AND stream_version > $2 ORDER BY stream_version",
                )
                .bind(stream_id)
                .bind(after)
                .fetch_all(&mut *conn)
                .await?;
                let events = rows.iter().map(Self::decode).collect::<Result<_>>()?;
                Ok((snapshot, events))
            }

            async fn save_snapshot(&self, stream_id: Uuid, snapshot: &Snapshot) -> Result<()> {
                sqlx::query(
                    "INSERT INTO snapshots (stream_id, version, position, schema_version, state) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (stream_id) DO UPDATE SET \
                     version = excluded.version, position = excluded.position, \
                     schema_version = excluded.schema_version, state = excluded.state \
                     WHERE snapshots.version < excluded.version \
                     OR snapshots.schema_version <> excluded.schema_version",
                )
                .bind(stream_id)
                .bind(snapshot.version)
                .bind(snapshot.position)
                .bind(snapshot.schema)
                .bind(Json(&snapshot.state))
                .execute(self.writer())
                .await?;
                Ok(())
            }

            async fn append(&self, stream_id: Uuid, expected: Version, events: Vec<NewEvent>) -> Result<Appended> {
                let mut tx = self.writer().begin().await?;
                let appended = Self::append_in(&mut tx, stream_id, expected, &events).await?;
                tx.commit().await?;
                if !appended.replayed {
                    self.appended.send_modify(|head| *head = (*head).max(appended.last_position));
                }
                Ok(appended)
            }

            async fn append_batch(&self, appends: Vec<(Uuid, Version, Vec<NewEvent>)>) -> Result<Vec<Appended>> {
                let mut tx = self.writer().begin().await?;
                let results = Self::append_many_in(&mut tx, &appends).await?;
                tx.commit().await?;
                if let Some(last) = results.iter().filter(|a| !a.replayed).map(|a| a.last_position).max() {
                    self.appended.send_modify(|head| *head = (*head).max(last));
                }
                Ok(results)
            }

            async fn read_all(&self, after: Position, limit: i64) -> Result<Vec<EventEnvelope>> {
                let rows = sqlx::query("SELECT * FROM events WHERE position > $1 ORDER BY position LIMIT $2")
                    .bind(after)
                    .bind(limit)
                    .fetch_all(self.reader())
                    .await?;
                rows.iter().map(Self::decode).collect()
            }

            async fn query(&self, filter: &EventFilter, after: Position, limit: i64) -> Result<Vec<EventEnvelope>> {
                let mut query = QueryBuilder::<$db>::new("SELECT * FROM events WHERE position > ");
                query.push_bind(after);
                if let Some(actor) = &filter.actor {
                    query.push(" AND actor_subject = ").push_bind(actor.clone());
                }
                if let Some(event_type) = &filter.event_type {
                    query.push(" AND event_type = ").push_bind(event_type.clone());
                }
                if let Some(since) = filter.since {
                    query.push(" AND recorded_at >= ").push_bind(since);
                }
                if let Some(until) = filter.until {
                    query.push(" AND recorded_at < ").push_bind(until);
                }
                query.push(" ORDER BY position LIMIT ").push_bind(limit);
                let rows = query.build().fetch_all(self.reader()).await?;
                rows.iter().map(Self::decode).collect()
            }

            async fn head(&self) -> Result<Position> {
                Ok(sqlx::query_scalar(HEAD).fetch_one(self.reader()).await?)
            }

            async fn stream_versions(&self, ids: &[Uuid]) -> Result<std::collections::HashMap<Uuid, Version>> {
                let mut conn = self.reader().acquire().await?;
                Self::versions_in(&mut conn, ids).await
            }

            fn appended(&self) -> watch::Receiver<Position> {
                self.appended.subscribe()
            }
        }

        #[async_trait]
        impl GenerationStore for $store {
            async fn generation(&self, projection: &str) -> Result<i64, sqlx::Error> {
                Ok(sqlx::query_scalar("SELECT generation FROM projection_generations WHERE projection = $1")
                    .bind(projection)
                    .fetch_optional(self.reader())
                    .await?
                    .unwrap_or(0))
            }

            async fn set_generations(&self, generations: &[(&str, i64)]) -> Result<(), sqlx::Error> {
                let mut tx = self.writer().begin().await?;
                for (projection, generation) in generations {
                    sqlx::query(
                        "INSERT INTO projection_generations (projection, generation) VALUES ($1, $2) \
                         ON CONFLICT (projection) DO UPDATE SET generation = excluded.generation",
                    )
                    .bind(*projection)
                    .bind(*generation)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await
            }
        }

        #[async_trait]
        impl AccountStore for $store {
            async fn create(&self, account: &Account) -> Result<(), AccountError> {
                let inserted = sqlx::query(
                    "INSERT INTO accounts (username, password_hash, role, created_at) VALUES ($1, $2, $3, $4)",
                )
                .bind(&account.username)
                .bind(&account.password_hash)
                .bind(account.role.as_str())
                .bind(account.created_at)
                .execute(self.writer())
                .await;
                match inserted {
                    Err(e) if is_unique_violation(&e) => Err(AccountError::Exists(account.username.clone())),
                    other => other.map(drop).map_err(AccountError::from),
                }
            }

            async fn find(&self, username: &str) -> Result<Option<Account>, AccountError> {
                let row = sqlx::query("SELECT * FROM accounts WHERE username = $1")
                    .bind(username)
                    .fetch_optional(self.reader())
                    .await?;
                Ok(row.map(|row| account_row(&row)).transpose()?)
            }

            async fn list(&self) -> Result<Vec<Account>, AccountError> {
                let rows = sqlx::query("SELECT * FROM accounts ORDER BY username").fetch_all(self.reader()).await?;
                Ok(rows.iter().map(account_row).collect::<Result<_, sqlx::Error>>()?)
            }

            async fn update(&self, username: &str, change: &AccountChange) -> Result<bool, AccountError> {
                let updated = sqlx::query(
                    "UPDATE accounts SET password_hash = COALESCE($2, password_hash), \
                     role = COALESCE($3, role), disabled = COALESCE($4, disabled) WHERE username = $1",
                )
                .bind(username)
                .bind(change.password_hash.as_deref())
                .bind(change.role.map(|r| r.as_str()))
                .bind(change.disabled)
                .execute(self.writer())
                .await?;
                Ok(updated.rows_affected() > 0)
            }

            async fn count_admins(&self) -> Result<i64, AccountError> {
                Ok(sqlx::query_scalar("SELECT COUNT(*) FROM accounts WHERE role = 'admin'")
                    .fetch_one(self.reader())
                    .await?)
            }
        }
    };
}

sql_event_store!(PgEventStore, sqlx::Postgres, lock: Some(PG_APPEND_LOCK), notify: Some(PG_NOTIFY),
    insert_rows: |tx, rows| { copy_events(tx, rows).await?; });
sql_event_store!(SqliteEventStore, sqlx::Sqlite, lock: None::<&'static str>, notify: None::<&'static str>,
    insert_rows: |tx, rows| { insert_values(tx, rows).await?; });

fn account_row<R: sqlx::Row>(row: &R) -> Result<Account, sqlx::Error>
where
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> bool: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> chrono::DateTime<chrono::Utc>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let role: String = row.try_get("role")?;
    Ok(Account {
        username: row.try_get("username")?,
        password_hash: row.try_get("password_hash")?,
        role: Role::parse(&role).unwrap_or(Role::User),
        created_at: row.try_get("created_at")?,
        disabled: row.try_get("disabled")?,
    })
}

/// The log's last position (0 when empty).
const HEAD: &str = "SELECT COALESCE(MAX(position), 0) FROM events";
/// The `events` columns in the order bulk appends write them.
const EVENT_COLUMNS: &str =
    "position, event_id, stream_id, stream_version, event_type, schema_version, payload, \
     recorded_at, actor_subject, actor_role, request_id";

/// Places one append's events after `head` (which it moves past them) as rows to insert.
fn place<'a>(
    stream_id: Uuid,
    expected: Version,
    events: &'a [NewEvent],
    head: &mut Position,
    rows: &mut Vec<(i64, Uuid, i64, &'a NewEvent)>,
) -> Appended {
    for (n, event) in events.iter().enumerate() {
        rows.push((*head + 1 + n as i64, stream_id, expected + 1 + n as i64, event));
    }
    let appended = Appended {
        stream_id,
        version: expected + events.len() as i64,
        first_position: *head + 1,
        last_position: *head + events.len() as i64,
        replayed: false,
    };
    *head += events.len() as i64;
    appended
}

/// Postgres's way in: COPY, with no statement to parse and plan per row.
async fn copy_events(conn: &mut sqlx::PgConnection, rows: &[(i64, Uuid, i64, &NewEvent)]) -> Result<()> {
    // An event row is a few hundred bytes.
    copy_in(conn, "events", EVENT_COLUMNS, rows, 512, |copy, (position, stream_id, version, event)| {
        copy.plain(position)
            .plain(event.event_id)
            .plain(stream_id)
            .plain(version)
            .text(event.event.event_type())
            .plain(event.event.schema_version())
            .text(&event.event.payload_json())
            .time(event.recorded_at)
            .text(&event.metadata.actor.subject)
            .text(event.metadata.actor.role.as_str())
            .optional_text(event.metadata.request_id.as_deref())
            .end_row();
    })
    .await?;
    Ok(())
}

/// SQLite's way in: many rows per statement.
async fn insert_values(
    conn: &mut sqlx::SqliteConnection,
    rows: &[(i64, Uuid, i64, &NewEvent)],
) -> Result<()> {
    for chunk in rows.chunks(2000) {
        let mut insert = QueryBuilder::<sqlx::Sqlite>::new(format!("INSERT INTO events ({EVENT_COLUMNS}) "));
        insert.push_values(chunk, |mut row, (position, stream_id, version, event)| {
            row.push_bind(*position)
                .push_bind(event.event_id)
                .push_bind(*stream_id)
                .push_bind(*version)
                .push_bind(event.event.event_type())
                .push_bind(event.event.schema_version())
                .push_bind(Json(event.event.payload()))
                .push_bind(event.recorded_at)
                .push_bind(event.metadata.actor.subject.clone())
                .push_bind(event.metadata.actor.role.as_str())
                .push_bind(event.metadata.request_id.clone());
        });
        insert.build().execute(&mut *conn).await?;
    }
    Ok(())
}
