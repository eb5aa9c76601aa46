//! Starts roles as child processes and talks to them over HTTP.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::{watch, Semaphore, SemaphorePermit};

pub const BIN: &str = env!("CARGO_BIN_EXE_movies");
pub const ADMIN_PASSWORD: &str = "distributed-test-admin";

/// Clusters running at once: each is about seven processes on a two-core machine.
static CLUSTERS: Semaphore = Semaphore::const_new(2);

pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run the suite with scripts/test"))
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Polls `check` until it returns `Some`, or panics after `limit` with `what`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How a process was started: its arguments, extra environment and health address.
type Spec = (Vec<String>, Vec<(String, String)>, String);

pub struct Cluster {
    /// The roles' data and logs; kept when a test fails, for reading.
    pub dir: tempfile::TempDir,
    pub database_url: String,
    pub kafka: String,
    pub topic: String,
    pub group: String,
    pub redis_url: String,
    pub namespace: String,
    /// Extra environment for the relay `full()` starts.
    pub relay_env: Vec<(String, String)>,
    /// Environment for one role only, by process name, applied last (the fault campaign points
    /// each role at services through proxies of its own).
    pub role_env: HashMap<String, Vec<(String, String)>>,
    processes: HashMap<String, Child>,
    /// How each process was started (arguments, extra environment, health address), so a killed
    /// one starts again the same way.
    specs: HashMap<String, Spec>,
    /// Each relay's and projector's `/health` base URL, by process name.
    health: HashMap<String, String>,
    pub http: reqwest::Client,
    _permit: SemaphorePermit<'static>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // A failed test's logs stay for reading.
        if std::thread::panicking() {
            self.dir.disable_cleanup(true);
        }
    }
}

impl Cluster {
    /// A fresh database, topic, group and namespace on the suite's servers, and a key pair.
    pub async fn new() -> Self {
        let permit = CLUSTERS.acquire().await.unwrap();
        let dir = tempfile::Builder::new().prefix("movies-dist-").tempdir().unwrap();
        let tag = uuid::Uuid::new_v4().simple().to_string();
        let status = std::process::Command::new(BIN)
            .args(["keygen", "--dir"])
            .arg(dir.path().join("keys"))
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        Self {
            database_url: movies_store::testing::postgres_database().await,
            kafka: env("MOVIES_TEST_KAFKA"),
            topic: format!("movies.events.{tag}"),
            group: format!("movies-projector-{tag}"),
            redis_url: env("MOVIES_TEST_REDIS"),
            namespace: format!("movies-{tag}"),
            dir,
            relay_env: Vec::new(),
            role_env: HashMap::new(),
            processes: HashMap::new(),
            specs: HashMap::new(),
            health: HashMap::new(),
            http: reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap(),
            _permit: permit,
        }
    }

    /// The binary with this cluster's configuration in its environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let keys = self.dir.path().join("keys");
        let mut command = Command::new(BIN);
        command
            .args(args)
            .env("DATABASE_URL", &self.database_url)
            .env("KAFKA_BROKERS", &self.kafka)
            .env("MOVIES_KAFKA_TOPIC", &self.topic)
            .env("MOVIES_KAFKA_GROUP", &self.group)
            .env("REDIS_URL", &self.redis_url)
            .env("MOVIES_REDIS_NAMESPACE", &self.namespace)
            .env("MOVIES_JWT_PRIVATE_KEY", keys.join(movies_web::PRIVATE_KEY_FILE))
            .env("MOVIES_JWT_PUBLIC_KEY", keys.join(movies_web::PUBLIC_KEY_FILE))
            .env("MOVIES_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("MOVIES_DATA_DIR", self.dir.path())
            .env("RUST_LOG", "warn")
            // The tests poll far faster than a reader would.
            .env("MOVIES_RATE_ANONYMOUS", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true);
        command
    }

    pub fn spawn(&mut self, name: &str, args: &[&str], extra_env: &[(&str, &str)]) {
        // Relays and projectors answer /health on a port of their own.
        let health = format!("127.0.0.1:{}", free_port());
        self.start_process(name, args, extra_env, health);
    }

    /// Starts a process killed before (`kill9`) again, with the arguments, environment and
    /// ports it had.
    pub fn respawn(&mut self, name: &str) {
        let (args, env, health) = self.specs.get(name).unwrap_or_else(|| panic!("{name} never ran")).clone();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.start_process(name, &args, &env, health);
    }

    /// SIGSTOP / SIGCONT a role: it keeps its connections and sessions but does nothing.
    pub fn pause(&self, name: &str, paused: bool) {
        let pid = self.processes.get(name).and_then(Child::id).expect("running").to_string();
        let signal = if paused { "-STOP" } else { "-CONT" };
        assert!(std::process::Command::new("kill").args([signal, &pid]).status().unwrap().success());
    }

    fn start_process(&mut self, name: &str, args: &[&str], extra_env: &[(&str, &str)], health: String) {
        let mut command = self.command(args);
        self.specs.insert(
            name.to_owned(),
            (
                args.iter().map(|a| (*a).to_owned()).collect(),
                extra_env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
                health.clone(),
            ),
        );
        command.env("MOVIES_HEALTH_LISTEN", &health);
        self.health.insert(name.to_owned(), format!("http://{health}"));
        for (key, value) in extra_env {
            command.env(key, value);
        }
        for (key, value) in self.role_env.get(name).into_iter().flatten() {
            command.env(key, value);
        }
        // Appended to: a restarted process keeps the log of its earlier lives.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{name}.log")))
            .unwrap();
        command.stderr(log);
        let child = command.spawn().unwrap();
        assert!(self.processes.insert(name.to_owned(), child).is_none(), "{name} is already running");
    }

    /// Whether a role started here has exited (on its own: `kill9` forgets the role).
    pub fn exited(&mut self, name: &str) -> bool {
        self.processes.get_mut(name).is_some_and(|child| child.try_wait().ok().flatten().is_some())
    }

    /// What a role wrote to stderr (for failure messages).
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default()
    }

    /// SIGKILL: no chance to finish anything.
    pub async fn kill9(&mut self, name: &str) {
        let mut child = self.processes.remove(name).unwrap_or_else(|| panic!("{name} is not running"));
        child.start_kill().unwrap();
        child.wait().await.unwrap();
    }

    pub async fn command_api(&mut self, extra_env: &[(&str, &str)]) -> String {
        self.serve("command-api", &["command-api"], extra_env).await
    }

    /// Starts an HTTP role on a free port and waits until it is healthy; returns its base URL. A
    /// port taken between choosing and binding it (by another test's process) is chosen again.
    async fn serve(&mut self, name: &str, args: &[&str], extra_env: &[(&str, &str)]) -> String {
        for _ in 0..5 {
            let listen = format!("127.0.0.1:{}", free_port());
            let args: Vec<&str> = args.iter().copied().chain(["--listen", listen.as_str()]).collect();
            self.spawn(name, &args, extra_env);
            let base = format!("http://{listen}");
            if self.healthy(&base, name).await {
                return base;
            }
            self.processes.remove(name);
        }
        panic!("{name} found no free port:\n{}", self.log(name))
    }

    pub fn relay(&mut self) {
        let env = self.relay_env.clone();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.spawn("relay", &["relay", "--partitions", "3"], &env);
    }

    /// A relay's or projector's `/health` report: its HTTP status and body.
    pub async fn role_health(&self, name: &str) -> Option<(u16, Value)> {
        let base = self.health.get(name)?;
        let response = self.http.get(format!("{base}/health")).send().await.ok()?;
        Some((response.status().as_u16(), response.json().await.ok()?))
    }

    pub fn projector(&mut self, extra_env: &[(&str, &str)]) {
        self.spawn("projector", &["projector"], extra_env);
    }

    pub fn index_dir(&self, replica: &str) -> PathBuf {
        self.dir.path().join(replica).join("index")
    }

    /// A query replica: its own search projector and a query-api reading that index.
    pub async fn replica(&mut self, name: &str, extra_env: &[(&str, &str)]) -> String {
        let index = self.index_dir(name).to_str().unwrap().to_owned();
        let group = format!("{}-search-{name}", self.group);
        self.spawn(
            &format!("{name}-search"),
            &["projector", "--search-only", "--index-dir", &index, "--group", &group],
            &[],
        );
        self.serve(name, &["query-api", "--index-dir", &index], extra_env).await
    }

    /// Waits until `name` answers `/health` at `base`; false if it exited because its port was
    /// taken.
    async fn healthy(&mut self, base: &str, name: &str) -> bool {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(response) = self.http.get(format!("{base}/health")).send().await {
                if response.status().is_success() {
                    return true;
                }
            }
            if self.exited(name) && self.log(name).contains("Address already in use") {
                return false;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name} never became healthy:\n{}",
                self.log(name)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every role of the distributed deployment with two query replicas; returns the command
    /// API's and the replicas' base URLs. The consumers start before the relay has created the
    /// topic: roles start in any order.
    pub async fn full(&mut self) -> (String, Vec<String>) {
        let command = self.command_api(&[]).await;
        self.projector(&[]);
        let a = self.replica("replica-a", &[]).await;
        let b = self.replica("replica-b", &[]).await;
        self.relay();
        (command, vec![a, b])
    }

    pub async fn admin_token(&self, command: &str) -> String {
        let response = self
            .http
            .post(format!("{command}/api/v1/auth/token"))
            .json(&json!({ "username": "admin", "password": ADMIN_PASSWORD }))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "token: {}", response.status());
        response.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned()
    }

    /// Creates a movie; returns its id.
    pub async fn create(&self, command: &str, token: &str, name: &str) -> String {
        let body = json!({ "name": name, "director": "Dist Rector", "popularity": 50.0, "imdb_score": 7.0, "genres": ["Drama"] });
        let response = self
            .http
            .post(format!("{command}/api/v1/movies"))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "create: {}", response.text().await.unwrap());
        response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned()
    }

    pub async fn get_json(&self, url: &str) -> (u16, Value) {
        match self.http.get(url).send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                (status, response.json().await.unwrap_or(Value::Null))
            }
            Err(_) => (0, Value::Null),
        }
    }

    /// Waits until `replica` serves the movie with `name` (or, with `None`, answers 404).
    pub async fn visible(&self, replica: &str, id: &str, name: Option<&str>) {
        let url = format!("{replica}/api/v1/movies/{id}");
        eventually(Duration::from_secs(60), &format!("{url} to show {name:?}"), || async {
            let (status, body) = self.get_json(&url).await;
            match name {
                Some(name) => (status == 200 && body["name"] == name).then_some(()),
                None => (status == 404).then_some(()),
            }
        })
        .await
    }

    /// Runs `movies verify` against this cluster's projections; returns (success, stdout).
    pub async fn verify(&self, replica: &str) -> (bool, String) {
        let index = self.index_dir(replica).to_str().unwrap().to_owned();
        let output =
            self.command(&["verify", "--index-dir", &index]).stdout(Stdio::piped()).output().await.unwrap();
        (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// A proxy in front of this cluster's Postgres, and the database URL through it: how a test
    /// takes Postgres away from some roles only.
    pub async fn postgres_proxy(&self) -> (Arc<Proxy>, String) {
        let direct = &self.database_url;
        let port: u16 = direct.rsplit_once(':').unwrap().1.split('/').next().unwrap().parse().unwrap();
        let proxy = Proxy::start(port).await;
        let proxied = direct.replace(&format!(":{port}/"), &format!(":{}/", proxy.port));
        (proxy, proxied)
    }

    /// The log's head and the read store's checkpoint, straight from Postgres.
    pub async fn positions(&self) -> (i64, i64) {
        let pool = movies_store::connect_postgres(&self.database_url, 1).await.unwrap();
        let head: Option<i64> =
            sqlx::query_scalar("SELECT max(position) FROM events").fetch_one(&pool).await.unwrap();
        let checkpoint: Option<i64> =
            sqlx::query_scalar("SELECT position FROM projection_checkpoints WHERE projection = 'read-store'")
                .fetch_optional(&pool)
                .await
                .ok()
                .flatten();
        pool.close().await;
        (head.unwrap_or(0), checkpoint.unwrap_or(0))
    }
}

/// A server process of the test's own (Postgres, Redis, a broker) that the test may stop and
/// restart.
pub struct Server {
    pub port: u16,
    child: Option<Child>,
    program: String,
    args: Vec<String>,
    dir: PathBuf,
    /// The user and group it runs as (Postgres refuses to run as root).
    user: Option<(u32, u32)>,
}

impl Server {
    pub async fn redis(dir: &Path) -> Self {
        let port = free_port();
        let args = ["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
            .map(str::to_owned)
            .to_vec();
        let program = env("MOVIES_TEST_REDIS_SERVER");
        let mut server = Self { port, child: None, program, args, dir: dir.to_owned(), user: None };
        server.start().await;
        server
    }

    pub async fn broker(dir: &Path) -> Self {
        let port = free_port();
        Self::broker_advertising(dir, port, port).await
    }

    /// A broker on `port` that tells clients to reach it at `advertised` (a proxy in front of it).
    pub async fn broker_advertising(dir: &Path, port: u16, advertised: u16) -> Self {
        let args = vec![
            "broker".into(),
            "--listener-url".into(),
            format!("tcp://127.0.0.1:{port}"),
            "--advertised-listener-url".into(),
            format!("tcp://127.0.0.1:{advertised}"),
            "--storage-engine".into(),
            "memory://nisshi/".into(),
            "--group-initial-rebalance-delay".into(),
            "100ms".into(),
        ];
        let dir = dir.join(format!("broker-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        let program = env("MOVIES_TEST_NISSHI");
        let mut server = Self { port, child: None, program, args, dir, user: None };
        server.start().await;
        server
    }

    /// A Postgres server of the test's own in `dir/postgres` (initdb'd now), run as the
    /// `postgres` user when the test runs as root; its URL is `postgres_url()`.
    pub async fn postgres(dir: &Path) -> Self {
        let bin = PathBuf::from(env("MOVIES_TEST_PG_BIN"));
        let data = dir.join("postgres");
        std::fs::create_dir_all(&data).unwrap();
        let user = unix_user_for_postgres();
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(&data, Some(uid), Some(gid)).unwrap();
        }
        let mut initdb = Command::new(bin.join("initdb"));
        initdb.args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync", "-D"]).arg(&data);
        if let Some((uid, gid)) = user {
            initdb.uid(uid).gid(gid);
        }
        let output = initdb.output().await.unwrap();
        assert!(output.status.success(), "initdb: {}", String::from_utf8_lossy(&output.stderr));
        let port = free_port();
        let args = [
            "-D",
            data.to_str().unwrap(),
            "-p",
            &port.to_string(),
            "-k",
            data.to_str().unwrap(),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "max_connections=200",
            "-c",
            "fsync=off",
            "-c",
            "full_page_writes=off",
        ]
        .map(str::to_owned)
        .to_vec();
        let program = bin.join("postgres").to_str().unwrap().to_owned();
        let mut server = Self { port, child: None, program, args, dir: data, user };
        server.start().await;
        server
    }

    pub fn postgres_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub async fn start(&mut self) {
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .current_dir(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        if let Some((uid, gid)) = self.user {
            command.uid(uid).gid(gid);
        }
        self.child = Some(command.spawn().unwrap());
        let port = self.port;
        eventually(Duration::from_secs(30), "the server to listen", || async move {
            TcpStream::connect(("127.0.0.1", port)).await.ok().map(|_| ())
        })
        .await;
    }

    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.start_kill().unwrap();
            child.wait().await.unwrap();
        }
    }

    /// SIGQUIT: Postgres's immediate shutdown, a crash as far as its clients and its data go
    /// (it recovers from its write-ahead log when started again).
    pub async fn crash(&mut self) {
        if let Some(mut child) = self.child.take() {
            self.signal(&child, "-QUIT");
            child.wait().await.unwrap();
        }
    }

    /// SIGSTOP / SIGCONT: the process stays but answers nothing (a hung or partitioned server).
    pub fn pause(&self, paused: bool) {
        self.signal(self.child.as_ref().expect("running"), if paused { "-STOP" } else { "-CONT" });
    }

    fn signal(&self, child: &Child, signal: &str) {
        let pid = child.id().expect("running").to_string();
        assert!(std::process::Command::new("kill").args([signal, &pid]).status().unwrap().success());
    }

    /// Redis's FLUSHALL, sent as the protocol's own bytes.
    pub async fn flush_all(&self) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).await.unwrap();
        stream.write_all(b"*1\r\n$8\r\nFLUSHALL\r\n").await.unwrap();
        let mut answer = [0; 5];
        stream.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"+OK\r\n");
    }
}

/// The `postgres` user's uid and gid when this runs as root (whose Postgres would refuse to start).
fn unix_user_for_postgres() -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    if std::fs::metadata("/proc/self").ok()?.uid() != 0 {
        return None;
    }
    let id = |flag: &str| -> u32 {
        let output = std::process::Command::new("id").args([flag, "postgres"]).output().unwrap();
        assert!(
            output.status.success(),
            "running as root needs a `postgres` user (scripts/services.sh makes one)"
        );
        String::from_utf8_lossy(&output.stdout).trim().parse().unwrap()
    };
    Some((id("-u"), id("-g")))
}

/// What a proxied link does to the bytes and connections through it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    Up,
    /// Every chunk, either way, waits this many milliseconds.
    Delayed(u64),
    /// Every connection through it is closed, and new ones are closed as soon as accepted.
    Dropped,
    /// Nothing moves and nothing is closed: bytes and new connections wait until it heals.
    BlackHoled,
}

/// A TCP proxy the test controls: how a test takes a service away from some roles only, slows
/// it or black-holes it.
pub struct Proxy {
    pub port: u16,
    link: watch::Sender<Link>,
}

impl Proxy {
    pub async fn start(upstream: u16) -> Arc<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (link, _) = watch::channel(Link::Up);
        let proxy = Arc::new(Self { port, link });
        let state = proxy.link.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let mut link = state.subscribe();
                tokio::spawn(async move {
                    // A connection into a black hole is neither answered nor refused until it heals.
                    let Ok(now) = link.wait_for(|l| *l != Link::BlackHoled).await.map(|l| *l) else { return };
                    if now == Link::Dropped {
                        return;
                    }
                    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else { return };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::select! {
                        _ = pump(client_read, server_write, link.clone()) => {}
                        _ = pump(server_read, client_write, link) => {}
                    }
                });
            }
        });
        proxy
    }

    pub fn set(&self, link: Link) {
        self.link.send_replace(link);
    }

    pub fn set_up(&self, up: bool) {
        self.set(if up { Link::Up } else { Link::Dropped });
    }
}

/// Moves bytes one way as the link allows; returns when either side closes or the link drops.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut link: watch::Receiver<Link>) {
    let mut buffer = vec![0; 16 * 1024];
    loop {
        let read = tokio::select! {
            read = from.read(&mut buffer) => read,
            _ = link.wait_for(|l| *l == Link::Dropped) => return,
        };
        let Ok(n @ 1..) = read else { return };
        // What was read waits out a black hole, then the delay in force.
        let Ok(now) = link.wait_for(|l| *l != Link::BlackHoled).await.map(|l| *l) else { return };
        match now {
            Link::Dropped => return,
            Link::Delayed(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
            Link::Up | Link::BlackHoled => {}
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}
