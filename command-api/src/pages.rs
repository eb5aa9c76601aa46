//! The console's admin pages: sign in and out, create, edit (with what changed meanwhile when an
//! edit was made against an old version), delete and restore, a movie's history with its state
//! at any version or instant, and the whole log filtered and paged. Server-rendered forms that
//! work without JavaScript, each doing what the API's request of the same name does, under the
//! same rules.
//!
//! A signed-in admin's token lives in an HttpOnly, SameSite=Strict cookie (never readable by a
//! script). Every form post carries a CSRF token that must match a second such cookie (a page
//! of another site can neither read it nor send the cookie), and a post whose `Origin` is
//! another site's is refused as well. Admin pages are never cached.
//!
//! After a write the browser is sent to the movie's reader page with the write's log position
//! (`min_position`), which waits until the read side has projected it: the admin sees the movie
//! as readers will. The reader pages are the query API's: in the distributed deployment both
//! are served under one origin (see `docs/console.md`).

#![allow(clippy::result_large_err, reason = "the error is the page a request is answered with, made once")]

use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use chrono::{DateTime, NaiveDateTime, Utc};
use maud::{html, Markup};
use movies_console::{error_page, failed_page, html_response, page, PageQuery};
use movies_events::{FieldError, Movie, MovieCommand, MovieDraft, MovieFields, MovieInput, Role, Version};
use movies_web::{ApiError, ClientAddress, Principal, ACCESS_TOKEN_TTL_SECONDS};
use serde::Deserialize;
use uuid::Uuid;

use crate::audit::{self, AuditEvent};
use crate::{context, fold, CommandError, CommandState, LogParams};

const SESSION_COOKIE: &str = "movies_session";
const CSRF_COOKIE: &str = "movies_csrf";

pub(crate) fn routes() -> Router<CommandState> {
    Router::new()
        .route("/admin", get(log_page))
        .route("/admin/sign-in", get(sign_in_page).post(sign_in))
        .route("/admin/sign-out", post(sign_out))
        .route("/admin/movies/new", get(new_movie_page))
        .route("/admin/movies", post(create))
        .route("/admin/movies/{id}", get(movie_page).post(edit))
        .route("/admin/movies/{id}/delete", post(delete))
        .route("/admin/movies/{id}/restore", post(restore))
        .route("/admin/movies/{id}/history", get(history_page))
        .route("/admin/status", get(status_page))
}

// ---- cookies, the session and CSRF ----

/// The value of the cookie `name` the request carries.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find_map(|(key, value)| (key == name).then_some(value))
}

/// A `Set-Cookie` for a cookie no script can read and no other site's request carries. It is
/// `Secure` when the request came over HTTPS (as a TLS-terminating proxy says).
fn set_cookie(headers: &HeaderMap, name: &str, value: &str, max_age: i64) -> (HeaderName, HeaderValue) {
    let https = headers.get("x-forwarded-proto").is_some_and(|p| p.as_bytes().eq_ignore_ascii_case(b"https"));
    let secure = if https { "; Secure" } else { "" };
    let cookie = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}");
    (header::SET_COOKIE, HeaderValue::from_str(&cookie).expect("a token and digits are a valid header"))
}

/// The form token that proves a post came from one of this site's pages: the browser's CSRF
/// cookie, or a fresh one (set with the page) when it has none of this server's shape.
struct Csrf {
    token: String,
    fresh: bool,
}

impl Csrf {
    fn of(headers: &HeaderMap) -> Self {
        match cookie(headers, CSRF_COOKIE) {
            Some(token) if token.len() == 32 && token.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Self { token: token.to_owned(), fresh: false }
            }
            _ => Self { token: Uuid::new_v4().simple().to_string(), fresh: true },
        }
    }

    fn field(&self) -> Markup {
        html! { input type="hidden" name="csrf" value=(self.token); }
    }

    /// Refuses a post whose token is not the cookie's, or that another site's page sent.
    fn check(headers: &HeaderMap, sent: &str) -> Result<(), Response> {
        let expected = cookie(headers, CSRF_COOKIE).unwrap_or_default();
        let matches = !expected.is_empty() && same_bytes(expected.as_bytes(), sent.as_bytes());
        if matches && same_origin(headers) {
            Ok(())
        } else {
            Err(error_page(
                StatusCode::FORBIDDEN,
                "Form expired",
                "This form was not sent from this site's own page, or the page is too old. Open it again and resend.",
            ))
        }
    }
}

/// A form posted from one of this site's pages: parsed, and its CSRF token checked (a page
/// saying why otherwise). Extracted last, after the session.
struct Posted<T>(T);

/// A form that carries the CSRF token.
trait WithCsrf {
    fn csrf(&self) -> &str;
}

impl<S: Send + Sync, T: serde::de::DeserializeOwned + WithCsrf> FromRequest<S> for Posted<T> {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Response> {
        let headers = request.headers().clone();
        let Form(form) = Form::<T>::from_request(request, state)
            .await
            .map_err(|rejection| error_page(StatusCode::BAD_REQUEST, "Bad form", &rejection.body_text()))?;
        Csrf::check(&headers, form.csrf())?;
        Ok(Posted(form))
    }
}

/// Compares without stopping at the first difference, so timing tells nothing of the token.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// A browser names the page a post came from in `Origin`: it must be this host. (A client that
/// sends none still needs the CSRF token, which only this site's pages carry.)
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin_host = origin.to_str().ok().and_then(|o| o.split_once("://")).map(|(_, host)| host);
    origin_host.is_some() && origin_host == host
}

/// A signed-in admin, from the session cookie, checked like a bearer token (signature, expiry,
/// and the account still an enabled admin's). Without one, a page sends the browser to sign in.
struct Session {
    admin: Principal,
    csrf: Csrf,
}

impl FromRequestParts<CommandState> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &CommandState) -> Result<Self, Response> {
        let claims = cookie(&parts.headers, SESSION_COOKIE).and_then(|token| state.keys.verify(token));
        if let Some(claims) = claims.filter(|c| c.role == Role::Admin) {
            match state.subjects.role_now(&claims.sub).await {
                Ok(Some(Role::Admin)) => {
                    let admin = Principal { subject: claims.sub, role: claims.role };
                    return Ok(Session { admin, csrf: Csrf::of(&parts.headers) });
                }
                Ok(_) => {}
                Err(error) => return Err(failed(error)),
            }
        }
        // Back to this page after signing in; a post goes back to where the admin started.
        let next = match parts.method {
            Method::GET => parts.uri.path_and_query().map_or("/admin", |p| p.as_str()).to_owned(),
            _ => "/admin".to_owned(),
        };
        Err(Redirect::to(&format!("/admin/sign-in?next={}", encode(&next))).into_response())
    }
}

/// `next` if it is a path on this site as a browser sends it (visible ASCII, percent-encoded),
/// else the admin home (never another site: no open redirect).
fn local(next: &str) -> &str {
    let local = next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/\\")
        && next.len() <= 2000
        && next.bytes().all(|b| b.is_ascii_graphic());
    if local {
        next
    } else {
        "/admin"
    }
}

fn encode(text: &str) -> String {
    // One plain string always encodes.
    serde_urlencoded::to_string([("", text)]).expect("text encodes")[1..].to_owned()
}

// ---- responses ----

/// An admin page: never cached, with the CSRF cookie set when the browser had none.
fn admin_page(status: StatusCode, headers: &HeaderMap, csrf: &Csrf, title: &str, main: Markup) -> Response {
    let mut response = html_response(status, page(title, main));
    let out = response.headers_mut();
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if csrf.fresh {
        let (name, value) = set_cookie(headers, CSRF_COOKIE, &csrf.token, 12 * 3600);
        out.append(name, value);
    }
    response
}

/// The bar atop every signed-in page: who, where to go, and signing out.
fn admin_bar(session: &Session) -> Markup {
    html! {
        div.admin-bar {
            span { "Signed in as " strong { (session.admin.subject) } }
            nav aria-label="Admin" {
                a href="/admin" { "Event log" }
                a href="/admin/movies/new" { "New movie" }
                a href="/admin/status" { "Status" }
            }
            form method="post" action="/admin/sign-out" {
                (session.csrf.field())
                button.secondary type="submit" { "Sign out" }
            }
        }
    }
}

/// What a page shows of a failed request: the API's message, or a generic one for a fault.
fn failed(error: ApiError) -> Response {
    failed_page(error, "Nothing was changed. Try again soon.", "That cannot be done")
}

// ---- signing in and out ----

#[derive(Debug, Default, Deserialize)]
struct NextParams {
    next: Option<String>,
}

async fn sign_in_page(headers: HeaderMap, params: Result<Query<NextParams>, QueryRejection>) -> Response {
    let next = params.ok().and_then(|Query(p)| p.next).unwrap_or_default();
    let csrf = Csrf::of(&headers);
    sign_in_form(StatusCode::OK, &headers, &csrf, local(&next), "", None)
}

fn sign_in_form(
    status: StatusCode,
    headers: &HeaderMap,
    csrf: &Csrf,
    next: &str,
    username: &str,
    problem: Option<&str>,
) -> Response {
    let main = html! {
        h1 { "Sign in" }
        form.stacked method="post" action="/admin/sign-in" {
            @if let Some(problem) = problem { p.error role="alert" { (problem) } }
            (csrf.field())
            input type="hidden" name="next" value=(next);
            div.field {
                label for="username" { "Username" }
                input #username name="username" type="text" autocomplete="username" required autofocus value=(username);
            }
            div.field {
                label for="password" { "Password" }
                input #password name="password" type="password" autocomplete="current-password" required;
            }
            button type="submit" { "Sign in" }
        }
    };
    admin_page(status, headers, csrf, "Sign in", main)
}

#[derive(Debug, Deserialize)]
struct SignInForm {
    username: String,
    password: String,
    csrf: String,
    #[serde(default)]
    next: String,
}

impl WithCsrf for SignInForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

async fn sign_in(
    State(state): State<CommandState>,
    client: Option<Extension<ClientAddress>>,
    headers: HeaderMap,
    Posted(form): Posted<SignInForm>,
) -> Response {
    let address = client.map(|Extension(ClientAddress(address))| address);
    let csrf = Csrf::of(&headers);
    let again = |status, problem: &str| {
        sign_in_form(status, &headers, &csrf, local(&form.next), &form.username, Some(problem))
    };
    match crate::sign_in(&state, &form.username, form.password.clone(), address).await {
        Ok((token, role)) => {
            if role != Role::Admin {
                return again(
                    StatusCode::FORBIDDEN,
                    "This account is not an admin's: the console is for admins.",
                );
            }
            let session = set_cookie(&headers, SESSION_COOKIE, &token, ACCESS_TOKEN_TTL_SECONDS);
            ([session], Redirect::to(local(&form.next))).into_response()
        }
        Err(ApiError::Unauthorized(_)) => again(StatusCode::UNAUTHORIZED, "Wrong username or password."),
        Err(ApiError::TooManyRequests { detail, retry_after }) => {
            let mut response = again(StatusCode::TOO_MANY_REQUESTS, &detail);
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            response
        }
        Err(other) => failed(other),
    }
}

#[derive(Debug, Deserialize)]
struct CsrfForm {
    csrf: String,
}

impl WithCsrf for CsrfForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// Forgets the session in this browser. (The token itself stays valid until it expires, within
/// the hour, but no script could read it.)
async fn sign_out(headers: HeaderMap, _: Posted<CsrfForm>) -> Response {
    let cleared = set_cookie(&headers, SESSION_COOKIE, "", 0);
    ([cleared], Redirect::to("/")).into_response()
}

// ---- a movie's form ----

/// A movie as the form sends it: text as typed, one genre a line.
#[derive(Debug, Clone, Default, Deserialize)]
struct MovieForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    director: String,
    #[serde(default)]
    popularity: String,
    #[serde(default)]
    imdb_score: String,
    #[serde(default)]
    genres: String,
    /// The version the form was filled from (edits).
    version: Option<String>,
    /// Names a create once: a form sent twice creates one movie.
    key: Option<String>,
    #[serde(default)]
    csrf: String,
}

impl WithCsrf for MovieForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

impl MovieForm {
    fn of(fields: &MovieFields, version: Version) -> Self {
        MovieForm {
            name: fields.name.clone(),
            director: fields.director.clone(),
            popularity: fields.popularity.to_string(),
            imdb_score: fields.imdb_score.to_string(),
            genres: fields.genres.join("\n"),
            version: Some(version.to_string()),
            ..Self::default()
        }
    }

    /// The movie the domain accepts, or every rule the form broke (by the API's field names).
    fn draft(&self) -> Result<MovieDraft, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut number = |field: &str, text: &str| {
            text.trim().parse::<f64>().unwrap_or_else(|_| {
                errors.push(FieldError { field: field.into(), message: "must be a number".into() });
                0.0
            })
        };
        let input = MovieInput {
            name: self.name.clone(),
            director: self.director.clone(),
            popularity: number("popularity", &self.popularity),
            imdb_score: number("imdb_score", &self.imdb_score),
            genres: self.genres.lines().map(str::trim).filter(|g| !g.is_empty()).map(str::to_owned).collect(),
        };
        match MovieDraft::parse(input) {
            Ok(draft) if errors.is_empty() => Ok(draft),
            Ok(_) => Err(errors),
            Err(invalid) => Err(errors.into_iter().chain(invalid.0).collect()),
        }
    }

    /// The movie's fields by their form names.
    fn fields(&self) -> [(&'static str, &str); 5] {
        [
            ("name", &self.name),
            ("director", &self.director),
            ("popularity", &self.popularity),
            ("imdb_score", &self.imdb_score),
            ("genres", &self.genres),
        ]
    }

    fn version(&self) -> Result<Version, Response> {
        self.version.as_deref().and_then(|v| v.parse().ok()).filter(|v| *v > 0).ok_or_else(|| {
            error_page(StatusCode::BAD_REQUEST, "Bad form", "The form lacks the version it was filled from.")
        })
    }
}

/// A movie's fields as inputs, with the rules each broke beside it.
fn movie_fields(form: &MovieForm, errors: &[FieldError]) -> Markup {
    let field = |name: &str, label: &str, hint: &str, control: &dyn Fn(bool, &str) -> Markup| {
        // `genres[2]` is a rule of the genres field.
        let mine: Vec<&FieldError> =
            errors.iter().filter(|e| e.field.split('[').next() == Some(name)).collect();
        // Only ids on the page: the error's when there is one.
        let described =
            if mine.is_empty() { format!("{name}-hint") } else { format!("{name}-hint {name}-error") };
        html! {
            div.field {
                label for=(name) { (label) }
                (control(!mine.is_empty(), &described))
                span.hint id={ (name) "-hint" } { (hint) }
                @if !mine.is_empty() {
                    p.error id={ (name) "-error" } {
                        @for (i, e) in mine.iter().enumerate() { @if i > 0 { " " } (label) " " (e.message) "." }
                    }
                }
            }
        }
    };
    let text = |name: &'static str, value: &str, kind: &'static str| {
        let value = value.to_owned();
        move |invalid: bool, described: &str| {
            html! { input id=(name) name=(name) type=(kind) step=[(kind == "number").then_some("any")] value=(value)
            aria-invalid=[invalid.then_some("true")] aria-describedby=(described); }
        }
    };
    let genres = form.genres.clone();
    html! {
        @if !errors.is_empty() {
            div.error-summary role="alert" {
                p { strong { "The movie was not saved." } " Fix what is marked below." }
            }
        }
        (field("name", "Name", "Up to 300 characters.", &text("name", &form.name, "text")))
        (field("director", "Director", "Up to 200 characters.", &text("director", &form.director, "text")))
        (field("popularity", "Popularity", "0 to 100.", &text("popularity", &form.popularity, "number")))
        (field("imdb_score", "IMDb score", "0 to 10.", &text("imdb_score", &form.imdb_score, "number")))
        (field("genres", "Genres", "One a line, 1 to 20.", &move |invalid: bool, described: &str| html! {
            textarea #genres name="genres" rows="4" aria-invalid=[invalid.then_some("true")] aria-describedby=(described) { (genres) }
        }))
    }
}

fn new_movie_main(session: &Session, form: &MovieForm, errors: &[FieldError]) -> Markup {
    let key = form.key.clone().unwrap_or_else(|| Uuid::now_v7().to_string());
    html! {
        (admin_bar(session))
        h1 { "New movie" }
        // `novalidate`: the server's rules, with its messages, are the ones that count.
        form.stacked method="post" action="/admin/movies" novalidate {
            (session.csrf.field())
            input type="hidden" name="key" value=(key);
            (movie_fields(form, errors))
            button type="submit" { "Create" }
        }
    }
}

async fn new_movie_page(session: Session, headers: HeaderMap) -> Response {
    let main = new_movie_main(&session, &MovieForm::default(), &[]);
    admin_page(StatusCode::OK, &headers, &session.csrf, "New movie", main)
}

/// Where a write's result is shown: the movie's reader page once the read side has the write.
fn projected_movie(id: Uuid, position: i64) -> Response {
    Redirect::to(&format!("/movies/{id}?min_position={position}")).into_response()
}

async fn create(
    State(state): State<CommandState>,
    session: Session,
    headers: HeaderMap,
    Posted(form): Posted<MovieForm>,
) -> Response {
    let draft = match form.draft() {
        Ok(draft) => draft,
        Err(errors) => {
            let main = new_movie_main(&session, &form, &errors);
            return admin_page(StatusCode::UNPROCESSABLE_ENTITY, &headers, &session.csrf, "New movie", main);
        }
    };
    // The form's key names the create: sending the form again finds the movie it made.
    let Some(key) = form.key.as_deref().and_then(|k| k.parse::<Uuid>().ok()) else {
        return error_page(StatusCode::BAD_REQUEST, "Bad form", "The form lacks its key; open it again.");
    };
    let name = format!("console-create\n{}\n{key}", session.admin.subject);
    let event_id = Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes());
    let run = state.service.execute(
        Uuid::now_v7(),
        None,
        MovieCommand::Create(draft),
        context(&session.admin, &headers, Some(event_id)),
    );
    match run.await {
        Ok(outcome) => projected_movie(outcome.id, outcome.position),
        Err(error) => failed(error.into()),
    }
}

/// The stream's state now, or a page saying why it cannot be had.
async fn current(state: &CommandState, id: &str) -> Result<(Uuid, Movie, Version), Response> {
    let not_found = || failed(ApiError::NotFound(String::new()));
    let id = id.parse::<Uuid>().map_err(|_| not_found())?;
    match state.service.state(id).await {
        Ok((Movie::Absent, _)) => Err(not_found()),
        Ok((movie, version)) => Ok((id, movie, version)),
        Err(error) => Err(failed(error.into())),
    }
}

fn edit_main(session: &Session, id: Uuid, form: &MovieForm, errors: &[FieldError]) -> Markup {
    html! {
        (admin_bar(session))
        h1 { "Edit " (form.name) }
        p.links { a href={ "/movies/" (id) } { "On the site" } a href={ "/admin/movies/" (id) "/history" } { "History" } }
        form.stacked method="post" action={ "/admin/movies/" (id) } novalidate {
            (session.csrf.field())
            input type="hidden" name="version" value=[form.version.as_deref()];
            (movie_fields(form, errors))
            button type="submit" { "Save" }
        }
        form.danger method="post" action={ "/admin/movies/" (id) "/delete" } {
            (session.csrf.field())
            input type="hidden" name="version" value=[form.version.as_deref()];
            button.secondary type="submit" { "Delete this movie" }
        }
    }
}

fn deleted_main(session: &Session, id: Uuid, fields: &MovieFields, version: Version) -> Markup {
    html! {
        (admin_bar(session))
        h1 { (fields.name) }
        p.notice role="status" { "This movie is deleted: readers no longer find it. Restoring brings it back as it was." }
        p.links { a href={ "/admin/movies/" (id) "/history" } { "History" } }
        (fields_list(fields))
        form method="post" action={ "/admin/movies/" (id) "/restore" } {
            (session.csrf.field())
            input type="hidden" name="version" value=(version);
            button type="submit" { "Restore" }
        }
    }
}

fn fields_list(fields: &MovieFields) -> Markup {
    html! {
        dl.movie {
            dt { "Director" } dd { (fields.director) }
            dt { "Genres" } dd { (fields.genres.join(", ")) }
            dt { "IMDb score" } dd { (fields.imdb_score) }
            dt { "Popularity" } dd { (fields.popularity) }
        }
    }
}

async fn movie_page(
    State(state): State<CommandState>,
    session: Session,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let (id, movie, version) = match current(&state, &id).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let (title, main) = match &movie {
        Movie::Live(fields) => (&fields.name, edit_main(&session, id, &MovieForm::of(fields, version), &[])),
        Movie::Deleted(fields) => (&fields.name, deleted_main(&session, id, fields, version)),
        Movie::Absent => unreachable!("`current` answers 404 for an absent movie"),
    };
    admin_page(StatusCode::OK, &headers, &session.csrf, title, main)
}

async fn edit(
    State(state): State<CommandState>,
    session: Session,
    headers: HeaderMap,
    Path(id): Path<String>,
    Posted(form): Posted<MovieForm>,
) -> Response {
    let Ok(id) = id.parse::<Uuid>() else {
        return failed(ApiError::NotFound(String::new()));
    };
    let base = match form.version() {
        Ok(version) => version,
        Err(page) => return page,
    };
    let draft = match form.draft() {
        Ok(draft) => draft,
        Err(errors) => {
            let main = edit_main(&session, id, &form, &errors);
            return admin_page(StatusCode::UNPROCESSABLE_ENTITY, &headers, &session.csrf, "Edit", main);
        }
    };
    let run = state.service.execute(
        id,
        Some(base),
        MovieCommand::Replace(draft),
        context(&session.admin, &headers, None),
    );
    match run.await {
        Ok(outcome) => projected_movie(id, outcome.position),
        Err(CommandError::VersionMismatch { .. }) => {
            conflict(&state, &session, &headers, id, base, &form).await
        }
        Err(error) => failed(error.into()),
    }
}

/// An edit made against an old version: what changed meanwhile, field by field, beside what
/// the admin sent; re-apply (the admin's values over the movie as it is now) or discard.
async fn conflict(
    state: &CommandState,
    session: &Session,
    headers: &HeaderMap,
    id: Uuid,
    base: Version,
    mine: &MovieForm,
) -> Response {
    let stream = match state.service.events().load(id).await {
        Ok(stream) => stream,
        Err(error) => return failed(ApiError::Internal(error.into())),
    };
    let base_len = usize::try_from(base).unwrap_or(usize::MAX).min(stream.len());
    let (then, _) = fold(id, &stream[..base_len]);
    let (now, _) = fold(id, &stream);
    let now_version = stream.last().map_or(0, |e| e.stream_version);
    let (Movie::Live(then) | Movie::Deleted(then)) = then else {
        return failed(ApiError::NotFound(String::new()));
    };
    let Movie::Live(now) = now else {
        let main = html! {
            (admin_bar(session))
            h1 { "This movie was deleted meanwhile" }
            p { "Someone deleted it after you opened it; your changes were not saved." }
            p { a href={ "/admin/movies/" (id) } { "See it, and restore it" } }
        };
        return admin_page(StatusCode::CONFLICT, headers, &session.csrf, "Deleted meanwhile", main);
    };
    let then_form = MovieForm::of(&then, base);
    let now_form = MovieForm::of(&now, now_version);
    let shown =
        |text: &str| text.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(", ");
    let rows = [
        ("Name", &then_form.name, &now_form.name, &mine.name),
        ("Director", &then_form.director, &now_form.director, &mine.director),
        ("Popularity", &then_form.popularity, &now_form.popularity, &mine.popularity),
        ("IMDb score", &then_form.imdb_score, &now_form.imdb_score, &mine.imdb_score),
        ("Genres", &then_form.genres, &now_form.genres, &mine.genres),
    ];
    // Re-applying puts the fields the admin changed over the movie as it is now, and keeps
    // the others as they are now.
    let pick = |then: &String, now: &String, mine: &String| {
        if shown(mine) != shown(then) {
            mine.clone()
        } else {
            now.clone()
        }
    };
    let reapplied = MovieForm {
        name: pick(&then_form.name, &now_form.name, &mine.name),
        director: pick(&then_form.director, &now_form.director, &mine.director),
        popularity: pick(&then_form.popularity, &now_form.popularity, &mine.popularity),
        imdb_score: pick(&then_form.imdb_score, &now_form.imdb_score, &mine.imdb_score),
        genres: pick(&then_form.genres, &now_form.genres, &mine.genres),
        ..MovieForm::default()
    };
    let main = html! {
        (admin_bar(session))
        h1 { "Changed since you opened it" }
        p role="alert" {
            "Someone saved " (now.name) " after you opened it (version " (base) ", now " (now_version) "). "
            "Your changes were not saved. Compare, then re-apply yours (the fields you changed, over the movie as it is now) or discard them."
        }
        table.diff {
            thead { tr { th scope="col" { "Field" } th scope="col" { "When you opened it" } th scope="col" { "Now" } th scope="col" { "Yours" } } }
            tbody {
                @for (label, then, now, mine) in rows {
                    @let (then, now, mine) = (shown(then), shown(now), shown(mine));
                    tr.changed[then != now] {
                        th scope="row" { (label) }
                        td { (then) }
                        td { (now) @if then != now { " " span.tag { "changed meanwhile" } } }
                        td { @if mine != then { (mine) " " span.tag { "your change" } } @else { span.hint { "unchanged" } } }
                    }
                }
            }
        }
        div.actions {
            form method="post" action={ "/admin/movies/" (id) } {
                (session.csrf.field())
                input type="hidden" name="version" value=(now_version);
                @for (name, value) in reapplied.fields() { input type="hidden" name=(name) value=(value); }
                button type="submit" { "Re-apply my changes" }
            }
            a.button.secondary href={ "/admin/movies/" (id) } { "Discard mine" }
        }
    };
    admin_page(StatusCode::CONFLICT, headers, &session.csrf, "Changed meanwhile", main)
}

#[derive(Debug, Deserialize)]
struct VersionForm {
    csrf: String,
    version: Option<String>,
}

impl WithCsrf for VersionForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// Deletes or restores the movie at the version the page showed.
async fn delete_or_restore(
    state: &CommandState,
    session: &Session,
    headers: &HeaderMap,
    id: &str,
    form: VersionForm,
    command: MovieCommand,
) -> Result<(Uuid, i64), Response> {
    let id = id.parse::<Uuid>().map_err(|_| failed(ApiError::NotFound(String::new())))?;
    let version = MovieForm { version: form.version, ..MovieForm::default() }.version()?;
    match state.service.execute(id, Some(version), command, context(&session.admin, headers, None)).await {
        Ok(outcome) => Ok((id, outcome.position)),
        Err(CommandError::VersionMismatch { .. }) => {
            let main = html! {
                (admin_bar(session))
                h1 { "Changed since you opened it" }
                p role="alert" { "Someone changed this movie after you opened it; nothing was done. Look at it again first." }
                p { a href={ "/admin/movies/" (id) } { "Open it as it is now" } }
            };
            Err(admin_page(StatusCode::CONFLICT, headers, &session.csrf, "Changed meanwhile", main))
        }
        Err(error) => Err(failed(error.into())),
    }
}

async fn delete(
    State(state): State<CommandState>,
    session: Session,
    headers: HeaderMap,
    Path(id): Path<String>,
    Posted(form): Posted<VersionForm>,
) -> Response {
    match delete_or_restore(&state, &session, &headers, &id, form, MovieCommand::Delete).await {
        // Readers no longer find it; the admin sees it deleted, with the way back.
        Ok((id, _)) => Redirect::to(&format!("/admin/movies/{id}")).into_response(),
        Err(page) => page,
    }
}

async fn restore(
    State(state): State<CommandState>,
    session: Session,
    headers: HeaderMap,
    Path(id): Path<String>,
    Posted(form): Posted<VersionForm>,
) -> Response {
    match delete_or_restore(&state, &session, &headers, &id, form, MovieCommand::Restore).await {
        Ok((id, position)) => projected_movie(id, position),
        Err(page) => page,
    }
}

// ---- history and time travel ----

#[derive(Debug, Deserialize)]
struct HistoryParams {
    /// Show the movie as of this version...
    version: Option<Version>,
    /// ...or as of this instant (UTC; as a date picker sends it, or RFC 3339).
    as_of: Option<String>,
}

/// A date picker's `2026-12-03T10:15` (seconds optional), read as UTC, or an RFC 3339 instant.
fn instant(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    DateTime::parse_from_rfc3339(text).map(|t| t.to_utc()).ok().or_else(|| {
        ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"]
            .iter()
            .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
            .map(|naive| naive.and_utc())
    })
}

async fn history_page(
    State(state): State<CommandState>,
    session: Session,
    headers: HeaderMap,
    Path(id): Path<String>,
    PageQuery(params): PageQuery<HistoryParams>,
) -> Response {
    let Ok(id) = id.parse::<Uuid>() else {
        return failed(ApiError::NotFound(String::new()));
    };
    let stream = match state.service.events().load(id).await {
        Ok(stream) if !stream.is_empty() => stream,
        Ok(_) => return failed(ApiError::NotFound(String::new())),
        Err(error) => return failed(ApiError::Internal(error.into())),
    };
    let latest = stream.len();
    // The version shown: the last one recorded by `as_of`, or the one asked for, or the latest.
    let shown = match (params.as_of.as_deref().filter(|t| !t.is_empty()), params.version) {
        (Some(text), _) => match instant(text) {
            Some(at) => stream.iter().take_while(|e| e.recorded_at <= at).count(),
            None => {
                let message = "as_of must be a date and time such as 2026-12-03T10:15 (UTC)";
                return error_page(StatusCode::BAD_REQUEST, "Bad request", message);
            }
        },
        (None, Some(version)) => usize::try_from(version).unwrap_or(0).min(latest),
        (None, None) => latest,
    };
    let (now, _) = fold(id, &stream);
    let name = match &now {
        Movie::Live(f) | Movie::Deleted(f) => f.name.clone(),
        Movie::Absent => String::new(),
    };
    let then = if shown == latest { now } else { fold(id, &stream[..shown]).0 };
    let trail = audit::trail(&stream);
    let at = shown.checked_sub(1).map(|i| &trail[i]);
    let main = html! {
        (admin_bar(&session))
        h1 { "History of " (name) }
        p.links { a href={ "/admin/movies/" (id) } { "Edit" } a href={ "/movies/" (id) } { "On the site" } }
        section.time-travel aria-labelledby="as-of" {
            h2 #as-of { "As it was" }
            form.inline method="get" {
                label for="version" { "Version" }
                input #version name="version" type="range" min="0" max=(latest) value=(shown) data-submit-on-change;
                output for="version" { (shown) " of " (latest) }
                button type="submit" { "Show" }
            }
            form.inline method="get" {
                label for="as_of" { "At (UTC)" }
                input #as_of name="as_of" type="datetime-local" step="1"
                    value=[at.map(|e| e.recorded_at.format("%Y-%m-%dT%H:%M:%S").to_string())];
                button type="submit" { "Show" }
            }
            @match &then {
                Movie::Absent => p.notice { "It did not exist yet." },
                Movie::Deleted(fields) => {
                    p.notice { "Deleted at this point (version " (shown) ")." }
                    (fields_list(fields))
                }
                Movie::Live(fields) => {
                    p { strong { (fields.name) } " at version " (shown)
                        @if let Some(e) = at { ", recorded " (when(&e.recorded_at)) " by " (e.actor.subject) } }
                    (fields_list(fields))
                }
            }
        }
        h2 { "Timeline" }
        ol.timeline reversed {
            @for event in trail.iter().rev() { (timeline_entry(event, false)) }
        }
    };
    admin_page(StatusCode::OK, &headers, &session.csrf, &format!("History of {name}"), main)
}

fn when(at: &DateTime<Utc>) -> Markup {
    html! { time datetime=(at.to_rfc3339()) { (at.format("%Y-%m-%d %H:%M:%S UTC")) } }
}

/// One event: who, when, from which request, and each field's before and after.
fn timeline_entry(event: &AuditEvent, with_movie: bool) -> Markup {
    let value = |v: &serde_json::Value| match v {
        serde_json::Value::Null => "—".to_owned(),
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    };
    html! {
        li {
            p.meta {
                strong { (event.event_type) } " · version " (event.version) " · " (when(&event.recorded_at))
                " · by " (event.actor.subject)
                @if let Some(request) = &event.request_id { " · request " code { (request) } }
                @if with_movie { " · " a href={ "/admin/movies/" (event.movie_id) "/history" } { "movie " (event.movie_id) } }
            }
            @if !event.changes.is_empty() {
                ul.changes {
                    @for change in &event.changes {
                        li { strong { (change.field) } ": " del { (value(&change.before)) } " → " ins { (value(&change.after)) } }
                    }
                }
            }
        }
    }
}

// ---- the whole log ----

#[derive(Debug, Default, Deserialize)]
struct LogPageParams {
    actor: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
    since: Option<String>,
    until: Option<String>,
    cursor: Option<String>,
}

const EVENT_TYPES: [&str; 4] = ["movie.created", "movie.updated", "movie.deleted", "movie.restored"];

async fn log_page(
    State(state): State<CommandState>,
    session: Session,
    headers: HeaderMap,
    PageQuery(params): PageQuery<LogPageParams>,
) -> Response {
    let present =
        |v: &Option<String>| v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned);
    let mut bad = None;
    let mut at = |v: &Option<String>| {
        present(v).and_then(|text| {
            let parsed = instant(&text);
            if parsed.is_none() {
                bad = Some(format!("{text:?} is not a date and time such as 2026-12-03T10:15 (UTC)"));
            }
            parsed
        })
    };
    let api = LogParams {
        actor: present(&params.actor),
        event_type: present(&params.event_type),
        since: at(&params.since),
        until: at(&params.until),
        cursor: present(&params.cursor),
        limit: Some(50),
    };
    if let Some(message) = bad {
        return error_page(StatusCode::BAD_REQUEST, "Bad request", &message);
    }
    let (items, next) = match crate::log_page(&state, api).await {
        Ok(page) => (page.items, page.next_cursor),
        Err(error) => return failed(error),
    };
    let value = |v: &Option<String>| present(v).unwrap_or_default();
    let next_url = next.map(|cursor| {
        let query = serde_urlencoded::to_string([
            ("actor", value(&params.actor)),
            ("type", value(&params.event_type)),
            ("since", value(&params.since)),
            ("until", value(&params.until)),
            ("cursor", cursor),
        ])
        .expect("text encodes");
        format!("/admin?{query}")
    });
    let chosen = value(&params.event_type);
    let main = html! {
        (admin_bar(&session))
        h1 { "Event log" }
        form.filters method="get" action="/admin" {
            div.field { label for="actor" { "Actor" } input #actor name="actor" type="text" value=(value(&params.actor)); }
            div.field {
                label for="type" { "Type" }
                select #type name="type" {
                    option value="" { "Any" }
                    @for kind in EVENT_TYPES { option value=(kind) selected[chosen == kind] { (kind) } }
                }
            }
            div.field { label for="since" { "Since (UTC)" } input #since name="since" type="datetime-local" step="1" value=(value(&params.since)); }
            div.field { label for="until" { "Until (UTC)" } input #until name="until" type="datetime-local" step="1" value=(value(&params.until)); }
            button type="submit" { "Filter" }
        }
        @if items.is_empty() { p.count { "No events match." } }
        ol.timeline {
            @for event in &items { (timeline_entry(event, true)) }
        }
        @if let Some(url) = next_url { a.more href=(url) { "Later events" } }
    };
    admin_page(StatusCode::OK, &headers, &session.csrf, "Event log", main)
}

// ---- the operator's status ----

async fn status_page(State(state): State<CommandState>, session: Session, headers: HeaderMap) -> Response {
    let report = match &state.status {
        Some(source) => source.report().await,
        None => {
            let head = state.service.events().head().await.ok();
            let degraded =
                if head.is_none() { vec!["event log: unreachable".to_owned()] } else { Vec::new() };
            let elsewhere = "This server sees the event log only. In the distributed deployment each query API's \
                             /health reports its projections, cache and dependencies, and the relay's /health its publishing.";
            movies_console::StatusReport {
                log_head: head,
                degraded,
                elsewhere: Some(elsewhere.into()),
                ..Default::default()
            }
        }
    };
    let main = html! { (admin_bar(&session)) (movies_console::status_main(&report, Utc::now())) };
    admin_page(StatusCode::OK, &headers, &session.csrf, "Status", main)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_on_this_site_are_followed_after_signing_in() {
        assert_eq!(local("/admin/movies/1?x=2"), "/admin/movies/1?x=2");
        for elsewhere in
            ["https://evil.example/", "//evil.example/", "/\\evil.example", "evil", "/a\nb", "/é"]
        {
            assert_eq!(local(elsewhere), "/admin", "{elsewhere:?}");
        }
    }

    #[test]
    fn a_date_pickers_value_is_read_as_utc() {
        let at = instant("2026-12-03T10:15").unwrap();
        assert_eq!(at.to_rfc3339(), "2026-12-03T10:15:00+00:00");
        assert_eq!(instant("2026-12-03T10:15:07").unwrap().to_rfc3339(), "2026-12-03T10:15:07+00:00");
        assert_eq!(instant("2026-12-03T11:15:07+01:00").unwrap().to_rfc3339(), "2026-12-03T10:15:07+00:00");
        assert!(instant("yesterday").is_none());
    }

    #[test]
    fn a_forms_numbers_and_genres_become_the_apis_fields() {
        let form = MovieForm {
            name: "Heat".into(),
            director: "Michael Mann".into(),
            popularity: "83".into(),
            imdb_score: "eight".into(),
            genres: "Crime\n\n  Drama \n".into(),
            ..MovieForm::default()
        };
        let errors = form.draft().unwrap_err();
        assert_eq!(
            errors,
            vec![FieldError { field: "imdb_score".into(), message: "must be a number".into() }]
        );
        let fixed = MovieForm { imdb_score: "8.3".into(), ..form };
        assert_eq!(fixed.draft().unwrap().fields().genres, vec!["Crime", "Drama"]);
    }
}
