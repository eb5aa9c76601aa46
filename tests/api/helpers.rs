//! `spawn_app()`: the all-in-one server on 127.0.0.1:0 with its own data directory, and typed
//! helpers to drive it over HTTP.

use std::path::PathBuf;
use std::time::Duration;

use movies::{Seed, Settings};
use movies_events::Role;
use movies_store::Account;
use movies_web::PasswordHasher;
use reqwest::{Client, Response, StatusCode};
use serde_json::{json, Value};
use tokio::sync::watch;

pub const ADMIN_PASSWORD: &str = "admin-password-for-tests";

pub struct TestApp {
    pub base: String,
    pub http: Client,
    pub settings: Settings,
    stop: watch::Sender<bool>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: Option<tempfile::TempDir>,
}

pub fn settings(data_dir: PathBuf, seed: Seed) -> Settings {
    Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir,
        database_url: None,
        admin_password: Some(ADMIN_PASSWORD.into()),
        seed,
        hasher: PasswordHasher::cheap_for_tests(),
        rate: movies_web::RateLimits::unlimited(),
        http: movies::HttpLimits::default(),
    }
}

/// An empty catalogue.
pub async fn spawn_app() -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let mut app = spawn_with(settings(dir.path().to_path_buf(), Seed::Nothing)).await;
    app._dir = Some(dir);
    app
}

/// A catalogue seeded with the bundled data/imdb.json (248 movies).
pub async fn spawn_seeded() -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let mut app = spawn_with(settings(dir.path().to_path_buf(), Seed::Bundled)).await;
    app._dir = Some(dir);
    app
}

/// Starts the server and waits until it is ready (its projections have caught up with the log),
/// as a load balancer would before sending it readers.
pub async fn spawn_with(settings: Settings) -> TestApp {
    let app = start(settings).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while app.get("/ready").await.status() != StatusCode::OK {
        assert!(tokio::time::Instant::now() < deadline, "the server never became ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app
}

/// Starts the server and returns as soon as it listens, ready or not.
pub async fn start(settings: Settings) -> TestApp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, shutdown) = watch::channel(false);
    let embedded = movies::build(&settings).await.expect("the app builds");
    let server = tokio::spawn(movies::run(listener, embedded, shutdown));
    TestApp { base, http: Client::new(), settings, stop, server: Some(server), _dir: None }
}

impl TestApp {
    /// Stops the server gracefully and waits for it, keeping the data directory.
    pub async fn stop(mut self) -> Option<tempfile::TempDir> {
        self.stop.send(true).unwrap();
        self.server.take().unwrap().await.unwrap().unwrap();
        self._dir.take()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn token(&self, username: &str, password: &str) -> Response {
        self.http
            .post(self.url("/api/v1/auth/token"))
            .json(&json!({ "username": username, "password": password }))
            .send()
            .await
            .unwrap()
    }

    pub async fn admin_token(&self) -> String {
        let response = self.token("admin", ADMIN_PASSWORD).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned()
    }

    /// Creates a `user` account directly in the store and signs it in.
    pub async fn user_token(&self) -> String {
        let write = movies::open_write_side(&self.settings).await.unwrap();
        let account = Account {
            username: "reader".into(),
            password_hash: self.settings.hasher.hash("reader-password"),
            role: Role::User,
            created_at: chrono::Utc::now(),
            disabled: false,
        };
        let _ = write.accounts.create(&account).await;
        let response = self.token("reader", "reader-password").await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned()
    }

    pub async fn create(&self, token: &str, body: &Value) -> Response {
        self.http.post(self.url("/api/v1/movies")).bearer_auth(token).json(body).send().await.unwrap()
    }

    /// A merge patch of movie `id` at `version` (its `If-Match`).
    pub async fn patch(&self, token: &str, id: &str, version: i64, patch: &str) -> Response {
        self.http
            .patch(self.url(&format!("/api/v1/movies/{id}")))
            .bearer_auth(token)
            .header("if-match", format!("\"{version}\""))
            .header("content-type", "application/merge-patch+json")
            .body(patch.to_owned())
            .send()
            .await
            .unwrap()
    }

    /// Creates a movie and waits until the query side shows it; returns the created body.
    pub async fn created(&self, token: &str, body: &Value) -> Value {
        let response = self.create(token, body).await;
        assert_eq!(response.status(), StatusCode::CREATED, "{:?}", response.text().await);
        let position = position(&response);
        let movie: Value = response.json().await.unwrap();
        self.wait_for(position).await;
        movie
    }

    pub async fn get(&self, path: &str) -> Response {
        self.http.get(self.url(path)).send().await.unwrap()
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let response = self.get(path).await;
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        response.json().await.unwrap()
    }

    /// Waits until the projections have applied `position` (bounded by the API's own wait).
    pub async fn wait_for(&self, position: i64) {
        for _ in 0..10 {
            let health = self.get_json("/health").await;
            if health["projected_position"].as_i64().unwrap() >= position {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the projections never reached position {position}");
    }

    /// Every movie the query API lists, following `next_cursor` to the end.
    pub async fn all_movies(&self) -> Vec<Value> {
        let mut movies = Vec::new();
        let mut path = "/api/v1/movies?limit=100".to_owned();
        loop {
            let page = self.get_json(&path).await;
            movies.extend(page["items"].as_array().unwrap().iter().cloned());
            match page["next_cursor"].as_str() {
                Some(cursor) => path = format!("/api/v1/movies?limit=100&cursor={cursor}"),
                None => return movies,
            }
        }
    }

    /// What is stored, as the outside world can see it: the log's head and every movie.
    pub async fn snapshot(&self) -> (i64, Vec<Value>) {
        let head = self.get_json("/health").await["log_head"].as_i64().unwrap();
        (head, self.all_movies().await)
    }
}

pub fn position(response: &Response) -> i64 {
    response.headers()["movies-position"].to_str().unwrap().parse().unwrap()
}

pub fn etag(response: &Response) -> String {
    response.headers()["etag"].to_str().unwrap().to_owned()
}

pub fn movie(name: &str) -> Value {
    json!({
        "name": name,
        "director": "Ridley Scott",
        "popularity": 85.0,
        "imdb_score": 8.5,
        "genres": ["Sci-Fi", "Horror"],
    })
}

/// Asserts an RFC 9457 problem response with `status`, and returns its body.
pub async fn assert_problem(response: Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert_eq!(content_type, "application/problem+json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status.as_u16());
    assert!(body["type"].as_str().unwrap().starts_with("urn:movies:problem:"));
    assert!(body["title"].is_string());
    body
}
