//! The assignment's own API, served unchanged beside v1.

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, spawn_app, spawn_seeded};

fn names(list: &Value) -> Vec<&str> {
    list.as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn the_list_returns_every_movie_in_the_original_shape() {
    let app = spawn_seeded().await;
    let list = app.get_json("/api/movies/").await;
    let movies = list.as_array().unwrap();
    assert_eq!(movies.len(), 248);
    let ids: HashSet<&str> = movies.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 248);
    let wizard = movies.iter().filter(|m| m["name"] == "The Wizard of Oz").count();
    let batman = movies.iter().filter(|m| m["name"] == "Batman").count();
    assert_eq!((wizard, batman), (2, 2));
    let star_wars = movies.iter().find(|m| m["name"] == "Star Wars").unwrap();
    let keys: HashSet<&str> = star_wars.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, HashSet::from(["id", "name", "director", "popularity", "imdb_score", "genre"]));
    assert_eq!(star_wars["genre"][0], json!({ "name": "Action" }));
    assert_eq!(star_wars["popularity"], 88.0);

    let page = app.get_json("/api/movies/?page=2&page_size=10").await;
    assert_eq!(names(&page), names(&list)[10..20].to_vec());
    assert_eq!(app.get_json("/api/movies/?page=99").await, json!([]));
    assert_problem(app.get("/api/movies/?page=0").await, StatusCode::BAD_REQUEST).await;
}

#[tokio::test]
async fn search_matches_names_directors_and_genres() {
    let app = spawn_seeded().await;
    let star = app.get_json("/api/movies/?search=star").await;
    let found = names(&star);
    assert!(found.contains(&"Star Wars") && found.contains(&"Star Trek"), "{found:?}");
    let lucas = app.get_json("/api/movies/?search=lucas").await;
    assert!(lucas.as_array().unwrap().iter().all(|m| m["director"] == "George Lucas"));
    let noir = app.get_json("/api/movies/?search=film-noir").await;
    assert!(!noir.as_array().unwrap().is_empty());
}

#[tokio::test]
async fn detail_update_and_delete_work_by_id_with_an_admin_token() {
    let app = spawn_seeded().await;
    let token = app.admin_token().await;
    let list = app.get_json("/api/movies/?search=casablanca").await;
    let id = list[0]["id"].as_str().unwrap().to_owned();
    let path = format!("/api/movie/{id}/");
    assert_eq!(app.get_json(&path).await["name"], "Casablanca");

    let before = app.snapshot().await;
    let unauthenticated = app.http.delete(app.url(&path)).send().await.unwrap();
    assert_problem(unauthenticated, StatusCode::UNAUTHORIZED).await;
    assert_eq!(app.snapshot().await, before);

    let body = json!({
        "name": "Casablanca",
        "director": "Michael Curtiz",
        "99popularity": 90.0,
        "imdb_score": 8.6,
        "genre": [{ "name": "Drama" }, { "name": "Romance" }, { "name": "War" }],
    });
    let put = app.http.put(app.url(&path)).bearer_auth(&token).json(&body).send().await.unwrap();
    assert_eq!(put.status(), StatusCode::OK);
    let at: i64 = put.headers()["movies-position"].to_str().unwrap().parse().unwrap();
    let updated: Value = put.json().await.unwrap();
    assert_eq!(updated["popularity"], 90.0);
    app.wait_for(at).await;
    assert_eq!(
        app.get_json(&path).await["genre"],
        json!([{ "name": "Drama" }, { "name": "Romance" }, { "name": "War" }])
    );

    let post = app.http.post(app.url("/api/movies/")).bearer_auth(&token).json(&json!({
        "name": "Heat", "director": "Michael Mann", "popularity": 80, "imdb_score": 8.3, "genre": [{ "name": "Crime" }],
    })).send().await.unwrap();
    assert_eq!(post.status(), StatusCode::CREATED);
    let created: Value = post.json().await.unwrap();
    assert_eq!(created["genre"], json!([{ "name": "Crime" }]));

    let delete = app.http.delete(app.url(&path)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(delete.status(), StatusCode::NO_CONTENT);
    let at: i64 = delete.headers()["movies-position"].to_str().unwrap().parse().unwrap();
    app.wait_for(at).await;
    assert_problem(app.get(&path).await, StatusCode::NOT_FOUND).await;
    assert_eq!(app.get_json("/api/movies/").await.as_array().unwrap().len(), 248);
}

#[tokio::test]
async fn the_compatibility_detail_waits_for_min_position_right_after_a_create() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    for n in 0..20 {
        let response = app.create(&token, &crate::helpers::movie(&format!("Fresh {n}"))).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let at = crate::helpers::position(&response);
        let id = response.json::<serde_json::Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
        let read = app.get(&format!("/api/movie/{id}/?min_position={at}")).await;
        assert_eq!(read.status(), StatusCode::OK, "read {n} right after its create");
        let projected: i64 = read.headers()["movies-projected-position"].to_str().unwrap().parse().unwrap();
        assert!(projected >= at);
    }
}
