//! Blue-green projection rebuilds. Each projection lives in numbered generations (a read store
//! file or Postgres schema, an index directory); the event store's `projection_generations`
//! says which one is live. `movies replay` builds generation N+1 from the whole log while N keeps
//! serving, flips the pointers in one transaction, and running servers follow within a second
//! and catch up from the new generation's checkpoint. An interrupted replay leaves the live
//! generation untouched; the next replay starts its shadow afresh.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use movies_read_model::{BulkLoad, Live, PgReadStore, ProjectionStore, SqliteReadStore, SuspendedIndexes};
use movies_search::TantivySearchIndex;
use movies_store::{
    connect_postgres, connect_postgres_schema, drop_postgres_schema, open_sqlite, GenerationStore,
};
use tokio::sync::watch;

use crate::Settings;

pub const READ_STORE: &str = "read-store";
pub const SEARCH: &str = "search";
/// Events to a batch: one read-store transaction and one search-index commit each (a shadow
/// nobody reads needs no finer steps; commits are what an index build spends most on). A batch
/// commits into a few large segments (the rebuild's writer has room for one, see
/// `TantivySearchIndex::open_for_rebuild`), which background merges then rewrite far less than
/// many small ones. Two batches are in memory at once: the one applied and the one read ahead.
const BATCH: i64 = 200_000;

/// Which projections a replay rebuilds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Which {
    ReadStore,
    Search,
    /// The Redis cache (distributed deployment): emptied, moved to a new page generation, and
    /// warmed from the live read store.
    Cache,
    /// Every projection (the cache too when Redis is configured).
    All,
}

impl Which {
    fn includes(self, projection: &str) -> bool {
        matches!(
            (self, projection),
            (Which::All, _) | (Which::ReadStore, READ_STORE) | (Which::Search, SEARCH)
        )
    }
}

fn read_store_file(settings: &Settings, generation: i64) -> PathBuf {
    match generation {
        0 => settings.data_dir.join("read.db"),
        n => settings.data_dir.join(format!("read-g{n}.db")),
    }
}

fn read_store_schema(generation: i64) -> String {
    format!("read_g{generation}")
}

/// Where generation `generation` of the search index lives.
pub fn index_dir(settings: &Settings, generation: i64) -> PathBuf {
    match generation {
        0 => settings.data_dir.join("index"),
        n => settings.data_dir.join(format!("index-g{n}")),
    }
}

/// Opens (creating if needed) generation `generation` of the read store.
pub async fn open_read_store(settings: &Settings, generation: i64) -> anyhow::Result<Arc<dyn BulkLoad>> {
    Ok(match (&settings.database_url, generation) {
        (Some(url), 0) => {
            let pool = connect_postgres(url, 16).await.context("connecting to Postgres")?;
            Arc::new(PgReadStore::open(pool).await.context("migrating the read store")?)
        }
        (Some(url), n) => {
            let pool = connect_postgres_schema(url, &read_store_schema(n), 16)
                .await
                .context("connecting to Postgres")?;
            Arc::new(PgReadStore::open(pool).await.context("migrating the read store")?)
        }
        (None, n) => {
            let path = read_store_file(settings, n);
            let file = open_sqlite(&path).await.with_context(|| format!("opening {}", path.display()))?;
            Arc::new(
                SqliteReadStore::open(file.writer, file.reader).await.context("migrating the read store")?,
            )
        }
    })
}

/// Generation `generation` of the Postgres read store through a read replica: queries only (the
/// primary creates and migrates it), so the connection only points its search path there.
pub async fn attach_read_replica(url: &str, generation: i64) -> anyhow::Result<Arc<dyn ProjectionStore>> {
    let mut options: sqlx::postgres::PgConnectOptions = url.parse().context("DATABASE_READ_URL")?;
    if generation > 0 {
        options = options.options([("search_path", read_store_schema(generation))]);
    }
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(32)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
        .context("connecting to the read replica")?;
    Ok(Arc::new(PgReadStore::attach(pool)))
}

/// Removes a generation that is not live. (Postgres's generation 0 shares the event log's
/// schema, so it is left in place.)
async fn remove(settings: &Settings, projection: &str, generation: i64) -> anyhow::Result<()> {
    if projection == SEARCH {
        let dir = index_dir(settings, generation);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        return Ok(());
    }
    match (&settings.database_url, generation) {
        (Some(_), 0) => {}
        (Some(url), n) => drop_postgres_schema(url, &read_store_schema(n)).await?,
        (None, n) => {
            let path = read_store_file(settings, n);
            for suffix in ["", "-wal", "-shm"] {
                let file = PathBuf::from(format!("{}{suffix}", path.display()));
                if file.exists() {
                    std::fs::remove_file(&file).with_context(|| format!("removing {}", file.display()))?;
                }
            }
        }
    }
    Ok(())
}

#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// `--dry-run`: what a replay would do.
    Planned(String),
    /// The new generations are live.
    Swapped { events: u64, seconds: f64 },
    /// Stopped before the swap: the live generations are untouched.
    Interrupted,
}

/// Rebuilds `which` from the log into new generations and makes them live.
pub async fn replay(
    settings: &Settings,
    which: Which,
    dry_run: bool,
    progress: &ProgressBar,
    mut interrupt: watch::Receiver<bool>,
) -> anyhow::Result<Outcome> {
    let write = crate::open_write_side(settings).await?;
    let head = write.events.head().await?;
    let mut plan = Vec::new();
    for projection in [READ_STORE, SEARCH].into_iter().filter(|p| which.includes(p)) {
        let live = write.generations.generation(projection).await?;
        plan.push((projection, live, live + 1));
    }
    if dry_run {
        let lines: Vec<String> = plan
            .iter()
            .map(|(p, live, next)| format!("{p}: rebuild generation {next} from {head} events, then swap it for live generation {live}"))
            .collect();
        return Ok(Outcome::Planned(lines.join("\n")));
    }
    for (projection, live, next) in &plan {
        // Leftovers: an interrupted shadow, and generations older than the live one.
        remove(settings, projection, *next).await?;
        for old in 0..*live {
            remove(settings, projection, old).await?;
        }
    }
    let read_store = match plan.iter().find(|(p, ..)| *p == READ_STORE) {
        Some((_, _, next)) => Some(open_read_store(settings, *next).await?),
        None => None,
    };
    let search = match plan.iter().find(|(p, ..)| *p == SEARCH) {
        Some((_, _, next)) => {
            Some(Arc::new(TantivySearchIndex::open_for_rebuild(&index_dir(settings, *next))?))
        }
        None => None,
    };
    progress.set_length(head as u64);
    progress.set_style(
        ProgressStyle::with_template("{spinner} replaying [{bar:30}] {pos}/{len} events {per_sec} eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let started = Instant::now();
    let names = plan.iter().map(|(p, ..)| (*p).to_owned()).collect();
    let mut report = crate::status::ReplayReport::new(&settings.data_dir, names, head);
    report.at(0);
    // The shadow is empty and nobody reads it yet: load it without secondary indexes and build
    // them once at the end, far cheaper than maintaining them row by row.
    let suspended = match &read_store {
        Some(store) => store.suspend_indexes().await?,
        None => SuspendedIndexes::default(),
    };
    // The next batch is read while this one is applied (the reader stops when this returns:
    // its next send fails).
    let (batches, mut next_batch) = tokio::sync::mpsc::channel(1);
    let events = write.events.clone();
    tokio::spawn(async move {
        let mut after = 0;
        loop {
            let batch = events.read_all(after, BATCH).await;
            // An empty batch (the end) or an error is the last thing sent.
            let last = batch.as_ref().ok().and_then(|b| b.last()).map(|e| e.position);
            if batches.send(batch).await.is_err() {
                return;
            }
            match last {
                Some(last) => after = last,
                None => return,
            }
        }
    });
    let mut applied = 0u64;
    loop {
        if *interrupt.borrow_and_update() {
            drop(search);
            for (projection, _, next) in &plan {
                remove(settings, projection, *next).await?;
            }
            return Ok(Outcome::Interrupted);
        }
        let batch = next_batch.recv().await.ok_or_else(|| anyhow::anyhow!("the log reader stopped"))??;
        let Some(last) = batch.last() else { break };
        let after = last.position;
        // The two projections are independent: write them at the same time, one per core.
        let batch = Arc::new(batch);
        let index_work = search.clone().map(|index| {
            let batch = batch.clone();
            tokio::task::spawn_blocking(move || index.apply(&batch))
        });
        if let Some(store) = &read_store {
            store.apply(&batch).await?;
        }
        if let Some(work) = index_work {
            work.await??;
        }
        applied += batch.len() as u64;
        progress.set_position(after as u64);
        report.at(after);
    }
    if let Some(store) = &read_store {
        let loaded = Instant::now();
        store.restore_indexes(suspended).await?;
        let (load, indexes) = ((loaded - started).as_secs_f64(), loaded.elapsed().as_secs_f64());
        tracing::info!(
            load_seconds = load,
            index_seconds = indexes,
            "the new read store is loaded and indexed"
        );
    }
    // Release the index writer before a server opens this generation.
    drop(search);
    let flips: Vec<(&str, i64)> = plan.iter().map(|(p, _, next)| (*p, *next)).collect();
    write.generations.set_generations(&flips).await?;
    progress.finish_and_clear();
    Ok(Outcome::Swapped { events: applied, seconds: started.elapsed().as_secs_f64() })
}

/// The live generations a server is using, and the task that follows `movies replay`.
pub struct Generations {
    pub read_store: Arc<Live<dyn ProjectionStore>>,
    pub search: Arc<Live<TantivySearchIndex>>,
    numbers: std::sync::Mutex<(i64, i64)>,
}

impl Generations {
    pub async fn open(settings: &Settings, generations: &dyn GenerationStore) -> anyhow::Result<Self> {
        let (read, index) =
            (generations.generation(READ_STORE).await?, generations.generation(SEARCH).await?);
        let read_store = open_read_store(settings, read).await?;
        let search =
            TantivySearchIndex::open(&index_dir(settings, index)).context("opening the search index")?;
        Ok(Self {
            read_store: Arc::new(Live::new(read_store)),
            search: Arc::new(Live::new(Arc::new(search))),
            numbers: std::sync::Mutex::new((read, index)),
        })
    }

    /// The generation numbers in use: (read store, search).
    pub fn numbers(&self) -> (i64, i64) {
        *self.numbers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Swaps to whatever generations the pointers name, if they changed; `cache` (over the read
    /// store) forgets everything when the read store is swapped.
    async fn follow(
        &self,
        settings: &Settings,
        generations: &dyn GenerationStore,
        cache: Option<&movies_cache::CachedReadStore>,
    ) -> anyhow::Result<()> {
        let (read, index) = self.numbers();
        let wanted = (generations.generation(READ_STORE).await?, generations.generation(SEARCH).await?);
        if wanted.0 != read {
            self.read_store.replace(open_read_store(settings, wanted.0).await?);
            if let Some(cache) = cache {
                cache.invalidate_all().await;
            }
            tracing::info!(generation = wanted.0, "now serving a rebuilt read store");
        }
        if wanted.1 != index {
            // The old index (and its writer) closes once in-flight searches let go of it.
            let search = TantivySearchIndex::open(&index_dir(settings, wanted.1))?;
            self.search.replace(Arc::new(search));
            tracing::info!(generation = wanted.1, "now serving a rebuilt search index");
        }
        *self.numbers.lock().unwrap_or_else(|p| p.into_inner()) = wanted;
        Ok(())
    }

    /// Follows the pointers once a second until `shutdown`.
    pub async fn run(
        self: Arc<Self>,
        settings: Settings,
        generations: Arc<dyn GenerationStore>,
        cache: Option<Arc<movies_cache::CachedReadStore>>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        while !*shutdown.borrow() {
            if let Err(error) = self.follow(&settings, generations.as_ref(), cache.as_deref()).await {
                tracing::error!(error = format!("{error:#}"), "following projection generations failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}

/// Rebuilds the cache from the live read store: every replica is told to forget its L1, Redis
/// loses every document and page, then gets every movie again (where the projector has not
/// written a newer one meanwhile). Returns the documents written.
pub async fn rebuild_cache(
    settings: &Settings,
    writer: &movies_cache::CacheWriter,
    progress: &ProgressBar,
) -> anyhow::Result<u64> {
    let write = crate::open_write_side(settings).await?;
    let store = open_read_store(settings, write.generations.generation(READ_STORE).await?).await?;
    anyhow::ensure!(writer.reset().await, "Redis is unreachable: the cache was left as it was");
    progress.set_style(
        ProgressStyle::with_template("{spinner} warming the cache: {pos} movies {per_sec}")
            .expect("valid template"),
    );
    let mut query = movies_read_model::ListQuery { limit: 1000, ..Default::default() };
    let mut written = 0;
    loop {
        let page = store.list(&query).await?;
        anyhow::ensure!(writer.warm(&page.items).await, "Redis went away while the cache was warmed");
        written += page.items.len() as u64;
        progress.inc(page.items.len() as u64);
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    progress.finish_and_clear();
    Ok(written)
}
