//! The audit trail, time travel and restoring deleted movies.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, movie, position, spawn_app};

#[tokio::test]
async fn a_movies_history_names_every_change_its_actor_and_request() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let created = app.created(&token, &movie("Alien")).await;
    let id = created["id"].as_str().unwrap();
    let path = format!("/api/v1/movies/{id}");
    let patch = app
        .http
        .patch(app.url(&path))
        .bearer_auth(&token)
        .header("x-request-id", "req-audit-1")
        .json(&json!({ "imdb_score": 8.4 }))
        .send()
        .await
        .unwrap();
    assert_eq!(patch.status(), StatusCode::OK);
    app.http.delete(app.url(&path)).bearer_auth(&token).send().await.unwrap();

    let history_path = format!("/api/v1/admin/movies/{id}/history");
    let history: Value =
        app.http.get(app.url(&history_path)).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    let events = history["events"].as_array().unwrap();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["movie.created", "movie.updated", "movie.deleted"]);
    assert_eq!(events[0]["actor"], json!({ "subject": "admin", "role": "admin" }));
    assert_eq!(events[0]["changes"][0], json!({ "field": "name", "before": null, "after": "Alien" }));
    assert_eq!(events[1]["request_id"], "req-audit-1");
    assert_eq!(events[1]["changes"], json!([{ "field": "imdb_score", "before": 8.5, "after": 8.4 }]));
    assert_eq!(events[2]["changes"].as_array().unwrap().len(), 5);
    assert!(events[2]["changes"].as_array().unwrap().iter().all(|c| c["after"].is_null()));
    let versions: Vec<i64> = events.iter().map(|e| e["version"].as_i64().unwrap()).collect();
    assert_eq!(versions, [1, 2, 3]);

    assert_problem(app.http.get(app.url(&history_path)).send().await.unwrap(), StatusCode::UNAUTHORIZED)
        .await;
    let user = app.user_token().await;
    assert_problem(
        app.http.get(app.url(&history_path)).bearer_auth(&user).send().await.unwrap(),
        StatusCode::FORBIDDEN,
    )
    .await;
    let unknown = format!("/api/v1/admin/movies/{}/history", uuid::Uuid::now_v7());
    assert_problem(
        app.http.get(app.url(&unknown)).bearer_auth(&token).send().await.unwrap(),
        StatusCode::NOT_FOUND,
    )
    .await;
}

#[tokio::test]
async fn the_event_log_filters_by_actor_type_and_time_and_pages() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let before_all = chrono::Utc::now();
    for name in ["A", "B", "C"] {
        let created = app.created(&token, &movie(name)).await;
        let path = format!("/api/v1/movies/{}", created["id"].as_str().unwrap());
        app.http
            .patch(app.url(&path))
            .bearer_auth(&token)
            .json(&json!({ "popularity": 1 }))
            .send()
            .await
            .unwrap();
    }
    let log = |query: String| {
        let (app, token) = (&app, &token);
        async move {
            let response = app
                .http
                .get(app.url(&format!("/api/v1/admin/events?{query}")))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{query}");
            response.json::<Value>().await.unwrap()
        }
    };
    let all = log(String::new()).await;
    assert_eq!(all["items"].as_array().unwrap().len(), 6);
    let updates = log("type=movie.updated".into()).await;
    assert!(updates["items"].as_array().unwrap().iter().all(|e| e["type"] == "movie.updated"));
    assert_eq!(updates["items"].as_array().unwrap().len(), 3);
    assert_eq!(log("actor=admin".into()).await["items"].as_array().unwrap().len(), 6);
    assert_eq!(log("actor=nobody".into()).await["items"], json!([]));
    let since = before_all.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    assert_eq!(log(format!("since={since}")).await["items"].as_array().unwrap().len(), 6);
    assert_eq!(log(format!("until={since}")).await["items"], json!([]));

    let (mut seen, mut page) = (Vec::new(), log("limit=4".into()).await);
    loop {
        seen.extend(page["items"].as_array().unwrap().iter().map(|e| e["position"].as_i64().unwrap()));
        match page["next_cursor"].as_str() {
            Some(cursor) => page = log(format!("limit=4&cursor={cursor}")).await,
            None => break,
        }
    }
    let positions: Vec<i64> =
        all["items"].as_array().unwrap().iter().map(|e| e["position"].as_i64().unwrap()).collect();
    assert_eq!(seen, positions);
    for bad in ["limit=0", "cursor=zzz", "since=yesterday"] {
        let response = app
            .http
            .get(app.url(&format!("/api/v1/admin/events?{bad}")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_problem(response, StatusCode::BAD_REQUEST).await;
    }
}

#[tokio::test]
async fn as_of_reads_a_movie_as_it_was_then() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let before_creation = chrono::Utc::now();
    let created = app.created(&token, &movie("Alien")).await;
    let path = format!("/api/v1/movies/{}", created["id"].as_str().unwrap());
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let between = chrono::Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    app.http
        .patch(app.url(&path))
        .bearer_auth(&token)
        .json(&json!({ "name": "Aliens" }))
        .send()
        .await
        .unwrap();
    let delete = app.http.delete(app.url(&path)).bearer_auth(&token).send().await.unwrap();
    app.wait_for(position(&delete)).await;

    let at =
        |t: chrono::DateTime<chrono::Utc>| format!("{path}?as_of={}", t.format("%Y-%m-%dT%H:%M:%S%.6fZ"));
    let as_admin = |path: String| app.http.get(app.url(&path)).bearer_auth(&token).send();
    let then: Value = as_admin(at(between)).await.unwrap().json().await.unwrap();
    assert_eq!((then["name"].as_str(), then["version"].as_i64()), (Some("Alien"), Some(1)));
    assert_problem(as_admin(at(before_creation)).await.unwrap(), StatusCode::NOT_FOUND).await;
    assert_problem(as_admin(at(chrono::Utc::now())).await.unwrap(), StatusCode::NOT_FOUND).await;
    assert_problem(app.get(&format!("{path}?as_of=last-tuesday")).await, StatusCode::BAD_REQUEST).await;
    // The movie is deleted now: its history is for admins only, not anonymous or user readers.
    assert_problem(app.get(&at(between)).await, StatusCode::NOT_FOUND).await;
    let user = app.user_token().await;
    let read = app.http.get(app.url(&at(between))).bearer_auth(&user).send().await.unwrap();
    assert_problem(read, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn anyone_reads_the_past_of_a_movie_that_still_exists() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let created = app.created(&token, &movie("Alien")).await;
    let path = format!("/api/v1/movies/{}", created["id"].as_str().unwrap());
    let between = chrono::Utc::now();
    let patch = app
        .http
        .patch(app.url(&path))
        .bearer_auth(&token)
        .json(&json!({ "name": "Aliens" }))
        .send()
        .await
        .unwrap();
    app.wait_for(position(&patch)).await;
    let then = app.get_json(&format!("{path}?as_of={}", between.format("%Y-%m-%dT%H:%M:%S%.6fZ"))).await;
    assert_eq!(then["name"], "Alien");
}

#[tokio::test]
async fn a_deleted_movie_is_restored_with_its_history_intact() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let created = app.created(&token, &movie("Alien")).await;
    let id = created["id"].as_str().unwrap();
    let path = format!("/api/v1/movies/{id}");
    let restore = format!("{path}/restore");
    assert_problem(
        app.http.post(app.url(&restore)).bearer_auth(&token).send().await.unwrap(),
        StatusCode::CONFLICT,
    )
    .await;
    app.http.delete(app.url(&path)).bearer_auth(&token).send().await.unwrap();

    let restored = app.http.post(app.url(&restore)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(restored.status(), StatusCode::OK);
    let at = position(&restored);
    let body: Value = restored.json().await.unwrap();
    assert_eq!((body["name"].as_str(), body["version"].as_i64()), (Some("Alien"), Some(3)));
    let read = app.get_json(&format!("{path}?min_position={at}")).await;
    assert_eq!(read["name"], "Alien");
    assert_eq!(read["created_at"], created["created_at"], "a restored movie keeps its creation time");
    assert_eq!(app.get_json("/api/v1/search?q=alien").await["total"], 1);
    let history: Value = app
        .http
        .get(app.url(&format!("/api/v1/admin/movies/{id}/history")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let types: Vec<&str> =
        history["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["movie.created", "movie.deleted", "movie.restored"]);
    let unknown = format!("/api/v1/movies/{}/restore", uuid::Uuid::now_v7());
    assert_problem(
        app.http.post(app.url(&unknown)).bearer_auth(&token).send().await.unwrap(),
        StatusCode::NOT_FOUND,
    )
    .await;
}

/// A long history comes a page at a time, each page's cursor leading to the next, and the
/// before-values stay right across pages.
#[tokio::test]
async fn a_long_history_pages_with_its_before_values_intact() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let created = app.created(&token, &movie("Paged")).await;
    let id = created["id"].as_str().unwrap();
    for score in [1.0, 2.0, 3.0, 4.0, 5.0] {
        let patched = app
            .http
            .patch(app.url(&format!("/api/v1/movies/{id}")))
            .bearer_auth(&token)
            .json(&json!({ "imdb_score": score }))
            .send()
            .await
            .unwrap();
        assert_eq!(patched.status(), StatusCode::OK);
    }
    let (mut url, mut versions, mut scores) =
        (format!("/api/v1/admin/movies/{id}/history?limit=2"), Vec::new(), Vec::new());
    loop {
        let page: Value =
            app.http.get(app.url(&url)).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
        let events = page["events"].as_array().unwrap();
        assert!(events.len() <= 2, "{page}");
        for event in events {
            versions.push(event["version"].as_i64().unwrap());
            if event["type"] == "movie.updated" {
                let change = &event["changes"][0];
                scores.push((change["before"].as_f64().unwrap(), change["after"].as_f64().unwrap()));
            }
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => url = format!("/api/v1/admin/movies/{id}/history?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(versions, [1, 2, 3, 4, 5, 6]);
    assert_eq!(scores, [(8.5, 1.0), (1.0, 2.0), (2.0, 3.0), (3.0, 4.0), (4.0, 5.0)]);
    for bad in ["limit=0", "limit=501", "cursor=bm9wZQ"] {
        let url = format!("/api/v1/admin/movies/{id}/history?{bad}");
        assert_problem(
            app.http.get(app.url(&url)).bearer_auth(&token).send().await.unwrap(),
            StatusCode::BAD_REQUEST,
        )
        .await;
    }
}
