//! The in-process projector: tails the event log by position and applies each batch to the read
//! store and the search index. Each projection keeps its own checkpoint, written atomically with
//! its data, so a crash or restart resumes without losing or repeating an event's effect.
//!
//! Depends on the ports only (`EventStore`, `ReadStore`, the search index); never on HTTP.

pub mod verify;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use backon::Retryable;
use movies_events::{EventEnvelope, Position};
use movies_read_model::{ProjectionError, ProjectionStore, ReadCache};
use movies_search::SearchProjection;
use movies_store::EventStore;
use tokio::sync::watch;

const BATCH: i64 = 500;
/// A safety net only: appends in this process wake the projector at once.
const IDLE_POLL: Duration = Duration::from_secs(1);

pub struct Projector {
    events: Arc<dyn EventStore>,
    read_store: Option<Arc<dyn ProjectionStore>>,
    search: Option<Arc<dyn SearchProjection>>,
    /// An in-process cache over the read store, told what each batch changed.
    cache: Option<Arc<dyn ReadCache>>,
    progress: watch::Sender<Position>,
}

impl Projector {
    /// `read_store` may itself be a `Live` one: both targets can be swapped while this runs.
    pub fn new(
        events: Arc<dyn EventStore>,
        read_store: Arc<dyn ProjectionStore>,
        search: Arc<dyn SearchProjection>,
    ) -> Self {
        Self::of(events, Some(read_store), Some(search))
    }

    /// Projects the read store only (the distributed projector's log catch-up).
    pub fn read_store_only(events: Arc<dyn EventStore>, read_store: Arc<dyn ProjectionStore>) -> Self {
        Self::of(events, Some(read_store), None)
    }

    /// Projects the search index only (a query replica's own search projector).
    pub fn search_only(events: Arc<dyn EventStore>, search: Arc<dyn SearchProjection>) -> Self {
        Self::of(events, None, Some(search))
    }

    fn of(
        events: Arc<dyn EventStore>,
        read_store: Option<Arc<dyn ProjectionStore>>,
        search: Option<Arc<dyn SearchProjection>>,
    ) -> Self {
        Self { events, read_store, search, cache: None, progress: watch::Sender::new(0) }
    }

    /// Keeps `cache` current: after each batch reaches the read store, the movies it changed are
    /// dropped from the cache before the new position is published.
    pub fn with_cache(mut self, cache: Arc<dyn ReadCache>) -> Self {
        self.cache = Some(cache);
        self
    }

    /// The position every projection has applied, updated as they advance.
    pub fn progress(&self) -> watch::Receiver<Position> {
        self.progress.subscribe()
    }

    async fn position(&self) -> anyhow::Result<Position> {
        let read_store = match &self.read_store {
            Some(store) => store.checkpoint().await?,
            None => Position::MAX,
        };
        let search = self.search.as_ref().map_or(Position::MAX, |s| s.checkpoint());
        Ok(read_store.min(search))
    }

    /// Applies everything up to the log's current head; returns the position reached.
    pub async fn catch_up(&self) -> anyhow::Result<Position> {
        loop {
            let from = self.position().await?;
            self.progress.send_if_modified(|p| std::mem::replace(p, from) != from);
            let batch = self.events.read_all(from, BATCH).await.context("reading the event log")?;
            if batch.is_empty() {
                return Ok(from);
            }
            if let Some(store) = &self.read_store {
                let apply =
                    |b: Vec<EventEnvelope>| async move { store.apply(&b).await.map_err(anyhow::Error::from) };
                heal_gaps(self.events.as_ref(), &batch, apply).await.context("updating the read store")?;
                if let Some(cache) = &self.cache {
                    let ids: Vec<_> = batch.iter().map(|e| e.stream_id).collect();
                    cache.changed(&ids).await;
                }
            }
            if let Some(search) = &self.search {
                let apply = |b: Vec<EventEnvelope>| {
                    let search = search.clone();
                    async move { Ok(tokio::task::spawn_blocking(move || search.apply(&b)).await??) }
                };
                heal_gaps(self.events.as_ref(), &batch, apply).await.context("updating the search index")?;
            }
        }
    }

    /// Runs until `shutdown` turns true, waking on every append in this process.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut appended = self.events.appended();
        // A failed catch-up is retried from the checkpoints, 100 ms doubling to 10 s.
        let policy = backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(Duration::from_secs(10))
            .with_jitter()
            .without_max_times();
        while !*shutdown.borrow() {
            let stopping = shutdown.clone();
            let caught_up = (|| self.catch_up())
                .retry(policy)
                .when(move |_| !*stopping.borrow())
                .notify(|error, _| {
                    tracing::error!(error = format!("{error:#}"), "projection failed; retrying")
                })
                .await;
            if caught_up.is_err() {
                continue;
            }
            tokio::select! {
                _ = appended.changed() => {}
                _ = shutdown.changed() => {}
                _ = tokio::time::sleep(IDLE_POLL) => {}
            }
        }
    }
}

/// Applies a batch with `apply`; when a projection reports a gap in a stream's versions, reads
/// the missing events from the log, applies them first and retries.
pub async fn heal_gaps<F, Fut>(
    events: &dyn EventStore,
    batch: &[EventEnvelope],
    apply: F,
) -> anyhow::Result<()>
where
    F: Fn(Vec<EventEnvelope>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    for _ in 0..BATCH {
        match apply(batch.to_vec()).await {
            Err(error) => match error.downcast_ref::<ProjectionError>() {
                Some(ProjectionError::Gap { stream_id, have, got }) => {
                    let (have, got) = (*have, *got);
                    tracing::warn!(%stream_id, have, got, "healing a gap in a stream from the log");
                    let missing: Vec<_> = events
                        .load(*stream_id)
                        .await?
                        .into_iter()
                        .filter(|e| e.stream_version > have && e.stream_version < got)
                        .collect();
                    apply(missing).await?;
                }
                _ => return Err(error),
            },
            Ok(()) => return Ok(()),
        }
    }
    anyhow::bail!("a batch kept reporting gaps after healing")
}
