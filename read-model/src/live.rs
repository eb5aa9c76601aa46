//! Projection targets that can be replaced while in use, for blue-green rebuilds: `movies replay`
//! builds a new generation beside the live one, and a running server swaps to it between two
//! requests. Each call takes whichever target is current when it starts.

use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use movies_events::{EventEnvelope, Position, Version};
use uuid::Uuid;

use crate::doc::{GenreCount, ListQuery, MovieDoc, Page};
use crate::store::{ProjectionStore, ReadStore, Result};

/// The current target behind an atomic pointer: every request reads it, without a lock.
pub struct Live<T: ?Sized> {
    // Arc-swap holds sized values: a trait object's `Arc` goes in one more `Arc`.
    current: ArcSwap<Arc<T>>,
}

impl<T: ?Sized> Live<T> {
    pub fn new(value: Arc<T>) -> Self {
        Self { current: ArcSwap::from_pointee(value) }
    }

    pub fn get(&self) -> Arc<T> {
        Arc::clone(&self.current.load())
    }

    /// Makes `value` current and returns the previous target.
    pub fn replace(&self, value: Arc<T>) -> Arc<T> {
        Arc::unwrap_or_clone(self.current.swap(Arc::new(value)))
    }
}

#[async_trait]
impl ReadStore for Live<dyn ProjectionStore> {
    async fn get(&self, id: Uuid) -> Result<Option<MovieDoc>> {
        Live::get(self).get(id).await
    }

    async fn get_many(&self, ids: &[Uuid]) -> Result<Vec<MovieDoc>> {
        Live::get(self).get_many(ids).await
    }

    async fn list(&self, query: &ListQuery) -> Result<Page<MovieDoc>> {
        Live::get(self).list(query).await
    }

    async fn genres(&self) -> Result<Vec<GenreCount>> {
        Live::get(self).genres().await
    }

    async fn checkpoint(&self) -> Result<Position> {
        Live::get(self).checkpoint().await
    }
}

#[async_trait]
impl ProjectionStore for Live<dyn ProjectionStore> {
    async fn stream_version(&self, id: Uuid) -> Result<Version> {
        Live::get(self).stream_version(id).await
    }

    async fn apply(&self, events: &[EventEnvelope]) -> Result<()> {
        Live::get(self).apply(events).await
    }

    async fn apply_unordered(&self, events: &[EventEnvelope]) -> Result<()> {
        Live::get(self).apply_unordered(events).await
    }

    async fn advance_checkpoint(&self, log: &[EventEnvelope]) -> Result<Position> {
        Live::get(self).advance_checkpoint(log).await
    }
}
