//! Command-to-visible latency: how long after a create is accepted a reader sees the movie,
//! through the embedded server's in-process path (the baseline) and through the distributed
//! deployment (command-api → Postgres → relay → Kafka → projector → read store and Redis →
//! query-api), each role its own process of the release binary. Run by `bench/visibility.sh`,
//! which starts Postgres, Redis and the broker.
//!
//! Usage: visibility_bench COUNT DIR   (needs MOVIES_TEST_POSTGRES, MOVIES_TEST_REDIS, MOVIES_TEST_KAFKA)

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use movies::generate::BenchArgs;
use serde_json::{json, Value};
use tokio::process::{Child, Command};

const PASSWORD: &str = "visibility-bench";

fn binary() -> PathBuf {
    let exe = std::env::current_exe().expect("own path");
    // target/release/examples/visibility_bench -> target/release/movies
    exe.parent().and_then(Path::parent).expect("target dir").join("movies")
}

fn port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run bench/visibility.sh"))
}

struct Roles {
    children: Vec<Child>,
    dir: PathBuf,
    vars: Vec<(String, String)>,
}

impl Roles {
    fn spawn(&mut self, name: &str, args: &[&str]) {
        let log = std::fs::File::create(self.dir.join(format!("{name}.log"))).unwrap();
        let child = Command::new(binary())
            .args(args)
            .envs(self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("MOVIES_HEALTH_LISTEN", format!("127.0.0.1:{}", port()))
            .env("RUST_LOG", "warn")
            // Polling back to back is far over a reader's limit.
            .env("MOVIES_RATE_ANONYMOUS", "0")
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        self.children.push(child);
    }
}

async fn wait_healthy(http: &reqwest::Client, base: &str) {
    for _ in 0..600 {
        if http.get(format!("{base}/health")).send().await.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{base} never became healthy");
}

async fn token(http: &reqwest::Client, command: &str) -> String {
    let response = http
        .post(format!("{command}/api/v1/auth/token"))
        .json(&json!({ "username": "admin", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    response.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned()
}

/// Creates `count` movies one at a time; for each, the time from sending the create until a
/// read of the movie on `query` answers 200 (polled back to back).
async fn measure(http: &reqwest::Client, command: &str, query: &str, count: usize) -> Vec<Duration> {
    let token = token(http, command).await;
    let mut latencies = Vec::with_capacity(count);
    for n in 0..count {
        let body = json!({ "name": format!("Visible {n}"), "director": "Bench", "popularity": 1.0, "imdb_score": 5.0, "genres": ["Drama"] });
        let started = Instant::now();
        let response = http
            .post(format!("{command}/api/v1/movies"))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let id = response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
        let url = format!("{query}/api/v1/movies/{id}");
        loop {
            if http.get(&url).send().await.unwrap().status() == 200 {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "movie {id} never became visible");
        }
        latencies.push(started.elapsed());
    }
    latencies
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1].as_secs_f64() * 1000.0
}

fn report(label: &str, mut latencies: Vec<Duration>) -> (f64, f64) {
    latencies.sort();
    let (p50, p99) = (percentile(&latencies, 0.50), percentile(&latencies, 0.99));
    let max = latencies.last().unwrap().as_secs_f64() * 1000.0;
    println!("| {label} | {} | {p50:.1} | {p99:.1} | {max:.1} |", latencies.len());
    (p50, p99)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let BenchArgs { count, dir, .. } = BenchArgs::from_command_line();
    let http = reqwest::Client::new();
    println!("| path | creates | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|");

    // Baseline: the embedded server, in-process notification from append to projector.
    let embedded = {
        let mut roles = Roles {
            children: Vec::new(),
            dir: dir.clone(),
            vars: vec![("MOVIES_ADMIN_PASSWORD".into(), PASSWORD.into())],
        };
        let listen = format!("127.0.0.1:{}", port());
        let data = dir.join("embedded");
        roles.spawn("embedded", &["--data-dir", data.to_str().unwrap(), "--no-seed", "--listen", &listen]);
        let base = format!("http://{listen}");
        wait_healthy(&http, &base).await;
        let latencies = measure(&http, &base, &base, count).await;
        drop(roles);
        report("embedded (SQLite, in-process)", latencies)
    };

    // The distributed deployment: every role its own process.
    let admin = env("MOVIES_TEST_POSTGRES");
    let name = format!("visibility_{}", std::process::id());
    let mut connection = <sqlx::PgConnection as sqlx::Connection>::connect(&admin).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut connection).await.unwrap();
    let database_url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    let keys = dir.join("keys");
    let status = std::process::Command::new(binary())
        .args(["keygen", "--dir", keys.to_str().unwrap()])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let vars = [
        ("DATABASE_URL", database_url.as_str()),
        ("KAFKA_BROKERS", &env("MOVIES_TEST_KAFKA")),
        ("MOVIES_KAFKA_TOPIC", &format!("movies.visibility.{}", std::process::id())),
        ("REDIS_URL", &env("MOVIES_TEST_REDIS")),
        ("MOVIES_REDIS_NAMESPACE", &format!("visibility-{}", std::process::id())),
        ("MOVIES_JWT_PRIVATE_KEY", keys.join(movies_web::PRIVATE_KEY_FILE).to_str().unwrap()),
        ("MOVIES_JWT_PUBLIC_KEY", keys.join(movies_web::PUBLIC_KEY_FILE).to_str().unwrap()),
        ("MOVIES_ADMIN_PASSWORD", PASSWORD),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()));
    let mut roles = Roles { children: Vec::new(), dir: dir.clone(), vars: vars.to_vec() };
    let (command_listen, query_listen) = (format!("127.0.0.1:{}", port()), format!("127.0.0.1:{}", port()));
    let index = dir.join("index");
    roles.spawn("command-api", &["command-api", "--listen", &command_listen]);
    roles.spawn("relay", &["relay"]);
    roles.spawn("projector", &["projector"]);
    roles.spawn("search", &["projector", "--search-only", "--index-dir", index.to_str().unwrap()]);
    roles.spawn(
        "query-api",
        &["query-api", "--listen", &query_listen, "--index-dir", index.to_str().unwrap()],
    );
    let (command, query) = (format!("http://{command_listen}"), format!("http://{query_listen}"));
    wait_healthy(&http, &command).await;
    wait_healthy(&http, &query).await;
    // Warm-up: the consumer group's first assignment is not what is measured.
    measure(&http, &command, &query, 5).await;
    let distributed =
        report("distributed (Postgres, Kafka, Redis)", measure(&http, &command, &query, count).await);
    drop(roles);
    println!();
    println!(
        "distributed / embedded: p50 x{:.1}, p99 x{:.1}",
        distributed.0 / embedded.0.max(1e-9),
        distributed.1 / embedded.1.max(1e-9)
    );
}
