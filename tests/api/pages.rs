//! The console's reader pages as a client without JavaScript sees them: search, facets, sort,
//! cursor pages and a page per movie, escaped, cacheable like the API and refusing bad input
//! with a page that says why.

use reqwest::{header, StatusCode};
use serde_json::json;

use crate::helpers::{etag, movie, spawn_app, spawn_seeded, TestApp};

/// Every `href` in `html` that starts with `prefix`, in document order, unescaped.
fn links(html: &str, prefix: &str) -> Vec<String> {
    html.split("href=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .filter(|href| href.starts_with(prefix))
        .map(|href| href.replace("&amp;", "&"))
        .collect()
}

async fn page(app: &TestApp, path: &str) -> (StatusCode, reqwest::header::HeaderMap, String) {
    let response = app.get(path).await;
    let (status, headers) = (response.status(), response.headers().clone());
    (status, headers, response.text().await.unwrap())
}

fn assert_html(headers: &reqwest::header::HeaderMap) {
    assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
    let policy = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(policy.contains("script-src 'self'"), "{policy}");
}

#[tokio::test]
async fn the_search_page_finds_a_movie_with_its_words_marked_and_links_to_its_page() {
    let app = spawn_seeded().await;
    let (status, headers, html) = page(&app, "/?q=godfathr").await;
    assert_eq!(status, StatusCode::OK);
    assert_html(&headers);
    // A typo still finds it, and the matched word is marked.
    assert!(html.contains("<mark>Godfather</mark>"), "{html}");
    let movies = links(&html, "/movies/");
    assert!(!movies.is_empty());
    let (status, headers, detail) = page(&app, &movies[0]).await;
    assert_eq!(status, StatusCode::OK);
    assert_html(&headers);
    assert!(detail.contains("<h1>The Godfather"), "{detail}");
    // The form keeps what was typed.
    assert!(html.contains("value=\"godfathr\""), "{html}");
}

#[tokio::test]
async fn the_more_results_link_continues_the_search_where_its_page_ended() {
    let app = spawn_seeded().await;
    let mut seen = Vec::new();
    let mut path = "/?sort=name".to_owned();
    loop {
        let (status, _, html) = page(&app, &path).await;
        assert_eq!(status, StatusCode::OK);
        let found = links(&html, "/movies/");
        assert!(found.len() <= 20);
        seen.extend(found);
        match links(&html, "/?").into_iter().find(|l| l.contains("cursor=")) {
            Some(next) => path = next,
            None => break,
        }
    }
    let all = app.all_movies().await;
    assert_eq!(seen.len(), all.len(), "every movie, over the pages");
    let name = |id: &str| {
        let found = all.iter().find(|m| format!("/movies/{}", m["id"].as_str().unwrap()) == id);
        found.expect("a movie of the catalogue")["name"].as_str().unwrap().to_lowercase()
    };
    let names: Vec<String> = seen.iter().map(|id| name(id)).collect();
    assert!(names.windows(2).all(|w| w[0] <= w[1]), "in the order of their names: {names:?}");
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), all.len(), "each movie once");
}

#[tokio::test]
async fn a_genre_facet_filters_the_results_and_picking_it_again_removes_the_filter() {
    let app = spawn_seeded().await;
    let (_, _, html) = page(&app, "/").await;
    let drama = links(&html, "/?").into_iter().find(|l| l.contains("genre=Drama")).expect("a Drama facet");
    let (status, _, filtered) = page(&app, &drama).await;
    assert_eq!(status, StatusCode::OK);
    let api = app.get_json("/api/v1/search?genre_all=Drama&limit=1").await;
    assert!(filtered.contains(&format!("{} movies in Drama", api["total"])), "{filtered}");
    // The picked genre is marked, and its link unpicks it (back to the whole catalogue).
    assert!(filtered.contains("<a href=\"/\" aria-current=\"true\">✓ Drama"), "{filtered}");
    let (_, _, all) = page(&app, "/").await;
    let total = app.get_json("/api/v1/search?limit=1").await["total"].clone();
    assert!(all.contains(&format!(">{total} movies<")), "{all}");
}

#[tokio::test]
async fn the_results_fragment_is_the_results_section_alone() {
    let app = spawn_seeded().await;
    let (status, _, whole) = page(&app, "/?q=star").await;
    assert_eq!(status, StatusCode::OK);
    let (status, headers, fragment) = page(&app, "/?q=star&fragment=results").await;
    assert_eq!(status, StatusCode::OK);
    assert_html(&headers);
    assert!(fragment.starts_with("<section ") && fragment.ends_with("</section>"), "{fragment}");
    assert!(fragment.contains("id=\"results\""), "{fragment}");
    assert!(whole.contains(&fragment), "the page embeds the same section");
}

#[tokio::test]
async fn a_movie_page_carries_the_movies_version_as_its_etag_like_the_api() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let created = app.created(&token, &movie("Alien")).await;
    let id = created["id"].as_str().unwrap();
    let response = app.get(&format!("/movies/{id}")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let api = app.get(&format!("/api/v1/movies/{id}")).await;
    assert_eq!(etag(&response), etag(&api));
    assert!(response.headers()[header::CACHE_CONTROL].to_str().unwrap().starts_with("public"));
    let again = app
        .http
        .get(app.url(&format!("/movies/{id}")))
        .header(header::IF_NONE_MATCH, etag(&response))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
}

#[tokio::test]
async fn text_from_the_catalogue_is_escaped_on_every_page() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let hostile = json!({
        "name": "<script>alert(1)</script> Trap",
        "director": "\"><img src=x onerror=alert(2)>",
        "popularity": 50.0,
        "imdb_score": 5.0,
        "genres": ["<b>Bold</b>"],
    });
    let created = app.created(&token, &hostile).await;
    let id = created["id"].as_str().unwrap();
    for path in ["/?q=trap".to_owned(), "/?q=script".to_owned(), format!("/movies/{id}")] {
        let (status, headers, html) = page(&app, &path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_html(&headers);
        assert!(html.contains("Trap"), "{path}: {html}");
        for raw in ["<script>alert", "<img", "<b>Bold"] {
            assert!(!html.contains(raw), "{path} holds {raw} unescaped: {html}");
        }
    }
}

#[tokio::test]
async fn bad_input_to_a_page_gets_a_page_with_a_4xx_saying_why() {
    let app = spawn_seeded().await;
    let long_word = "a".repeat(101);
    for (path, status, says) in [
        (format!("/?q={long_word}"), StatusCode::BAD_REQUEST, "100"),
        ("/?sort=loudest".to_owned(), StatusCode::BAD_REQUEST, "sort must be"),
        ("/?cursor=not-a-cursor".to_owned(), StatusCode::BAD_REQUEST, "cursor"),
        ("/?min_position=soon".to_owned(), StatusCode::BAD_REQUEST, "min_position"),
        ("/movies/not-an-id".to_owned(), StatusCode::NOT_FOUND, "no such movie"),
        (format!("/movies/{}", uuid::Uuid::now_v7()), StatusCode::NOT_FOUND, "no such movie"),
    ] {
        let (got, headers, html) = page(&app, &path).await;
        assert_eq!(got, status, "{path}: {html}");
        assert_html(&headers);
        assert_eq!(headers[header::CACHE_CONTROL], "no-store", "{path}");
        assert!(html.contains(says), "{path} should say {says:?}: {html}");
    }
}

#[tokio::test]
async fn the_first_load_of_the_search_page_is_under_50_kb_with_its_assets() {
    let app = spawn_seeded().await;
    let (_, _, html) = page(&app, "/").await;
    let mut bytes = html.len();
    for asset in links(&html, "/assets/").into_iter().chain(
        html.split("src=\"").skip(1).filter_map(|r| r.split('"').next()).map(|s| s.replace("&amp;", "&")),
    ) {
        let response = app.get(&asset).await;
        assert_eq!(response.status(), StatusCode::OK, "{asset}");
        bytes += response.bytes().await.unwrap().len();
    }
    assert!(bytes < 50 * 1024, "the first load takes {bytes} bytes");
}

#[tokio::test]
async fn an_asset_is_cached_by_its_etag() {
    let app = spawn_app().await;
    let (_, _, html) = page(&app, "/").await;
    let css = links(&html, "/assets/").pop().expect("a stylesheet");
    let first = app.get(&css).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(first.headers()[header::CONTENT_TYPE], "text/css; charset=utf-8");
    let again = app.http.get(app.url(&css)).header(header::IF_NONE_MATCH, etag(&first)).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(app.get("/assets/nothing.js").await.status(), StatusCode::NOT_FOUND);
}
