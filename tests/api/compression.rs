//! Responses compressed as the client asks: brotli preferred, gzip otherwise, nothing under
//! 1 KiB (a movie's detail is sent as it is), the same bytes once decoded.

use std::io::Read;

use reqwest::{header, StatusCode};

use crate::helpers::{spawn_seeded, TestApp};

/// The response to `path` with `Accept-Encoding: accept` (none when empty): its status, its
/// `Content-Encoding`, its `Vary` and its body as sent.
async fn fetch(
    app: &TestApp,
    path: &str,
    accept: &str,
) -> (StatusCode, Option<String>, Option<String>, Vec<u8>) {
    // reqwest decodes nothing here: it has no decompression features, and sends no Accept-Encoding.
    let mut request = app.http.get(app.url(path));
    if !accept.is_empty() {
        request = request.header(header::ACCEPT_ENCODING, accept);
    }
    let response = request.send().await.unwrap();
    let text =
        |name| response.headers().get(name).map(|v: &header::HeaderValue| v.to_str().unwrap().to_owned());
    let (encoding, vary) = (text(header::CONTENT_ENCODING), text(header::VARY));
    (response.status(), encoding, vary, response.bytes().await.unwrap().to_vec())
}

/// The id of the first movie the API lists.
async fn first_movie(app: &TestApp) -> String {
    let (_, _, _, list) = fetch(app, "/api/v1/movies?limit=1", "").await;
    let list: serde_json::Value = serde_json::from_slice(&list).unwrap();
    list["items"][0]["id"].as_str().unwrap().to_owned()
}

fn unbrotli(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    brotli::Decompressor::new(bytes, 4096).read_to_end(&mut out).unwrap();
    out
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes).read_to_end(&mut out).unwrap();
    out
}

#[tokio::test]
async fn a_large_answer_is_compressed_as_the_client_asks_and_decodes_to_the_same_bytes() {
    let app = spawn_seeded().await;
    let path = "/api/v1/search?q=the&limit=100&facets=true";
    let (status, encoding, _, plain) = fetch(&app, path, "").await;
    assert_eq!((status, encoding), (StatusCode::OK, None), "nothing asked, nothing compressed");
    assert!(plain.len() > 10_000, "a large answer: {} bytes", plain.len());

    let (_, encoding, vary, br) = fetch(&app, path, "gzip, deflate, br").await;
    assert_eq!(encoding.as_deref(), Some("br"), "brotli preferred");
    assert_eq!(vary.as_deref(), Some("accept-encoding"));
    assert_eq!(unbrotli(&br), plain);
    assert!(br.len() * 4 < plain.len(), "{} bytes of {}", br.len(), plain.len());

    let (_, encoding, _, gz) = fetch(&app, path, "br;q=0, gzip").await;
    assert_eq!(encoding.as_deref(), Some("gzip"), "brotli refused");
    assert_eq!(gunzip(&gz), plain);

    let (_, encoding, _, same) = fetch(&app, path, "identity").await;
    assert_eq!((encoding, same), (None, plain));

    // The console's pages too.
    let (_, encoding, _, page) = fetch(&app, "/?q=the", "br").await;
    assert_eq!(encoding.as_deref(), Some("br"));
    assert!(String::from_utf8(unbrotli(&page)).unwrap().starts_with("<!DOCTYPE html>"));
}

#[tokio::test]
async fn a_small_answer_such_as_a_movie_is_sent_as_it_is() {
    let app = spawn_seeded().await;
    let id = first_movie(&app).await;
    let path = format!("/api/v1/movies/{id}");
    let (_, _, _, plain) = fetch(&app, &path, "").await;
    assert!(plain.len() < 1024, "{} bytes", plain.len());
    let (status, encoding, _, sent) = fetch(&app, &path, "br, gzip").await;
    assert_eq!((status, encoding, sent), (StatusCode::OK, None, plain));
}

#[tokio::test]
async fn a_compressed_page_carries_its_version_as_a_weak_etag_and_still_revalidates() {
    let app = spawn_seeded().await;
    let id = first_movie(&app).await;
    let path = format!("/movies/{id}");
    let plain = app.http.get(app.url(&path)).send().await.unwrap();
    let strong = plain.headers()[header::ETAG].to_str().unwrap().to_owned();
    assert!(strong.starts_with('"'), "{strong}");
    let compressed = app.http.get(app.url(&path)).header(header::ACCEPT_ENCODING, "br").send().await.unwrap();
    assert_eq!(compressed.headers()[header::CONTENT_ENCODING], "br");
    assert_eq!(compressed.headers()[header::ETAG].to_str().unwrap(), format!("W/{strong}"));
    for tag in [strong.clone(), format!("W/{strong}")] {
        let again = app
            .http
            .get(app.url(&path))
            .header(header::ACCEPT_ENCODING, "br")
            .header(header::IF_NONE_MATCH, &tag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{tag}");
    }
}

#[tokio::test]
async fn a_body_past_64_kib_such_as_the_docs_script_is_sent_as_it_is() {
    let app = spawn_seeded().await;
    let (status, encoding, _, plain) = fetch(&app, "/docs/swagger-ui-bundle.js", "br, gzip").await;
    assert_eq!(status, StatusCode::OK);
    assert!(plain.len() > 64 * 1024, "{} bytes", plain.len());
    assert_eq!(encoding, None, "compressing a megabyte per request would burn a core for nothing");
}
