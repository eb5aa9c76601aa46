//! The read store port and its Postgres and SQLite adapters, written once in `sql_read_store!`
//! and type-checked for each dialect.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use movies_events::{genre_key, EventEnvelope, MovieEvent, MovieFields, Position, Version};
use movies_store::copy::copy_in;
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;
use sqlx::types::Json;
use sqlx::{QueryBuilder, Row};
use uuid::Uuid;

use crate::doc::{
    Cursor, GenreCount, JsonDoc, JsonPage, ListQuery, MovieDoc, Order, Page, SortField, SortValue,
};

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// The projection is at `have` for this stream and the event is `got > have + 1`: the
    /// missing events must be read from the log and applied first.
    #[error("stream {stream_id} is at version {have} here; event version {got} leaves a gap")]
    Gap { stream_id: Uuid, have: Version, got: Version },
    #[error("the read store is unavailable")]
    Unavailable(#[from] sqlx::Error),
    #[error("the search index failed")]
    Search(#[from] tantivy::TantivyError),
    #[error(
        "this read store was built by projection version {found}, this build writes version {current}: \
         rebuild it with `movies replay --projection read-store` (the server keeps serving meanwhile)"
    )]
    Outdated { found: i64, current: i64 },
    /// A failure shared by every caller that waited on one coalesced load.
    #[error(transparent)]
    Shared(#[from] std::sync::Arc<ProjectionError>),
}

pub type Result<T, E = ProjectionError> = std::result::Result<T, E>;

const CHECKPOINT: &str = "read-store";
/// Ids per `IN (...)` list and rows per multi-row insert: well under both dialects' limits on
/// bound parameters.
const ID_CHUNK: usize = 1000;
const ROW_CHUNK: usize = 1000;
/// How a batch's stream versions land: the newest version wins, the first creation time stays.
const VERSIONS_CONFLICT: &str = "ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version, \
     created_at = COALESCE(stream_versions.created_at, excluded.created_at)";
/// The `movies` columns in the order batches write them.
const MOVIE_COLUMNS: &str =
    "id, name, name_key, director, director_key, popularity, imdb_score, genres, version, created_at, updated_at";
/// Bump when what the read store holds, or how events map onto it, changes.
pub const READ_STORE_VERSION: i64 = 1;

/// Movies shaped for the query API: everything a reader may ask of the read store, and all the
/// query API can do with it. Reads never see a half-applied batch.
#[async_trait]
pub trait ReadStore: Send + Sync + 'static {
    async fn get(&self, id: Uuid) -> Result<Option<MovieDoc>>;
    /// One movie as the JSON it is served as. Stores that cache keep it serialized.
    async fn get_json(&self, id: Uuid) -> Result<Option<JsonDoc>> {
        Ok(self.get(id).await?.as_ref().map(JsonDoc::from))
    }
    /// The movies among `ids` that exist, in no particular order.
    async fn get_many(&self, ids: &[Uuid]) -> Result<Vec<MovieDoc>>;
    /// One page in the query's order, after its cursor, with the cursor of the next page.
    async fn list(&self, query: &ListQuery) -> Result<Page<MovieDoc>>;
    /// One page with its items as the JSON they are served as. Stores that cache keep it serialized.
    async fn list_json(&self, query: &ListQuery) -> Result<JsonPage> {
        Ok(JsonPage::from(&self.list(query).await?))
    }
    /// Every genre with its number of movies, most common first.
    async fn genres(&self) -> Result<Vec<GenreCount>>;
    /// The position of the last event applied.
    async fn checkpoint(&self) -> Result<Position>;
}

/// The read store as projectors write it.
///
/// Contract: `apply` writes a batch of events and the checkpoint in one transaction; an event at
/// or below a stream's projected version is skipped (duplicates and replays are no-ops); an
/// event that would skip versions fails with `Gap` and writes nothing.
#[async_trait]
pub trait ProjectionStore: ReadStore {
    /// The projected version of one stream (0 if never seen).
    async fn stream_version(&self, id: Uuid) -> Result<Version>;
    async fn apply(&self, events: &[EventEnvelope]) -> Result<()>;

    /// Applies events that may arrive out of log order across streams (Kafka partitions), in
    /// order within each stream, without moving the checkpoint: `advance_checkpoint` does that
    /// once every event below a position is known to be applied. Concurrent callers (several
    /// projector processes) are safe: each stream is applied by one transaction at a time.
    async fn apply_unordered(&self, events: &[EventEnvelope]) -> Result<()>;

    /// Given the log's events just after the checkpoint, in position order, moves the checkpoint
    /// past the longest prefix of them whose streams are projected at least to their version.
    /// Returns the checkpoint. The checkpoint never moves back.
    async fn advance_checkpoint(&self, log: &[EventEnvelope]) -> Result<Position>;
}

/// A cache in front of the read store, told by the projector which movies a batch changed
/// (after the batch reached the store, before its position is published).
#[async_trait]
pub trait ReadCache: Send + Sync + 'static {
    async fn changed(&self, ids: &[Uuid]);
}

/// A rebuild's bulk load into an empty store nobody else reads or writes yet.
#[async_trait]
pub trait BulkLoad: ProjectionStore {
    /// Drops the secondary indexes (and on Postgres the genres' foreign key), remembering how to
    /// recreate them (from the database's own catalogue). Until `restore_indexes`, batches are
    /// applied without per-stream locks.
    async fn suspend_indexes(&self) -> Result<SuspendedIndexes>;

    /// Recreates the indexes `suspend_indexes` dropped.
    async fn restore_indexes(&self, suspended: SuspendedIndexes) -> Result<()>;
}

/// Indexes a bulk load dropped: only the store that dropped them knows what they are.
#[derive(Debug, Default)]
pub struct SuspendedIndexes(Vec<String>);

impl SuspendedIndexes {
    /// How many indexes wait to be recreated.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn migrator(mut migrator: sqlx::migrate::Migrator) -> sqlx::migrate::Migrator {
    // Shares `_sqlx_migrations` with the event log's migrator when both live in one database.
    migrator.set_ignore_missing(true);
    migrator
}

pub struct PgReadStore {
    pool: PgPool,
    /// Between `suspend_indexes` and `restore_indexes`: a rebuild has the store to itself.
    loading: AtomicBool,
}

impl PgReadStore {
    pub async fn open(pool: PgPool) -> Result<Self> {
        migrator(sqlx::migrate!("../migrations/postgres/read"))
            .run(&pool)
            .await
            .map_err(sqlx::Error::from)?;
        let store = Self { pool, loading: AtomicBool::new(false) };
        store.check_version().await?;
        Ok(store)
    }

    /// A read store another process opened and migrated, reached through a read replica:
    /// for queries only.
    pub fn attach(pool: PgPool) -> Self {
        Self { pool, loading: AtomicBool::new(false) }
    }

    fn writer(&self) -> &PgPool {
        &self.pool
    }

    fn reader(&self) -> &PgPool {
        &self.pool
    }
}

pub struct SqliteReadStore {
    writer: SqlitePool,
    reader: SqlitePool,
    loading: AtomicBool,
}

impl SqliteReadStore {
    /// `writer` should be a single-connection pool (SQLite has one writer at a time).
    pub async fn open(writer: SqlitePool, reader: SqlitePool) -> Result<Self> {
        migrator(sqlx::migrate!("../migrations/sqlite/read"))
            .run(&writer)
            .await
            .map_err(sqlx::Error::from)?;
        let store = Self { writer, reader, loading: AtomicBool::new(false) };
        store.check_version().await?;
        Ok(store)
    }

    fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    fn reader(&self) -> &SqlitePool {
        &self.reader
    }
}

fn sort_column(sort: SortField) -> &'static str {
    match sort {
        SortField::Name => "m.name_key",
        SortField::Popularity => "m.popularity",
        SortField::ImdbScore => "m.imdb_score",
    }
}

/// `sql` (ending in `IN (`) with `ids` bound as its list, and the closing parenthesis.
fn id_list<'args, DB: sqlx::Database>(sql: &str, ids: &[Uuid]) -> QueryBuilder<'args, DB>
where
    Uuid: sqlx::Encode<'args, DB> + sqlx::Type<DB>,
{
    let mut query = QueryBuilder::new(sql);
    let mut list = query.separated(", ");
    ids.iter().for_each(|id| {
        list.push_bind(*id);
    });
    query.push(")");
    query
}

macro_rules! sql_read_store {
    ($store:ident, $db:ty, batch_setting: $batch_setting:expr, restore_setting: $restore_setting:expr, loading_writers: $loading_writers:expr, lock_streams: |$tx:ident, $ids:ident| $lock_streams:block, read_streams: |$read_tx:ident, $read_ids:ident| $read_streams:block, insert_rows: |$insert_tx:ident, $docs:ident, $genre_rows:ident| $insert_rows:block, write_versions: |$versions_tx:ident, $versions:ident, $new_versions:ident| $write_versions:block, suspendable: $suspendable:expr, explain: $explain:expr, plan_column: $plan_column:expr) => {
        impl $store {
            /// Records this build's version in a new read store; refuses one built by another.
            async fn check_version(&self) -> Result<()> {
                sqlx::query("INSERT INTO projection_meta (projection, version) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                    .bind(CHECKPOINT)
                    .bind(READ_STORE_VERSION)
                    .execute(self.writer())
                    .await?;
                let found: i64 = sqlx::query_scalar("SELECT version FROM projection_meta WHERE projection = $1")
                    .bind(CHECKPOINT)
                    .fetch_one(self.reader())
                    .await?;
                if found != READ_STORE_VERSION {
                    return Err(ProjectionError::Outdated { found, current: READ_STORE_VERSION });
                }
                Ok(())
            }

            fn doc(row: &<$db as sqlx::Database>::Row) -> Result<MovieDoc, sqlx::Error> {
                let Json(genres): Json<Vec<String>> = row.try_get("genres")?;
                Ok(MovieDoc {
                    id: row.try_get("id")?,
                    name: row.try_get("name")?,
                    director: row.try_get("director")?,
                    popularity: row.try_get("popularity")?,
                    imdb_score: row.try_get("imdb_score")?,
                    genres,
                    version: row.try_get("version")?,
                    created_at: row.try_get::<DateTime<Utc>, _>("created_at")?,
                    updated_at: row.try_get::<DateTime<Utc>, _>("updated_at")?,
                })
            }

            /// The list query for `q`; `prefix` goes before it (an EXPLAIN, in tests).
            fn list_query<'q>(q: &'q ListQuery, prefix: &str) -> QueryBuilder<'q, $db> {
                let mut query = QueryBuilder::<$db>::new(format!("{prefix}SELECT m.* FROM movies m WHERE 1 = 1"));
                if let Some(genre) = &q.filters.genre {
                    query
                        .push(" AND EXISTS (SELECT 1 FROM movie_genres g WHERE g.movie_id = m.id AND g.genre_key = ")
                        .push_bind(genre_key(genre))
                        .push(")");
                }
                if let Some(director) = &q.filters.director {
                    query.push(" AND m.director_key = ").push_bind(director.trim().to_lowercase());
                }
                if let Some(min) = q.filters.min_score {
                    query.push(" AND m.imdb_score >= ").push_bind(min);
                }
                if let Some(max) = q.filters.max_score {
                    query.push(" AND m.imdb_score <= ").push_bind(max);
                }
                let column = sort_column(q.sort);
                let (direction, beyond) = match q.order {
                    Order::Asc => ("ASC", ">"),
                    Order::Desc => ("DESC", "<"),
                };
                if let Some(after) = &q.after {
                    query.push(format!(" AND ({column}, m.id) {beyond} ("));
                    match &after.value {
                        SortValue::Text(text) => query.push_bind(text.clone()),
                        SortValue::Number(number) => query.push_bind(*number),
                    };
                    query.push(", ").push_bind(after.id).push(")");
                }
                query.push(format!(" ORDER BY {column} {direction}, m.id {direction} LIMIT ")).push_bind(q.limit + 1);
                query
            }

            /// How the database runs a list query, one line per plan step: what the test that
            /// proves every sort and filter is served by an index reads.
            pub async fn explain_list(&self, q: &ListQuery) -> Result<Vec<String>> {
                let rows = Self::list_query(q, $explain).build().fetch_all(self.reader()).await?;
                Ok(rows.iter().map(|row| row.try_get::<String, _>($plan_column)).collect::<Result<_, _>>()?)
            }

            /// Moves the checkpoint forward to `position` (never back).
            async fn move_checkpoint(tx: &mut <$db as sqlx::Database>::Connection, position: Position) -> Result<()> {
                sqlx::query(
                    "INSERT INTO projection_checkpoints (projection, position) VALUES ($1, $2) \
                     ON CONFLICT (projection) DO UPDATE SET position = \
                     CASE WHEN excluded.position > projection_checkpoints.position \
                     THEN excluded.position ELSE projection_checkpoints.position END",
                )
                .bind(CHECKPOINT)
                .bind(position)
                .execute(&mut *tx)
                .await?;
                Ok(())
            }

            /// Applies a batch: reads what it needs of the touched streams in a few queries,
            /// folds every event in memory (skipping duplicates, refusing gaps), then writes the
            /// final state of each touched movie with multi-row statements.
            /// `exclusive`: a rebuild. Nobody else writes the store, so streams need no locks, and
            /// the streams a batch starts need no look-up.
            async fn apply_batch(
                tx: &mut <$db as sqlx::Database>::Connection,
                events: &[&EventEnvelope],
                exclusive: bool,
            ) -> Result<()> {
                // The streams to lock and look up, sorted. A rebuild leaves out those the batch
                // starts (version 1 here): it is given the log once, in order, so they are new.
                let started: std::collections::HashSet<Uuid> = match exclusive {
                    true => events.iter().filter(|e| e.stream_version == 1).map(|e| e.stream_id).collect(),
                    false => std::collections::HashSet::new(),
                };
                let mut ids: Vec<Uuid> =
                    events.iter().map(|e| e.stream_id).filter(|id| !started.contains(id)).collect();
                ids.sort();
                ids.dedup();
                if let Some(setting) = $batch_setting {
                    sqlx::query(setting).execute(&mut *tx).await?;
                }
                if !exclusive {
                    let ($tx, $ids) = (&mut *tx, &ids);
                    $lock_streams
                }
                let mut known: HashMap<Uuid, (Version, Option<DateTime<Utc>>)> = HashMap::new();
                let mut current: HashMap<Uuid, MovieDoc> = HashMap::new();
                // The dialect fetches the touched streams' versions and movie rows.
                let (stream_rows, movie_rows): (Vec<<$db as sqlx::Database>::Row>, Vec<<$db as sqlx::Database>::Row>) =
                    match ids.is_empty() {
                        true => (Vec::new(), Vec::new()),
                        false => {
                            let ($read_tx, $read_ids) = (&mut *tx, &ids);
                            $read_streams
                        }
                    };
                for row in &stream_rows {
                    known.insert(row.try_get("stream_id")?, (row.try_get("version")?, row.try_get("created_at")?));
                }
                let stream_rows_had: std::collections::HashSet<Uuid> = known.keys().copied().collect();
                for row in &movie_rows {
                    let doc = Self::doc(row)?;
                    current.insert(doc.id, doc);
                }

                // Fold in memory. `state` holds each touched movie's latest row (None: gone).
                let mut state: HashMap<Uuid, Option<MovieDoc>> = HashMap::new();
                for envelope in events {
                    let id = envelope.stream_id;
                    let (have, created) = known.get(&id).copied().unwrap_or((0, None));
                    if envelope.stream_version <= have {
                        continue;
                    }
                    if envelope.stream_version > have + 1 {
                        return Err(ProjectionError::Gap { stream_id: id, have, got: envelope.stream_version });
                    }
                    let before = match state.get(&id) {
                        Some(doc) => doc.clone(),
                        None => current.get(&id).cloned(),
                    };
                    let (version, at) = (envelope.stream_version, envelope.recorded_at);
                    let doc = |fields: &MovieFields, created_at| MovieDoc::new(id, fields, version, created_at, at);
                    // The fields from the one fold; the row's times from the stream.
                    let created_at = match (&envelope.event, &before) {
                        (MovieEvent::Created(_), _) => at,
                        (MovieEvent::Restored(_), _) => created.unwrap_or(at),
                        (_, old) => old.as_ref().map_or(at, |old| old.created_at),
                    };
                    let after = envelope.event.fold(before.as_ref().map(MovieDoc::fields)).map(|fields| doc(&fields, created_at));
                    let created = match envelope.event {
                        MovieEvent::Created(_) => Some(at),
                        _ => created,
                    };
                    known.insert(id, (version, created));
                    state.insert(id, after);
                }
                if state.is_empty() {
                    return Ok(());
                }

                // Genre counts move by the difference between each movie's first and last state.
                let mut deltas: HashMap<String, (String, i64)> = HashMap::new();
                for (id, after) in &state {
                    for genre in current.get(id).map(|d| d.genres.as_slice()).unwrap_or_default() {
                        deltas.entry(genre_key(genre)).or_insert_with(|| (genre.clone(), 0)).1 -= 1;
                    }
                    for genre in after.as_ref().map(|d| d.genres.as_slice()).unwrap_or_default() {
                        deltas.entry(genre_key(genre)).or_insert_with(|| (genre.clone(), 0)).1 += 1;
                    }
                }

                // Only movies that had a row have rows to delete: in a rebuild's fresh store, none
                // (there, a delete by a long id list is planned as a scan of the whole table).
                let had_rows: Vec<Uuid> = state.keys().copied().filter(|id| current.contains_key(id)).collect();
                for chunk in had_rows.chunks(ID_CHUNK) {
                    // Genres first, by name: during a rebuild the foreign key that would cascade
                    // is suspended.
                    for table in ["movie_genres WHERE movie_id", "movies WHERE id"] {
                        id_list::<$db>(&format!("DELETE FROM {table} IN ("), chunk).build().execute(&mut *tx).await?;
                    }
                }
                let rows: Vec<&MovieDoc> = state.values().flatten().collect();
                let genres: Vec<(Uuid, String)> =
                    rows.iter().flat_map(|d| d.genres.iter().map(|g| (d.id, genre_key(g)))).collect();
                {
                    let ($insert_tx, $docs, $genre_rows) = (&mut *tx, &rows, &genres);
                    $insert_rows
                }
                // Versions of streams the store already had are updated (`versions`), those of new
                // streams inserted (`new_versions`): what it had was read under the streams'
                // locks, or by the store's only writer, so no one adds them meanwhile.
                let (new_versions, versions): (Vec<_>, Vec<_>) = state
                    .keys()
                    .map(|id| (*id, known[id].0, known[id].1))
                    .partition(|(id, ..)| !stream_rows_had.contains(id));
                {
                    let ($versions_tx, $versions, $new_versions) = (&mut *tx, &versions, &new_versions);
                    $write_versions
                }
                // Last before the commit, so concurrent batches hold the shared genre rows for as
                // short a time as they can; in key order, so they lock them in one order (no
                // deadlocks).
                let mut deltas: Vec<(String, (String, i64))> = deltas.into_iter().filter(|(_, (_, d))| *d != 0).collect();
                deltas.sort();
                for (key, (genre, delta)) in deltas {
                    sqlx::query(
                        "INSERT INTO genre_counts (genre_key, genre, movies) VALUES ($1, $2, $3) \
                         ON CONFLICT (genre_key) DO UPDATE SET movies = genre_counts.movies + excluded.movies",
                    )
                    .bind(key)
                    .bind(genre)
                    .bind(delta)
                    .execute(&mut *tx)
                    .await?;
                }
                sqlx::query("DELETE FROM genre_counts WHERE movies <= 0").execute(&mut *tx).await?;
                Ok(())
            }
        }

        #[async_trait]
        impl ReadStore for $store {
            async fn get(&self, id: Uuid) -> Result<Option<MovieDoc>> {
                let row = sqlx::query("SELECT * FROM movies WHERE id = $1").bind(id).fetch_optional(self.reader()).await?;
                Ok(row.as_ref().map(Self::doc).transpose()?)
            }

            async fn get_many(&self, ids: &[Uuid]) -> Result<Vec<MovieDoc>> {
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let mut docs = Vec::with_capacity(ids.len());
                for chunk in ids.chunks(ID_CHUNK) {
                    let rows = id_list::<$db>("SELECT * FROM movies WHERE id IN (", chunk).build().fetch_all(self.reader()).await?;
                    for row in &rows {
                        docs.push(Self::doc(row)?);
                    }
                }
                Ok(docs)
            }

            async fn list(&self, q: &ListQuery) -> Result<Page<MovieDoc>> {
                let rows = Self::list_query(q, "").build().fetch_all(self.reader()).await?;
                let mut items = rows.iter().map(Self::doc).collect::<Result<Vec<_>, _>>()?;
                let next = if items.len() as i64 > q.limit {
                    items.truncate(q.limit as usize);
                    items.last().map(|last| Cursor::after(last, q.sort, q.order))
                } else {
                    None
                };
                Ok(Page { items, next })
            }

            async fn genres(&self) -> Result<Vec<GenreCount>> {
                let rows = sqlx::query("SELECT genre, movies FROM genre_counts ORDER BY movies DESC, genre_key")
                    .fetch_all(self.reader())
                    .await?;
                Ok(rows
                    .iter()
                    .map(|row| Ok(GenreCount { genre: row.try_get("genre")?, movies: row.try_get("movies")? }))
                    .collect::<Result<_, sqlx::Error>>()?)
            }

            async fn checkpoint(&self) -> Result<Position> {
                Ok(sqlx::query_scalar("SELECT position FROM projection_checkpoints WHERE projection = $1")
                    .bind(CHECKPOINT)
                    .fetch_optional(self.reader())
                    .await?
                    .unwrap_or(0))
            }

        }

        #[async_trait]
        impl ProjectionStore for $store {
            async fn stream_version(&self, id: Uuid) -> Result<Version> {
                Ok(sqlx::query_scalar("SELECT version FROM stream_versions WHERE stream_id = $1")
                    .bind(id)
                    .fetch_optional(self.reader())
                    .await?
                    .unwrap_or(0))
            }

            async fn apply(&self, events: &[EventEnvelope]) -> Result<()> {
                let Some(last) = events.iter().map(|e| e.position).max() else {
                    return Ok(());
                };
                let events: Vec<&EventEnvelope> = events.iter().collect();
                if $loading_writers > 1 && self.loading.load(Ordering::SeqCst) {
                    // A rebuild has the store to itself and throws it away if interrupted, so a
                    // batch need not be one transaction: its streams are dealt out to several
                    // connections, applied at the same time (a connection is one server core).
                    let mut shares: Vec<Vec<&EventEnvelope>> = vec![Vec::new(); $loading_writers];
                    for envelope in events {
                        shares[(envelope.stream_id.as_u128() % $loading_writers as u128) as usize].push(envelope);
                    }
                    futures::future::try_join_all(shares.iter().map(|share| async move {
                        let mut tx = self.writer().begin().await?;
                        Self::apply_batch(&mut tx, share, true).await?;
                        tx.commit().await?;
                        Ok::<(), ProjectionError>(())
                    }))
                    .await?;
                    let mut tx = self.writer().begin().await?;
                    Self::move_checkpoint(&mut tx, last).await?;
                    tx.commit().await?;
                    return Ok(());
                }
                let mut tx = self.writer().begin().await?;
                Self::apply_batch(&mut tx, &events, self.loading.load(Ordering::SeqCst)).await?;
                Self::move_checkpoint(&mut tx, last).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn apply_unordered(&self, events: &[EventEnvelope]) -> Result<()> {
                if events.is_empty() {
                    return Ok(());
                }
                let events: Vec<&EventEnvelope> = events.iter().collect();
                let mut tx = self.writer().begin().await?;
                Self::apply_batch(&mut tx, &events, self.loading.load(Ordering::SeqCst)).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn advance_checkpoint(&self, log: &[EventEnvelope]) -> Result<Position> {
                let mut ids: Vec<Uuid> = log.iter().map(|e| e.stream_id).collect();
                ids.sort();
                ids.dedup();
                let mut projected: HashMap<Uuid, Version> = HashMap::new();
                for chunk in ids.chunks(ID_CHUNK) {
                    let mut query = id_list::<$db>("SELECT stream_id, version FROM stream_versions WHERE stream_id IN (", chunk);
                    for row in query.build().fetch_all(self.reader()).await? {
                        projected.insert(row.try_get("stream_id")?, row.try_get("version")?);
                    }
                }
                let reached = log
                    .iter()
                    .take_while(|e| projected.get(&e.stream_id).is_some_and(|v| *v >= e.stream_version))
                    .last()
                    .map(|e| e.position);
                if let Some(position) = reached {
                    let mut tx = self.writer().begin().await?;
                    Self::move_checkpoint(&mut tx, position).await?;
                    tx.commit().await?;
                }
                self.checkpoint().await
            }
        }

        #[async_trait]
        impl BulkLoad for $store {
            async fn suspend_indexes(&self) -> Result<SuspendedIndexes> {
                self.loading.store(true, Ordering::SeqCst);
                let rows = sqlx::query($suspendable).fetch_all(self.writer()).await?;
                let mut statements = Vec::new();
                for row in &rows {
                    let (drop, restore): (String, String) = (row.try_get("drop_sql")?, row.try_get("restore_sql")?);
                    sqlx::query(&drop).execute(self.writer()).await?;
                    statements.push(restore);
                }
                Ok(SuspendedIndexes(statements))
            }

            async fn restore_indexes(&self, suspended: SuspendedIndexes) -> Result<()> {
                // At the same time, each on a connection of its own: building an index is bound
                // by one core. No more at once than the pool has connections: one waiting for
                // a connection while another builds would time out (SQLite's one writer took
                // over 30 s an index at 5M movies, the pool's wait).
                // The next starts as soon as any one ends. (Boxed first: a closure's future
                // inside the trait's boxed future trips the compiler's higher-ranked checks.)
                use futures::StreamExt;
                let connections = self.writer().options().get_max_connections().max(1) as usize;
                let builds: Vec<futures::future::BoxFuture<'_, Result<(), sqlx::Error>>> = suspended
                    .0
                    .iter()
                    .map(|statement| {
                        let pool = self.writer();
                        Box::pin(async move {
                            let mut tx = pool.begin().await?;
                            if let Some(setting) = $restore_setting {
                                sqlx::query(setting).execute(&mut *tx).await?;
                            }
                            sqlx::query(statement).execute(&mut *tx).await?;
                            tx.commit().await
                        }) as futures::future::BoxFuture<'_, _>
                    })
                    .collect();
                let mut running = futures::stream::iter(builds).buffer_unordered(connections);
                while let Some(built) = running.next().await {
                    built?;
                }
                self.loading.store(false, Ordering::SeqCst);
                Ok(())
            }
        }
    };
}

sql_read_store!(
    PgReadStore,
    sqlx::Postgres,
    // The batch's look-ups by id lists probe the indexes: while a rebuild fills a store its
    // statistics are stale (never analyzed), and the planner then scans whole tables per batch.
    // No JIT: the scans' penalty cost would make the planner compile every look-up.
    batch_setting: Some("SELECT set_config('enable_seqscan', 'off', true), set_config('jit', 'off', true)"),
    // An index's sort in memory rather than spilled to disk in runs to merge (the server's
    // default, 64 MB, spills a million movies' names).
    restore_setting: Some("SELECT set_config('maintenance_work_mem', '256MB', true)"),
    loading_writers: 2,
    // Sorted ids: concurrent batches (several projector processes) take the locks in one order.
    lock_streams: |tx, ids| {
        let keys: Vec<String> = ids.iter().map(Uuid::to_string).collect();
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended(k, 7)) FROM unnest($1::text[]) AS k ORDER BY k")
            .bind(keys)
            .execute(&mut *tx)
            .await?;
    },
    // One array parameter, not a list of thousands to parse and plan.
    read_streams: |tx, ids| {
        let query = "SELECT stream_id, version, created_at FROM stream_versions WHERE stream_id = ANY($1)";
        let streams = sqlx::query(query).bind(ids).fetch_all(&mut *tx).await?;
        (streams, sqlx::query("SELECT * FROM movies WHERE id = ANY($1)").bind(ids).fetch_all(&mut *tx).await?)
    },
    // COPY: one round trip per table, no statement per row to parse and plan.
    insert_rows: |tx, docs, genres| {
        copy_in(&mut *tx, "movies", MOVIE_COLUMNS, docs, 256, |rows, doc| {
            let genres = serde_json::to_string(&doc.genres).expect("a list of strings serializes");
            rows.plain(doc.id)
                .text(&doc.name)
                .text(&doc.name.to_lowercase())
                .text(&doc.director)
                .text(&doc.director.to_lowercase())
                .plain(doc.popularity)
                .plain(doc.imdb_score)
                .text(&genres)
                .plain(doc.version)
                .time(doc.created_at)
                .time(doc.updated_at)
                .end_row();
        })
        .await?;
        copy_in(&mut *tx, "movie_genres", "movie_id, genre_key", genres, 48, |rows, (id, key)| {
            rows.plain(id).text(key).end_row();
        })
        .await?;
    },
    // New streams by COPY (no conflict to check), the others by one `unnest` upsert.
    write_versions: |tx, versions, new_versions| {
        copy_in(&mut *tx, "stream_versions", "stream_id, version, created_at", new_versions, 72, |rows, (id, version, created)| {
            rows.plain(id).plain(version).optional_time(*created).end_row();
        })
        .await?;
        if !versions.is_empty() {
            let ids: Vec<Uuid> = versions.iter().map(|v| v.0).collect();
            let numbers: Vec<Version> = versions.iter().map(|v| v.1).collect();
            let created: Vec<Option<DateTime<Utc>>> = versions.iter().map(|v| v.2).collect();
            sqlx::query(&format!(
                "INSERT INTO stream_versions (stream_id, version, created_at) \
                 SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::timestamptz[]) {VERSIONS_CONFLICT}"
            ))
            .bind(ids)
            .bind(numbers)
            .bind(created)
            .execute(&mut *tx)
            .await?;
        }
    },
    // Secondary indexes, and the genres' foreign key (checked row by row as genres are inserted;
    // added back once, validated in one pass).
    suspendable: "SELECT 'DROP INDEX ' || quote_ident(indexname) AS drop_sql, indexdef AS restore_sql \
                  FROM pg_indexes WHERE schemaname = current_schema() \
                  AND tablename IN ('movies', 'movie_genres') AND indexname NOT LIKE '%_pkey' \
                  UNION ALL SELECT 'ALTER TABLE movie_genres DROP CONSTRAINT ' || quote_ident(conname), \
                  'ALTER TABLE movie_genres ADD CONSTRAINT ' || quote_ident(conname) || ' ' || pg_get_constraintdef(oid) \
                  FROM pg_constraint WHERE conrelid = 'movie_genres'::regclass AND contype = 'f'",
    explain: "EXPLAIN ",
    plan_column: "QUERY PLAN"
);
sql_read_store!(
    SqliteReadStore,
    sqlx::Sqlite,
    batch_setting: None::<&str>,
    restore_setting: None::<&str>,
    // One writer connection.
    loading_writers: 1,
    // One writer at a time already.
    lock_streams: |_tx, _ids| {},
    // Id lists, as many ids to a statement as SQLite takes parameters.
    read_streams: |tx, ids| {
        let (mut streams, mut movies) = (Vec::new(), Vec::new());
        for chunk in ids.chunks(ID_CHUNK) {
            for (select, rows) in [
                ("SELECT stream_id, version, created_at FROM stream_versions WHERE stream_id IN (", &mut streams),
                ("SELECT * FROM movies WHERE id IN (", &mut movies),
            ] {
                rows.extend(id_list::<sqlx::Sqlite>(select, chunk).build().fetch_all(&mut *tx).await?);
            }
        }
        (streams, movies)
    },
    // Multi-row inserts, as many rows to a statement as SQLite takes parameters.
    insert_rows: |tx, docs, genres| {
        for chunk in docs.chunks(ROW_CHUNK) {
            let mut insert = QueryBuilder::<sqlx::Sqlite>::new(format!("INSERT INTO movies ({MOVIE_COLUMNS}) "));
            insert.push_values(chunk, |mut row, doc| {
                row.push_bind(doc.id)
                    .push_bind(doc.name.clone())
                    .push_bind(doc.name.to_lowercase())
                    .push_bind(doc.director.clone())
                    .push_bind(doc.director.to_lowercase())
                    .push_bind(doc.popularity)
                    .push_bind(doc.imdb_score)
                    .push_bind(Json(doc.genres.clone()))
                    .push_bind(doc.version)
                    .push_bind(doc.created_at)
                    .push_bind(doc.updated_at);
            });
            insert.build().execute(&mut *tx).await?;
        }
        for chunk in genres.chunks(ROW_CHUNK * 4) {
            let mut insert = QueryBuilder::<sqlx::Sqlite>::new("INSERT INTO movie_genres (movie_id, genre_key) ");
            insert.push_values(chunk, |mut row, (id, key)| {
                row.push_bind(*id).push_bind(key.clone());
            });
            insert.build().execute(&mut *tx).await?;
        }
    },
    write_versions: |tx, versions, new_versions| {
        for chunk in versions.chunks(ROW_CHUNK * 2).chain(new_versions.chunks(ROW_CHUNK * 2)) {
            let mut upsert = QueryBuilder::<sqlx::Sqlite>::new("INSERT INTO stream_versions (stream_id, version, created_at) ");
            upsert.push_values(chunk, |mut row, (id, version, created)| {
                row.push_bind(*id).push_bind(*version).push_bind(*created);
            });
            upsert.push(" ").push(VERSIONS_CONFLICT);
            upsert.build().execute(&mut *tx).await?;
        }
    },
    suspendable: "SELECT 'DROP INDEX ' || name AS drop_sql, sql AS restore_sql FROM sqlite_master \
                  WHERE type = 'index' AND sql IS NOT NULL AND tbl_name IN ('movies', 'movie_genres')",
    explain: "EXPLAIN QUERY PLAN ",
    plan_column: "detail"
);
