//! The query API: anonymous (or signed-in) reads of the read model: lists with keyset cursors,
//! details with ETags, ranked search, genre counts, and the read half of the assignment's API.
//!
//! Reads projections, and the event log for one thing only: a movie `as_of` an instant is the
//! fold of its stream up to then (no projection keeps history), so that read loads the stream.
//! It never writes. `min_position` lets a client that just wrote wait (bounded) until the
//! projections have caught up with its write.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{FromRef, Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use movies_events::Position;
use movies_read_model::{
    fold_doc, CompatMovie, Cursor, CursorError, Filters, GenreCount, GenreName, JsonDoc, ListQuery, MovieDoc,
    Order, ReadStore, SortField,
};
use movies_search::{
    check_query_text, Highlight, SearchCursor, SearchFilters, SearchIndex, SearchPage, SearchQuery,
    SearchSort,
};
use movies_store::EventStore;
use movies_web::{ApiError, Caller, JwtKeys};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use uuid::Uuid;

mod pages;

pub const MAX_LIMIT: i64 = 100;
pub const DEFAULT_LIMIT: i64 = 20;
/// The longest a read waits for `min_position`.
pub const MAX_WAIT: Duration = Duration::from_secs(2);
/// The response header telling which log position the projections had applied.
pub const PROJECTED_HEADER: &str = "movies-projected-position";
/// Deep search pages stop here; refine the query instead.
const MAX_SEARCH_OFFSET: usize = 10_000;
/// The deepest page of the compatibility list (100 pages of at most 100 movies).
const MAX_COMPAT_PAGE: i64 = 100;
/// The compatibility list streams the catalogue in pages of this size.
const COMPAT_PAGE: i64 = 500;

#[derive(Clone)]
pub struct QueryState {
    /// The read store as reads see it (cached, in the distributed deployment).
    pub read_store: Arc<dyn ReadStore>,
    /// The same store without a cache: reads that wait for a position read here, so they see
    /// at least what the projection had applied.
    pub uncached: Arc<dyn ReadStore>,
    /// The search index (behind `Live` where a rebuild may swap it).
    pub search: Arc<dyn SearchIndex>,
    pub keys: Arc<JwtKeys>,
    /// The log position all projections have applied.
    pub progress: watch::Receiver<Position>,
    /// Read access to the event log, for `as_of` reads (time travel). Without it they get 501.
    pub history: Option<Arc<dyn EventStore>>,
    pub search_cache: SearchCache,
}

/// The search index's recent answers, by query and index state, and the recent responses made
/// of them, whole.
#[derive(Clone)]
pub struct SearchCache {
    pages: moka::future::Cache<String, Arc<SearchPage>>,
    responses: moka::future::Cache<String, Arc<KeptResponse>>,
}

/// The most memory whole search responses take.
const KEPT_RESPONSES_BYTES: u64 = 32 << 20;

/// A search response's body and what its headers are made of.
struct KeptResponse {
    body: axum::body::Bytes,
    next_cursor: Option<String>,
    position: Position,
}

/// How long an index answer and a response made of it are kept: both keys move with every
/// change, so this bounds only how long an answer no one asks for again takes memory.
const SEARCH_KEPT_FOR: Duration = Duration::from_secs(60);

impl Default for SearchCache {
    fn default() -> Self {
        Self {
            pages: moka::future::Cache::builder().max_capacity(10_000).time_to_live(SEARCH_KEPT_FOR).build(),
            responses: moka::future::Cache::builder()
                .max_capacity(KEPT_RESPONSES_BYTES)
                .weigher(|key: &String, kept: &Arc<KeptResponse>| {
                    u32::try_from(key.len() + kept.body.len() + 128).unwrap_or(u32::MAX)
                })
                .time_to_live(SEARCH_KEPT_FOR)
                .build(),
        }
    }
}

/// The state as handlers hold it: shared, not cloned, per request.
#[derive(Clone)]
struct Shared(Arc<QueryState>);

impl std::ops::Deref for Shared {
    type Target = QueryState;

    fn deref(&self) -> &QueryState {
        &self.0
    }
}

impl FromRef<Shared> for Arc<JwtKeys> {
    fn from_ref(state: &Shared) -> Self {
        state.keys.clone()
    }
}

pub fn router(state: QueryState) -> Router {
    Router::new()
        .route("/api/v1/movies", get(list_movies))
        .route("/api/v1/movies/{id}", get(get_movie))
        .route("/api/v1/search", get(search_movies))
        .route("/api/v1/suggest", get(suggest))
        .route("/api/v1/genres", get(list_genres))
        .route("/api/movies/", get(compat_list))
        .route("/api/movie/{id}/", get(compat_get))
        .merge(pages::routes())
        .with_state(Shared(Arc::new(state)))
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(list_movies, get_movie, search_movies, suggest, list_genres, compat_list, compat_get),
    components(schemas(
        MoviePage,
        SearchResults,
        GenreList,
        GenreCount,
        MovieDoc,
        CompatMovie,
        GenreName,
        SortField,
        Order
    ))
)]
pub struct QueryApiDoc;

impl QueryState {
    /// Waits until the projections reach `position` or `MAX_WAIT` passes; returns the position
    /// they had reached and the store to read: past any cache when a position was asked for.
    async fn reached(&self, position: Option<Position>) -> Result<(Position, Arc<dyn ReadStore>), ApiError> {
        let Some(wanted) = position else {
            return Ok((*self.progress.borrow(), self.read_store.clone()));
        };
        if wanted < 0 {
            return Err(ApiError::BadRequest(format!("min_position must be 0 or more, not {wanted}")));
        }
        let mut progress = self.progress.clone();
        let _ = tokio::time::timeout(MAX_WAIT, progress.wait_for(|p| *p >= wanted)).await;
        let reached = *progress.borrow();
        Ok((reached, self.uncached.clone()))
    }

    /// `reached`, for reads that also read the search index: waits (within the same `MAX_WAIT`)
    /// until this replica's own index has applied `position` too, and returns the lower of the
    /// two positions reached. A replica's index is fed apart from the read store (from Kafka, in
    /// the distributed deployment), so the read store's progress says nothing about it.
    async fn reached_with_index(
        &self,
        position: Option<Position>,
    ) -> Result<(Position, Arc<dyn ReadStore>), ApiError> {
        let started = tokio::time::Instant::now();
        let (reached, store) = self.reached(position).await?;
        let Some(wanted) = position else {
            return Ok((reached.min(self.search.checkpoint()), store));
        };
        // The index has no change feed of its own: its checkpoint is polled (an atomic read).
        let deadline = started + MAX_WAIT;
        while self.search.checkpoint() < wanted && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok((reached.min(self.search.checkpoint()), store))
    }
}

fn projected(position: Position) -> (header::HeaderName, HeaderValue) {
    (header::HeaderName::from_static(PROJECTED_HEADER), HeaderValue::from(position))
}

// ---- lists ----

/// Filters and paging shared by lists and search.
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Items per page, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// `name` (default), `popularity` or `imdb_score`.
    #[param(pattern = "^(name|popularity|imdb_score)$")]
    pub sort: Option<String>,
    /// `asc` or `desc` (default: asc for name, desc otherwise).
    pub order: Option<Order>,
    /// Only movies of this genre (any case).
    #[param(max_length = 300, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")]
    pub genre: Option<String>,
    /// Only movies by this director (exact name, any case).
    #[param(max_length = 300, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")]
    pub director: Option<String>,
    #[param(minimum = 0, maximum = 10)]
    pub min_score: Option<f64>,
    #[param(minimum = 0, maximum = 10)]
    pub max_score: Option<f64>,
    /// Wait (up to 2 s) until the projections have applied this log position.
    #[param(value_type = Option<i64>, minimum = 0)]
    pub min_position: Option<Position>,
}

impl ListParams {
    fn limit(&self) -> Result<i64, ApiError> {
        match self.limit {
            None => Ok(DEFAULT_LIMIT),
            Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            Some(n) => Err(ApiError::BadRequest(format!("limit must be between 1 and {MAX_LIMIT}, not {n}"))),
        }
    }

    fn filters(&self) -> Result<Filters, ApiError> {
        for (name, value) in [("min_score", self.min_score), ("max_score", self.max_score)] {
            if value.is_some_and(|v| !(0.0..=10.0).contains(&v)) {
                return Err(ApiError::BadRequest(format!("{name} must be between 0 and 10")));
            }
        }
        if let (Some(min), Some(max)) = (self.min_score, self.max_score) {
            if min > max {
                return Err(ApiError::BadRequest("min_score must not exceed max_score".into()));
            }
        }
        for (name, value) in [("genre", &self.genre), ("director", &self.director)] {
            if let Some(value) = value {
                check_text(name, value)?;
            }
        }
        let text =
            |v: &Option<String>| v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned);
        Ok(Filters {
            genre: text(&self.genre),
            director: text(&self.director),
            min_score: self.min_score,
            max_score: self.max_score,
        })
    }

    fn sort(&self) -> Result<(SortField, Order), ApiError> {
        let sort = match self.sort.as_deref() {
            None | Some("name") => SortField::Name,
            Some("popularity") => SortField::Popularity,
            Some("imdb_score") => SortField::ImdbScore,
            Some(other) => {
                return Err(ApiError::BadRequest(format!(
                    "sort must be name, popularity or imdb_score, not {other:?}"
                )))
            }
        };
        let default_order = if sort == SortField::Name { Order::Asc } else { Order::Desc };
        Ok((sort, self.order.unwrap_or(default_order)))
    }

    /// The `Link` header value of the page after this one: the same query with `cursor` set.
    fn next_link(&self, path: &str, text: Option<&str>, cursor: &str) -> String {
        let next = ListParams { cursor: Some(cursor.to_owned()), min_position: None, ..self.clone() };
        // Plain strings and numbers always encode.
        let mut query = serde_urlencoded::to_string(&next).expect("query encodes");
        if let Some(text) = text {
            query = format!("{}&{query}", serde_urlencoded::to_string([("q", text)]).expect("query encodes"));
        }
        format!("<{path}?{query}>; rel=\"next\"")
    }
}

/// One page of movies.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MoviePage {
    pub items: Vec<MovieDoc>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// The content type of a body sent as bytes already serialized.
fn json_type() -> (header::HeaderName, HeaderValue) {
    (header::CONTENT_TYPE, HeaderValue::from_static("application/json"))
}

/// A `MoviePage` around items already serialized (a JSON array).
fn movie_page_body(items: &[u8], next_cursor: Option<&str>) -> Vec<u8> {
    let mut body = Vec::with_capacity(items.len() + 128);
    body.extend_from_slice(b"{\"items\":");
    body.extend_from_slice(items);
    body.extend_from_slice(b",\"next_cursor\":");
    // A string or null always serializes.
    serde_json::to_writer(&mut body, &next_cursor).expect("a cursor serializes");
    body.push(b'}');
    body
}

fn page_response(body: impl IntoResponse, link: Option<String>, position: Position) -> Response {
    let mut response = (
        [
            projected(position),
            (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=5, stale-while-revalidate=30")),
        ],
        body,
    )
        .into_response();
    if let Some(link) = link.and_then(|l| HeaderValue::from_str(&l).ok()) {
        response.headers_mut().insert(header::LINK, link);
    }
    response
}

/// List movies, sorted and filtered, a page at a time.
#[utoipa::path(get, path = "/api/v1/movies", tag = "movies", params(ListParams),
    responses((status = 200, body = MoviePage, description = "`Link: <...>; rel=\"next\"` points at the next page"), (status = 400)))]
async fn list_movies(
    State(state): State<Shared>,
    _caller: Caller,
    Query(params): Query<ListParams>,
) -> Result<Response, ApiError> {
    let (sort, order) = params.sort()?;
    let after = params
        .cursor
        .as_deref()
        .map(|raw| Cursor::decode(raw, sort, order))
        .transpose()
        .map_err(|e: CursorError| ApiError::BadRequest(e.to_string()))?;
    let query = ListQuery { sort, order, filters: params.filters()?, limit: params.limit()?, after };
    let (position, store) = state.reached(params.min_position).await?;
    // The items come as the bytes the cache serialized once.
    let page = store.list_json(&query).await.map_err(|e| ApiError::Internal(e.into()))?;
    let next_cursor = page.next.map(|c| c.encode());
    let link = next_cursor.as_deref().map(|c| params.next_link("/api/v1/movies", None, c));
    let body = movie_page_body(&page.items, next_cursor.as_deref());
    Ok(page_response(([json_type()], body), link, position))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReadParams {
    /// Wait (up to 2 s) until the projections have applied this log position.
    #[param(value_type = Option<i64>, minimum = 0)]
    pub min_position: Option<Position>,
}

fn etag(version: i64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\"")).expect("digits are a valid header")
}

/// The request's `If-None-Match`, without copying the other headers.
pub struct IfNoneMatch(Option<HeaderValue>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for IfNoneMatch {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(IfNoneMatch(parts.headers.get(header::IF_NONE_MATCH).cloned()))
    }
}

impl IfNoneMatch {
    /// Whether the caller already has `version` (or any version, with `*`).
    fn matches(&self, version: i64) -> bool {
        let Some(value) = self.0.as_ref().and_then(|v| v.to_str().ok()) else {
            return false;
        };
        value.split(',').map(|t| t.trim().trim_start_matches("W/")).any(|t| {
            t == "*"
                || t.strip_prefix('"').and_then(|t| t.strip_suffix('"')).and_then(|t| t.parse().ok())
                    == Some(version)
        })
    }
}

async fn find(store: &dyn ReadStore, id: Uuid) -> Result<MovieDoc, ApiError> {
    store
        .get(id)
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
        .ok_or_else(|| ApiError::NotFound(format!("no movie with id {id}")))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MovieParams {
    /// Wait (up to 2 s) until the projections have applied this log position.
    #[param(value_type = Option<i64>, minimum = 0)]
    pub min_position: Option<Position>,
    /// The movie as it was at this instant (RFC 3339), folded from the event log; 404 if it did
    /// not exist (or was deleted) then. The history of a movie deleted now is for admins only.
    pub as_of: Option<chrono::DateTime<chrono::Utc>>,
}

/// A movie as the event log says it was at `at`. A movie deleted now is not found for anyone but
/// an admin: deleting a movie takes it, history included, from public view.
async fn as_of(
    state: &QueryState,
    caller: &Caller,
    id: Uuid,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<MovieDoc, ApiError> {
    let history = state
        .history
        .as_ref()
        .ok_or_else(|| ApiError::NotImplemented("this replica cannot read the event log".into()))?;
    let events = history.load(id).await.map_err(|e| ApiError::Internal(e.into()))?;
    let admin = caller.0.as_ref().is_some_and(|p| p.role == movies_events::Role::Admin);
    if !admin && fold_doc(id, &events).is_none() {
        return Err(ApiError::NotFound(format!("no movie with id {id}")));
    }
    let until: Vec<_> = events.into_iter().take_while(|e| e.recorded_at <= at).collect();
    fold_doc(id, &until)
        .ok_or_else(|| ApiError::NotFound(format!("movie {id} did not exist at {}", at.to_rfc3339())))
}

/// One movie. `ETag` is its version; `If-None-Match` with it gives 304. With `as_of`, the movie
/// as it was at that instant.
#[utoipa::path(get, path = "/api/v1/movies/{id}", tag = "movies", params(("id" = Uuid, Path), MovieParams),
    responses((status = 200, body = MovieDoc), (status = 304), (status = 404)))]
async fn get_movie(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Query(params): Query<MovieParams>,
    cached: IfNoneMatch,
) -> Result<Response, ApiError> {
    let (position, store) = state.reached(params.min_position).await?;
    let movie = match params.as_of {
        Some(at) => JsonDoc::from(&as_of(&state, &caller, id, at).await?),
        // Served as the bytes the cache keeps, not serialized per request.
        None => store
            .get_json(id)
            .await
            .map_err(|e| ApiError::Internal(e.into()))?
            .ok_or_else(|| ApiError::NotFound(format!("no movie with id {id}")))?,
    };
    let cache =
        (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=5, stale-while-revalidate=60"));
    let headers = [(header::ETAG, etag(movie.version)), cache, projected(position)];
    if cached.matches(movie.version) {
        return Ok((StatusCode::NOT_MODIFIED, headers).into_response());
    }
    Ok((headers, [json_type()], movie.body).into_response())
}

// ---- search ----

/// Search parameters: the words, how to order matches, filters and paging.
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// Words to find in titles, directors and genres; the last word also matches as a prefix,
    /// longer words tolerate typos. Query syntax characters are treated as plain text. At most
    /// 300 characters, 16 words and 100 characters a word.
    #[param(max_length = 300)]
    pub q: Option<String>,
    /// Items per page, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page (of the same query, sort and filters).
    pub cursor: Option<String>,
    /// `relevance` (default), `popularity`, `imdb_score` or `name`.
    #[param(pattern = "^(relevance|name|popularity|imdb_score)$")]
    pub sort: Option<String>,
    /// `asc` or `desc` (default: asc for name, desc otherwise).
    pub order: Option<Order>,
    /// Comma-separated genres: movies with any of them.
    #[param(max_length = 300, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")]
    pub genre: Option<String>,
    /// Comma-separated genres: movies with all of them.
    #[param(max_length = 300, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")]
    pub genre_all: Option<String>,
    /// Only movies by this director (exact name, any case).
    #[param(max_length = 300, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")]
    pub director: Option<String>,
    #[param(minimum = 0, maximum = 10)]
    pub min_score: Option<f64>,
    #[param(minimum = 0, maximum = 10)]
    pub max_score: Option<f64>,
    #[param(minimum = 0, maximum = 100)]
    pub min_popularity: Option<f64>,
    #[param(minimum = 0, maximum = 100)]
    pub max_popularity: Option<f64>,
    /// Include genre counts over all matches (default true).
    pub facets: Option<bool>,
    /// Wait (up to 2 s) until the projections have applied this log position.
    #[param(value_type = Option<i64>, minimum = 0)]
    pub min_position: Option<Position>,
}

fn check_text(name: &str, value: &str) -> Result<(), ApiError> {
    if value.chars().any(char::is_control) || value.chars().count() > 300 {
        return Err(ApiError::BadRequest(format!(
            "{name} must be at most 300 characters, without control characters"
        )));
    }
    Ok(())
}

fn check_range(name: &str, min: Option<f64>, max: Option<f64>, limit: f64) -> Result<(), ApiError> {
    for value in [min, max].into_iter().flatten() {
        if !(0.0..=limit).contains(&value) {
            return Err(ApiError::BadRequest(format!("{name} bounds must be between 0 and {limit}")));
        }
    }
    if let (Some(min), Some(max)) = (min, max) {
        if min > max {
            return Err(ApiError::BadRequest(format!("min_{name} must not exceed max_{name}")));
        }
    }
    Ok(())
}

fn genre_list(name: &str, value: &Option<String>) -> Result<Vec<String>, ApiError> {
    let Some(value) = value else { return Ok(Vec::new()) };
    check_text(name, value)?;
    Ok(value.split(',').map(str::trim).filter(|g| !g.is_empty()).map(str::to_owned).collect())
}

impl SearchParams {
    fn query(&self) -> Result<SearchQuery, ApiError> {
        let limit = ListParams { limit: self.limit, ..ListParams::default() }.limit()? as usize;
        let sort = match self.sort.as_deref() {
            None | Some("relevance") => SearchSort::Relevance,
            Some("popularity") => SearchSort::Popularity,
            Some("imdb_score") => SearchSort::ImdbScore,
            Some("name") => SearchSort::Name,
            Some(other) => {
                return Err(ApiError::BadRequest(format!(
                    "sort must be relevance, popularity, imdb_score or name, not {other:?}"
                )))
            }
        };
        check_range("score", self.min_score, self.max_score, 10.0)?;
        check_range("popularity", self.min_popularity, self.max_popularity, 100.0)?;
        let text = self.q.clone().unwrap_or_default();
        check_query("q", &text)?;
        if let Some(director) = &self.director {
            check_text("director", director)?;
        }
        let mut query = SearchQuery {
            text,
            filters: SearchFilters {
                genre_any: genre_list("genre", &self.genre)?,
                genre_all: genre_list("genre_all", &self.genre_all)?,
                director: self
                    .director
                    .as_deref()
                    .map(str::trim)
                    .filter(|d| !d.is_empty())
                    .map(str::to_owned),
                min_score: self.min_score,
                max_score: self.max_score,
                min_popularity: self.min_popularity,
                max_popularity: self.max_popularity,
            },
            sort,
            order: self.order,
            limit,
            offset: 0,
            after: None,
            facets: self.facets.unwrap_or(true),
        };
        if let Some(raw) = &self.cursor {
            let cursor =
                SearchCursor::decode(raw, &query).map_err(|e| ApiError::BadRequest(e.to_string()))?;
            query.after = Some(cursor);
        }
        Ok(query)
    }
}

/// A search hit: the movie, and its matched parts marked.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SearchItem {
    #[serde(flatten)]
    pub movie: MovieDoc,
    pub highlight: Highlight,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Facets {
    /// Genre counts over every match, most common first.
    pub genres: Vec<GenreCount>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SearchResults {
    pub items: Vec<SearchItem>,
    pub next_cursor: Option<String>,
    /// How many movies match in all (exact).
    pub total: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub facets: Option<Facets>,
}

/// Refuses a search text past the engine's limits (length, words, a word's length) with a 400
/// naming the limit, before any search work.
fn check_query(name: &str, text: &str) -> Result<(), ApiError> {
    check_query_text(text).map_err(|refused| ApiError::BadRequest(format!("{name}: {refused}")))
}

/// The index work that may run at once: four per core. Each holds a blocking thread and up to a
/// few tens of MB while it runs (typo automata, per-word bitsets), so a flood of searches waits
/// here, costing a queued future each, instead of growing with the blocking pool's 512 threads.
fn search_slots() -> &'static tokio::sync::Semaphore {
    static SLOTS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    SLOTS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        tokio::sync::Semaphore::new(4 * cores)
    })
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> movies_read_model::ProjectionResult<T> + Send + 'static,
) -> Result<T, ApiError> {
    // The semaphore is never closed.
    let _slot = search_slots().acquire().await.expect("the search slots stay open");
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
        .map_err(|e| ApiError::Internal(e.into()))
}

/// Runs a search and hydrates its hits from the read store, keeping the index's order.
///
/// The documents are read past the caches, in one query: an L1 may hold a document older
/// than the progress a response is kept under (for an instant when a load races a change, or
/// up to its TTL when an announcement was missed), and a kept response would hold it for its
/// whole life. Read here, every document is at least as new as the progress read before it,
/// so a response can be kept as long as the index's answer.
async fn run_search(
    state: &QueryState,
    query: SearchQuery,
) -> Result<(Vec<SearchItem>, SearchPage), ApiError> {
    let store = state.uncached.as_ref();
    let index = state.search.clone();
    // Popular searches repeat: the index's answer is kept per query and index state (its
    // checkpoint moves on every commit, so a change is never served stale), and concurrent
    // misses of one search run it once. (A rebuild swapped in between the two reads files the
    // new generation's answer under the old checkpoint: newer, never staler, than the key.)
    let key = format!("{}:{query:?}", index.checkpoint());
    let found = state
        .search_cache
        .pages
        .try_get_with(key, async move { blocking(move || index.search(&query)).await.map(Arc::new) })
        .await
        .map_err(|e| match Arc::try_unwrap(e) {
            Ok(error) => error,
            Err(shared) => ApiError::Internal(anyhow::anyhow!("{shared}")),
        })?;
    let mut page = (*found).clone();
    let ids: Vec<Uuid> = page.hits.iter().map(|h| h.id).collect();
    let mut docs: HashMap<Uuid, MovieDoc> = store
        .get_many(&ids)
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
        .into_iter()
        .map(|d| (d.id, d))
        .collect();
    // Marked over the read store's documents, which the response shows: the index keeps no
    // text a hit reads.
    let mut items: Vec<SearchItem> = std::mem::take(&mut page.hits)
        .into_iter()
        .filter_map(|hit| docs.remove(&hit.id))
        .map(|movie| SearchItem { highlight: page.marks.highlight(&movie.name, &movie.director), movie })
        .collect();
    page.arrange(&mut items, |item| &item.movie.name);
    Ok((items, page))
}

/// Ranked full-text search over titles, directors and genres, with filters, facets and
/// highlighting. An empty `q` browses the filtered catalogue.
#[utoipa::path(get, path = "/api/v1/search", tag = "search", params(SearchParams),
    responses((status = 200, body = SearchResults), (status = 400)))]
async fn search_movies(
    State(state): State<Shared>,
    _caller: Caller,
    Query(params): Query<SearchParams>,
) -> Result<Response, ApiError> {
    let query = params.query()?;
    let facets = query.facets;
    // Popular searches repeat: the response is kept whole (its documents read and serialized
    // once) under both projections' positions, which move with every change, so a change is
    // never served stale. (Read before the search: an answer made meanwhile is newer, never
    // staler, than its key.) A read that asks for a position reads past every cache.
    let key = params
        .min_position
        .is_none()
        .then(|| format!("{}:{}:{query:?}", *state.progress.borrow(), state.search.checkpoint()));
    let kept = match &key {
        Some(key) => state.search_cache.responses.get(key).await,
        None => None,
    };
    let kept = match kept {
        Some(kept) => kept,
        None => {
            let (position, _) = state.reached_with_index(params.min_position).await?;
            let (items, page) = run_search(&state, query.clone()).await?;
            let next_cursor = page.next.map(|cursor| cursor.encode(&query));
            let facets = facets.then(|| Facets {
                genres: page
                    .facets
                    .into_iter()
                    .map(|(genre, movies)| GenreCount { genre, movies: movies as i64 })
                    .collect(),
            });
            let results =
                SearchResults { items, next_cursor: next_cursor.clone(), total: page.total, facets };
            let body = serde_json::to_vec(&results).map_err(|e| ApiError::Internal(e.into()))?;
            let kept = Arc::new(KeptResponse { body: body.into(), next_cursor, position });
            if let Some(key) = key {
                state.search_cache.responses.insert(key, kept.clone()).await;
            }
            kept
        }
    };
    let link = kept.next_cursor.as_deref().map(|cursor| {
        let next = SearchParams { cursor: Some(cursor.to_owned()), min_position: None, ..params.clone() };
        // Plain strings and numbers always encode.
        format!(
            "</api/v1/search?{}>; rel=\"next\"",
            serde_urlencoded::to_string(&next).expect("query encodes")
        )
    });
    let json = [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))];
    Ok(page_response((json, kept.body.clone()), link, kept.position))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SuggestParams {
    /// What the user has typed so far (at most 300 characters, 16 words, 100 a word).
    #[param(max_length = 300)]
    pub q: Option<String>,
    /// 1 to 10 (default 10).
    #[param(minimum = 1, maximum = 10)]
    pub limit: Option<usize>,
    /// Wait (up to 2 s) until the search index has applied this log position.
    #[param(value_type = Option<i64>, minimum = 0)]
    pub min_position: Option<Position>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Suggestion {
    pub id: Uuid,
    pub name: String,
    /// The name with the typed parts marked.
    pub highlight: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Suggestions {
    pub items: Vec<Suggestion>,
}

/// Title completions for a query being typed, cheap enough for every keystroke.
#[utoipa::path(get, path = "/api/v1/suggest", tag = "search", params(SuggestParams),
    responses((status = 200, body = Suggestions), (status = 400)))]
async fn suggest(
    State(state): State<Shared>,
    _caller: Caller,
    Query(params): Query<SuggestParams>,
) -> Result<Response, ApiError> {
    let limit = params.limit.unwrap_or(10);
    if !(1..=10).contains(&limit) {
        return Err(ApiError::BadRequest(format!("limit must be between 1 and 10, not {limit}")));
    }
    let text = params.q.unwrap_or_default();
    check_query("q", &text)?;
    let (position, _) = state.reached_with_index(params.min_position).await?;
    let index = state.search.clone();
    let hits = blocking(move || index.suggest(&text, limit)).await?;
    let items = hits
        .into_iter()
        .map(|h| Suggestion { id: h.id, name: h.name, highlight: h.highlight.name })
        .collect();
    Ok((
        [(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=30")), projected(position)],
        Json(Suggestions { items }),
    )
        .into_response())
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GenreList {
    pub items: Vec<GenreCount>,
}

/// Every genre with its number of movies, most common first.
#[utoipa::path(get, path = "/api/v1/genres", tag = "movies", params(ReadParams), responses((status = 200, body = GenreList)))]
async fn list_genres(
    State(state): State<Shared>,
    _caller: Caller,
    Query(params): Query<ReadParams>,
) -> Result<Response, ApiError> {
    let (position, store) = state.reached(params.min_position).await?;
    let items = store.genres().await.map_err(|e| ApiError::Internal(e.into()))?;
    Ok(page_response(Json(GenreList { items }), None, position))
}

// ---- the assignment's API ----

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CompatParams {
    /// Movies whose name, director or genre match these words (at most 300 characters, 16
    /// words, 100 a word).
    #[param(max_length = 300)]
    pub search: Option<String>,
    /// A 1-based page of `page_size` movies, 1 to 100; without it, the whole list.
    #[param(minimum = 1, maximum = 100)]
    pub page: Option<i64>,
    /// 1 to 100, default 20; only with `page`.
    #[param(minimum = 1, maximum = 100)]
    pub page_size: Option<i64>,
    /// Wait (up to 2 s) until the projections have applied this log position.
    #[param(value_type = Option<i64>, minimum = 0)]
    pub min_position: Option<Position>,
}

/// The assignment's list: every movie by name (streamed), a page, or search matches.
#[utoipa::path(get, path = "/api/movies/", tag = "compatibility", params(CompatParams),
    responses((status = 200, body = Vec<CompatMovie>)))]
async fn compat_list(
    State(state): State<Shared>,
    _caller: Caller,
    Query(params): Query<CompatParams>,
) -> Result<Response, ApiError> {
    let page_size = match params.page_size {
        None => DEFAULT_LIMIT,
        Some(n) if (1..=MAX_LIMIT).contains(&n) => n,
        Some(n) => {
            return Err(ApiError::BadRequest(format!("page_size must be between 1 and {MAX_LIMIT}, not {n}")))
        }
    };
    // A page is walked to (keyset reads of the movies before it): deep pages are refused rather
    // than let one request walk the whole catalogue.
    let page = match params.page {
        None => None,
        Some(n) if (1..=MAX_COMPAT_PAGE).contains(&n) => Some(n),
        Some(n) => {
            return Err(ApiError::BadRequest(format!(
                "page must be between 1 and {MAX_COMPAT_PAGE}, not {n}: ask /api/v1/movies (cursor pages) \
                 for deeper ones"
            )))
        }
    };
    if let Some(text) = &params.search {
        check_query("search", text)?;
    }
    let searching = params.search.as_deref().map(str::trim).filter(|t| !t.is_empty());
    let (_, store) = match searching {
        Some(_) => state.reached_with_index(params.min_position).await?,
        None => state.reached(params.min_position).await?,
    };
    if let Some(text) = searching {
        let (limit, offset) = match page {
            Some(n) => (page_size as usize, ((n - 1) * page_size) as usize),
            None => (MAX_SEARCH_OFFSET, 0),
        };
        let query = SearchQuery { text: text.to_owned(), limit, offset, ..SearchQuery::default() };
        let (items, _) = run_search(&state, query).await?;
        return Ok(
            Json(items.iter().map(|i| CompatMovie::from(&i.movie)).collect::<Vec<_>>()).into_response()
        );
    }
    if let Some(n) = page {
        // Walk by cursor to the page, the largest pages at a time: keyset reads, never an
        // OFFSET scan, and at most a hundred of them.
        let mut skip = (n - 1) * page_size;
        let mut query = ListQuery { limit: MAX_LIMIT, ..ListQuery::default() };
        while skip > 0 {
            query.limit = skip.min(MAX_LIMIT);
            let walked = store.list(&query).await.map_err(|e| ApiError::Internal(e.into()))?;
            let Some(next) = walked.next else {
                return Ok(Json(Vec::<CompatMovie>::new()).into_response());
            };
            query.after = Some(next);
            skip -= query.limit;
        }
        query.limit = page_size;
        let items = store.list(&query).await.map_err(|e| ApiError::Internal(e.into()))?.items;
        return Ok(Json(items.iter().map(CompatMovie::from).collect::<Vec<_>>()).into_response());
    }
    Ok(stream_catalogue(store))
}

/// The whole catalogue as one JSON array, streamed page by page so memory stays flat.
fn stream_catalogue(store: Arc<dyn ReadStore>) -> Response {
    struct Walk {
        store: Arc<dyn ReadStore>,
        query: Option<ListQuery>,
        first: bool,
    }
    let start =
        Walk { store, query: Some(ListQuery { limit: COMPAT_PAGE, ..ListQuery::default() }), first: true };
    let chunks = futures::stream::unfold(start, |mut walk| async move {
        let mut query = walk.query.take()?;
        let mut chunk = if walk.first { b"[".to_vec() } else { Vec::new() };
        match walk.store.list(&query).await {
            Ok(page) => {
                for doc in &page.items {
                    if !(walk.first && chunk.len() == 1) {
                        chunk.push(b',');
                    }
                    // Plain data always serializes.
                    chunk.extend(serde_json::to_vec(&CompatMovie::from(doc)).expect("movie serializes"));
                }
                walk.first = walk.first && page.items.is_empty();
                match page.next {
                    Some(next) => {
                        query.after = Some(next);
                        walk.query = Some(query);
                    }
                    None => chunk.push(b']'),
                }
                Some((Ok::<_, std::io::Error>(chunk), walk))
            }
            Err(error) => {
                tracing::error!(error = format!("{error:#}"), "streaming the catalogue failed");
                Some((Err(std::io::Error::other(error)), walk))
            }
        }
    });
    ([json_type()], Body::from_stream(chunks)).into_response()
}

/// The assignment's detail. `min_position` waits for a write like the v1 detail does.
#[utoipa::path(get, path = "/api/movie/{id}/", tag = "compatibility", params(("id" = Uuid, Path), ReadParams),
    responses((status = 200, body = CompatMovie), (status = 404)))]
async fn compat_get(
    State(state): State<Shared>,
    _caller: Caller,
    Path(id): Path<Uuid>,
    Query(params): Query<ReadParams>,
) -> Result<Response, ApiError> {
    let (position, store) = state.reached(params.min_position).await?;
    let movie = find(store.as_ref(), id).await?;
    let headers = [(header::ETAG, etag(movie.version)), projected(position)];
    Ok((headers, Json(CompatMovie::from(&movie))).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use movies_events::{MovieChanges, MovieEvent, MovieFields};
    use movies_read_model::{Page, ProjectionResult, ProjectionStore};
    use movies_search::TantivySearchIndex;
    use movies_store::testing::recorded;
    use tower::ServiceExt;

    /// A cache holding documents as they were before a change: what an L1 holds for an instant
    /// when a load races the change, or up to its TTL when an announcement was missed.
    struct Before(Vec<MovieDoc>);

    #[async_trait::async_trait]
    impl ReadStore for Before {
        async fn get(&self, id: Uuid) -> ProjectionResult<Option<MovieDoc>> {
            Ok(self.0.iter().find(|d| d.id == id).cloned())
        }
        async fn get_many(&self, ids: &[Uuid]) -> ProjectionResult<Vec<MovieDoc>> {
            Ok(self.0.iter().filter(|d| ids.contains(&d.id)).cloned().collect())
        }
        async fn list(&self, _: &ListQuery) -> ProjectionResult<Page<MovieDoc>> {
            Ok(Page { items: self.0.clone(), next: None })
        }
        async fn genres(&self) -> ProjectionResult<Vec<GenreCount>> {
            Ok(Vec::new())
        }
        async fn checkpoint(&self) -> ProjectionResult<Position> {
            Ok(1)
        }
    }

    /// A kept search response lives as long as the index's answer, so what it holds must be
    /// no older than the progress it is kept under: its documents are read past the caches.
    #[tokio::test]
    async fn a_search_reads_its_documents_past_a_cache_that_missed_a_change() {
        let (store, _dir) = movies_read_model::contract::sqlite_store().await;
        let index = Arc::new(TantivySearchIndex::in_memory().unwrap());
        let id = Uuid::now_v7();
        let fields = MovieFields {
            name: "Zebra Crossing".into(),
            director: "Jane Doe".into(),
            popularity: 10.0,
            imdb_score: 5.0,
            genres: vec!["Drama".into()],
        };
        let created = [recorded(1, id, 1, MovieEvent::Created(fields))];
        store.apply(&created).await.unwrap();
        let before = store.get_many(&[id]).await.unwrap();
        let rescored = MovieChanges { imdb_score: Some(9.9), ..Default::default() };
        let events = [created[0].clone(), recorded(2, id, 2, MovieEvent::Updated(rescored))];
        store.apply(&events).await.unwrap();
        index.apply(&events).unwrap();

        let (pem, public) = JwtKeys::generate_pem().unwrap();
        let (_, progress) = watch::channel(2);
        let app = router(QueryState {
            read_store: Arc::new(Before(before)),
            uncached: store,
            search: index,
            keys: Arc::new(JwtKeys::from_pem(pem.as_bytes(), public.as_bytes()).unwrap()),
            progress,
            history: None,
            search_cache: SearchCache::default(),
        });
        let request =
            axum::http::Request::get("/api/v1/search?q=zebra").body(axum::body::Body::empty()).unwrap();
        let response = app.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        let page: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(page["items"][0]["imdb_score"], 9.9, "{page}");
    }

    #[test]
    fn a_page_around_serialized_items_is_the_movie_page_document() {
        let doc = MovieDoc {
            id: Uuid::now_v7(),
            name: "Am\u{e9}lie \"quoted\"".into(),
            director: "Jean-Pierre Jeunet".into(),
            popularity: 81.5,
            imdb_score: 8.3,
            genres: vec!["Comedy".into(), "Romance".into()],
            version: 3,
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
        };
        for (items, next_cursor) in [(vec![doc.clone(), doc], Some("abc\"def".to_owned())), (vec![], None)] {
            let spliced = movie_page_body(&serde_json::to_vec(&items).unwrap(), next_cursor.as_deref());
            let whole = serde_json::to_vec(&MoviePage { items, next_cursor }).unwrap();
            assert_eq!(String::from_utf8(spliced).unwrap(), String::from_utf8(whole).unwrap());
        }
    }
}
