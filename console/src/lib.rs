//! The web console's frame: the layout every console page shares, its stylesheet and script
//! (bundled in the binary, served at `/assets/`), and the HTML response every page answers with.
//!
//! Pages live beside the state they read: reader pages in the query API, admin pages in the
//! command API. They are server-rendered and work without JavaScript; the script only spares a
//! page load where it can (results as you type, more results as you scroll).
//!
//! Every page is sent with a Content-Security-Policy that allows scripts, styles and requests
//! from this origin only: text from the catalogue is escaped by the templates, and even an
//! escape missed would not run.

mod status;

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use maud::{html, Markup, DOCTYPE};

pub use status::{status_main, CacheCounts, ProjectionStatus, ReplayProgress, StatusReport, StatusSource};

/// What a console page may load and do.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                      connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// A file the pages load, bundled in the binary.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const ASSETS: [Asset; 2] = [
    Asset {
        name: "console.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../assets/console.css"),
    },
    Asset {
        name: "console.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../assets/console.js"),
    },
];

/// Each asset's ETag: a checksum of its content, so a new build's asset is fetched again.
fn etags() -> &'static [String; 2] {
    static ETAGS: OnceLock<[String; 2]> = OnceLock::new();
    ETAGS.get_or_init(|| ASSETS.map(|a| format!("\"{:08x}\"", crc32fast::hash(a.body.as_bytes()))))
}

/// The URL a page links an asset by: its name, with its checksum as a cache buster.
fn asset_url(name: &str) -> String {
    let (i, _) = ASSETS.iter().enumerate().find(|(_, a)| a.name == name).expect("a bundled asset");
    format!("/assets/{name}?v={}", etags()[i].trim_matches('"'))
}

/// The stylesheet and script, at `/assets/{name}`. Mount once per server.
pub fn assets<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/assets/{name}", get(asset))
}

async fn asset(Path(name): Path<String>, headers: axum::http::HeaderMap) -> Response {
    let Some((i, asset)) = ASSETS.iter().enumerate().find(|(_, a)| a.name == name) else {
        return error_page(StatusCode::NOT_FOUND, "Not found", "There is no such file.");
    };
    let etag = HeaderValue::from_str(&etags()[i]).expect("hex digits are a valid header");
    let cache = (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=86400"));
    if headers.get(header::IF_NONE_MATCH).is_some_and(|v| v == etag) {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag), cache]).into_response();
    }
    let kind = (header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    ([(header::ETAG, etag), cache, kind], asset.body).into_response()
}

/// A whole page: the shared head, the site's header with its navigation, and `main`.
pub fn page(title: &str, main: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Movies" }
                link rel="stylesheet" href=(asset_url("console.css"));
                script src=(asset_url("console.js")) defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.site {
                    a.brand href="/" { "Movies" }
                    nav aria-label="Site" {
                        a href="/" { "Search" }
                        a href="/admin" { "Admin" }
                        a href="/docs/" { "API" }
                    }
                }
                main #main tabindex="-1" { (main) }
            }
        }
    }
}

/// An HTML response with the console's security headers.
pub fn html_response(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, markup.into_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    response
}

/// A page saying what went wrong, with `status`.
pub fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    let main = html! {
        h1 { (title) }
        p.error role="alert" { (message) }
        p { a href="/" { "Back to search" } }
    };
    let mut response = html_response(status, page(title, main));
    // Error pages are never cached: the next try may succeed.
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A page's query string, parsed; a malformed one is answered with a 400 page saying why.
pub struct PageQuery<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequestParts<S> for PageQuery<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, Response> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(query)| PageQuery(query))
            .map_err(|rejection| error_page(StatusCode::BAD_REQUEST, "Bad request", &rejection.body_text()))
    }
}

/// The page for a request that failed: a fault says only `fault` (the error itself is logged,
/// never shown), a missing movie says so, and any other refusal shows the API's own message
/// under the title `refused`.
pub fn failed_page(error: movies_web::ApiError, fault: &str, refused: &str) -> Response {
    use movies_web::ApiError;
    let status = error.status();
    match error {
        ApiError::Internal(_) | ApiError::Unavailable(_) => {
            tracing::error!(error = format!("{error:#}"), "a console page failed");
            error_page(status, "Something went wrong", fault)
        }
        ApiError::NotFound(_) => error_page(status, "Not found", "There is no such movie."),
        other => error_page(status, refused, &other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_in_a_page_is_escaped() {
        let markup = page("<script>alert(1)</script>", html! { p { ("\"><img src=x onerror=alert(1)>") } });
        let html = markup.into_string();
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
    }
}
