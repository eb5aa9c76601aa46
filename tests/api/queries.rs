use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{assert_problem, movie, position, spawn_app, spawn_seeded};

fn names(page: &Value) -> Vec<String> {
    page["items"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn paging_by_link_header_to_the_end_yields_every_seeded_movie_once() {
    let app = spawn_seeded().await;
    let mut ids = HashSet::new();
    let mut pages = 0;
    let mut url = app.url("/api/v1/movies?limit=30&sort=popularity&order=desc");
    let mut last_popularity = f64::MAX;
    loop {
        let response = app.http.get(&url).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let link = response.headers().get("link").map(|l| l.to_str().unwrap().to_owned());
        let page: Value = response.json().await.unwrap();
        for movie in page["items"].as_array().unwrap() {
            assert!(ids.insert(movie["id"].as_str().unwrap().to_owned()), "a movie appeared twice");
            let popularity = movie["popularity"].as_f64().unwrap();
            assert!(popularity <= last_popularity, "sorted by popularity, descending");
            last_popularity = popularity;
        }
        pages += 1;
        match (link, page["next_cursor"].as_str()) {
            (Some(link), Some(_)) => {
                let target = link.trim_start_matches('<').split('>').next().unwrap().to_owned();
                assert!(link.ends_with("rel=\"next\""));
                url = app.url(&target);
            }
            (None, None) => break,
            other => panic!("Link header and next_cursor disagree: {other:?}"),
        }
    }
    assert_eq!(ids.len(), 248);
    assert_eq!(pages, 9);
}

#[tokio::test]
async fn lists_sort_by_each_field_either_way() {
    let app = spawn_seeded().await;
    for (sort, field) in [("name", "name"), ("popularity", "popularity"), ("imdb_score", "imdb_score")] {
        for order in ["asc", "desc"] {
            let page = app.get_json(&format!("/api/v1/movies?limit=100&sort={sort}&order={order}")).await;
            let items = page["items"].as_array().unwrap();
            assert_eq!(items.len(), 100);
            let keys: Vec<Value> = items.iter().map(|m| m[field].clone()).collect();
            for pair in keys.windows(2) {
                let ordered = match (&pair[0], &pair[1]) {
                    (Value::String(a), Value::String(b)) => a.to_lowercase() <= b.to_lowercase(),
                    (a, b) => a.as_f64() <= b.as_f64(),
                };
                assert_eq!(ordered, order == "asc" || pair[0] == pair[1], "{sort} {order}: {pair:?}");
            }
        }
    }
}

#[tokio::test]
async fn list_filters_combine() {
    let app = spawn_seeded().await;
    let page = app.get_json("/api/v1/movies?limit=100&genre=sci-fi&min_score=8&max_score=8.8").await;
    let items = page["items"].as_array().unwrap();
    assert!(!items.is_empty());
    for movie in items {
        let genres: Vec<String> =
            movie["genres"].as_array().unwrap().iter().map(|g| g.as_str().unwrap().to_lowercase()).collect();
        assert!(genres.contains(&"sci-fi".to_owned()));
        let score = movie["imdb_score"].as_f64().unwrap();
        assert!((8.0..=8.8).contains(&score));
    }
    let by_director = app.get_json("/api/v1/movies?director=george%20lucas").await;
    let names = names(&by_director);
    assert!(names.contains(&"Star Wars".to_owned()), "{names:?}");
    assert!(by_director["items"].as_array().unwrap().iter().all(|m| m["director"] == "George Lucas"));
}

#[tokio::test]
async fn bad_list_parameters_get_400() {
    let app = spawn_seeded().await;
    let page = app.get_json("/api/v1/movies?limit=2&sort=popularity").await;
    let cursor = page["next_cursor"].as_str().unwrap();
    for query in [
        "limit=0".to_owned(),
        "limit=101".to_owned(),
        "limit=ten".to_owned(),
        "sort=budget".to_owned(),
        "order=sideways".to_owned(),
        "min_score=11".to_owned(),
        "min_score=9&max_score=2".to_owned(),
        "cursor=garbage".to_owned(),
        "genre=%00".to_owned(),
        "director=a%0Ab".to_owned(),
        "min_score=NaN".to_owned(),
        format!("cursor={cursor}&sort=name"),
    ] {
        assert_problem(app.get(&format!("/api/v1/movies?{query}")).await, StatusCode::BAD_REQUEST).await;
    }
}

#[tokio::test]
async fn a_movie_read_honours_if_none_match() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let created = app.created(&token, &movie("Alien")).await;
    let path = format!("/api/v1/movies/{}", created["id"].as_str().unwrap());
    let response = app.http.get(app.url(&path)).header("if-none-match", "\"1\"").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(response.headers()["etag"], "\"1\"");
    let response = app.http.get(app.url(&path)).header("if-none-match", "\"7\"").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["cache-control"].to_str().unwrap().contains("max-age"));
    assert_problem(app.get(&format!("/api/v1/movies/{}", uuid::Uuid::now_v7())).await, StatusCode::NOT_FOUND)
        .await;
    assert_problem(app.get("/api/v1/movies/not-a-uuid").await, StatusCode::BAD_REQUEST).await;
}

#[tokio::test]
async fn search_ranks_title_matches_and_applies_filters() {
    let app = spawn_seeded().await;
    let page = app.get_json("/api/v1/search?q=star%20wars").await;
    let found = names(&page);
    assert!(found.iter().take(4).all(|n| n.starts_with("Star Wars")), "{found:?}");
    assert_eq!(page["total"].as_u64().unwrap() as usize, found.len());

    let kubrick = app.get_json("/api/v1/search?q=kubrick").await;
    assert!(kubrick["items"].as_array().unwrap().iter().all(|m| m["director"] == "Stanley Kubrick"));
    assert!(!kubrick["items"].as_array().unwrap().is_empty());

    let filtered = app.get_json("/api/v1/search?q=star&genre=Fantasy&min_score=8.5").await;
    for movie in filtered["items"].as_array().unwrap() {
        assert!(movie["imdb_score"].as_f64().unwrap() >= 8.5);
    }
    assert!(names(&filtered).contains(&"Star Wars".to_owned()));

    let paged = app.get_json("/api/v1/search?q=the&limit=5").await;
    let cursor = paged["next_cursor"].as_str().unwrap();
    let second = app.get_json(&format!("/api/v1/search?q=the&limit=5&cursor={cursor}")).await;
    let (a, b): (HashSet<_>, HashSet<_>) =
        (names(&paged).into_iter().collect(), names(&second).into_iter().collect());
    assert!(a.is_disjoint(&b));
}

#[tokio::test]
async fn search_treats_query_syntax_as_text() {
    let app = spawn_seeded().await;
    for q in [
        "\"star",
        "%00%01",
        "title:star",
        "(star",
        "star AND",
        "*",
        "[1 TO 2]",
        "-",
        "%22%22",
        "~2^3",
        // The longest word a query may have (longer ones are refused: `limits.rs`).
        &"x".repeat(movies_search::MAX_WORD_CHARS),
    ] {
        let response = app.get(&format!("/api/v1/search?q={q}")).await;
        assert_eq!(response.status(), StatusCode::OK, "q={q}");
    }
    assert_eq!(app.get_json("/api/v1/search?q=").await["total"], 248);
}

#[tokio::test]
async fn genres_are_counted() {
    let app = spawn_seeded().await;
    let genres = app.get_json("/api/v1/genres").await;
    let items = genres["items"].as_array().unwrap();
    let drama = items.iter().find(|g| g["genre"] == "Drama").unwrap()["movies"].as_i64().unwrap();
    let listed = app
        .all_movies()
        .await
        .iter()
        .filter(|m| {
            m["genres"].as_array().unwrap().iter().any(|g| g.as_str().unwrap().eq_ignore_ascii_case("drama"))
        })
        .count();
    assert!(drama > 0);
    assert_eq!(listed, drama as usize);
    let counts: Vec<i64> = items.iter().map(|g| g["movies"].as_i64().unwrap()).collect();
    assert!(counts.windows(2).all(|w| w[0] >= w[1]), "most common first");
}

#[tokio::test]
async fn min_position_waits_for_the_projections() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let response = app.create(&token, &movie("Alien")).await;
    let at = position(&response);
    let page = app.get(&format!("/api/v1/movies?min_position={at}")).await;
    assert!(page.headers()["movies-projected-position"].to_str().unwrap().parse::<i64>().unwrap() >= at);
    let page: Value = page.json().await.unwrap();
    assert_eq!(names(&page), vec!["Alien"]);
    // A position far ahead returns after the bounded wait, saying how far the projections got.
    let ahead = app.get(&format!("/api/v1/genres?min_position={}", at + 1000)).await;
    assert_eq!(ahead.status(), StatusCode::OK);
    assert_eq!(ahead.headers()["movies-projected-position"].to_str().unwrap().parse::<i64>().unwrap(), at);
}

#[tokio::test]
async fn search_tolerates_typos_completes_prefixes_and_marks_matches() {
    let app = spawn_seeded().await;
    let page = app.get_json("/api/v1/search?q=godfater").await;
    assert_eq!(page["items"][0]["name"], "The Godfather");
    assert_eq!(page["items"][0]["highlight"]["name"], "The <mark>Godfather</mark>");
    let page = app.get_json("/api/v1/search?q=star%20w").await;
    assert_eq!(page["items"][0]["name"], "Star Wars");
    let suggestions = app.get_json("/api/v1/suggest?q=star%20w").await;
    let items = suggestions["items"].as_array().unwrap();
    assert!(!items.is_empty() && items.len() <= 10);
    assert_eq!(items[0]["name"], "Star Wars");
    assert_eq!(items[0]["highlight"], "<mark>Star</mark> <mark>Wars</mark>");
    assert_problem(app.get("/api/v1/suggest?q=star&limit=11").await, StatusCode::BAD_REQUEST).await;
    assert_eq!(app.get_json("/api/v1/suggest?q=").await["items"], serde_json::json!([]));
}

#[tokio::test]
async fn search_sorts_filters_and_counts_facets_together() {
    let app = spawn_seeded().await;
    let page = app
        .get_json(
            "/api/v1/search?q=&genre=western,war&genre_all=drama&min_popularity=80&sort=imdb_score&limit=100",
        )
        .await;
    let items = page["items"].as_array().unwrap();
    assert!(!items.is_empty());
    let mut last = f64::MAX;
    for movie in items {
        let genres: Vec<&str> =
            movie["genres"].as_array().unwrap().iter().map(|g| g.as_str().unwrap()).collect();
        assert!(
            genres.contains(&"Drama") && (genres.contains(&"Western") || genres.contains(&"War")),
            "{genres:?}"
        );
        assert!(movie["popularity"].as_f64().unwrap() >= 80.0);
        let score = movie["imdb_score"].as_f64().unwrap();
        assert!(score <= last, "sorted by imdb_score, highest first");
        last = score;
    }
    let drama = page["facets"]["genres"].as_array().unwrap().iter().find(|g| g["genre"] == "Drama").unwrap();
    assert_eq!(drama["movies"].as_u64().unwrap() as usize, items.len());
    assert_eq!(page["total"].as_u64().unwrap() as usize, items.len());

    let by_name = app.get_json("/api/v1/search?q=star&sort=name&order=asc&facets=false").await;
    assert!(by_name.get("facets").is_none());
    let names = names(&by_name);
    assert!(names.windows(2).all(|w| w[0].to_lowercase() <= w[1].to_lowercase()), "{names:?}");
    for bad in [
        "sort=rating",
        "min_popularity=101",
        "min_popularity=50&max_popularity=10",
        "facets=maybe",
        "genre=%00",
    ] {
        assert_problem(app.get(&format!("/api/v1/search?q=star&{bad}")).await, StatusCode::BAD_REQUEST).await;
    }
}

#[tokio::test]
async fn search_cursors_page_through_every_match_exactly_once_in_every_sort() {
    let app = spawn_seeded().await;
    for sort in ["relevance", "popularity", "imdb_score", "name"] {
        for order in ["asc", "desc"] {
            let first =
                app.get_json(&format!("/api/v1/search?q=the&sort={sort}&order={order}&limit=7")).await;
            let total = first["total"].as_u64().unwrap() as usize;
            let (mut seen, mut page) = (HashSet::new(), first);
            let mut pages = 0;
            loop {
                for movie in page["items"].as_array().unwrap() {
                    assert!(
                        seen.insert(movie["id"].as_str().unwrap().to_owned()),
                        "{sort} {order}: a repeat"
                    );
                }
                pages += 1;
                match page["next_cursor"].as_str() {
                    Some(cursor) => {
                        page = app
                            .get_json(&format!(
                                "/api/v1/search?q=the&sort={sort}&order={order}&limit=7&cursor={cursor}"
                            ))
                            .await
                    }
                    None => break,
                }
            }
            assert_eq!(seen.len(), total, "{sort} {order}: every match once");
            assert_eq!(pages, total.div_ceil(7));
        }
    }
    assert_problem(app.get("/api/v1/search?q=the&cursor=bm9wZQ").await, StatusCode::BAD_REQUEST).await;
}

#[tokio::test]
async fn a_search_cursor_made_for_one_query_sort_or_filter_is_refused_for_another() {
    let app = spawn_seeded().await;
    let first = app.get_json("/api/v1/search?q=the&sort=popularity&limit=3").await;
    let cursor = first["next_cursor"].as_str().unwrap();
    let next = app.get_json(&format!("/api/v1/search?q=the&sort=popularity&limit=5&cursor={cursor}")).await;
    assert_eq!(next["items"].as_array().unwrap().len(), 5, "another page size keeps the cursor");
    for other in [
        "q=the&sort=name",
        "q=the&sort=popularity&order=asc",
        "q=star&sort=popularity",
        "q=the&sort=popularity&genre=drama",
        "q=the&sort=popularity&min_score=8",
    ] {
        let body = assert_problem(
            app.get(&format!("/api/v1/search?{other}&cursor={cursor}")).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert!(body["detail"].as_str().unwrap().contains("another query"), "{other}: {body}");
    }
}

#[tokio::test]
async fn a_repeated_search_is_answered_again_after_the_catalogue_changes() {
    let app = spawn_seeded().await;
    let token = app.admin_token().await;
    let search = |q: &'static str| {
        let app = &app;
        async move { app.get_json(&format!("/api/v1/search?q={q}")).await["total"].as_u64().unwrap() }
    };
    assert_eq!(search("zebra").await, 0);
    assert_eq!(search("zebra").await, 0, "the same search again (from the cache)");
    let response = app.create(&token, &movie("Zebra Crossing")).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    app.wait_for(position(&response)).await;
    assert_eq!(search("zebra").await, 1, "a cached answer never outlives a change to the index");
}

#[tokio::test]
async fn a_repeated_search_shows_a_changed_movie_as_it_is_now() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let created = app.created(&token, &movie("Zebra Crossing")).await;
    let search = || async {
        let response = app.get("/api/v1/search?q=zebra").await;
        assert_eq!(response.status(), StatusCode::OK);
        let at: i64 = response.headers()["movies-projected-position"].to_str().unwrap().parse().unwrap();
        let page: Value = response.json().await.unwrap();
        (at, page["items"][0]["imdb_score"].as_f64())
    };
    let (before, score) = search().await;
    assert_eq!(search().await, (before, score), "the same search again (kept whole)");
    // A change that leaves the index's matches as they were: only the document differs.
    let patch = app.patch(&token, created["id"].as_str().unwrap(), 1, r#"{"imdb_score": 9.9}"#).await;
    assert_eq!(patch.status(), StatusCode::OK);
    app.wait_for(position(&patch)).await;
    let (after, score) = search().await;
    assert!(after >= position(&patch), "the answer says it is as of the change or later");
    assert_eq!(score, Some(9.9), "a kept response never outlives a change to its documents");
}
