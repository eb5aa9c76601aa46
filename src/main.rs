//! The `movies` binary. With no subcommand it serves everything in one process on embedded
//! storage; subcommands run operator tasks against the same data.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use indicatif::ProgressBar;
use movies::{roles, Seed, Settings};
use movies_events::Role;
use movies_store::{Account, AccountChange, AccountError};
use movies_web::{PasswordHasher, ACCESS_TOKEN_TTL_SECONDS};

#[derive(Parser)]
#[command(name = "movies", version, about = "A CQRS, event-sourced movie catalogue")]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    http: HttpArgs,
    /// Address to serve on (the all-in-one server).
    #[arg(long, env = "MOVIES_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// JSON file to seed an empty catalogue with, instead of the bundled data/imdb.json.
    #[arg(long, env = "MOVIES_SEED")]
    seed: Option<PathBuf>,
    /// Start with an empty catalogue.
    #[arg(long, conflicts_with = "seed")]
    no_seed: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

/// What every command shares: which catalogue, and how it logs.
#[derive(Args)]
struct Common {
    /// Where keys, the SQLite files and the search index live.
    #[arg(long, env = "MOVIES_DATA_DIR", default_value = "movies-data", global = true)]
    data_dir: PathBuf,
    /// postgres://... for the event log and read store; unset for SQLite files in the data dir.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    database_url: Option<String>,
    /// Log lines as text for people or JSON for collectors (each request's lines carry its id).
    #[arg(long, env = "MOVIES_LOG_FORMAT", value_enum, default_value = "text", global = true)]
    log_format: LogFormat,
}

/// What a process serving HTTP (the server, the command API, the query API) lets its clients do.
#[derive(Args)]
struct HttpArgs {
    /// Requests a minute an anonymous client (by address) may make; 0 for no limit.
    #[arg(long, env = "MOVIES_RATE_ANONYMOUS", default_value_t = 600)]
    rate_anonymous: u64,
    /// Requests a minute a signed-in user may make (admins are exempt); 0 for no limit.
    #[arg(long, env = "MOVIES_RATE_USER", default_value_t = 3000)]
    rate_user: u64,
    /// HTTP connections open at once; further ones wait to be accepted.
    #[arg(long, env = "MOVIES_MAX_CONNECTIONS", default_value_t = 4096)]
    max_connections: usize,
    /// Seconds a client may take to send a request's headers, from when its connection opens or
    /// its last response ended (idle keep-alive connections close after it too).
    #[arg(long, env = "MOVIES_HEADER_TIMEOUT", default_value_t = 20,
        value_parser = clap::value_parser!(u64).range(1..))]
    header_timeout: u64,
    /// Proxies whose X-Forwarded-For is believed (comma-separated addresses).
    #[arg(long, env = "MOVIES_TRUSTED_PROXIES", value_delimiter = ',')]
    trusted_proxies: Vec<std::net::IpAddr>,
}

impl HttpArgs {
    fn rate(&self) -> movies_web::RateLimits {
        movies_web::RateLimits {
            anonymous_per_minute: self.rate_anonymous,
            user_per_minute: self.rate_user,
            trusted_proxies: self.trusted_proxies.clone(),
        }
    }

    fn limits(&self) -> movies::HttpLimits {
        movies::HttpLimits {
            max_connections: self.max_connections,
            header_timeout: std::time::Duration::from_secs(self.header_timeout),
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Distributed role: the command API (writes) on the Postgres event log.
    #[command(name = "command-api")]
    WriteApi {
        /// Address to serve on.
        #[arg(long, env = "MOVIES_LISTEN", default_value = "0.0.0.0:8081")]
        listen: SocketAddr,
        #[command(flatten)]
        keys: KeyPaths,
        #[command(flatten)]
        http: HttpArgs,
    },
    /// Distributed role: publishes the event log to Kafka in commit order (the outbox relay).
    Relay {
        #[command(flatten)]
        kafka: KafkaArgs,
        /// Partitions of the topic when the relay creates it.
        #[arg(long, env = "MOVIES_KAFKA_PARTITIONS", default_value_t = 6)]
        partitions: i32,
        /// Replication factor of the topic when the relay creates it.
        #[arg(long, env = "MOVIES_KAFKA_REPLICATION", default_value_t = 1)]
        replication: i32,
        /// Milliseconds the producer tries to deliver an event before the relay starts over.
        #[arg(long, env = "MOVIES_KAFKA_MESSAGE_TIMEOUT_MS", default_value_t = 15_000,
            value_parser = clap::value_parser!(u64).range(100..))]
        message_timeout_ms: u64,
        /// Where /health answers (published position and lag).
        #[arg(long, env = "MOVIES_HEALTH_LISTEN", default_value = "0.0.0.0:9090")]
        health_listen: SocketAddr,
    },
    /// Distributed role: applies events from Kafka to the read store and Redis (a consumer
    /// group), or with --search-only to a local search index for a co-located query-api.
    Projector {
        #[command(flatten)]
        kafka: KafkaArgs,
        /// The consumer group (read-store projectors share one; default movies-projector).
        #[arg(long, env = "MOVIES_KAFKA_GROUP")]
        group: Option<String>,
        #[command(flatten)]
        redis: RedisArgs,
        /// Maintain only a local search index (in --index-dir) instead of the read store.
        #[arg(long)]
        search_only: bool,
        /// The search index directory (with --search-only).
        #[arg(long, env = "MOVIES_INDEX_DIR")]
        index_dir: Option<PathBuf>,
        /// Where /health answers (position and lag).
        #[arg(long, env = "MOVIES_HEALTH_LISTEN", default_value = "0.0.0.0:9090")]
        health_listen: SocketAddr,
    },
    /// Distributed role: the query API (reads) over the read store, Redis and a local index.
    QueryApi {
        /// Address to serve on.
        #[arg(long, env = "MOVIES_LISTEN", default_value = "0.0.0.0:8082")]
        listen: SocketAddr,
        #[command(flatten)]
        http: HttpArgs,
        /// A Postgres read replica for the read store's queries.
        #[arg(long, env = "DATABASE_READ_URL", hide_env_values = true)]
        database_read_url: Option<String>,
        #[command(flatten)]
        redis: RedisArgs,
        /// The search index a co-located `projector --search-only` writes.
        #[arg(long, env = "MOVIES_INDEX_DIR")]
        index_dir: Option<PathBuf>,
        /// The JWT public key (PEM) tokens are verified with.
        #[arg(long, env = "MOVIES_JWT_PUBLIC_KEY")]
        jwt_public_key: Option<PathBuf>,
        /// Retired JWT public keys (PEM, comma-separated) that still verify during a key rollover.
        #[arg(long, env = "MOVIES_JWT_RETIRED_PUBLIC_KEYS", value_delimiter = ',')]
        jwt_retired_public_keys: Vec<PathBuf>,
        /// Entries per in-process cache tier.
        #[arg(long, env = "MOVIES_L1_CAPACITY", default_value_t = 100_000)]
        l1_capacity: u64,
        /// Longest life of an in-process cache entry, in milliseconds.
        #[arg(long, env = "MOVIES_L1_TTL_MS", default_value_t = 5000)]
        l1_ttl_ms: u64,
        /// The topic the relay publishes (for relay lag in /health).
        #[arg(long, env = "MOVIES_KAFKA_TOPIC", default_value = movies_kafka::DEFAULT_TOPIC)]
        topic: String,
    },
    /// Write a new Ed25519 JWT signing key pair into a directory: jwt-ed25519.pem (the private
    /// key, readable by its owner only) and jwt-ed25519.pub.pem. Refuses to overwrite a pair
    /// unless --rotate.
    Keygen {
        /// The directory to write jwt-ed25519.pem and jwt-ed25519.pub.pem into (created if
        /// missing).
        #[arg(long)]
        dir: PathBuf,
        /// Replace the pair in --dir with a new one, keeping the old public key beside it as a
        /// retired key that still verifies (remove it a token's lifetime, an hour, later).
        #[arg(long)]
        rotate: bool,
    },
    /// Append the movies of a data file (the assignment's format) through the command path.
    Ingest {
        /// The JSON file.
        file: PathBuf,
    },
    /// Manage accounts.
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Who changed what and when: one movie's history, or the whole log filtered.
    Audit {
        /// A movie id: its history with every field's before and after.
        movie: Option<uuid::Uuid>,
        /// Only events by this actor (a username, or `system:ingest`).
        #[arg(long, conflicts_with = "movie")]
        actor: Option<String>,
        /// Only events of this type (`movie.updated`, ...).
        #[arg(long = "type", conflicts_with = "movie")]
        event_type: Option<String>,
        /// Only events recorded at or after this instant (RFC 3339).
        #[arg(long, conflicts_with = "movie")]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// Only events recorded before this instant (RFC 3339).
        #[arg(long, conflicts_with = "movie")]
        until: Option<chrono::DateTime<chrono::Utc>>,
        /// At most this many events (the next page's --after is printed to stderr).
        #[arg(long, default_value_t = 1000)]
        limit: i64,
        /// Start after this version (of a movie's history) or log position (of the whole log).
        #[arg(long, default_value_t = 0)]
        after: i64,
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Fold the event log and compare every projection with it; exits 1 on any difference.
    Verify {
        #[command(flatten)]
        redis: RedisArgs,
        /// The search index to compare (default: the live generation in the data dir).
        #[arg(long, env = "MOVIES_INDEX_DIR")]
        index_dir: Option<PathBuf>,
    },
    /// Rebuild projections from the event log into new generations while the live ones keep
    /// serving, then swap them in (running servers follow within a second).
    Replay {
        /// Which projections to rebuild.
        #[arg(long, value_enum, default_value = "all")]
        projection: movies::replay::Which,
        /// Say what would happen, change nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        redis: RedisArgs,
    },
    /// Write a deterministic synthetic catalogue in the ingest format.
    Generate {
        /// How many movies.
        #[arg(long)]
        count: usize,
        /// The same seed always gives the same catalogue.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Where to write (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
        /// `realistic`: Zipf-distributed title words (50,000 and more) and directors (300,000
        /// and more), genres, scores and popularity drawn like data/imdb.json. `classic`: the
        /// first benchmarks' catalogue (about 200 title words), for runs that compare with theirs.
        #[arg(long, value_enum, default_value = "realistic")]
        shape: movies::generate::Shape,
    },
    /// Print an access token for an existing account (operators only: needs the signing key).
    Token {
        /// The account's username.
        #[arg(long)]
        user: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = ACCESS_TOKEN_TTL_SECONDS)]
        ttl: i64,
    },
}

#[derive(Args)]
struct KeyPaths {
    /// The JWT private key (PEM) tokens are signed with.
    #[arg(long, env = "MOVIES_JWT_PRIVATE_KEY")]
    jwt_private_key: Option<PathBuf>,
    /// The JWT public key (PEM) tokens are verified with.
    #[arg(long, env = "MOVIES_JWT_PUBLIC_KEY")]
    jwt_public_key: Option<PathBuf>,
    /// Retired JWT public keys (PEM, comma-separated) that still verify during a key rollover.
    #[arg(long, env = "MOVIES_JWT_RETIRED_PUBLIC_KEYS", value_delimiter = ',')]
    jwt_retired_public_keys: Vec<PathBuf>,
}

#[derive(Args)]
struct RedisArgs {
    /// Redis: the cache (and shared rate-limit counts).
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    redis_url: Option<String>,
    /// The prefix of every Redis key and channel (catalogues sharing a Redis differ here).
    #[arg(long, env = "MOVIES_REDIS_NAMESPACE", default_value = movies_cache::DEFAULT_NAMESPACE)]
    redis_namespace: String,
}

#[derive(Args)]
struct KafkaArgs {
    /// Kafka bootstrap servers (host:port,...).
    #[arg(long, env = "KAFKA_BROKERS")]
    kafka_brokers: Option<String>,
    /// The topic events are published to.
    #[arg(long, env = "MOVIES_KAFKA_TOPIC", default_value = movies_kafka::DEFAULT_TOPIC)]
    topic: String,
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Create an account. The password comes from MOVIES_NEW_PASSWORD, or is generated and printed.
    Add {
        /// The username (1 to 64 characters).
        name: String,
        /// What the account may do: `admin` writes the catalogue, `user` reads it signed in.
        #[arg(long, value_enum, default_value = "user")]
        role: CliRole,
    },
    /// Every account with its role and state.
    List,
    /// Set a new password (from MOVIES_NEW_PASSWORD, or generated and printed).
    Password {
        /// The username.
        name: String,
    },
    /// Change an account's role; its tokens carry the new role on writes within seconds.
    Role {
        /// The username.
        name: String,
        /// The new role.
        #[arg(long, value_enum)]
        role: CliRole,
    },
    /// Disable an account: it cannot sign in, and its tokens stop working on writes within seconds.
    Disable {
        /// The username.
        name: String,
    },
    /// Enable a disabled account again.
    Enable {
        /// The username.
        name: String,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum CliRole {
    User,
    Admin,
}

/// `movies users ...`: accounts as operators manage them.
async fn users(settings: &Settings, command: UsersCommand) -> anyhow::Result<()> {
    let write = movies::open_write_side(settings).await?;
    let new_password = || match std::env::var("MOVIES_NEW_PASSWORD").ok().filter(|p| !p.is_empty()) {
        Some(password) => (password, false),
        None => (movies::generate_password(), true),
    };
    let (name, change, done, generated) = match command {
        UsersCommand::List => {
            use std::fmt::Write;
            let mut table = format!("{:<24}  {:<6}  {:<9}  created\n", "username", "role", "state");
            for account in write.accounts.list().await? {
                let state = if account.disabled { "disabled" } else { "enabled" };
                let created = account.created_at.format("%Y-%m-%d %H:%M:%S");
                let role = account.role.as_str();
                let _ = writeln!(table, "{:<24}  {role:<6}  {state:<9}  {created}", account.username);
            }
            return emit(&table);
        }
        UsersCommand::Add { name, role } => {
            let name = name.trim().to_owned();
            anyhow::ensure!(
                !name.is_empty() && name.len() <= movies_command_api::MAX_USERNAME_CHARS,
                "a username is 1 to {} characters",
                movies_command_api::MAX_USERNAME_CHARS
            );
            let (password, generated) = new_password();
            let role = cli_role(role);
            let account = Account {
                username: name.clone(),
                password_hash: settings.hasher.hash(&password),
                role,
                created_at: chrono::Utc::now(),
                disabled: false,
            };
            match write.accounts.create(&account).await {
                Err(AccountError::Exists(_)) => anyhow::bail!("an account named {name:?} already exists"),
                other => other?,
            }
            println!("created {} account {name:?}", role.as_str());
            if generated {
                println!("password: {password}");
            }
            return Ok(());
        }
        UsersCommand::Password { name } => {
            let (password, generated) = new_password();
            let change =
                AccountChange { password_hash: Some(settings.hasher.hash(&password)), ..Default::default() };
            (name, change, "set a new password for", generated.then_some(password))
        }
        UsersCommand::Role { name, role } => {
            let change = AccountChange { role: Some(cli_role(role)), ..Default::default() };
            (name, change, "changed the role of", None)
        }
        UsersCommand::Disable { name } => {
            (name, AccountChange { disabled: Some(true), ..Default::default() }, "disabled", None)
        }
        UsersCommand::Enable { name } => {
            (name, AccountChange { disabled: Some(false), ..Default::default() }, "enabled", None)
        }
    };
    anyhow::ensure!(write.accounts.update(&name, &change).await?, "no account is named {name:?}");
    println!("{done} {name:?}");
    if let Some(password) = generated {
        println!("password: {password}");
    }
    Ok(())
}

fn cli_role(role: CliRole) -> Role {
    match role {
        CliRole::User => Role::User,
        CliRole::Admin => Role::Admin,
    }
}

fn settings(cli: &Cli) -> Settings {
    Settings {
        listen: cli.listen,
        data_dir: cli.common.data_dir.clone(),
        database_url: cli.common.database_url.clone(),
        admin_password: std::env::var("MOVIES_ADMIN_PASSWORD").ok().filter(|p| !p.is_empty()),
        seed: match (&cli.seed, cli.no_seed) {
            (_, true) => Seed::Nothing,
            (Some(path), _) => Seed::File(path.clone()),
            (None, false) => Seed::Bundled,
        },
        hasher: PasswordHasher::production(),
        rate: cli.http.rate(),
        http: cli.http.limits(),
    }
}

/// What is logged without `RUST_LOG`.
const DEFAULT_LOG: &str = "info,sqlx=warn,tantivy=warn";

/// The command line, with the catalogue's flags (shared by every command that opens it) left out
/// of the help of the commands that never do.
fn command_line() -> clap::Command {
    let command = Cli::command();
    // A subcommand's own copy of a shared flag stands in for it: hidden, parsed the same way.
    let shared: Vec<clap::Arg> = command.get_arguments().filter(|a| a.is_global_set()).cloned().collect();
    ["keygen", "generate"].into_iter().fold(command, |command, name| {
        command
            .mut_subcommand(name, |sub| shared.iter().fold(sub, |sub, flag| sub.arg(flag.clone().hide(true))))
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::from_arg_matches(&command_line().get_matches()).unwrap_or_else(|error| error.exit());
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    // `RUST_LOG` as target=level directives. A static filter, not `EnvFilter`: that one takes a
    // lock on every span enter and exit, several times per request.
    let directives = std::env::var("RUST_LOG").ok().filter(|d| !d.trim().is_empty());
    let filter = directives
        .and_then(|d| {
            d.parse::<tracing_subscriber::filter::Targets>()
                .map_err(|e| eprintln!("movies: RUST_LOG ignored ({e}): it takes target=level directives"))
                .ok()
        })
        .unwrap_or_else(|| DEFAULT_LOG.parse().expect("the default directives parse"));
    use movies_web::logs::{JsonWithRequestId, TextWithRequestId};
    use tracing_subscriber::fmt::format::{DefaultFields, Format, JsonFields};
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let registry = tracing_subscriber::registry().with(filter);
    match cli.common.log_format {
        LogFormat::Json => registry
            .with(logs.fmt_fields(JsonFields::new()).event_format(JsonWithRequestId(
                Format::default().json().with_current_span(true).with_span_list(false),
            )))
            .init(),
        LogFormat::Text => registry.with(logs.fmt_fields(TextWithRequestId(DefaultFields::new()))).init(),
    }
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("movies: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Turns true on Ctrl-C or SIGTERM: every role stops gracefully.
fn shutdown_signal() -> tokio::sync::watch::Receiver<bool> {
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("installing a SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        let _ = stop.send(true);
    });
    shutdown
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = settings(&cli);
    let database_url = settings.database_url.as_deref();
    match cli.command {
        None => serve(settings).await,
        Some(Command::WriteApi { listen, keys, http }) => {
            let database_url = roles::require_postgres(database_url)?.to_owned();
            let private_key =
                roles::require(path_str(&keys.jwt_private_key), "MOVIES_JWT_PRIVATE_KEY")?.into();
            let public_key = roles::require(path_str(&keys.jwt_public_key), "MOVIES_JWT_PUBLIC_KEY")?.into();
            let role = roles::CommandApiSettings {
                listen,
                database_url,
                private_key,
                public_key,
                retired_public_keys: keys.jwt_retired_public_keys,
                admin_password: settings.admin_password.clone(),
                hasher: settings.hasher.clone(),
                rate: http.rate(),
                http: http.limits(),
            };
            roles::command_api(role, shutdown_signal()).await
        }
        Some(Command::Relay { kafka, partitions, replication, message_timeout_ms, health_listen }) => {
            let database_url = roles::require_postgres(database_url)?;
            let brokers = roles::require(kafka.kafka_brokers.as_deref(), "KAFKA_BROKERS")?.to_owned();
            let message_timeout = std::time::Duration::from_millis(message_timeout_ms);
            let relay = movies_kafka::RelaySettings {
                brokers,
                topic: kafka.topic,
                partitions,
                replication,
                message_timeout,
            };
            roles::relay(database_url, relay, health_listen, shutdown_signal()).await
        }
        Some(Command::Projector { kafka, group, redis, search_only, index_dir, health_listen }) => {
            let database_url = roles::require_postgres(database_url)?;
            let brokers = roles::require(kafka.kafka_brokers.as_deref(), "KAFKA_BROKERS")?.to_owned();
            let target = if search_only {
                let dir = roles::require(path_str(&index_dir), "MOVIES_INDEX_DIR")?;
                roles::ProjectorTarget::Search { index_dir: dir.into() }
            } else {
                anyhow::ensure!(index_dir.is_none(), "--index-dir is for --search-only projectors");
                roles::ProjectorTarget::ReadStore {
                    redis_url: redis.redis_url,
                    namespace: redis.redis_namespace,
                }
            };
            let default_group = if search_only {
                // Each replica's index reads every partition on its own.
                format!("movies-search-{}", uuid::Uuid::new_v4().simple())
            } else {
                "movies-projector".to_owned()
            };
            let consumer = movies_kafka::ConsumerSettings {
                brokers,
                topic: kafka.topic,
                group: group.unwrap_or(default_group),
            };
            roles::projector(database_url, consumer, target, health_listen, shutdown_signal()).await
        }
        Some(Command::QueryApi {
            listen,
            http,
            database_read_url,
            redis,
            index_dir,
            jwt_public_key,
            jwt_retired_public_keys,
            l1_capacity,
            l1_ttl_ms,
            topic,
        }) => {
            let database_url = roles::require_postgres(database_url)?.to_owned();
            if let Some(url) = &database_read_url {
                roles::require_postgres(Some(url)).context("DATABASE_READ_URL")?;
            }
            let index_dir = roles::require(path_str(&index_dir), "MOVIES_INDEX_DIR")?.into();
            let public_key = roles::require(path_str(&jwt_public_key), "MOVIES_JWT_PUBLIC_KEY")?.into();
            anyhow::ensure!(l1_capacity > 0 && l1_ttl_ms > 0, "the L1 capacity and TTL must be positive");
            let role = roles::QueryApiSettings {
                listen,
                database_url,
                read_replica_url: database_read_url,
                redis_url: redis.redis_url,
                redis_namespace: redis.redis_namespace,
                index_dir,
                public_key,
                retired_public_keys: jwt_retired_public_keys,
                l1: movies_cache::L1Settings {
                    capacity: l1_capacity,
                    ttl: std::time::Duration::from_millis(l1_ttl_ms),
                },
                topic,
                rate: http.rate(),
                http: http.limits(),
            };
            roles::query_api(role, shutdown_signal()).await
        }
        Some(Command::Keygen { dir, rotate: false }) => {
            let (private, public) = roles::keygen(&dir)?;
            println!("wrote {} and {}", private.display(), public.display());
            Ok(())
        }
        Some(Command::Keygen { dir, rotate: true }) => {
            let retired = movies_web::JwtKeys::rotate(&dir).context("rotating the key pair")?;
            println!(
                "wrote a new key pair in {}; the old public key is now {} (it verifies until removed)",
                dir.display(),
                retired.display()
            );
            Ok(())
        }
        Some(Command::Ingest { file }) => {
            let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let write = movies::open_write_side(&settings).await?;
            let service = movies_command_api::CommandService::new(write.events);
            let bar =
                if std::io::stderr().is_terminal() { ProgressBar::new(0) } else { ProgressBar::hidden() };
            let report = movies::ingest::ingest(&service, &bytes, &bar).await?;
            for (index, reason) in &report.rejected {
                eprintln!("record {index} rejected: {reason}");
            }
            println!(
                "created {}, updated {}, unchanged {}, rejected {}",
                report.created,
                report.updated,
                report.unchanged,
                report.rejected.len()
            );
            Ok(())
        }
        Some(Command::Users { command }) => {
            existing_catalogue(&settings, false)?;
            users(&settings, command).await
        }
        Some(Command::Audit { movie, actor, event_type, since, until, limit, after, json }) => {
            anyhow::ensure!(limit > 0, "--limit must be positive");
            anyhow::ensure!(after >= 0, "--after must be 0 or more");
            existing_catalogue(&settings, false)?;
            let write = movies::open_write_side(&settings).await?;
            let (events, next) = match movie {
                Some(id) => {
                    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
                    movies_command_api::audit::history_page(write.events.as_ref(), id, after, limit).await?
                }
                None => {
                    let filter = movies_store::EventFilter { actor, event_type, since, until };
                    movies_command_api::audit::log_page(write.events.as_ref(), &filter, after, limit).await?
                }
            };
            if let Some(id) = movie.filter(|_| events.is_empty() && after == 0) {
                anyhow::bail!("no movie with id {id} was ever recorded");
            }
            if let Some(next) = next {
                eprintln!("movies: more events follow; the next page starts with --after {next}");
            }
            emit(&movies::audit_table(&events, json))
        }
        Some(Command::Replay { projection, dry_run, redis: RedisArgs { redis_url, redis_namespace } }) => {
            use movies::replay::Which;
            let cache = match (&redis_url, projection) {
                (None, Which::Cache) => {
                    anyhow::bail!("REDIS_URL is not set: the cache projection lives in Redis")
                }
                (Some(url), Which::Cache | Which::All) => Some(movies_cache::CacheWriter::new(
                    movies_cache::Redis::connect(url, &redis_namespace).await.context("REDIS_URL")?,
                )),
                _ => None,
            };
            let (stop, interrupt) = tokio::sync::watch::channel(false);
            tokio::spawn(async move {
                let _ = tokio::signal::ctrl_c().await;
                let _ = stop.send(true);
            });
            let bar =
                if std::io::stderr().is_terminal() { ProgressBar::new(0) } else { ProgressBar::hidden() };
            existing_catalogue(&settings, true)?;
            if projection != Which::Cache {
                match movies::replay::replay(&settings, projection, dry_run, &bar, interrupt).await? {
                    movies::replay::Outcome::Planned(plan) => println!("{plan}"),
                    movies::replay::Outcome::Swapped { events, seconds } => println!(
                        "replayed {events} events in {seconds:.1} s ({:.0} events/s); the new generations are live",
                        events as f64 / seconds.max(1e-9)
                    ),
                    movies::replay::Outcome::Interrupted => {
                        anyhow::bail!("interrupted: the live projections are untouched")
                    }
                }
            }
            if let Some(cache) = cache {
                if dry_run {
                    println!("cache: empty it, move every replica to a new page generation, warm it from the live read store");
                } else {
                    let written = movies::replay::rebuild_cache(&settings, &cache, &bar).await?;
                    println!("cache: rebuilt with {written} movies");
                }
            }
            Ok(())
        }
        Some(Command::Verify { redis: RedisArgs { redis_url, redis_namespace }, index_dir }) => {
            existing_catalogue(&settings, index_dir.is_none())?;
            let write = movies::open_write_side(&settings).await?;
            let (read, index) = (
                write.generations.generation(movies::replay::READ_STORE).await?,
                write.generations.generation(movies::replay::SEARCH).await?,
            );
            let read_store = movies::replay::open_read_store(&settings, read).await?;
            let index_dir = index_dir.unwrap_or_else(|| movies::replay::index_dir(&settings, index));
            let search = movies_search::TantivySearchIndex::open_read_only(&index_dir)
                .with_context(|| format!("opening the search index in {}", index_dir.display()))?;
            let cache = match redis_url {
                Some(url) => {
                    let redis =
                        movies_cache::Redis::connect(&url, &redis_namespace).await.context("REDIS_URL")?;
                    let writer = movies_cache::CacheWriter::new(redis);
                    // The projector refreshes the cache after each batch it applies to the read
                    // store: an entry older than the store's checkpoint read here is drift
                    // (unless a refresh was in flight), a newer one a write not applied yet.
                    let from = read_store.checkpoint().await?;
                    let documents = writer.documents().await.context("Redis is unreachable")?;
                    Some((
                        from,
                        documents
                            .into_iter()
                            .map(|(id, doc)| (id, doc.map(|d| (d.fields(), d.version))))
                            .collect(),
                    ))
                }
                None => None,
            };
            let report =
                movies_projector::verify::verify(write.events.as_ref(), read_store.as_ref(), &search, cache)
                    .await?;
            for difference in &report.differences {
                println!("{difference}");
            }
            println!(
                "folded {} events into {} movies; projections: {}",
                report.events,
                report.movies,
                if report.is_clean() {
                    "no drift".to_owned()
                } else {
                    format!("{} differences", report.differences.len())
                }
            );
            if report.is_clean() {
                Ok(())
            } else {
                std::process::exit(1)
            }
        }
        Some(Command::Generate { count, seed, out, shape }) => {
            let result = match out {
                Some(path) => {
                    let file = std::fs::File::create(&path)
                        .with_context(|| format!("creating {}", path.display()))?;
                    movies::generate::write_shaped(&mut std::io::BufWriter::new(file), count, seed, shape)
                }
                None => movies::generate::write_shaped(
                    &mut std::io::BufWriter::new(std::io::stdout().lock()),
                    count,
                    seed,
                    shape,
                ),
            };
            match result {
                // A reader that stopped early (`movies generate ... | head`) ends the output.
                Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                other => other.context("writing the catalogue"),
            }
        }
        Some(Command::Token { user, ttl }) => {
            anyhow::ensure!(ttl > 0, "--ttl must be positive");
            existing_catalogue(&settings, true)?;
            let write = movies::open_write_side(&settings).await?;
            let account =
                write.accounts.find(&user).await?.with_context(|| format!("no account named {user:?}"))?;
            let keys = movies::keys(&settings)?;
            println!("{}", keys.issue(&account.username, account.role, chrono::Utc::now().timestamp(), ttl)?);
            Ok(())
        }
    }
}

/// An operator command reads a catalogue that exists: a data directory that is not there is a
/// mistake (a mistyped `--data-dir`, a shell without `MOVIES_DATA_DIR`), not an empty catalogue
/// to create. `needs_dir`: the command reads the directory (keys, the index) even on Postgres.
fn existing_catalogue(settings: &Settings, needs_dir: bool) -> anyhow::Result<()> {
    let reads_dir = needs_dir || settings.database_url.is_none();
    anyhow::ensure!(
        !reads_dir || settings.data_dir.is_dir(),
        "no catalogue here: the data directory {} does not exist (set --data-dir or MOVIES_DATA_DIR to a \
         catalogue's, or DATABASE_URL; `movies` and `movies ingest` create one)",
        settings.data_dir.display()
    );
    Ok(())
}

/// Prints to standard output. A reader that went away (`movies audit | head`) ends the output
/// quietly: it is not an error, and never a panic.
fn emit(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing to standard output"),
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(settings.listen).await.with_context(|| {
        format!("binding {} (pass --listen or MOVIES_LISTEN to use another address)", settings.listen)
    })?;
    let address = listener.local_addr()?;
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        eprintln!("shutting down...");
        let _ = stop.send(true);
    });
    let embedded = movies::build(&settings).await?;
    println!("movies is serving on http://{address} (data in {})", settings.data_dir.display());
    println!("  API docs:   http://{address}/docs/");
    println!("  movies:     http://{address}/api/v1/movies");
    println!("  search:     http://{address}/api/v1/search?q=star");
    println!("  assignment: http://{address}/api/movies/");
    println!("Press Ctrl-C to stop.");
    movies::run(listener, embedded, shutdown).await
}

fn path_str(path: &Option<PathBuf>) -> Option<&str> {
    path.as_ref().and_then(|p| p.to_str())
}
