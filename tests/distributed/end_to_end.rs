//! Writes through the command API reach every query replica through the relay, Kafka and the
//! projectors; crashes of the relay and projectors lose and repeat nothing.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{eventually, Cluster};

#[tokio::test]
async fn creates_updates_and_deletes_become_visible_in_two_query_replicas() {
    let mut cluster = Cluster::new().await;
    let (command, replicas) = cluster.full().await;
    let token = cluster.admin_token(&command).await;

    let id = cluster.create(&command, &token, "Distributed Dreams").await;
    for replica in &replicas {
        cluster.visible(replica, &id, Some("Distributed Dreams")).await;
        // Search comes from the replica's own index.
        let url = format!("{replica}/api/v1/search?q=distributed");
        eventually(Duration::from_secs(30), "search to find the movie", || async {
            let (status, body) = cluster.get_json(&url).await;
            (status == 200
                && body["items"].as_array().is_some_and(|items| items.iter().any(|i| i["id"] == id.as_str())))
            .then_some(())
        })
        .await;
    }

    // Both replicas now hold the movie in their caches; the update must replace it there.
    let response = cluster
        .http
        .patch(format!("{command}/api/v1/movies/{id}"))
        .bearer_auth(&token)
        .json(&json!({ "name": "Distributed Dreams II" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    for replica in &replicas {
        cluster.visible(replica, &id, Some("Distributed Dreams II")).await;
        let list = format!("{replica}/api/v1/movies?limit=100");
        eventually(Duration::from_secs(30), "the list page to show the new name", || async {
            let (_, body) = cluster.get_json(&list).await;
            body["items"].as_array()?.iter().any(|m| m["name"] == "Distributed Dreams II").then_some(())
        })
        .await;
    }

    let response = cluster
        .http
        .delete(format!("{command}/api/v1/movies/{id}"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    for replica in &replicas {
        cluster.visible(replica, &id, None).await;
    }

    // Read-your-writes across processes: a read asking for the write's position sees it.
    let response = cluster
        .http
        .post(format!("{command}/api/v1/movies"))
        .bearer_auth(&token)
        .json(&json!({ "name": "Right Away", "director": "Dist Rector", "popularity": 1.0, "imdb_score": 5.0, "genres": ["Drama"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let position = response.headers()["movies-position"].to_str().unwrap().to_owned();
    let created: Value = response.json().await.unwrap();
    let (status, body) = cluster
        .get_json(&format!(
            "{}/api/v1/movies/{}?min_position={position}",
            replicas[0],
            created["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!((status, body["name"].as_str()), (200, Some("Right Away")));

    // Search and suggest read the replica's own index, fed apart from the read store: asked
    // for a write's position, they wait for that index too.
    for n in 0..10 {
        let name = format!("Immediately{n}");
        let response = cluster
            .http
            .post(format!("{command}/api/v1/movies"))
            .bearer_auth(&token)
            .json(&json!({ "name": name, "director": "Dist Rector", "popularity": 1.0, "imdb_score": 5.0, "genres": ["Drama"] }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let position = response.headers()["movies-position"].to_str().unwrap().to_owned();
        let word = name.to_lowercase();
        let replica = &replicas[n % 2];
        let (status, found) =
            cluster.get_json(&format!("{replica}/api/v1/search?q={word}&min_position={position}")).await;
        assert_eq!(
            (status, found["items"][0]["name"].as_str()),
            (200, Some(name.as_str())),
            "search {n}: {found}"
        );
        let (status, suggested) =
            cluster.get_json(&format!("{replica}/api/v1/suggest?q={word}&min_position={position}")).await;
        assert_eq!(
            (status, suggested["items"][0]["name"].as_str()),
            (200, Some(name.as_str())),
            "suggest {n}"
        );
    }
}

#[tokio::test]
async fn killing_the_projectors_and_the_relay_mid_stream_loses_and_repeats_nothing() {
    let mut cluster = Cluster::new().await;
    cluster.relay();
    cluster.projector(&[]);
    let index = cluster.index_dir("replica").to_str().unwrap().to_owned();
    let search = ["projector", "--search-only", "--index-dir", &index];
    cluster.spawn("search", &search, &[]);

    let data = cluster.dir.path().join("catalogue.json");
    let status = cluster
        .command(&["generate", "--count", "10000", "--seed", "7", "--out", data.to_str().unwrap()])
        .status()
        .await
        .unwrap();
    assert!(status.success());
    let mut ingest =
        cluster.command(&["ingest", data.to_str().unwrap()]).stdout(Stdio::null()).spawn().unwrap();

    // Kill -9 in the middle of the stream, once the projections are part-way.
    eventually(Duration::from_secs(120), "the projection to be part-way through", || async {
        let (head, checkpoint) = cluster.positions().await;
        (head > 3000 && checkpoint > 1000).then_some(())
    })
    .await;
    cluster.kill9("projector").await;
    cluster.kill9("relay").await;
    cluster.kill9("search").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.relay();
    cluster.projector(&[]);
    cluster.spawn("search", &search, &[]);

    assert!(ingest.wait().await.unwrap().success(), "the ingest finished");
    let (head, _) = cluster.positions().await;
    assert_eq!(head, 10_000, "every generated movie is one event");
    eventually(Duration::from_secs(180), "the read store to reach the log's head", || async {
        let (head, checkpoint) = cluster.positions().await;
        (checkpoint == head).then_some(())
    })
    .await;
    // The read store (rows and genre counts), the index and every cached document equal what
    // folding the log from scratch gives.
    let (clean, report) =
        eventually(Duration::from_secs(120), "every projection to match the log", || async {
            let (clean, report) = cluster.verify("replica").await;
            clean.then_some((clean, report))
        })
        .await;
    assert!(clean, "{report}");
    assert!(report.contains("folded 10000 events into 10000 movies; projections: no drift"), "{report}");
}

#[tokio::test]
async fn replaying_the_cache_empties_it_and_warms_it_from_the_read_store() {
    let mut cluster = Cluster::new().await;
    let (command, replicas) = cluster.full().await;
    let token = cluster.admin_token(&command).await;
    let mut ids = Vec::new();
    for name in ["Warm One", "Warm Two", "Warm Three"] {
        let id = cluster.create(&command, &token, name).await;
        cluster.visible(&replicas[0], &id, Some(name)).await;
        ids.push(id);
    }
    let redis = movies_cache::Redis::connect(&cluster.redis_url, &cluster.namespace).await.unwrap();
    let cache = movies_cache::CacheWriter::new(redis);
    // Something that is not in the log: the rebuild must drop it.
    let stray = movies_read_model::MovieDoc {
        id: uuid::Uuid::now_v7(),
        name: "Stray".into(),
        director: "Nobody".into(),
        popularity: 1.0,
        imdb_score: 1.0,
        genres: vec![],
        version: 1,
        created_at: chrono::Utc::now(),
        updated_at: chrono::Utc::now(),
    };
    assert!(cache.warm(&[stray]).await);
    let (clean, report) = cluster.verify("replica-a").await;
    assert!(!clean && report.contains("cache: movie") && report.contains("should be gone"), "{report}");

    let output = cluster
        .command(&["replay", "--projection", "cache", "--dry-run"])
        .stdout(Stdio::piped())
        .output()
        .await
        .unwrap();
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("cache: empty it"), "a plan, nothing done");
    let output =
        cluster.command(&["replay", "--projection", "cache"]).stdout(Stdio::piped()).output().await.unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "cache: rebuilt with 3 movies");
    let mut cached: Vec<String> =
        cache.documents().await.unwrap().into_iter().map(|(id, _)| id.to_string()).collect();
    cached.sort();
    ids.sort();
    assert_eq!(cached, ids);
    // The replica's search index follows on its own projector: wait for it, as the other tests do.
    let (clean, report) =
        eventually(Duration::from_secs(30), "every projection to match the log", || async {
            let (clean, report) = cluster.verify("replica-a").await;
            clean.then_some((clean, report))
        })
        .await;
    assert!(clean, "{report}");
    for replica in &replicas {
        cluster.visible(replica, &ids[0], Some("Warm One")).await;
    }

    let output = cluster
        .command(&["replay", "--projection", "cache"])
        .env_remove("REDIS_URL")
        .stderr(Stdio::piped())
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("REDIS_URL is not set"));
}

#[tokio::test]
async fn a_replay_rebuilds_the_read_store_while_the_roles_serve_and_they_follow_it() {
    let mut cluster = Cluster::new().await;
    let (command, replicas) = cluster.full().await;
    let token = cluster.admin_token(&command).await;
    let before = cluster.create(&command, &token, "Before The Replay").await;
    cluster.visible(&replicas[0], &before, Some("Before The Replay")).await;

    let output = cluster
        .command(&["replay", "--projection", "read-store"])
        .stdout(Stdio::piped())
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("the new generations are live"));

    // The generation the replay left behind is no longer written: a movie created now can only
    // be seen if the projector writes the rebuilt one and the replicas read it.
    let after = cluster.create(&command, &token, "After The Replay").await;
    for replica in &replicas {
        cluster.visible(replica, &after, Some("After The Replay")).await;
        cluster.visible(replica, &before, Some("Before The Replay")).await;
    }
    let (clean, report) =
        eventually(Duration::from_secs(30), "the rebuilt read store to match the log", || async {
            let (clean, report) = cluster.verify("replica-a").await;
            clean.then_some((clean, report))
        })
        .await;
    assert!(clean, "{report}");
}

#[tokio::test]
async fn the_relay_never_moves_its_stored_position_backwards() {
    let mut cluster = Cluster::new().await;
    let (command, replicas) = cluster.full().await;
    let token = cluster.admin_token(&command).await;
    let first = cluster.create(&command, &token, "Published First").await;
    cluster.visible(&replicas[0], &first, Some("Published First")).await;
    // Another leader (one this relay cannot see) has recorded a position further on.
    let pool = movies_store::connect_postgres(&cluster.database_url, 1).await.unwrap();
    let ahead: i64 =
        sqlx::query_scalar("UPDATE relay_positions SET position = position + 1000 RETURNING position")
            .fetch_one(&pool)
            .await
            .unwrap();
    // This relay publishes one more event and records its own, smaller, position.
    let second = cluster.create(&command, &token, "Published Second").await;
    cluster.visible(&replicas[0], &second, Some("Published Second")).await;
    let (head, _) = cluster.positions().await;
    eventually(Duration::from_secs(20), "the relay to have published the log", || async {
        let (_, report) = cluster.role_health("relay").await?;
        (report["published_position"].as_i64()? >= head).then_some(())
    })
    .await;
    let stored: i64 =
        sqlx::query_scalar("SELECT position FROM relay_positions").fetch_one(&pool).await.unwrap();
    assert_eq!(stored, ahead, "the stored position went back from {ahead} to {stored}");
    pool.close().await;
}
