//! What one anonymous request may cost is bounded: search texts past their limits, deep
//! compatibility pages and oversized URLs are refused with a 4xx problem naming the limit, before
//! any work; texts within them still search.

use movies_search::{MAX_QUERY_CHARS, MAX_QUERY_WORDS, MAX_TYPO_WORD_CHARS, MAX_WORD_CHARS};
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{assert_problem, movie, spawn_app, TestApp};

/// The three routes that take a search text, each with `text` as its query.
fn search_routes(text: &str) -> [String; 3] {
    [
        format!("/api/v1/search?q={text}"),
        format!("/api/v1/suggest?q={text}"),
        format!("/api/movies/?search={text}"),
    ]
}

async fn refused(app: &TestApp, text: &str, limit: usize) {
    for path in search_routes(text) {
        let body = assert_problem(app.get(&path).await, StatusCode::BAD_REQUEST).await;
        let detail = body["detail"].as_str().unwrap();
        assert!(detail.contains(&limit.to_string()), "{path:.60}: {detail}");
    }
}

#[tokio::test]
async fn a_search_word_too_long_for_typo_tolerance_is_refused_past_the_word_limit() {
    let app = spawn_app().await;
    refused(&app, &"a".repeat(MAX_WORD_CHARS + 1), MAX_WORD_CHARS).await;
    // A word of 5,000 letters (about 280 MB of typo automata before the limits).
    refused(&app, &"q".repeat(5_000), MAX_QUERY_CHARS).await;
}

#[tokio::test]
async fn a_query_with_too_many_words_or_characters_is_refused() {
    let app = spawn_app().await;
    let words = vec!["star"; MAX_QUERY_WORDS + 1].join("%20");
    refused(&app, &words, MAX_QUERY_WORDS).await;
    let text = vec!["ab"; MAX_QUERY_CHARS / 3 + 1].join("-");
    assert!(text.len() > MAX_QUERY_CHARS);
    refused(&app, &text, MAX_QUERY_CHARS).await;
}

#[tokio::test]
async fn words_at_the_limits_still_search_long_ones_exactly_and_typo_tolerance_stops_at_its_limit() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let typo_word = "x".repeat(MAX_TYPO_WORD_CHARS - 1) + "y";
    let long_word = "z".repeat(MAX_WORD_CHARS);
    // `created` waits until the projections have applied each.
    app.created(&token, &movie(&typo_word)).await;
    app.created(&token, &movie(&format!("{long_word} Returns"))).await;
    let found = |body: &Value| body["items"].as_array().unwrap().len();
    // Two typos in a word of the longest typo-tolerant length still find it.
    let typo = "x".repeat(MAX_TYPO_WORD_CHARS - 3) + "qqy";
    let body = app.get_json(&format!("/api/v1/search?q={typo}%20")).await;
    assert_eq!(found(&body), 1, "{body}");
    // A word at the word limit finds its movie exactly, and with a typo it does not.
    let body = app.get_json(&format!("/api/v1/search?q={long_word}%20")).await;
    assert_eq!(found(&body), 1, "{body}");
    let typo = "z".repeat(MAX_WORD_CHARS - 1) + "q";
    let body = app.get_json(&format!("/api/v1/search?q={typo}%20")).await;
    assert_eq!(found(&body), 0, "{body}");
    let words = vec!["returns"; MAX_QUERY_WORDS].join("%20");
    assert_eq!(app.get(&format!("/api/v1/search?q={words}")).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn compatibility_pages_past_the_hundredth_are_refused_not_walked() {
    let app = spawn_app().await;
    let body =
        assert_problem(app.get("/api/movies/?page=10000000&page_size=100").await, StatusCode::BAD_REQUEST)
            .await;
    assert!(body["detail"].as_str().unwrap().contains("between 1 and 100"), "{body}");
    assert_eq!(app.get("/api/movies/?page=100&page_size=100").await.status(), StatusCode::OK);
    assert_problem(app.get("/api/movies/?page=101&page_size=1").await, StatusCode::BAD_REQUEST).await;
}

#[tokio::test]
async fn an_oversized_url_gets_414_as_a_problem() {
    let app = spawn_app().await;
    let body = assert_problem(
        app.get(&format!("/api/v1/movies?cursor={}", "c".repeat(movies_web::MAX_URI_BYTES))).await,
        StatusCode::URI_TOO_LONG,
    )
    .await;
    assert!(body["detail"].as_str().unwrap().contains(&movies_web::MAX_URI_BYTES.to_string()));
}
