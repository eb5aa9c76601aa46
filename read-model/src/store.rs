//! The read store port and its Postgres and SQLite adapters, written once in `sql_read_store!`
//! and type-checked for each dialect.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use movies_events::{genre_key, EventEnvelope, MovieEvent, MovieFields, Position, Version};
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;
use sqlx::types::Json;
use sqlx::{QueryBuilder, Row};
use uuid::Uuid;

use crate::doc::{Cursor, GenreCount, ListQuery, MovieDoc, Order, Page, SortField, SortValue};

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
}

pub type Result<T, E = ProjectionError> = std::result::Result<T, E>;

const CHECKPOINT: &str = "read-store";
/// Bump when what the read store holds, or how events map onto it, changes.
pub const READ_STORE_VERSION: i64 = 1;

/// Movies shaped for the query API. Reads never see a half-applied batch.
///
/// Contract: `apply` writes a batch of events and the checkpoint in one transaction; an event at
/// or below a stream's projected version is skipped (duplicates and replays are no-ops); an
/// event that would skip versions fails with `Gap` and writes nothing.
#[async_trait]
pub trait ReadStore: Send + Sync + 'static {
    async fn get(&self, id: Uuid) -> Result<Option<MovieDoc>>;
    /// The movies among `ids` that exist, in no particular order.
    async fn get_many(&self, ids: &[Uuid]) -> Result<Vec<MovieDoc>>;
    /// One page in the query's order, after its cursor, with the cursor of the next page.
    async fn list(&self, query: &ListQuery) -> Result<Page<MovieDoc>>;
    /// Every genre with its number of movies, most common first.
    async fn genres(&self) -> Result<Vec<GenreCount>>;
    /// The position of the last event applied.
    async fn checkpoint(&self) -> Result<Position>;
    /// The projected version of one stream (0 if never seen).
    async fn stream_version(&self, id: Uuid) -> Result<Version>;
    async fn apply(&self, events: &[EventEnvelope]) -> Result<()>;
}

fn migrator(mut migrator: sqlx::migrate::Migrator) -> sqlx::migrate::Migrator {
    // Shares `_sqlx_migrations` with the event log's migrator when both live in one database.
    migrator.set_ignore_missing(true);
    migrator
}

pub struct PgReadStore {
    pool: PgPool,
}

impl PgReadStore {
    pub async fn open(pool: PgPool) -> Result<Self> {
        migrator(sqlx::migrate!("../migrations/postgres/read"))
            .run(&pool)
            .await
            .map_err(sqlx::Error::from)?;
        let store = Self { pool };
        store.check_version().await?;
        Ok(store)
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
}

impl SqliteReadStore {
    /// `writer` should be a single-connection pool (SQLite has one writer at a time).
    pub async fn open(writer: SqlitePool, reader: SqlitePool) -> Result<Self> {
        migrator(sqlx::migrate!("../migrations/sqlite/read"))
            .run(&writer)
            .await
            .map_err(sqlx::Error::from)?;
        let store = Self { writer, reader };
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

macro_rules! sql_read_store {
    ($store:ident, $db:ty) => {
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

            async fn count_genres(
                tx: &mut <$db as sqlx::Database>::Connection,
                genres: &[String],
                delta: i64,
            ) -> Result<(), sqlx::Error> {
                for genre in genres {
                    sqlx::query(
                        "INSERT INTO genre_counts (genre_key, genre, movies) VALUES ($1, $2, $3) \
                         ON CONFLICT (genre_key) DO UPDATE SET movies = genre_counts.movies + excluded.movies",
                    )
                    .bind(genre_key(genre))
                    .bind(genre)
                    .bind(delta)
                    .execute(&mut *tx)
                    .await?;
                }
                sqlx::query("DELETE FROM genre_counts WHERE movies <= 0").execute(&mut *tx).await?;
                Ok(())
            }

            async fn write_movie(
                tx: &mut <$db as sqlx::Database>::Connection,
                id: Uuid,
                fields: &MovieFields,
                version: Version,
                created_at: DateTime<Utc>,
                updated_at: DateTime<Utc>,
            ) -> Result<(), sqlx::Error> {
                sqlx::query(
                    "INSERT INTO movies (id, name, name_key, director, director_key, popularity, imdb_score, \
                     genres, version, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                     ON CONFLICT (id) DO UPDATE SET name = excluded.name, name_key = excluded.name_key, \
                     director = excluded.director, director_key = excluded.director_key, \
                     popularity = excluded.popularity, imdb_score = excluded.imdb_score, genres = excluded.genres, \
                     version = excluded.version, updated_at = excluded.updated_at",
                )
                .bind(id)
                .bind(&fields.name)
                .bind(fields.name.to_lowercase())
                .bind(&fields.director)
                .bind(fields.director.to_lowercase())
                .bind(fields.popularity)
                .bind(fields.imdb_score)
                .bind(Json(&fields.genres))
                .bind(version)
                .bind(created_at)
                .bind(updated_at)
                .execute(&mut *tx)
                .await?;
                sqlx::query("DELETE FROM movie_genres WHERE movie_id = $1").bind(id).execute(&mut *tx).await?;
                for genre in &fields.genres {
                    sqlx::query("INSERT INTO movie_genres (movie_id, genre_key) VALUES ($1, $2)")
                        .bind(id)
                        .bind(genre_key(genre))
                        .execute(&mut *tx)
                        .await?;
                }
                Ok(())
            }

            async fn apply_one(
                tx: &mut <$db as sqlx::Database>::Connection,
                envelope: &EventEnvelope,
            ) -> Result<()> {
                let id = envelope.stream_id;
                let have: Version =
                    sqlx::query_scalar("SELECT version FROM stream_versions WHERE stream_id = $1")
                        .bind(id)
                        .fetch_optional(&mut *tx)
                        .await?
                        .unwrap_or(0);
                if envelope.stream_version <= have {
                    return Ok(());
                }
                if envelope.stream_version > have + 1 {
                    return Err(ProjectionError::Gap { stream_id: id, have, got: envelope.stream_version });
                }
                let current = sqlx::query("SELECT * FROM movies WHERE id = $1").bind(id).fetch_optional(&mut *tx).await?;
                let current = current.as_ref().map(Self::doc).transpose()?;
                match (&envelope.event, current) {
                    (MovieEvent::Created(fields), _) => {
                        let at = envelope.recorded_at;
                        Self::write_movie(tx, id, fields, envelope.stream_version, at, at).await?;
                        Self::count_genres(tx, &fields.genres, 1).await?;
                    }
                    (MovieEvent::Restored(fields), _) => {
                        let created: Option<DateTime<Utc>> =
                            sqlx::query_scalar("SELECT created_at FROM stream_versions WHERE stream_id = $1")
                                .bind(id)
                                .fetch_optional(&mut *tx)
                                .await?
                                .flatten();
                        let at = envelope.recorded_at;
                        Self::write_movie(tx, id, fields, envelope.stream_version, created.unwrap_or(at), at).await?;
                        Self::count_genres(tx, &fields.genres, 1).await?;
                    }
                    (MovieEvent::Updated(changes), Some(doc)) => {
                        let mut fields = MovieFields {
                            name: doc.name,
                            director: doc.director,
                            popularity: doc.popularity,
                            imdb_score: doc.imdb_score,
                            genres: doc.genres.clone(),
                        };
                        changes.apply_to(&mut fields);
                        let version = envelope.stream_version;
                        Self::write_movie(tx, id, &fields, version, doc.created_at, envelope.recorded_at).await?;
                        if changes.genres.is_some() {
                            Self::count_genres(tx, &doc.genres, -1).await?;
                            Self::count_genres(tx, &fields.genres, 1).await?;
                        }
                    }
                    (MovieEvent::Deleted, Some(doc)) => {
                        sqlx::query("DELETE FROM movies WHERE id = $1").bind(id).execute(&mut *tx).await?;
                        Self::count_genres(tx, &doc.genres, -1).await?;
                    }
                    // History says the movie is gone; an edit of nothing changes nothing.
                    (MovieEvent::Updated(_) | MovieEvent::Deleted, None) => {}
                }
                let created_at = matches!(envelope.event, MovieEvent::Created(_)).then_some(envelope.recorded_at);
                sqlx::query(
                    "INSERT INTO stream_versions (stream_id, version, created_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version, \
                     created_at = COALESCE(stream_versions.created_at, excluded.created_at)",
                )
                .bind(id)
                .bind(envelope.stream_version)
                .bind(created_at)
                .execute(&mut *tx)
                .await?;
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
                let mut query = QueryBuilder::<$db>::new("SELECT * FROM movies WHERE id IN (");
                let mut list = query.separated(", ");
                for id in ids {
                    list.push_bind(*id);
                }
                query.push(")");
                let rows = query.build().fetch_all(self.reader()).await?;
                Ok(rows.iter().map(Self::doc).collect::<Result<_, _>>()?)
            }

            async fn list(&self, q: &ListQuery) -> Result<Page<MovieDoc>> {
                let mut query = QueryBuilder::<$db>::new("SELECT m.* FROM movies m WHERE 1 = 1");
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
                let rows = query.build().fetch_all(self.reader()).await?;
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
                let mut tx = self.writer().begin().await?;
                for envelope in events {
                    Self::apply_one(&mut tx, envelope).await?;
                }
                sqlx::query(
                    "INSERT INTO projection_checkpoints (projection, position) VALUES ($1, $2) \
                     ON CONFLICT (projection) DO UPDATE SET position = \
                     CASE WHEN excluded.position > projection_checkpoints.position \
                     THEN excluded.position ELSE projection_checkpoints.position END",
                )
                .bind(CHECKPOINT)
                .bind(last)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }
        }
    };
}

sql_read_store!(PgReadStore, sqlx::Postgres);
sql_read_store!(SqliteReadStore, sqlx::Sqlite);
