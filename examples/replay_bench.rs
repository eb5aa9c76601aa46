//! Replay throughput: fills an event log with COUNT generated movies (bulk appends), then times
//! `movies replay` into each projection against a baseline, reading the whole log without
//! projecting anything. Run by `bench/replay.sh`.
//!
//! Usage: replay_bench COUNT DATA_DIR  (SQLite; set DATABASE_URL to a Postgres server to
//! run on a fresh database there; REPLAY_BENCH_ONLY
//! set to `read store`, `search index` or `all projections` times that replay alone)

use std::time::Instant;

use indicatif::ProgressBar;
use movies::generate::{BenchArgs, BenchDatabase};
use movies::replay::{replay, Outcome, Which};
use movies::Settings;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let BenchArgs { count, dir: data_dir, shape } = BenchArgs::from_command_line();
    let database = BenchDatabase::fresh("replay").await?;
    let settings = Settings::for_tools(data_dir, database.as_ref().map(|d| d.url.clone()));
    let write = movies::open_write_side(&settings).await?;

    let started = Instant::now();
    movies::generate::append_generated(write.events.as_ref(), count, shape, |n| {
        eprint!("\rappended {n}/{count}")
    })
    .await?;
    eprintln!();
    let fill = started.elapsed().as_secs_f64();
    println!("events in the log:   {count} (bulk-appended at {:.0} events/s)", count as f64 / fill);

    let started = Instant::now();
    let (mut after, mut read) = (0, 0);
    loop {
        let batch = write.events.read_all(after, 5000).await?;
        let Some(last) = batch.last() else { break };
        after = last.position;
        read += batch.len();
    }
    let baseline = read as f64 / started.elapsed().as_secs_f64();
    println!();
    println!("{:<34} {:>10} {:>14} {:>10}", "replay", "seconds", "events/s", "vs base");
    println!(
        "{:<34} {:>10.1} {:>14.0} {:>9.2}x",
        "baseline: read the log only",
        read as f64 / baseline,
        baseline,
        1.0
    );
    let never = tokio::sync::watch::channel(false).1;
    let only = std::env::var("REPLAY_BENCH_ONLY").ok();
    for (name, which) in
        [("read store", Which::ReadStore), ("search index", Which::Search), ("all projections", Which::All)]
    {
        if only.as_deref().is_some_and(|only| only != name) {
            continue;
        }
        match replay(&settings, which, false, &ProgressBar::hidden(), never.clone()).await? {
            Outcome::Swapped { events, seconds } => {
                let rate = events as f64 / seconds;
                println!("{:<34} {:>10.1} {:>14.0} {:>9.2}x", name, seconds, rate, rate / baseline);
            }
            other => anyhow::bail!("unexpected {other:?}"),
        }
    }
    drop(write);
    if let Some(database) = database {
        database.drop().await?;
    }
    Ok(())
}
