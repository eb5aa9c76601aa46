use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, etag, movie, position, spawn_app};

#[tokio::test]
async fn a_created_movie_gets_201_location_etag_and_position_and_becomes_readable() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let body = json!({
        "name": "  Alien ",
        "director": "Ridley Scott",
        "popularity": 85.0,
        "imdb_score": 8.5,
        "genres": ["Sci-Fi", "horror", " Horror "],
    });
    let response = app.create(&token, &body).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(etag(&response), "\"1\"");
    let at = position(&response);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = response.json().await.unwrap();
    assert_eq!(location, format!("/api/v1/movies/{}", created["id"].as_str().unwrap()));
    assert_eq!(created["name"], "Alien");
    assert_eq!(created["genres"], json!(["Sci-Fi", "horror"]));
    assert_eq!(created["version"], 1);

    let read = app.get(&format!("{location}?min_position={at}")).await;
    assert_eq!(read.status(), StatusCode::OK);
    assert_eq!(etag(&read), "\"1\"");
    let read: Value = read.json().await.unwrap();
    assert_eq!(read, created);
}

#[tokio::test]
async fn put_replaces_and_patch_merges_honouring_if_match() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let created = app.created(&token, &movie("Alien")).await;
    let path = format!("/api/v1/movies/{}", created["id"].as_str().unwrap());

    let mut replacement = movie("Aliens");
    replacement["director"] = json!("James Cameron");
    let put = app
        .http
        .put(app.url(&path))
        .bearer_auth(&token)
        .header("if-match", "\"1\"")
        .json(&replacement)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::OK);
    assert_eq!(etag(&put), "\"2\"");

    let patch = app
        .http
        .patch(app.url(&path))
        .bearer_auth(&token)
        .header("if-match", "\"2\"")
        .header("content-type", "application/merge-patch+json")
        .body(r#"{"imdb_score": 8.4}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(patch.status(), StatusCode::OK);
    let at = position(&patch);
    let patched: Value = patch.json().await.unwrap();
    assert_eq!(
        (patched["name"].as_str(), patched["imdb_score"].as_f64(), patched["version"].as_i64()),
        (Some("Aliens"), Some(8.4), Some(3))
    );

    let seen = app.get_json(&format!("{path}?min_position={at}")).await;
    assert_eq!(seen["director"], "James Cameron");
    assert_eq!(seen["imdb_score"], 8.4);
    assert_eq!(seen["version"], 3);

    let before = app.snapshot().await;
    let stale = app
        .http
        .put(app.url(&path))
        .bearer_auth(&token)
        .header("if-match", "\"1\"")
        .json(&movie("Lost"))
        .send()
        .await
        .unwrap();
    assert_problem(stale, StatusCode::PRECONDITION_FAILED).await;
    let stale =
        app.http.delete(app.url(&path)).bearer_auth(&token).header("if-match", "\"2\"").send().await.unwrap();
    assert_problem(stale, StatusCode::PRECONDITION_FAILED).await;
    assert_eq!(app.snapshot().await, before);
}

#[tokio::test]
async fn an_edit_that_changes_nothing_records_nothing() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let created = app.created(&token, &movie("Alien")).await;
    let path = format!("/api/v1/movies/{}", created["id"].as_str().unwrap());
    let before = app.snapshot().await;
    let put = app.http.put(app.url(&path)).bearer_auth(&token).json(&movie(" Alien ")).send().await.unwrap();
    assert_eq!(put.status(), StatusCode::OK);
    assert_eq!(etag(&put), "\"1\"");
    let patch = app
        .http
        .patch(app.url(&path))
        .bearer_auth(&token)
        .json(&json!({"genres": ["Sci-Fi", "Horror", " horror"]}))
        .send()
        .await;
    assert_eq!(patch.unwrap().status(), StatusCode::OK);
    let (head, movies) = app.snapshot().await;
    assert_eq!((head, movies.len()), (before.0, 1));
}

#[tokio::test]
async fn a_deleted_movie_is_gone_from_reads_and_cannot_be_edited() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let created = app.created(&token, &movie("Alien")).await;
    let path = format!("/api/v1/movies/{}", created["id"].as_str().unwrap());
    let delete = app.http.delete(app.url(&path)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(delete.status(), StatusCode::NO_CONTENT);
    let at = position(&delete);
    assert_problem(app.get(&format!("{path}?min_position={at}")).await, StatusCode::NOT_FOUND).await;
    assert!(app.all_movies().await.is_empty());
    let again = app.http.delete(app.url(&path)).bearer_auth(&token).send().await.unwrap();
    assert_problem(again, StatusCode::NOT_FOUND).await;
    let edit = app.http.put(app.url(&path)).bearer_auth(&token).json(&movie("Alien")).send().await.unwrap();
    assert_problem(edit, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn an_idempotency_key_makes_a_retried_post_return_the_same_movie() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let post = |body: Value| {
        app.http
            .post(app.url("/api/v1/movies"))
            .bearer_auth(&token)
            .header("idempotency-key", "order-66")
            .json(&body)
            .send()
    };
    let first = post(movie("Alien")).await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    let first_position = position(&first);
    let first: Value = first.json().await.unwrap();
    let retry = post(movie("Alien")).await.unwrap();
    assert_eq!(retry.status(), StatusCode::CREATED);
    assert_eq!(position(&retry), first_position);
    let retry: Value = retry.json().await.unwrap();
    assert_eq!(retry["id"], first["id"]);
    app.wait_for(first_position).await;
    let before = app.snapshot().await;
    assert_eq!(before.1.len(), 1);

    let reused = post(movie("Heat")).await.unwrap();
    assert_problem(reused, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(app.snapshot().await, before);
}

/// An `Idempotency-Key` outside its documented shape (printable ASCII, 1 to 255, spaces only
/// inside) is refused before anything is stored: a tab inside one was accepted before.
#[tokio::test]
async fn an_idempotency_key_outside_its_documented_shape_is_refused_and_nothing_is_stored() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let before = app.snapshot().await;
    for key in ["tab\tinside".to_owned(), "x".repeat(256)] {
        let response = app
            .http
            .post(app.url("/api/v1/movies"))
            .bearer_auth(&token)
            .header("idempotency-key", key.as_str())
            .json(&movie("Alien"))
            .send()
            .await
            .unwrap();
        assert_problem(response, StatusCode::BAD_REQUEST).await;
    }
    assert_eq!(app.snapshot().await, before);
}

/// A retried create answers what the first answer said (201, the id, ETag "1", the first
/// position and the movie as created), whatever happened to the movie since: headers and body
/// agree, and the caller always learns the id.
#[tokio::test]
async fn a_retried_create_answers_as_the_first_did_after_the_movie_changed_and_was_deleted() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let post = || {
        app.http
            .post(app.url("/api/v1/movies"))
            .bearer_auth(&token)
            .header("idempotency-key", "retry-after-timeout")
            .json(&movie("Alien"))
            .send()
    };
    let first = post().await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    let (first_etag, first_position) = (etag(&first), position(&first));
    let first_location = first.headers()["location"].to_str().unwrap().to_owned();
    let first: Value = first.json().await.unwrap();
    let path = format!("/api/v1/movies/{}", first["id"].as_str().unwrap());

    let renamed = app
        .http
        .patch(app.url(&path))
        .bearer_auth(&token)
        .header("content-type", "application/merge-patch+json")
        .body(r#"{"name": "Aliens"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(renamed.status(), StatusCode::OK);
    let after_edit = post().await.unwrap();
    assert_eq!(after_edit.status(), StatusCode::CREATED);
    assert_eq!((etag(&after_edit), position(&after_edit)), (first_etag.clone(), first_position));
    assert_eq!(after_edit.headers()["location"].to_str().unwrap(), first_location);
    let after_edit: Value = after_edit.json().await.unwrap();
    assert_eq!(after_edit, first, "the body is the movie the ETag names");

    let deleted = app.http.delete(app.url(&path)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let after_delete = post().await.unwrap();
    assert_eq!(after_delete.status(), StatusCode::CREATED);
    assert_eq!((etag(&after_delete), position(&after_delete)), (first_etag, first_position));
    assert_eq!(after_delete.headers()["location"].to_str().unwrap(), first_location);
    let after_delete: Value = after_delete.json().await.unwrap();
    assert_eq!(after_delete, first);
}

#[tokio::test]
async fn concurrent_edits_at_the_same_version_let_exactly_one_win() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let created = app.created(&token, &movie("Alien")).await;
    let path = format!("/api/v1/movies/{}", created["id"].as_str().unwrap());
    let edits = (0..8).map(|n| {
        app.http
            .put(app.url(&path))
            .bearer_auth(&token)
            .header("if-match", "\"1\"")
            .json(&movie(&format!("Alien {n}")))
            .send()
    });
    let statuses: Vec<StatusCode> =
        futures::future::join_all(edits).await.into_iter().map(|r| r.unwrap().status()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::OK).count(), 1, "{statuses:?}");
    assert!(statuses
        .iter()
        .all(|s| [StatusCode::OK, StatusCode::PRECONDITION_FAILED, StatusCode::CONFLICT].contains(s)));
    let head = app.get_json("/health").await["log_head"].as_i64().unwrap();
    app.wait_for(head).await;
    assert_eq!(app.get_json(&path).await["version"], 2);
}
