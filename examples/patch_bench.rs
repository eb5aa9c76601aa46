//! What a PATCH costs as a movie's history grows: the command service (load from the snapshot,
//! decide, append) on movies with 1, COUNT/10 and COUNT events of history, against the PATCH on a
//! fresh movie (the baseline, measured in the same run). Beside each, what folding the whole
//! stream costs (what every command did before snapshots). Run by `bench/patch.sh`.
//!
//! Usage: patch_bench COUNT DATA_DIR  (SQLite; set DATABASE_URL to a Postgres server to
//! run on a fresh database there)

use std::time::{Duration, Instant};

use movies::generate::{BenchArgs, BenchDatabase};
use movies::Settings;
use movies_command_api::{fold, CommandContext, CommandService};
use movies_events::{
    Actor, EventMetadata, MovieChanges, MovieCommand, MovieDraft, MovieEvent, MovieInput, MoviePatch,
    MoviePatchInput, NewEvent, Role,
};
use uuid::Uuid;

/// PATCHes timed at each history length.
const SAMPLES: usize = 300;

fn metadata() -> EventMetadata {
    EventMetadata { actor: Actor { subject: "bench".into(), role: Role::Admin }, request_id: None }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p) as usize].as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let BenchArgs { count, dir, .. } = BenchArgs::from_command_line();
    let database = BenchDatabase::fresh("patch").await?;
    let write =
        movies::open_write_side(&Settings::for_tools(dir, database.as_ref().map(|d| d.url.clone()))).await?;
    let service = CommandService::new(write.events.clone());
    let context = || CommandContext { metadata: metadata(), event_id: None };

    println!(
        "{:<22} {:>10} {:>10} {:>12} {:>16}",
        "history (events)", "p50 ms", "p99 ms", "p50 vs base", "whole fold ms"
    );
    let mut base = None;
    for history in [1, count / 10, count] {
        let id = Uuid::now_v7();
        let draft = MovieDraft::parse(MovieInput {
            name: "Groundhog Day".into(),
            director: "Harold Ramis".into(),
            popularity: 50.0,
            imdb_score: 8.0,
            genres: vec!["Comedy".into()],
        })?;
        service.execute(id, None, MovieCommand::Create(draft), context()).await?;
        // The history, appended straight to the log 1,000 events at a time (no snapshot yet:
        // the first PATCH below folds it all once, as the first command on an old movie would).
        let mut version = 1;
        while version < history as i64 {
            let events: Vec<NewEvent> = (0..1000.min(history as i64 - version))
                .map(|n| NewEvent {
                    event_id: Uuid::now_v7(),
                    event: MovieEvent::Updated(MovieChanges {
                        popularity: Some(((version + n) % 100) as f64),
                        ..Default::default()
                    }),
                    recorded_at: chrono::Utc::now(),
                    metadata: metadata(),
                })
                .collect();
            version = write.events.append(id, version, events).await?.version;
        }
        let mut times = Vec::with_capacity(SAMPLES);
        for n in 0..SAMPLES + 5 {
            let patch =
                MoviePatch::parse(MoviePatchInput { name: Some(format!("Day {n}")), ..Default::default() })?;
            let started = Instant::now();
            service.execute(id, None, MovieCommand::Patch(patch), context()).await?;
            if n >= 5 {
                times.push(started.elapsed());
            }
        }
        times.sort();
        let mut folds = Vec::new();
        for _ in 0..5 {
            let started = Instant::now();
            let events = write.events.load(id).await?;
            std::hint::black_box(fold(id, &events));
            folds.push(started.elapsed());
        }
        folds.sort();
        let p50 = percentile(&times, 0.5);
        let base = *base.get_or_insert(p50);
        println!(
            "{:<22} {:>10.2} {:>10.2} {:>11.2}x {:>16.2}",
            history,
            p50,
            percentile(&times, 0.99),
            p50 / base,
            percentile(&folds, 0.5)
        );
    }
    drop((service, write));
    if let Some(database) = database {
        database.drop().await?;
    }
    Ok(())
}
