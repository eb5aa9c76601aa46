//! The `movies` binary. With no subcommand it serves everything in one process on embedded
//! storage; subcommands run operator tasks against the same data.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::ProgressBar;
use movies::{Seed, Settings};
use movies_events::Role;
use movies_store::{Account, AccountError};
use movies_web::{PasswordHasher, ACCESS_TOKEN_TTL_SECONDS};

#[derive(Parser)]
#[command(name = "movies", version, about = "A CQRS, event-sourced movie catalogue")]
struct Cli {
    #[command(flatten)]
    common: Common,
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

#[derive(Args)]
struct Common {
    /// Where keys, the SQLite files and the search index live.
    #[arg(long, env = "MOVIES_DATA_DIR", default_value = "movies-data", global = true)]
    data_dir: PathBuf,
    /// postgres://... for the event log and read store; unset for SQLite files in the data dir.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    database_url: Option<String>,
}

#[derive(Subcommand)]
enum Command {
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
        /// At most this many events.
        #[arg(long, default_value_t = 1000)]
        limit: i64,
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Fold the event log and compare every projection with it; exits 1 on any difference.
    Verify,
    /// Rebuild projections from the event log into new generations while the live ones keep
    /// serving, then swap them in (running servers follow within a second).
    Replay {
        /// Which projections to rebuild.
        #[arg(long, value_enum, default_value = "all")]
        projection: movies::replay::Which,
        /// Say what would happen, change nothing.
        #[arg(long)]
        dry_run: bool,
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
    },
    /// Print an access token for an existing account (operators only: needs the signing key).
    Token {
        #[arg(long)]
        user: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = ACCESS_TOKEN_TTL_SECONDS)]
        ttl: i64,
    },
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Create an account. The password comes from MOVIES_NEW_PASSWORD, or is generated and printed.
    Add {
        name: String,
        #[arg(long, value_enum, default_value = "user")]
        role: CliRole,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum CliRole {
    User,
    Admin,
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
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tower_http=warn,sqlx=warn,tantivy=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("movies: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = settings(&cli);
    match cli.command {
        None => serve(settings).await,
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
        Some(Command::Users { command: UsersCommand::Add { name, role } }) => {
            let name = name.trim().to_owned();
            anyhow::ensure!(!name.is_empty() && name.len() <= 64, "a username is 1 to 64 characters");
            let write = movies::open_write_side(&settings).await?;
            let (password, generated) =
                match std::env::var("MOVIES_NEW_PASSWORD").ok().filter(|p| !p.is_empty()) {
                    Some(password) => (password, false),
                    None => (movies::generate_password(), true),
                };
            let role = match role {
                CliRole::User => Role::User,
                CliRole::Admin => Role::Admin,
            };
            let account = Account {
                username: name.clone(),
                password_hash: settings.hasher.hash(&password),
                role,
                created_at: chrono::Utc::now(),
            };
            match write.accounts.create(&account).await {
                Err(AccountError::Exists(_)) => anyhow::bail!("an account named {name:?} already exists"),
                other => other?,
            }
            println!("created {} account {name:?}", role.as_str());
            if generated {
                println!("password: {password}");
            }
            Ok(())
        }
        Some(Command::Audit { movie, actor, event_type, since, until, limit, json }) => {
            anyhow::ensure!(limit > 0, "--limit must be positive");
            let write = movies::open_write_side(&settings).await?;
            let events = match movie {
                Some(id) => movies_command_api::audit::history(write.events.as_ref(), id).await?,
                None => {
                    let filter = movies_store::EventFilter { actor, event_type, since, until };
                    movies_command_api::audit::log_page(write.events.as_ref(), &filter, 0, limit).await?.0
                }
            };
            if let Some(id) = movie.filter(|_| events.is_empty()) {
                anyhow::bail!("no movie with id {id} was ever recorded");
            }
            print!("{}", movies::audit_table(&events, json));
            Ok(())
        }
        Some(Command::Replay { projection, dry_run }) => {
            let (stop, interrupt) = tokio::sync::watch::channel(false);
            tokio::spawn(async move {
                let _ = tokio::signal::ctrl_c().await;
                let _ = stop.send(true);
            });
            let bar =
                if std::io::stderr().is_terminal() { ProgressBar::new(0) } else { ProgressBar::hidden() };
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
            Ok(())
        }
        Some(Command::Verify) => {
            let write = movies::open_write_side(&settings).await?;
            let (read, index) = (
                write.generations.generation(movies::replay::READ_STORE).await?,
                write.generations.generation(movies::replay::SEARCH).await?,
            );
            let read_store = movies::replay::open_read_store(&settings, read).await?;
            let search = movies_read_model::TantivySearchIndex::open_read_only(&movies::replay::index_dir(
                &settings, index,
            ))
            .context("opening the search index")?;
            let report =
                movies_projector::verify::verify(write.events.as_ref(), read_store.as_ref(), &search).await?;
            for difference in &report.differences {
                println!("{difference}");
            }
            println!(
                "folded {} events into {} movies; read store and search index: {}",
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
        Some(Command::Generate { count, seed, out }) => {
            let result = match out {
                Some(path) => {
                    let file = std::fs::File::create(&path)
                        .with_context(|| format!("creating {}", path.display()))?;
                    movies::generate::write(&mut std::io::BufWriter::new(file), count, seed)
                }
                None => movies::generate::write(
                    &mut std::io::BufWriter::new(std::io::stdout().lock()),
                    count,
                    seed,
                ),
            };
            result.context("writing the catalogue")
        }
        Some(Command::Token { user, ttl }) => {
            anyhow::ensure!(ttl > 0, "--ttl must be positive");
            let write = movies::open_write_side(&settings).await?;
            let account =
                write.accounts.find(&user).await?.with_context(|| format!("no account named {user:?}"))?;
            let keys = movies::keys(&settings)?;
            println!("{}", keys.issue(&account.username, account.role, chrono::Utc::now().timestamp(), ttl)?);
            Ok(())
        }
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
