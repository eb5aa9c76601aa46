//! The command API: admin-only writes, validated by the domain and appended to the event log,
//! plus the token endpoint and the write half of the assignment's compatibility API.
//!
//! Sees the stores only through ports (`EventStore`, `AccountStore`); never reads projections.

mod accounts;
pub mod audit;
mod pages;
mod service;

use std::sync::Arc;

use axum::extract::Query;
use axum::extract::{Extension, FromRef, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use movies_events::{
    Actor, EventMetadata, MovieCommand, MovieDraft, MovieError, MovieInput, MoviePatch, MoviePatchInput,
    Role, ValidationErrors,
};
use movies_read_model::{CompatMovie, GenreName, MovieDoc};
use movies_store::AccountStore;
use movies_web::{
    Admin, ApiError, ClientAddress, JwtKeys, PasswordHasher, Principal, StrictJson, Subjects,
    ACCESS_TOKEN_TTL_SECONDS, REQUEST_ID,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

pub use crate::accounts::{
    AccountSubjects, SignInThrottle, ACCOUNT_STATE_TTL, FAILURES_PER_ADDRESS, FAILURES_PER_USERNAME,
    FAILURE_WINDOW,
};

pub use service::{
    fold, CommandContext, CommandError, CommandService, Outcome, SNAPSHOT_EVERY, SNAPSHOT_SCHEMA,
};

/// The response header carrying the global log position of a write's event.
pub const POSITION_HEADER: &str = "movies-position";

#[derive(Clone)]
pub struct CommandState {
    pub service: Arc<CommandService>,
    pub accounts: Arc<dyn AccountStore>,
    pub keys: Arc<JwtKeys>,
    pub hasher: PasswordHasher,
    /// The accounts as admins' tokens are checked against on every write (cached).
    subjects: Arc<dyn Subjects>,
    throttle: Arc<SignInThrottle>,
    /// What the operator's status page shows (the deployment gathers it).
    status: Option<Arc<dyn movies_console::StatusSource>>,
}

impl CommandState {
    pub fn new(
        service: Arc<CommandService>,
        accounts: Arc<dyn AccountStore>,
        keys: Arc<JwtKeys>,
        hasher: PasswordHasher,
    ) -> Self {
        let subjects = Arc::new(AccountSubjects::new(accounts.clone()));
        Self { service, accounts, keys, hasher, subjects, throttle: Default::default(), status: None }
    }

    /// Shows what `status` gathers on the operator's status page.
    pub fn with_status(self, status: Arc<dyn movies_console::StatusSource>) -> Self {
        Self { status: Some(status), ..self }
    }
}

impl FromRef<CommandState> for Arc<JwtKeys> {
    fn from_ref(state: &CommandState) -> Self {
        state.keys.clone()
    }
}

impl FromRef<CommandState> for Arc<dyn Subjects> {
    fn from_ref(state: &CommandState) -> Self {
        state.subjects.clone()
    }
}

pub fn router(state: CommandState) -> Router {
    Router::new()
        .route("/api/v1/auth/token", post(issue_token))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/api/v1/movies", post(create_movie))
        .route("/api/v1/movies/{id}", put(replace_movie).patch(patch_movie).delete(delete_movie))
        .route("/api/v1/movies/{id}/restore", post(restore_movie))
        .route("/api/v1/admin/movies/{id}/history", get(movie_history))
        .route("/api/v1/admin/events", get(event_log))
        .route("/api/movies/", post(compat_create))
        .route("/api/movie/{id}/", put(compat_replace).delete(compat_delete))
        .merge(pages::routes())
        .with_state(state)
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        issue_token,
        jwks,
        restore_movie,
        movie_history,
        event_log,
        create_movie,
        replace_movie,
        patch_movie,
        delete_movie,
        compat_create,
        compat_replace,
        compat_delete
    ),
    components(schemas(
        NameText,
        DirectorText,
        MoviePatchBody,
        GenreText,
        CompatGenreBody,
        audit::AuditEvent,
        audit::FieldChange,
        audit::AuditActor,
        History,
        EventLog,
        TokenRequest,
        TokenResponse,
        MovieBody,
        MovieDoc,
        CompatMovieBody,
        CompatMovie,
        GenreName
    ))
)]
pub struct CommandApiDoc;

impl From<CommandError> for ApiError {
    fn from(error: CommandError) -> Self {
        match error {
            CommandError::Rejected(MovieError::Invalid(errors)) => ApiError::Invalid(errors),
            CommandError::Rejected(MovieError::NotFound) => ApiError::NotFound("no such movie".into()),
            CommandError::Rejected(MovieError::AlreadyExists) => {
                ApiError::Conflict("the movie already exists".into())
            }
            CommandError::Rejected(MovieError::NotDeleted) => {
                ApiError::Conflict("the movie is not deleted".into())
            }
            e @ CommandError::VersionMismatch { .. } => ApiError::PreconditionFailed(e.to_string()),
            e @ CommandError::Conflict => ApiError::Conflict(e.to_string()),
            e @ CommandError::KeyReused => ApiError::Unprocessable(e.to_string()),
            CommandError::Store(e @ movies_store::StoreError::Unavailable(_)) => {
                tracing::warn!(error = %e, "a command found the event store unavailable");
                ApiError::Unavailable(
                    "the event store is unavailable; nothing was recorded, retry later".into(),
                )
            }
            CommandError::Store(e) => ApiError::Internal(e.into()),
        }
    }
}

// ---- auth ----

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct TokenRequest {
    pub username: String,
    pub password: String,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the token expires.
    pub expires_in: i64,
}

/// The public keys tokens are signed with (RFC 7517), each named by the `kid` in a token's
/// header: the current key first, then any retired one still verifying during a rollover.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "auth",
    responses((status = 200, description = "A JWK set", body = Object)))]
async fn jwks(State(state): State<CommandState>) -> Response {
    let cache = (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    ([cache], Json(state.keys.jwks())).into_response()
}

/// The password checks that may run at once: two per core.
fn hashing_slots() -> &'static tokio::sync::Semaphore {
    static SLOTS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    SLOTS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        tokio::sync::Semaphore::new(2 * cores)
    })
}

/// The longest username an account may have (the CLI refuses longer ones).
pub const MAX_USERNAME_CHARS: usize = 64;

/// Exchange a username and password for a signed access token. Failed attempts are throttled
/// per username and per client address.
#[utoipa::path(post, path = "/api/v1/auth/token", tag = "auth", request_body = TokenRequest,
    responses((status = 200, body = TokenResponse),
        (status = 401, description = "Unknown user, disabled account or wrong password"),
        (status = 429, description = "Too many failed sign-ins for this username or from this address; see Retry-After")))]
async fn issue_token(
    State(state): State<CommandState>,
    client: Option<Extension<ClientAddress>>,
    Json(request): Json<TokenRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    let address = client.map(|Extension(ClientAddress(address))| address);
    let (token, _) = sign_in(&state, &request.username, request.password, address).await?;
    Ok(Json(TokenResponse {
        access_token: token,
        token_type: "Bearer".into(),
        expires_in: ACCESS_TOKEN_TTL_SECONDS,
    }))
}

/// A signed access token for the account `username` names, and the account's role, if
/// `password` is its password and the account is enabled. Failures are counted per username
/// and per client address, and refused while either is over its limit.
async fn sign_in(
    state: &CommandState,
    username: &str,
    password: String,
    address: Option<std::net::IpAddr>,
) -> Result<(String, Role), ApiError> {
    let wrong = || ApiError::Unauthorized("wrong username or password".into());
    // No account has a longer name: only the address is counted (keeping the name would cost
    // memory), and no store or hash is consulted.
    let known = (username.chars().count() <= MAX_USERNAME_CHARS).then_some(username);
    state.throttle.check(known, address)?;
    if known.is_none() {
        state.throttle.failed(None, address);
        return Err(wrong());
    }
    let account = state.accounts.find(username).await.map_err(|e| ApiError::Internal(e.into()))?;
    let hasher = state.hasher.clone();
    let hash = account.as_ref().map(|a| a.password_hash.clone());
    // argon2 is deliberately slow and takes 19 MiB a check: keep it off the async workers, and
    // run at most two per core at once (sign-ins from many addresses would otherwise grow with
    // the blocking pool's 512 threads, to gigabytes).
    let _slot = hashing_slots().acquire().await.expect("the hashing slots stay open");
    let valid = tokio::task::spawn_blocking(move || hasher.verify(hash.as_deref(), &password))
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    let Some(account) = account.filter(|a| valid && !a.disabled) else {
        state.throttle.failed(Some(username), address);
        return Err(wrong());
    };
    let now = chrono::Utc::now().timestamp();
    let token = state
        .keys
        .issue(&account.username, account.role, now, ACCESS_TOKEN_TTL_SECONDS)
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok((token, account.role))
}

// ---- v1 movies ----

/// A movie as clients send it. Unknown fields (`id`, `version`) are refused, not ignored.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MovieBody {
    /// 1 to 300 characters, something visible among them, no control characters.
    #[schema(value_type = NameText)]
    pub name: String,
    /// 1 to 200 characters, something visible among them, no control characters.
    #[schema(value_type = DirectorText)]
    pub director: String,
    /// 0 to 100.
    #[schema(minimum = 0, maximum = 100)]
    pub popularity: f64,
    /// 0 to 10.
    #[schema(minimum = 0, maximum = 10)]
    pub imdb_score: f64,
    /// 1 to 20 genres; duplicates (ignoring case) are dropped.
    #[schema(value_type = Vec<GenreText>, min_items = 1, max_items = 20)]
    pub genres: Vec<String>,
}

/// Text with something visible in it and no control characters, as the domain accepts it (a
/// JSON Schema pattern: the same rule as `movies_events`' text fields).
const VISIBLE_TEXT: &str = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F\u00AD\u034F\u061C\u115F\u1160\u17B4\u17B5\u180B-\u180F\u200B-\u200F\u202A-\u202E\u2060-\u206F\u2800\u3164\uFE00-\uFE0F\uFEFF\uFFA0][^\u0000-\u001F\u007F-\u009F]*$";

/// A text field's description in the API: visible text of 1 to `max` characters.
macro_rules! visible_text {
    ($name:ident, $max:expr, $doc:literal) => {
        #[doc = $doc]
        pub struct $name;

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                use utoipa::openapi::schema::{ObjectBuilder, Type};
                let text = ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length(Some(1))
                    .max_length(Some($max))
                    .pattern(Some(VISIBLE_TEXT));
                text.into()
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

visible_text!(
    NameText,
    movies_events::MAX_NAME_CHARS,
    "A movie's name: 1 to 300 characters of visible text."
);
visible_text!(
    DirectorText,
    movies_events::MAX_DIRECTOR_CHARS,
    "A director: 1 to 200 characters of visible text."
);
visible_text!(GenreText, movies_events::MAX_GENRE_CHARS, "A genre: 1 to 50 characters of visible text.");

impl From<MovieBody> for MovieInput {
    fn from(b: MovieBody) -> Self {
        MovieInput {
            name: b.name,
            director: b.director,
            popularity: b.popularity,
            imdb_score: b.imdb_score,
            genres: b.genres,
        }
    }
}

fn context(principal: &Principal, headers: &HeaderMap, event_id: Option<Uuid>) -> CommandContext {
    let request_id = headers.get(REQUEST_ID).and_then(|v| v.to_str().ok()).map(str::to_owned);
    CommandContext {
        metadata: EventMetadata {
            actor: Actor { subject: principal.subject.clone(), role: principal.role },
            request_id,
        },
        event_id,
    }
}

/// An `Idempotency-Key` becomes the id of the command's first event, scoped to the caller, so a
/// retried request maps onto the event it already stored.
fn idempotent_event_id(principal: &Principal, headers: &HeaderMap) -> Result<Option<Uuid>, ApiError> {
    let Some(key) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    // Exactly the documented pattern: printable ASCII, spaces only inside (no tabs).
    let bytes = key.as_bytes();
    let well_formed = (1..=255).contains(&bytes.len())
        && bytes.iter().all(|b| (0x20..=0x7e).contains(b))
        && bytes.first() != Some(&b' ')
        && bytes.last() != Some(&b' ');
    let key = key.to_str().ok().filter(|_| well_formed).ok_or_else(|| {
        ApiError::BadRequest(
            "Idempotency-Key must be 1 to 255 printable ASCII characters, spaces only inside".into(),
        )
    })?;
    let name = format!("idempotency-key\n{}\n{key}", principal.subject);
    Ok(Some(Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes())))
}

/// `If-Match: "3"` (or `W/"3"`, or `3`) as a version. `*` means any existing version.
fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    movies_events::parse_if_match(value.to_str().unwrap_or_default()).map_err(ApiError::BadRequest)
}

/// Runs a command on an existing movie, honouring `If-Match`, on behalf of `admin`.
async fn command(
    state: &CommandState,
    admin: &Principal,
    id: Uuid,
    headers: &HeaderMap,
    command: MovieCommand,
) -> Result<Outcome, ApiError> {
    Ok(state.service.execute(id, if_match(headers)?, command, context(admin, headers, None)).await?)
}

fn write_headers(outcome: &Outcome) -> [(header::HeaderName, HeaderValue); 2] {
    [
        (
            header::ETAG,
            HeaderValue::from_str(&format!("\"{}\"", outcome.version)).expect("digits are a valid header"),
        ),
        (header::HeaderName::from_static(POSITION_HEADER), HeaderValue::from(outcome.position)),
    ]
}

fn movie_response(
    status: StatusCode,
    outcome: Outcome,
    body: impl FnOnce(&MovieDoc) -> Response,
) -> Response {
    let headers = write_headers(&outcome);
    match &outcome.movie {
        Some(movie) => {
            let mut response = (status, headers, body(movie)).into_response();
            if status == StatusCode::CREATED {
                let location = format!("/api/v1/movies/{}", outcome.id);
                response
                    .headers_mut()
                    .insert(header::LOCATION, HeaderValue::from_str(&location).expect("uuid path"));
            }
            response
        }
        None => (StatusCode::NO_CONTENT, headers).into_response(),
    }
}

async fn create(
    state: &CommandState,
    admin: &Principal,
    headers: &HeaderMap,
    input: MovieInput,
) -> Result<Outcome, ApiError> {
    let event_id = idempotent_event_id(admin, headers)?;
    let draft = MovieDraft::parse(input).map_err(ApiError::Invalid)?;
    Ok(state
        .service
        .execute(Uuid::now_v7(), None, MovieCommand::Create(draft), context(admin, headers, event_id))
        .await?)
}

/// Create a movie. Send `Idempotency-Key` to make retries safe: a retry returns the same movie.
#[utoipa::path(post, path = "/api/v1/movies", tag = "movies", request_body = MovieBody, security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, nullable = false, pattern = r"^[\x21-\x7E]([\x20-\x7E]{0,253}[\x21-\x7E])?$",
        description = "Makes a retried create return the first result: 1 to 255 visible ASCII characters")),
    responses((status = 201, body = MovieDoc, description = "Created; `ETag` is the version, `Movies-Position` the event's log position"),
        (status = 401), (status = 403), (status = 422, description = "Validation failed; `errors` lists the fields")))]
async fn create_movie(
    State(state): State<CommandState>,
    Admin(admin): Admin,
    headers: HeaderMap,
    StrictJson(body): StrictJson<MovieBody>,
) -> Result<Response, ApiError> {
    let outcome = create(&state, &admin, &headers, body.into()).await?;
    Ok(movie_response(StatusCode::CREATED, outcome, |m| Json(m).into_response()))
}

/// Replace a movie. `If-Match: "<version>"` makes it conditional (412 when the movie moved on).
#[utoipa::path(put, path = "/api/v1/movies/{id}", tag = "movies", request_body = MovieBody, security(("bearer" = [])),
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header, nullable = false, pattern = r#"^(\*|(W/)?("[1-9][0-9]{0,17}"|[1-9][0-9]{0,17}))$"#,
        description = "The version the change is based on, as `\"3\"`; `*` for any")),
    responses((status = 200, body = MovieDoc), (status = 404), (status = 409), (status = 412), (status = 422)))]
async fn replace_movie(
    State(state): State<CommandState>,
    Admin(admin): Admin,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    StrictJson(body): StrictJson<MovieBody>,
) -> Result<Response, ApiError> {
    let draft = MovieDraft::parse(body.into()).map_err(ApiError::Invalid)?;
    let outcome = command(&state, &admin, id, &headers, MovieCommand::Replace(draft)).await?;
    Ok(movie_response(StatusCode::OK, outcome, |m| Json(m).into_response()))
}

/// A JSON merge patch (RFC 7396) of a movie, as the API describes it: any of its fields, none
/// removable (`null` is refused). `merge_patch` reads the body itself, key by key.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct MoviePatchBody {
    #[serde(default)]
    #[schema(value_type = NameText)]
    name: String,
    #[serde(default)]
    #[schema(value_type = DirectorText)]
    director: String,
    /// 0 to 100.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 100)]
    popularity: f64,
    /// 0 to 10.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 10)]
    imdb_score: f64,
    /// 1 to 20 genres.
    #[serde(default)]
    #[schema(value_type = Vec<GenreText>, min_items = 1, max_items = 20)]
    genres: Vec<String>,
}

/// A JSON merge patch (RFC 7396) as a domain patch: every key must be a movie field, and no
/// field may be removed (they are all required).
fn merge_patch(body: Value) -> Result<MoviePatchInput, ApiError> {
    let Value::Object(fields) = body else {
        return Err(ApiError::BadRequest("a merge patch must be a JSON object".into()));
    };
    let mut errors = Vec::new();
    let mut patch = MoviePatchInput::default();
    for (key, value) in fields {
        let problem =
            |message: &str| movies_events::FieldError { field: key.clone(), message: message.into() };
        if value.is_null() {
            errors.push(problem("is required and cannot be removed"));
            continue;
        }
        let parsed = match key.as_str() {
            "name" => value.as_str().map(|v| patch.name = Some(v.to_owned())),
            "director" => value.as_str().map(|v| patch.director = Some(v.to_owned())),
            "popularity" => value.as_f64().map(|v| patch.popularity = Some(v)),
            "imdb_score" => value.as_f64().map(|v| patch.imdb_score = Some(v)),
            "genres" => serde_json::from_value::<Vec<String>>(value).ok().map(|v| patch.genres = Some(v)),
            _ => {
                errors.push(problem("is not a movie field"));
                continue;
            }
        };
        if parsed.is_none() {
            errors.push(problem("has the wrong type"));
        }
    }
    if errors.is_empty() {
        Ok(patch)
    } else {
        Err(ApiError::Invalid(ValidationErrors(errors)))
    }
}

/// Change some fields (JSON merge patch). Honours `If-Match` like PUT.
#[utoipa::path(patch, path = "/api/v1/movies/{id}", tag = "movies", security(("bearer" = [])),
    request_body(content = MoviePatchBody, content_type = "application/merge-patch+json"),
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header, nullable = false, pattern = r#"^(\*|(W/)?("[1-9][0-9]{0,17}"|[1-9][0-9]{0,17}))$"#,
        description = "The version the change is based on, as `\"3\"`; `*` for any")),
    responses((status = 200, body = MovieDoc), (status = 404), (status = 409), (status = 412), (status = 422)))]
async fn patch_movie(
    State(state): State<CommandState>,
    Admin(admin): Admin,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    StrictJson(body): StrictJson<Value>,
) -> Result<Response, ApiError> {
    let patch = MoviePatch::parse(merge_patch(body)?).map_err(ApiError::Invalid)?;
    let outcome = command(&state, &admin, id, &headers, MovieCommand::Patch(patch)).await?;
    Ok(movie_response(StatusCode::OK, outcome, |m| Json(m).into_response()))
}

/// Delete a movie. Its history stays in the log.
#[utoipa::path(delete, path = "/api/v1/movies/{id}", tag = "movies", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header, nullable = false, pattern = r#"^(\*|(W/)?("[1-9][0-9]{0,17}"|[1-9][0-9]{0,17}))$"#,
        description = "The version the change is based on, as `\"3\"`; `*` for any")),
    responses((status = 204, description = "Deleted; `Movies-Position` is the event's log position"), (status = 404), (status = 409), (status = 412)))]
async fn delete_movie(
    State(state): State<CommandState>,
    Admin(admin): Admin,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let outcome = command(&state, &admin, id, &headers, MovieCommand::Delete).await?;
    Ok(movie_response(StatusCode::NO_CONTENT, outcome, |_| StatusCode::NO_CONTENT.into_response()))
}

/// Bring back a deleted movie as it was when deleted. Its history stays whole.
#[utoipa::path(post, path = "/api/v1/movies/{id}/restore", tag = "movies", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header, nullable = false, pattern = r#"^(\*|(W/)?("[1-9][0-9]{0,17}"|[1-9][0-9]{0,17}))$"#,
        description = "The version the change is based on, as `\"3\"`; `*` for any")),
    responses((status = 200, body = MovieDoc), (status = 404), (status = 409, description = "Not deleted"), (status = 412)))]
async fn restore_movie(
    State(state): State<CommandState>,
    Admin(admin): Admin,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let outcome = command(&state, &admin, id, &headers, MovieCommand::Restore).await?;
    Ok(movie_response(StatusCode::OK, outcome, |m| Json(m).into_response()))
}

// ---- audit ----

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct History {
    pub movie_id: Uuid,
    /// Oldest first.
    pub events: Vec<audit::AuditEvent>,
    /// Where the next page starts, if there is one.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<usize>,
}

/// A movie's events, a page at a time: who changed what, when, from which request, each field
/// before and after.
#[utoipa::path(get, path = "/api/v1/admin/movies/{id}/history", tag = "audit", security(("bearer" = [])),
    params(("id" = Uuid, Path), HistoryParams),
    responses((status = 200, body = History), (status = 400), (status = 401), (status = 403), (status = 404)))]
async fn movie_history(
    State(state): State<CommandState>,
    _admin: Admin,
    Path(id): Path<Uuid>,
    Query(params): Query<HistoryParams>,
) -> Result<Json<History>, ApiError> {
    let limit = params.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::BadRequest(format!("limit must be between 1 and 500, not {limit}")));
    }
    let after = match params.cursor.as_deref() {
        None => 0,
        Some(raw) => audit::decode_history_cursor(raw)
            .ok_or_else(|| ApiError::BadRequest("the cursor is not one this API issued".into()))?,
    };
    let (events, next) = audit::history_page(state.service.events().as_ref(), id, after, limit)
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    if events.is_empty() && after == 0 {
        return Err(ApiError::NotFound(format!("no movie with id {id} was ever recorded")));
    }
    Ok(Json(History { movie_id: id, events, next_cursor: next.map(audit::encode_history_cursor) }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogParams {
    /// Only events by this actor (the token subject, or `system:ingest`).
    #[param(max_length = 300, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")]
    pub actor: Option<String>,
    /// Only events of this type (`movie.created`, `movie.updated`, `movie.deleted`, `movie.restored`).
    #[serde(rename = "type")]
    #[param(max_length = 300, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")]
    pub event_type: Option<String>,
    /// Only events recorded at or after this instant (RFC 3339).
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Only events recorded before this instant (RFC 3339).
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventLog {
    pub items: Vec<audit::AuditEvent>,
    pub next_cursor: Option<String>,
}

/// The whole event log, oldest first, filtered and paged.
#[utoipa::path(get, path = "/api/v1/admin/events", tag = "audit", security(("bearer" = [])), params(LogParams),
    responses((status = 200, body = EventLog), (status = 400), (status = 401), (status = 403)))]
async fn event_log(
    State(state): State<CommandState>,
    _admin: Admin,
    Query(params): Query<LogParams>,
) -> Result<Json<EventLog>, ApiError> {
    Ok(Json(log_page(&state, params).await?))
}

/// The page of the log `params` ask for, once they are checked.
async fn log_page(state: &CommandState, params: LogParams) -> Result<EventLog, ApiError> {
    let limit = params.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::BadRequest(format!("limit must be between 1 and 500, not {limit}")));
    }
    for value in [&params.actor, &params.event_type].into_iter().flatten() {
        if value.chars().any(char::is_control) || value.chars().count() > 300 {
            return Err(ApiError::BadRequest(
                "actor and type are at most 300 characters, without control characters".into(),
            ));
        }
    }
    let after = match params.cursor.as_deref() {
        None => 0,
        Some(raw) => audit::decode_cursor(raw)
            .ok_or_else(|| ApiError::BadRequest("the cursor is not one this API issued".into()))?,
    };
    let filter = movies_store::EventFilter {
        actor: params.actor,
        event_type: params.event_type,
        since: params.since,
        until: params.until,
    };
    let (items, next) = audit::log_page(state.service.events().as_ref(), &filter, after, limit)
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok(EventLog { items, next_cursor: next.map(audit::encode_cursor) })
}

// ---- the assignment's API ----

/// A movie in the assignment's shape. `99popularity`, the data file's key, is accepted too.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompatMovieBody {
    #[schema(value_type = NameText)]
    pub name: String,
    #[schema(value_type = DirectorText)]
    pub director: String,
    /// 0 to 100.
    #[serde(alias = "99popularity")]
    #[schema(minimum = 0, maximum = 100)]
    pub popularity: f64,
    /// 0 to 10.
    #[schema(minimum = 0, maximum = 10)]
    pub imdb_score: f64,
    /// 1 to 20 genres.
    #[schema(min_items = 1, max_items = 20)]
    pub genre: Vec<CompatGenreBody>,
}

/// A genre in the assignment's shape.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompatGenreBody {
    #[schema(value_type = GenreText)]
    pub name: String,
}

impl From<CompatMovieBody> for MovieInput {
    fn from(b: CompatMovieBody) -> Self {
        MovieInput {
            name: b.name,
            director: b.director,
            popularity: b.popularity,
            imdb_score: b.imdb_score,
            genres: b.genre.into_iter().map(|g| g.name).collect(),
        }
    }
}

fn compat_json(movie: &MovieDoc) -> Response {
    Json(CompatMovie::from(movie)).into_response()
}

/// The assignment's create.
#[utoipa::path(post, path = "/api/movies/", tag = "compatibility", request_body = CompatMovieBody, security(("bearer" = [])),
    responses((status = 201, body = CompatMovie), (status = 401), (status = 403), (status = 422)))]
async fn compat_create(
    State(state): State<CommandState>,
    Admin(admin): Admin,
    headers: HeaderMap,
    StrictJson(body): StrictJson<CompatMovieBody>,
) -> Result<Response, ApiError> {
    let outcome = create(&state, &admin, &headers, body.into()).await?;
    Ok(movie_response(StatusCode::CREATED, outcome, compat_json))
}

/// The assignment's update (a full replace).
#[utoipa::path(put, path = "/api/movie/{id}/", tag = "compatibility", request_body = CompatMovieBody, security(("bearer" = [])),
    params(("id" = Uuid, Path)), responses((status = 200, body = CompatMovie), (status = 404), (status = 422)))]
async fn compat_replace(
    State(state): State<CommandState>,
    Admin(admin): Admin,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    StrictJson(body): StrictJson<CompatMovieBody>,
) -> Result<Response, ApiError> {
    let draft = MovieDraft::parse(body.into()).map_err(ApiError::Invalid)?;
    let outcome = command(&state, &admin, id, &headers, MovieCommand::Replace(draft)).await?;
    Ok(movie_response(StatusCode::OK, outcome, compat_json))
}

/// The assignment's delete.
#[utoipa::path(delete, path = "/api/movie/{id}/", tag = "compatibility", security(("bearer" = [])),
    params(("id" = Uuid, Path)), responses((status = 204), (status = 404)))]
async fn compat_delete(
    state: State<CommandState>,
    admin: Admin,
    id: Path<Uuid>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    delete_movie(state, admin, id, headers).await
}

/// The actor recorded for system writers such as ingest.
pub fn system_actor(name: &str) -> Actor {
    Actor { subject: format!("system:{name}"), role: Role::System }
}
