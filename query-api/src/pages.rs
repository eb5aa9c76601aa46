//! The console's reader pages, served from the API's own state: search at `/` (typo-tolerant,
//! highlighted, with genre facets as filters, a sort and cursor pages) and a page per movie at
//! `/movies/{id}`. Server-rendered and complete without JavaScript; the console's script fetches
//! the same search page's results section (`fragment=results`) as the reader types or scrolls.
//!
//! A page costs what the API request it mirrors costs: it is checked by the same rules, runs
//! through the same search slots and caches, and is cached by clients the same way (a movie page
//! carries its version as its ETag, like `/api/v1/movies/{id}`).

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use maud::{html, Markup, PreEscaped};
use movies_console::{error_page, failed_page, html_response, page, PageQuery};
use movies_events::Position;
use movies_read_model::MovieDoc;
use movies_web::ApiError;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{etag, find, projected, run_search, IfNoneMatch, SearchItem, SearchParams, Shared};

/// Results on one page.
const PAGE_SIZE: i64 = 20;

pub(crate) fn routes() -> Router<Shared> {
    Router::new().route("/", get(search_page)).route("/movies/{id}", get(movie_page))
}

/// The search page's query: the API's search parameters a person sets from the page.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
struct SearchPageParams {
    #[serde(skip_serializing_if = "Option::is_none")]
    q: Option<String>,
    /// Comma-separated genres, each a filter the reader picked (movies with all of them).
    #[serde(skip_serializing_if = "Option::is_none")]
    genre: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sort: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cursor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    min_position: Option<Position>,
    /// `results`: only the results section, for the script.
    #[serde(skip_serializing)]
    fragment: Option<String>,
}

impl SearchPageParams {
    fn api(&self) -> SearchParams {
        SearchParams {
            q: self.q.clone(),
            limit: Some(PAGE_SIZE),
            cursor: self.cursor.clone(),
            sort: self.sort.clone(),
            genre_all: self.genre.clone(),
            facets: Some(true),
            min_position: self.min_position,
            ..SearchParams::default()
        }
    }

    /// The genres picked, in the order they were.
    fn genres(&self) -> Vec<&str> {
        self.genre.as_deref().unwrap_or("").split(',').map(str::trim).filter(|g| !g.is_empty()).collect()
    }

    /// The page's URL with these parameters (a fresh first page unless `cursor` is set).
    fn url(&self) -> String {
        // Plain strings and numbers always encode.
        let query = serde_urlencoded::to_string(self).expect("query encodes");
        if query.is_empty() {
            "/".to_owned()
        } else {
            format!("/?{query}")
        }
    }

    /// The first page with `genre` picked, or unpicked if it was.
    fn toggled(&self, genre: &str) -> String {
        let mut genres = self.genres();
        match genres.iter().position(|g| g.eq_ignore_ascii_case(genre)) {
            Some(i) => {
                genres.remove(i);
            }
            None => genres.push(genre),
        }
        let genre = (!genres.is_empty()).then(|| genres.join(","));
        SearchPageParams { genre, cursor: None, min_position: None, ..self.clone() }.url()
    }
}

/// What a page shows of a failed request: the API's message, on a page.
fn failed(error: ApiError) -> Response {
    failed_page(error, "The catalogue could not be read. Try again soon.", "That search cannot be run")
}

fn cache_headers(position: Position) -> [(header::HeaderName, HeaderValue); 2] {
    [
        (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=5, stale-while-revalidate=30")),
        projected(position),
    ]
}

async fn search_page(
    State(state): State<Shared>,
    params: Result<Query<SearchPageParams>, QueryRejection>,
) -> Response {
    let params = match params {
        Ok(Query(params)) => params,
        Err(rejection) => {
            return error_page(StatusCode::BAD_REQUEST, "That search cannot be run", &rejection.body_text())
        }
    };
    let api = params.api();
    let run = async {
        let query = api.query()?;
        let (position, _) = state.reached_with_index(api.min_position).await?;
        let (items, found) = run_search(&state, query.clone()).await?;
        let next = found.next.map(|cursor| cursor.encode(&query));
        Ok::<_, ApiError>((position, Results { items, total: found.total, facets: found.facets, next }))
    };
    let (position, results) = match run.await {
        Ok(found) => found,
        Err(error) => return failed(error),
    };
    let section = results_section(&params, &results);
    let mut response = if params.fragment.as_deref() == Some("results") {
        html_response(StatusCode::OK, section)
    } else {
        let title = match params.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
            Some(q) => format!("{q}: search"),
            None => "Search".to_owned(),
        };
        html_response(StatusCode::OK, page(&title, search_main(&params, section)))
    };
    response.headers_mut().extend(cache_headers(position));
    response
}

struct Results {
    items: Vec<SearchItem>,
    total: usize,
    facets: Vec<(String, u64)>,
    next: Option<String>,
}

fn search_main(params: &SearchPageParams, results: Markup) -> Markup {
    let sorts = [
        ("relevance", "Relevance"),
        ("popularity", "Popularity"),
        ("imdb_score", "IMDb score"),
        ("name", "Name"),
    ];
    let sort = params.sort.as_deref().unwrap_or("relevance");
    html! {
        h1 { "Find a movie" }
        form.search role="search" action="/" method="get" {
            div.field.q {
                label for="q" { "Title, director or genre" }
                input #q type="search" name="q" value=[params.q.as_deref()] list="suggestions"
                    autocomplete="off" maxlength="300" autofocus;
                datalist #suggestions {}
            }
            div.field {
                label for="sort" { "Sort by" }
                select #sort name="sort" {
                    @for (value, label) in sorts {
                        option value=(value) selected[value == sort] { (label) }
                    }
                }
            }
            @if let Some(genre) = &params.genre {
                input type="hidden" name="genre" value=(genre);
            }
            button type="submit" { "Search" }
        }
        (results)
    }
}

fn results_section(params: &SearchPageParams, results: &Results) -> Markup {
    let picked = params.genres();
    let next = results.next.as_ref().map(|cursor| {
        SearchPageParams { cursor: Some(cursor.clone()), min_position: None, ..params.clone() }.url()
    });
    html! {
        section #results .results aria-label="Results" {
            div {
                p.count role="status" {
                    (count(results.total))
                    @if !picked.is_empty() { " in " (picked.join(" and ")) }
                }
                ol.hits {
                    @for item in &results.items { li { (hit(item)) } }
                }
                @if let Some(next) = next {
                    a.more href=(next) rel="next" { "More results" }
                }
            }
            aside.facets {
                h2 #genres-heading { "Genres" }
                ul aria-labelledby="genres-heading" {
                    @for (genre, movies) in &results.facets {
                        @let on = picked.iter().any(|g| g.eq_ignore_ascii_case(genre));
                        li {
                            a href=(params.toggled(genre)) aria-current=[on.then_some("true")] {
                                @if on { "✓ " } (genre) " (" (movies) ")"
                            }
                        }
                    }
                }
            }
        }
    }
}

fn count(total: usize) -> String {
    match total {
        1 => "1 movie".to_owned(),
        n => format!("{n} movies"),
    }
}

fn hit(item: &SearchItem) -> Markup {
    let movie = &item.movie;
    // The engine's highlights are HTML already: the text escaped, each match in `<mark>`.
    html! {
        article {
            h3 {
                a href={ "/movies/" (movie.id) } {
                    @match &item.highlight.name {
                        Some(marked) => (PreEscaped(marked)),
                        None => (movie.name),
                    }
                }
            }
            p.meta {
                "Directed by "
                @match &item.highlight.director {
                    Some(marked) => (PreEscaped(marked)),
                    None => (movie.director),
                }
                @if !movie.genres.is_empty() { " · " (movie.genres.join(", ")) }
            }
            p.scores { "IMDb " (format!("{:.1}", movie.imdb_score)) " · popularity " (format!("{:.0}", movie.popularity)) }
        }
    }
}

#[derive(Debug, Deserialize)]
struct MoviePageParams {
    min_position: Option<Position>,
}

async fn movie_page(
    State(state): State<Shared>,
    Path(id): Path<String>,
    PageQuery(params): PageQuery<MoviePageParams>,
    cached: IfNoneMatch,
) -> Response {
    // Any id that is not a movie's is a page that does not exist.
    let Ok(id) = id.parse::<Uuid>() else {
        return failed(ApiError::NotFound(String::new()));
    };
    let found = async {
        let (position, store) = state.reached(params.min_position).await?;
        Ok::<_, ApiError>((position, find(store.as_ref(), id).await?))
    };
    let (position, movie) = match found.await {
        Ok(found) => found,
        Err(error) => return failed(error),
    };
    let headers = [
        (header::ETAG, etag(movie.version)),
        (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=5, stale-while-revalidate=60")),
        projected(position),
    ];
    if cached.matches(movie.version) {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    let mut response = html_response(StatusCode::OK, page(&movie.name, movie_main(&movie)));
    response.headers_mut().extend(headers);
    response
}

fn movie_main(movie: &MovieDoc) -> Markup {
    html! {
        p { a href="/" { "← Search" } }
        h1 { (movie.name) }
        p.links { a href={ "/admin/movies/" (movie.id) } { "Edit" } a href={ "/admin/movies/" (movie.id) "/history" } { "History" } }
        dl.movie {
            dt { "Director" }
            dd { a href={ "/?q=" (urlencode(&movie.director)) } { (movie.director) } }
            dt { "Genres" }
            dd {
                @for (i, genre) in movie.genres.iter().enumerate() {
                    @if i > 0 { ", " }
                    a href={ "/?genre=" (urlencode(genre)) } { (genre) }
                }
            }
            dt { "IMDb score" }
            dd { (format!("{:.1}", movie.imdb_score)) }
            dt { "Popularity" }
            dd { (format!("{:.0}", movie.popularity)) }
            dt { "Last changed" }
            dd { time datetime=(movie.updated_at.to_rfc3339()) { (movie.updated_at.format("%Y-%m-%d %H:%M UTC")) } " (version " (movie.version) ")" }
        }
    }
}

fn urlencode(text: &str) -> String {
    // One plain string always encodes.
    serde_urlencoded::to_string([("", text)]).expect("text encodes")[1..].to_owned()
}
