//! Single reads that miss the caches at the same moment, gathered into one `get_many`.
//!
//! Under load, many requests miss L1 at once (random movies' details): each one alone was a
//! query of its own, and most of a point query's cost is the trip to the store (for SQLite, a
//! hand-off to the connection's worker thread and back), not the row. Here a miss joins a queue;
//! a gatherer takes everything queued as soon as one of its few loads is free, and reads
//! it in one query. Alone, a miss is one query, as before, plus a channel hop: batches form only
//! while the loads are busy, and grow with the load.

use std::collections::HashMap;
use std::sync::Arc;

use movies_read_model::{MovieDoc, ProjectionError, ProjectionResult as Result, ReadStore};
use tokio::sync::{mpsc, oneshot, Semaphore};
use uuid::Uuid;

/// Loads in flight at once: one per two cores. Each holds a connection of the store's pool,
/// and fewer loads make bigger batches: on two cores, random details of 5M movies ran at 57k
/// requests a second with one load at a time, 50k with two and 45k with four (40k ungathered).
fn loads_at_once() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}
/// The most ids one load asks for.
const MOST_IN_A_LOAD: usize = 256;
/// Misses that may wait for a load; past it, a miss waits for room (each is a request's task).
const QUEUED: usize = 4096;

type Answer = oneshot::Sender<std::result::Result<Option<MovieDoc>, Arc<ProjectionError>>>;

pub(crate) struct Gathered {
    queue: mpsc::Sender<(Uuid, Answer)>,
}

impl Gathered {
    /// Gathers reads of `inner` on a task that lives as long as this does.
    pub(crate) fn new(inner: Arc<dyn ReadStore>) -> Self {
        let (queue, waiting) = mpsc::channel(QUEUED);
        tokio::spawn(gather(inner, waiting));
        Self { queue }
    }

    /// One movie, read in whichever load gathers it.
    pub(crate) async fn get(&self, id: Uuid) -> Result<Option<MovieDoc>> {
        let (answer, answered) = oneshot::channel();
        // The gatherer is gone only while the process shuts down.
        let closed = || ProjectionError::Unavailable(sqlx::Error::PoolClosed);
        self.queue.send((id, answer)).await.map_err(|_| closed())?;
        answered.await.map_err(|_| closed())?.map_err(ProjectionError::Shared)
    }
}

async fn gather(inner: Arc<dyn ReadStore>, mut waiting: mpsc::Receiver<(Uuid, Answer)>) {
    let loads = Arc::new(Semaphore::new(loads_at_once()));
    while let Some(first) = waiting.recv().await {
        // A free load first, then everything queued meanwhile: while every load is busy, misses
        // gather here.
        let Ok(load) = loads.clone().acquire_owned().await else { return };
        let mut batch = vec![first];
        while batch.len() < MOST_IN_A_LOAD {
            match waiting.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let inner = inner.clone();
        tokio::spawn(async move {
            let _load = load;
            let mut ids: Vec<Uuid> = batch.iter().map(|(id, _)| *id).collect();
            ids.sort_unstable();
            ids.dedup();
            match inner.get_many(&ids).await {
                Ok(docs) => {
                    let found: HashMap<Uuid, MovieDoc> = docs.into_iter().map(|d| (d.id, d)).collect();
                    for (id, answer) in batch {
                        // A movie asked for twice in one load goes to both.
                        let _ = answer.send(Ok(found.get(&id).cloned()));
                    }
                }
                Err(error) => {
                    let error = Arc::new(error);
                    for (_, answer) in batch {
                        let _ = answer.send(Err(error.clone()));
                    }
                }
            }
        });
    }
}
