//! The `movies` binary itself: the all-in-one server as `cargo run` starts it, and the operator
//! commands.

use std::collections::HashSet;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;

#[path = "support/process.rs"]
mod process;
use process::{movies, run, serve};

async fn interrupt(mut child: Child) {
    let pid = child.id().unwrap().to_string();
    let status = std::process::Command::new("kill").args(["-INT", &pid]).status().unwrap();
    assert!(status.success());
    let exit =
        tokio::time::timeout(Duration::from_secs(30), child.wait()).await.expect("stops on Ctrl-C").unwrap();
    assert!(exit.success(), "a graceful stop exits 0, not {exit:?}");
}

async fn distinct_ids(base: &str) -> usize {
    let http = reqwest::Client::new();
    let (mut ids, mut url) = (HashSet::new(), format!("{base}/api/v1/movies?limit=100"));
    loop {
        let page: Value = http.get(&url).send().await.unwrap().json().await.unwrap();
        ids.extend(page["items"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(cursor) => url = format!("{base}/api/v1/movies?limit=100&cursor={cursor}"),
            None => return ids.len(),
        }
    }
}

#[tokio::test]
async fn the_server_seeds_on_first_start_prints_its_urls_and_keeps_data_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let (server, base, printed) = serve(dir.path()).await;
    assert!(printed.iter().any(|l| l.contains("248 movies created")), "{printed:?}");
    assert!(printed.iter().any(|l| l.contains(&format!("{base}/docs/"))), "{printed:?}");
    assert_eq!(distinct_ids(&base).await, 248);
    let star: Value =
        reqwest::get(format!("{base}/api/movies/?search=star")).await.unwrap().json().await.unwrap();
    let names: Vec<&str> = star.as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"Star Wars") && names.contains(&"Star Trek"), "{names:?}");
    interrupt(server).await;

    let (server, base, printed) = serve(dir.path()).await;
    assert!(!printed.iter().any(|l| l.contains("Seeded")), "a restart ingests nothing: {printed:?}");
    assert_eq!(distinct_ids(&base).await, 248);
    interrupt(server).await;
}

#[tokio::test]
async fn a_generated_admin_password_is_printed_once_and_works() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(movies(dir.path())
        .args(["--no-seed", "users", "add", "probe", "--role", "user"])
        .env("MOVIES_NEW_PASSWORD", "pw"))
    .await;
    assert!(output.contains("created user account"), "{output}");
    let mut child = movies(dir.path())
        .args(["--listen", "127.0.0.1:0", "--no-seed"])
        .env_remove("MOVIES_ADMIN_PASSWORD")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut password, mut base) = (None, None);
    while let Some(line) = lines.next_line().await.unwrap() {
        if let Some(p) = line.strip_prefix("Created the account `admin` with the password: ") {
            password = Some(p.to_owned());
        }
        if let Some(rest) = line.strip_prefix("movies is serving on ") {
            base = Some(rest.split_whitespace().next().unwrap().to_owned());
            break;
        }
    }
    let (password, base) = (password.expect("the password is printed"), base.unwrap());
    let response = reqwest::Client::new()
        .post(format!("{base}/api/v1/auth/token"))
        .json(&serde_json::json!({ "username": "admin", "password": password }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    interrupt(child).await;
    let (server, _, printed) = serve(dir.path()).await;
    assert!(!printed.iter().any(|l| l.contains("password")), "printed only once: {printed:?}");
    interrupt(server).await;
}

#[tokio::test]
async fn ingest_users_and_token_commands_work_together() {
    let dir = tempfile::tempdir().unwrap();
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/imdb.json");
    let first = run(movies(dir.path()).arg("ingest").arg(&data)).await;
    assert_eq!(first.trim(), "created 248, updated 0, unchanged 0, rejected 0");
    let again = run(movies(dir.path()).arg("ingest").arg(&data)).await;
    assert_eq!(again.trim(), "created 0, updated 0, unchanged 248, rejected 0");

    let added = run(movies(dir.path())
        .args(["users", "add", "carol", "--role", "admin"])
        .env_remove("MOVIES_NEW_PASSWORD"))
    .await;
    assert!(added.contains("created admin account \"carol\"") && added.contains("password: "), "{added}");
    let duplicate = movies(dir.path()).args(["users", "add", "carol"]).output().await.unwrap();
    assert!(!duplicate.status.success());
    assert!(String::from_utf8_lossy(&duplicate.stderr).contains("already exists"));
    let token = run(movies(dir.path()).args(["token", "--user", "carol"])).await;
    let missing = movies(dir.path()).args(["token", "--user", "nobody"]).output().await.unwrap();
    assert!(!missing.status.success());

    let (server, base, _) = serve(dir.path()).await;
    let body = serde_json::json!({ "name": "Heat", "director": "Michael Mann", "popularity": 80, "imdb_score": 8.3, "genres": ["Crime"] });
    let response = reqwest::Client::new()
        .post(format!("{base}/api/v1/movies"))
        .bearer_auth(token.trim())
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    interrupt(server).await;
}

#[tokio::test]
async fn a_malformed_ingest_file_fails_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.json");
    std::fs::write(&file, "[{\"name\": ").unwrap();
    let output = movies(dir.path()).arg("ingest").arg(&file).output().await.unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("not a JSON array"));
    let again = run(movies(dir.path())
        .arg("ingest")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("data/imdb.json")))
    .await;
    assert!(again.starts_with("created 248"), "{again}");
}

#[tokio::test]
async fn audit_prints_the_log_and_a_movies_history() {
    let dir = tempfile::tempdir().unwrap();
    run(movies(dir.path()).arg("ingest").arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("data/imdb.json")))
        .await;
    let table = run(movies(dir.path()).args(["audit", "--actor", "system:ingest", "--limit", "3"])).await;
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "a header and three events: {table}");
    assert!(
        lines[0].contains("position")
            && lines[1].contains("movie.created")
            && lines[1].contains("system:ingest")
    );

    let json =
        run(movies(dir.path()).args(["audit", "--type", "movie.created", "--limit", "1", "--json"])).await;
    let first: Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    let id = first["movie_id"].as_str().unwrap().to_owned();
    let history = run(movies(dir.path()).args(["audit", &id])).await;
    assert_eq!(history.lines().count(), 2);
    assert!(history.contains("name: null -> "), "{history}");
    assert!(run(movies(dir.path()).args(["audit", "--actor", "nobody"])).await.lines().count() == 1);
    let unknown =
        movies(dir.path()).args(["audit", &uuid::Uuid::now_v7().to_string()]).output().await.unwrap();
    assert!(!unknown.status.success());
}

#[tokio::test]
async fn verify_finds_no_drift_in_healthy_projections_and_names_every_difference_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _, _) = serve(dir.path()).await;
    // While the server runs (and holds the index writer), verify reads beside it.
    let clean = run(movies(dir.path()).arg("verify")).await;
    assert!(clean.trim().ends_with("folded 248 events into 248 movies; projections: no drift"), "{clean}");
    interrupt(server).await;

    let file = movies_store::open_sqlite(&dir.path().join("read.db")).await.unwrap();
    sqlx::query("UPDATE movies SET name = 'Tampered' WHERE name = 'Casablanca'")
        .execute(&file.writer)
        .await
        .unwrap();
    sqlx::query("DELETE FROM movies WHERE name = 'Psycho'").execute(&file.writer).await.unwrap();
    file.writer.close().await;
    let drift = movies(dir.path()).arg("verify").output().await.unwrap();
    assert_eq!(drift.status.code(), Some(1));
    let report = String::from_utf8(drift.stdout).unwrap();
    assert!(report.contains("read store: movie") && report.contains("\"Tampered\""), "{report}");
    assert!(report.contains("is missing") && report.contains("\"Psycho\""), "{report}");
    assert!(report.trim().ends_with("2 differences"), "{report}");
}

/// `movies verify` beside a server that is being written to compares each projection with the
/// log as of what it may have applied: writes not projected yet are lag, not drift.
#[tokio::test]
async fn verify_beside_a_server_taking_writes_reports_no_drift() {
    let dir = tempfile::tempdir().unwrap();
    let (server, base, _) = serve(dir.path()).await;
    let http = reqwest::Client::new();
    let token: Value = http
        .post(format!("{base}/api/v1/auth/token"))
        .json(&serde_json::json!({"username": "admin", "password": "cli-test-admin"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap().to_owned();
    let writing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let writer = tokio::spawn({
        let (writing, http, base) = (writing.clone(), http.clone(), base.clone());
        async move {
            let mut written = 0;
            while writing.load(std::sync::atomic::Ordering::SeqCst) {
                let body = serde_json::json!({"name": format!("Lagging {written}"), "director": "Someone",
                    "popularity": 50, "imdb_score": 5, "genres": ["Drama", format!("Genre {}", written % 3)]});
                let created: Value = http
                    .post(format!("{base}/api/v1/movies"))
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                let patched = http
                    .patch(format!("{base}/api/v1/movies/{}", created["id"].as_str().unwrap()))
                    .bearer_auth(&token)
                    .header("content-type", "application/merge-patch+json")
                    .body(r#"{"genres": ["Comedy"], "imdb_score": 6}"#)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(patched.status(), 200);
                written += 1;
            }
            written
        }
    });
    let mut failures = Vec::new();
    for _ in 0..6 {
        let output = movies(dir.path()).arg("verify").output().await.unwrap();
        if !output.status.success() {
            failures.push(String::from_utf8_lossy(&output.stdout).into_owned());
        }
    }
    writing.store(false, std::sync::atomic::Ordering::SeqCst);
    let written = writer.await.unwrap();
    assert!(written > 0, "the writer wrote while verify ran");
    assert!(failures.is_empty(), "{} of 6 runs reported drift: {failures:#?}", failures.len());
    interrupt(server).await;
}

#[tokio::test]
async fn json_logs_carry_each_requests_id() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = movies(dir.path())
        .args(["--listen", "127.0.0.1:0", "--no-seed", "--log-format", "json"])
        .env("MOVIES_ADMIN_PASSWORD", "cli-test-admin")
        .env("RUST_LOG", "warn,movies=info,movies_web=debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let base = loop {
        let line = out.next_line().await.unwrap().expect("the server prints its address");
        if let Some(rest) = line.strip_prefix("movies is serving on ") {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = out.next_line().await {} });
    let response = reqwest::Client::new()
        .get(format!("{base}/api/v1/genres"))
        .header("x-request-id", "log-check-42")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "log-check-42");
    let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = err.next_line().await.unwrap() {
            if line.contains("log-check-42") {
                return line;
            }
        }
        panic!("the server stopped without logging the request");
    })
    .await
    .expect("a log line names the request id");
    let parsed: Value = serde_json::from_str(&line).expect("the line is JSON");
    assert_eq!(parsed["request_id"], "log-check-42", "{line}");
    assert_eq!(parsed["fields"]["path"], "/api/v1/genres", "{line}");
}

#[tokio::test]
async fn secrets_never_reach_the_logs_and_the_files_holding_them_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log_path = dir.path().join("server.log");
    let password = "correct-horse-battery-staple-42";
    let mut command = movies(&data);
    command
        .env("RUST_LOG", "debug")
        .env("MOVIES_ADMIN_PASSWORD", password)
        .stderr(std::fs::File::create(&log_path).unwrap());
    let (child, base, printed) = process::serve_with(command).await;
    let http = reqwest::Client::new();
    let login = |password: &str| {
        http.post(format!("{base}/api/v1/auth/token"))
            .json(&serde_json::json!({ "username": "admin", "password": password }))
            .send()
    };
    let wrong = login("not-the-password").await.unwrap();
    assert_eq!(wrong.status(), 401);
    let body: Value = login(password).await.unwrap().json().await.unwrap();
    let token = body["access_token"].as_str().unwrap().to_owned();
    let created = http
        .post(format!("{base}/api/v1/movies"))
        .bearer_auth(&token)
        .json(&serde_json::json!({ "name": "Logged", "director": "D", "popularity": 1, "imdb_score": 1, "genres": ["Drama"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let forged =
        http.get(format!("{base}/api/v1/genres")).bearer_auth(format!("{token}x")).send().await.unwrap();
    assert_eq!(forged.status(), 401);
    interrupt(child).await;

    let logs = std::fs::read_to_string(&log_path).unwrap();
    assert!(logs.contains("request finished"), "debug logs were written: {logs:.400}");
    let printed = printed.join("\n");
    for (what, secret) in [("password", password), ("token", token.as_str()), ("hash", "$argon2")] {
        assert!(!logs.contains(secret), "the {what} is in the logs");
        assert!(!printed.contains(secret), "the {what} was printed");
    }
    let token_signature = token.rsplit('.').next().unwrap();
    assert!(!logs.contains(token_signature), "part of the token is in the logs");

    for entry in std::fs::read_dir(&data).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.contains(".db") || name == movies_web::PRIVATE_KEY_FILE {
            let mode = entry.metadata().unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{name} is readable by others: {mode:o}");
        }
    }
}

/// An operator command pointed at a directory that is not there says so, and creates nothing.
#[tokio::test]
async fn a_command_without_a_catalogue_says_so_and_creates_none() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("not-here");
    for args in [&["audit"][..], &["users", "list"], &["verify"], &["token", "--user", "admin"]] {
        let output = movies(&missing).args(args).output().await.unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} succeeded");
        assert!(stderr.contains("no catalogue here") && stderr.contains("not-here"), "{args:?}: {stderr}");
        assert!(!missing.exists(), "{args:?} created the data directory");
    }
}

/// `movies audit | head`: a reader that stops early ends the output, without a panic.
#[tokio::test]
async fn audit_into_a_reader_that_went_away_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    run(movies(dir.path()).arg("ingest").arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("data/imdb.json")))
        .await;
    let mut child = movies(dir.path())
        .args(["audit", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reading end closes before anything is written: every write meets a broken pipe.
    drop(child.stdout.take());
    let output = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success() && !stderr.contains("panicked"), "{:?}: {stderr}", output.status);
}

/// `keygen --help` names the files keygen writes, and keygen writes exactly those.
#[tokio::test]
async fn keygen_help_names_the_files_it_writes() {
    let dir = tempfile::tempdir().unwrap();
    let help = run(movies(dir.path()).args(["keygen", "--help"])).await;
    run(movies(dir.path()).args(["keygen", "--dir"]).arg(dir.path().join("keys"))).await;
    let mut written: Vec<String> = std::fs::read_dir(dir.path().join("keys"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    written.sort();
    assert_eq!(written, [movies_web::PRIVATE_KEY_FILE, movies_web::PUBLIC_KEY_FILE]);
    for file in &written {
        assert!(help.contains(file.as_str()), "{file} is not in:\n{help}");
    }
}

/// Each command's `--help` lists the flags it uses: the catalogue's flags (data dir, database,
/// log format) are not offered where nothing reads them, and are where something does.
#[tokio::test]
async fn a_commands_help_lists_only_the_flags_it_uses() {
    let dir = tempfile::tempdir().unwrap();
    let catalogue_flags = ["--data-dir", "--database-url", "--log-format"];
    for command in ["keygen", "generate"] {
        let help = run(movies(dir.path()).args([command, "--help"])).await;
        for flag in catalogue_flags {
            assert!(!help.contains(flag), "`{command} --help` offers {flag}:\n{help}");
        }
    }
    for command in ["ingest", "verify", "audit", "projector"] {
        let help = run(movies(dir.path()).args([command, "--help"])).await;
        for flag in catalogue_flags {
            assert!(help.contains(flag), "`{command} --help` lacks {flag}:\n{help}");
        }
    }
}
