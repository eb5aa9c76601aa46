//! The Kafka-fed projectors.
//!
//! - `project_read_store`: a consumer group; each process applies its partitions' events to the
//!   shared read store (per-stream versions, written in the same transaction, make a duplicate a
//!   no-op; a gap is filled from the log), writes the changed movies through to Redis, moves the
//!   read store's checkpoint past every event now applied, and only then commits its offsets.
//! - `project_search`: one process per query replica, reading every partition into a local
//!   tantivy index; its offsets are committed in the index's commit payload with the documents.
//!
//! Both first catch up from the log, so a new projection never depends on Kafka's retention.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use backon::Retryable;
use futures::StreamExt;
use movies_cache::CacheWriter;
use movies_events::{EventEnvelope, Position};
use movies_projector::{heal_gaps, Projector};
use movies_read_model::{ProjectionError, ProjectionStore};
use movies_search::SearchProjection;
use movies_store::EventStore;
use rdkafka::consumer::{CommitMode, Consumer, DefaultConsumerContext, MessageStream, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::wire::decode;

/// Events per applied batch, and how long a batch waits to fill once it has one event.
const BATCH: usize = 500;
const LINGER: Duration = Duration::from_millis(20);
/// How often an idle projector moves the checkpoint past events other processes applied.
const IDLE: Duration = Duration::from_millis(250);

#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    pub brokers: String,
    pub topic: String,
    pub group: String,
}

impl ConsumerSettings {
    fn consumer(&self) -> anyhow::Result<StreamConsumer> {
        ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", &self.group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            // Brokers answer a fetch as soon as data arrives; some (nisshi) only at the wait's
            // end, so keep the wait short: an idle consumer costs a few fetches a second.
            .set("fetch.wait.max.ms", "20")
            // New partitions and recreated topics are noticed within seconds.
            .set("topic.metadata.refresh.interval.ms", "2000")
            .create()
            .context("creating the Kafka consumer")
    }
}

/// An event as it came off a Kafka partition.
#[derive(Debug, Clone)]
struct Delivered {
    pub partition: i32,
    pub offset: i64,
    pub envelope: EventEnvelope,
}

/// Where a replica's index stands in one partition: the next offset to read and the highest
/// log position applied from it. The marks of every partition are the transport's state the
/// index commits with its documents, so a restart resumes at the next offset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
struct PartitionMark {
    pub next_offset: i64,
    pub position: Position,
}

/// The marks an index committed last (none for a new index).
fn partition_marks(index: &dyn SearchProjection) -> anyhow::Result<BTreeMap<i32, PartitionMark>> {
    let state = index.transport_state();
    if state.is_null() {
        return Ok(BTreeMap::new());
    }
    serde_json::from_value(state).context("the index's partition marks are unreadable: rebuild it")
}

/// The marks after `batch`: each partition's next offset and highest position move past it.
fn marks_after(mut marks: BTreeMap<i32, PartitionMark>, batch: &[Delivered]) -> BTreeMap<i32, PartitionMark> {
    for d in batch {
        let mark = marks.entry(d.partition).or_default();
        mark.next_offset = mark.next_offset.max(d.offset + 1);
        mark.position = mark.position.max(d.envelope.position);
    }
    marks
}

/// Marks as the index commits them (plain values always serialize).
fn state_of(marks: &BTreeMap<i32, PartitionMark>) -> serde_json::Value {
    serde_json::to_value(marks).expect("partition marks serialize")
}

/// The next batch: waits for one message (or `IDLE`), then takes what arrives within `LINGER`.
/// The stream lives as long as the consumer loop: it keeps its wake-up registered with
/// librdkafka across the idle timeouts. Errors the client reports while consuming (a topic the
/// relay has not created yet, a broker away) are transient: logged, and consuming goes on.
async fn next_batch(
    stream: &mut MessageStream<'_, DefaultConsumerContext>,
) -> anyhow::Result<Vec<Delivered>> {
    let mut batch = Vec::new();
    let mut deadline = tokio::time::Instant::now() + IDLE;
    while batch.len() < BATCH {
        let Ok(Some(received)) = tokio::time::timeout_at(deadline, stream.next()).await else {
            break;
        };
        match received {
            Ok(message) => {
                let envelope = decode(message.payload()).with_context(|| {
                    format!(
                        "partition {} offset {} holds an unreadable event",
                        message.partition(),
                        message.offset()
                    )
                })?;
                batch.push(Delivered { partition: message.partition(), offset: message.offset(), envelope });
                if batch.len() == 1 {
                    deadline = tokio::time::Instant::now() + LINGER;
                }
            }
            Err(error) => {
                tracing::warn!(%error, "Kafka reported an error; consuming on");
                tokio::time::sleep_until(deadline.min(tokio::time::Instant::now() + IDLE)).await;
            }
        }
    }
    Ok(batch)
}

/// Adds a batch to the offsets to commit: one past the last message of each partition.
fn add_offsets(next: &mut BTreeMap<i32, i64>, batch: &[Delivered]) {
    for d in batch {
        let offset = next.entry(d.partition).or_default();
        *offset = (*offset).max(d.offset + 1);
    }
}

fn offset_list(topic: &str, next: BTreeMap<i32, i64>) -> anyhow::Result<TopicPartitionList> {
    let mut list = TopicPartitionList::new();
    for (partition, offset) in next {
        list.add_partition_offset(topic, partition, Offset::Offset(offset))?;
    }
    Ok(list)
}

/// Moves the read store's checkpoint past every log event now applied (by any process).
async fn advance(events: &dyn EventStore, store: &dyn ProjectionStore) -> anyhow::Result<Position> {
    let mut checkpoint = store.checkpoint().await?;
    loop {
        let log = events.read_all(checkpoint, 1000).await?;
        if log.is_empty() {
            return Ok(checkpoint);
        }
        let reached = store.advance_checkpoint(&log).await?;
        if reached == checkpoint {
            return Ok(checkpoint);
        }
        checkpoint = reached;
    }
}

/// Brings the read store up to the log's head from the log itself, and empties the cache if
/// that changed anything (the cache was not told what).
async fn catch_up(
    events: &Arc<dyn EventStore>,
    store: &Arc<dyn ProjectionStore>,
    cache: Option<&CacheWriter>,
) -> anyhow::Result<Position> {
    let before = store.checkpoint().await.context("reading the read store's checkpoint")?;
    let caught_up = Projector::read_store_only(events.clone(), store.clone())
        .catch_up()
        .await
        .context("catching up from the event log")?;
    if let Some(cache) = cache {
        if caught_up > before && !cache.reset().await {
            // What the catch-up changed is not in the cache: its entries expire on their own.
            tracing::warn!("could not clear the cache after catching up from the log");
        }
    }
    Ok(caught_up)
}

/// The read store's projector in a consumer group. `progress` follows the checkpoint; when
/// `flips` changes (a replay made a rebuilt read store live), the new one is caught up from the
/// log before Kafka's events go on.
pub async fn project_read_store(
    events: Arc<dyn EventStore>,
    store: Arc<dyn ProjectionStore>,
    cache: Option<CacheWriter>,
    settings: ConsumerSettings,
    progress: watch::Sender<Position>,
    mut flips: watch::Receiver<i64>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    // Postgres going away meanwhile is waited out, as in every later step.
    progress.send_replace(retry(&mut shutdown, || catch_up(&events, &store, cache.as_ref())).await?);
    let consumer = settings.consumer()?;
    consumer.subscribe(&[&settings.topic]).context("subscribing to the topic")?;
    tracing::info!(topic = settings.topic, group = settings.group, "projecting the read store from Kafka");
    let mut stream = consumer.stream();
    // Offsets of batches applied but not yet acknowledged to Kafka.
    let mut uncommitted = BTreeMap::new();
    while !*shutdown.borrow() {
        if flips.has_changed().unwrap_or(false) {
            flips.mark_unchanged();
            let caught_up = retry(&mut shutdown, || catch_up(&events, &store, cache.as_ref())).await?;
            tracing::info!(position = caught_up, "caught the rebuilt read store up from the log");
        }
        let batch = tokio::select! {
            batch = next_batch(&mut stream) => batch?,
            _ = shutdown.changed() => break,
        };
        if !batch.is_empty() {
            let envelopes: Vec<EventEnvelope> = batch.iter().map(|d| d.envelope.clone()).collect();
            let apply = |b: Vec<EventEnvelope>| {
                let store = store.clone();
                async move { store.apply_unordered(&b).await.map_err(anyhow::Error::from) }
            };
            retry(&mut shutdown, || heal_gaps(events.as_ref(), &envelopes, apply)).await?;
        }
        // Writes the batch's movies through (and retries changes Redis missed meanwhile).
        let cached = match &cache {
            Some(cache) => cache.refresh(store.as_ref(), batch.iter().map(|d| d.envelope.stream_id)).await,
            None => true,
        };
        let checkpoint = retry(&mut shutdown, || advance(events.as_ref(), store.as_ref())).await?;
        progress.send_replace(checkpoint);
        add_offsets(&mut uncommitted, &batch);
        // A batch is acknowledged to Kafka only once its movies are in the cache: the changes
        // kept to write through die with this process, and a restart before then (here or in
        // another projector of the group) redelivers the batch and writes them again. A
        // redelivered event is not applied twice.
        if cached && !uncommitted.is_empty() {
            let offsets = offset_list(&settings.topic, std::mem::take(&mut uncommitted))?;
            if let Err(error) = consumer.commit(&offsets, CommitMode::Async) {
                // The next commit covers it; a redelivery meanwhile is a no-op.
                tracing::warn!(%error, "committing offsets failed");
            }
        }
    }
    Ok(())
}

/// A query replica's search projector: every partition into a local index, offsets in the
/// index's commit payload.
pub async fn project_search(
    events: Arc<dyn EventStore>,
    index: Arc<dyn SearchProjection>,
    settings: ConsumerSettings,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let consumer = settings.consumer()?;
    // The relay creates the topic: wait for it (the roles start in any order).
    let partitions = loop {
        let metadata = consumer.fetch_metadata(Some(&settings.topic), Duration::from_secs(5));
        let partitions: Vec<i32> = metadata
            .iter()
            .flat_map(|m| m.topics().iter().filter(|t| t.error().is_none()).flat_map(|t| t.partitions()))
            .map(|p| p.id())
            .collect();
        if !partitions.is_empty() {
            break partitions;
        }
        tracing::info!(topic = settings.topic, "waiting for the relay to create the topic");
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = shutdown.changed() => return Ok(()),
        }
    };
    let mut marks = partition_marks(index.as_ref())?;
    if marks.is_empty() {
        // A new index: build it from the log, then read every partition from its start,
        // skipping what the log already gave.
        // Postgres going away meanwhile is waited out: the build resumes at the index's checkpoint.
        let build = Projector::search_only(events.clone(), index.clone());
        let floor = retry(&mut shutdown, || async {
            build.catch_up().await.context("building the index from the log")
        })
        .await?;
        marks = partitions.iter().map(|p| (*p, PartitionMark { next_offset: 0, position: floor })).collect();
        let (index, state) = (index.clone(), state_of(&marks));
        tokio::task::spawn_blocking(move || index.set_transport_state(state)).await??;
    }
    let mut assignment = TopicPartitionList::new();
    for partition in &partitions {
        let offset = marks.get(partition).map_or(Offset::Beginning, |m| Offset::Offset(m.next_offset));
        assignment.add_partition_offset(&settings.topic, *partition, offset)?;
    }
    consumer.assign(&assignment).context("assigning the partitions")?;
    tracing::info!(
        topic = settings.topic,
        partitions = partitions.len(),
        "projecting the search index from Kafka"
    );
    let mut stream = consumer.stream();
    while !*shutdown.borrow() {
        let batch = tokio::select! {
            batch = next_batch(&mut stream) => batch?,
            _ = shutdown.changed() => break,
        };
        if batch.is_empty() {
            continue;
        }
        let next = marks_after(marks.clone(), &batch);
        retry(&mut shutdown, || apply_search(events.as_ref(), &index, &batch, &next)).await?;
        marks = next;
    }
    Ok(())
}

/// Applies a delivered batch to the index with the partition marks after it, filling gaps from
/// the log.
async fn apply_search(
    events: &dyn EventStore,
    index: &Arc<dyn SearchProjection>,
    batch: &[Delivered],
    marks: &BTreeMap<i32, PartitionMark>,
) -> anyhow::Result<()> {
    let envelopes: Vec<EventEnvelope> = batch.iter().map(|d| d.envelope.clone()).collect();
    for _ in 0..BATCH {
        let (target, delivered, state) = (index.clone(), envelopes.clone(), state_of(marks));
        match tokio::task::spawn_blocking(move || target.apply_delivered(&delivered, state)).await? {
            Ok(()) => return Ok(()),
            Err(ProjectionError::Gap { stream_id, have, got }) => {
                tracing::warn!(%stream_id, have, got, "healing a gap in a stream from the log");
                let missing: Vec<_> = events
                    .load(stream_id)
                    .await?
                    .into_iter()
                    .filter(|e| e.stream_version > have && e.stream_version < got)
                    .collect();
                let target = index.clone();
                tokio::task::spawn_blocking(move || target.apply_exact(&missing)).await??;
            }
            Err(error) => return Err(error.into()),
        }
    }
    anyhow::bail!("a batch kept reporting gaps after healing")
}

/// Retries a step that failed for want of a dependency (Postgres down) until it succeeds or
/// shutdown; the batch is kept meanwhile, so nothing is skipped.
async fn retry<T, F, Fut>(shutdown: &mut watch::Receiver<bool>, step: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let stopping = shutdown.clone();
    step.retry(crate::retry_policy())
        .sleep(crate::sleep_until_shutdown(shutdown))
        .when(move |_| !*stopping.borrow())
        .notify(|error, wait| {
            tracing::warn!(error = format!("{error:#}"), retry_in = ?wait, "projection step failed; retrying")
        })
        .await
}

#[cfg(test)]
mod tests {
    use movies_events::{MovieEvent, MovieFields};
    use movies_search::TantivySearchIndex;
    use movies_store::testing::recorded;
    use uuid::Uuid;

    use super::*;

    fn on(partition: i32, offset: i64, envelope: &EventEnvelope) -> Delivered {
        Delivered { partition, offset, envelope: envelope.clone() }
    }

    /// A replica's index fed from Kafka: a republished event is skipped, so a deleted movie does
    /// not come back, and the partition marks commit with the documents and survive a reopen.
    #[test]
    fn the_index_skips_republished_events_and_resumes_at_its_partition_marks() {
        let dir = tempfile::tempdir().unwrap();
        let index = TantivySearchIndex::open(dir.path()).unwrap();
        let fields = |name: &str| MovieFields {
            name: name.into(),
            director: "Someone".into(),
            popularity: 1.0,
            imdb_score: 5.0,
            genres: vec!["Drama".into()],
        };
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let all = [
            recorded(1, a, 1, MovieEvent::Created(fields("Alien"))),
            recorded(2, a, 2, MovieEvent::Deleted),
            recorded(3, b, 1, MovieEvent::Created(fields("Heat"))),
        ];
        let apply = |batch: &[Delivered], marks: BTreeMap<i32, PartitionMark>| {
            let marks = marks_after(marks, batch);
            let events: Vec<EventEnvelope> = batch.iter().map(|d| d.envelope.clone()).collect();
            index.apply_delivered(&events, state_of(&marks)).unwrap();
            marks
        };
        let marks = apply(&[on(0, 0, &all[0]), on(0, 1, &all[1]), on(1, 0, &all[2])], BTreeMap::new());
        // The relay crashed before recording its position and publishes movie a's events again.
        let marks = apply(&[on(0, 2, &all[0])], marks);
        let found = index
            .search(&movies_search::SearchQuery { text: "alien".into(), limit: 10, ..Default::default() })
            .unwrap();
        assert!(found.hits.is_empty(), "the deleted movie stays deleted");
        assert_eq!(index.len(), 1);
        assert_eq!((marks[&0].next_offset, marks[&0].position), (3, 2));
        assert_eq!((marks[&1].next_offset, marks[&1].position), (1, 3));
        assert_eq!(partition_marks(&index).unwrap(), marks);

        drop(index);
        let reopened = TantivySearchIndex::open(dir.path()).unwrap();
        assert_eq!(partition_marks(&reopened).unwrap(), marks);
    }
}
