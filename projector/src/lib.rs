//! The in-process projector: tails the event log by position and applies each batch to the read
//! store and the search index. Each projection keeps its own checkpoint, written atomically with
//! its data, so a crash or restart resumes without losing or repeating an event's effect.
//!
//! Depends on the ports only (`EventStore`, `ReadStore`, the search index); never on HTTP.

pub mod verify;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use movies_events::{EventEnvelope, Position};
use movies_read_model::{Live, ProjectionError, ReadStore, TantivySearchIndex};
use movies_store::EventStore;
use tokio::sync::watch;

const BATCH: i64 = 500;
/// A safety net only: appends in this process wake the projector at once.
const IDLE_POLL: Duration = Duration::from_secs(1);

pub struct Projector {
    events: Arc<dyn EventStore>,
    read_store: Arc<dyn ReadStore>,
    search: Arc<Live<TantivySearchIndex>>,
    progress: watch::Sender<Position>,
}

impl Projector {
    /// `read_store` may itself be a `Live` one: both targets can be swapped while this runs.
    pub fn new(
        events: Arc<dyn EventStore>,
        read_store: Arc<dyn ReadStore>,
        search: Arc<Live<TantivySearchIndex>>,
    ) -> Self {
        Self { events, read_store, search, progress: watch::Sender::new(0) }
    }

    /// The position every projection has applied, updated as they advance.
    pub fn progress(&self) -> watch::Receiver<Position> {
        self.progress.subscribe()
    }

    async fn position(&self) -> anyhow::Result<Position> {
        Ok(self.read_store.checkpoint().await?.min(self.search.get().checkpoint()))
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
            self.apply_to_read_store(&batch).await?;
            let search = self.search.get();
            let healed = self.healed(&batch, |b| {
                let search = search.clone();
                async move { Ok(tokio::task::spawn_blocking(move || search.apply(&b)).await??) }
            });
            healed.await.context("updating the search index")?;
        }
    }

    async fn apply_to_read_store(&self, batch: &[EventEnvelope]) -> anyhow::Result<()> {
        let store = self.read_store.clone();
        self.healed(batch, |b| {
            let store = store.clone();
            async move { store.apply(&b).await.map_err(anyhow::Error::from) }
        })
        .await
        .context("updating the read store")
    }

    /// Applies a batch; when a projection reports a gap in a stream's versions, reads the
    /// missing events from the log, applies them first and retries.
    async fn healed<F, Fut>(&self, batch: &[EventEnvelope], apply: F) -> anyhow::Result<()>
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
                        let missing: Vec<_> = self
                            .events
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

    /// Runs until `shutdown` turns true, waking on every append in this process.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut appended = self.events.appended();
        let mut backoff = Duration::from_millis(100);
        while !*shutdown.borrow() {
            match self.catch_up().await {
                Ok(_) => backoff = Duration::from_millis(100),
                Err(error) => {
                    tracing::error!(error = format!("{error:#}"), "projection failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    continue;
                }
            }
            tokio::select! {
                _ = appended.changed() => {}
                _ = shutdown.changed() => {}
                _ = tokio::time::sleep(IDLE_POLL) => {}
            }
        }
    }
}
