//! Ingest throughput: `movies ingest`'s own code (parse the file, validate every record, create
//! the new movies 1,000 to a transaction through the command service) against a baseline that
//! bulk-appends the same number of generated creations straight to the store. Run by
//! `bench/ingest.sh`.
//!
//! Usage: ingest_bench COUNT DATA_DIR  (SQLite; set DATABASE_URL to a Postgres server
//! to run on fresh databases there)

use std::time::Instant;

use indicatif::ProgressBar;
use movies::generate::{BenchArgs, BenchDatabase};
use movies::Settings;
use movies_command_api::CommandService;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let BenchArgs { count, dir, shape } = BenchArgs::from_command_line();
    // Each path on an empty log of its own (on Postgres, a fresh database each).
    let databases = [BenchDatabase::fresh("ingest_baseline").await?, BenchDatabase::fresh("ingest").await?];
    let settings =
        |n: usize| Settings::for_tools(dir.join(n.to_string()), databases[n].as_ref().map(|d| d.url.clone()));

    let baseline = movies::open_write_side(&settings(0)).await?;
    let started = Instant::now();
    movies::generate::append_generated(baseline.events.as_ref(), count, shape, |_| {}).await?;
    let base = count as f64 / started.elapsed().as_secs_f64();

    let file = dir.join("catalogue.json");
    movies::generate::write_shaped(
        &mut std::io::BufWriter::new(std::fs::File::create(&file)?),
        count,
        7,
        shape,
    )?;
    let bytes = std::fs::read(&file)?;
    let write = movies::open_write_side(&settings(1)).await?;
    let service = CommandService::new(write.events.clone());
    let started = Instant::now();
    let report = movies::ingest::ingest(&service, &bytes, &ProgressBar::hidden()).await?;
    let seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(report.created == count, "created {} of {count}", report.created);
    let rate = count as f64 / seconds;

    println!("{:<44} {:>10} {:>12} {:>9}", "path", "seconds", "events/s", "vs base");
    println!(
        "{:<44} {:>10.1} {:>12.0} {:>8.2}x",
        "baseline: bulk append of generated creations",
        count as f64 / base,
        base,
        1.0
    );
    println!(
        "{:<44} {:>10.1} {:>12.0} {:>8.2}x",
        "movies ingest (parse, validate, create)",
        seconds,
        rate,
        rate / base
    );
    drop((baseline, write, service));
    for database in databases.into_iter().flatten() {
        database.drop().await?;
    }
    Ok(())
}
