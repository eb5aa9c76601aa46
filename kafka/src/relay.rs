//! The outbox relay: tails the event log in commit order and publishes each event to Kafka,
//! then records how far it got in Postgres. One relay publishes at a time (a session advisory
//! lock elects the leader; others stand by), so the topic receives the log in order. A broker
//! outage only delays publishing: the relay retries the same events, in order, until they are
//! acknowledged; the command API never waits on it.
//!
//! The lock is held on a connection of its own, taken out of the pool: whenever leading ends (a
//! failure, a shutdown) that connection is closed, and the lock with it, so the next attempt (this
//! relay's or another's) can take it at once. The position is written on the same connection,
//! and only forwards: a relay that lost its session cannot write, and none can move it back.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use backon::Retryable;
use movies_events::Position;
use movies_store::EventStore;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::ClientConfig;
use sqlx::postgres::{PgConnection, PgListener, PgPool};
use sqlx::Connection;
use tokio::sync::watch;

use crate::wire::encode;

/// The advisory lock key the leading relay holds for as long as it runs.
pub const RELAY_LOCK: i64 = 0x6d6f_7669_6573_0001;
/// The Postgres channel the event store notifies on every commit.
const CHANNEL: &str = "movies_events";
/// Events per round: read, publish, wait for every acknowledgement, record the position.
const BATCH: i64 = 1000;
/// A safety net only: every commit notifies.
const IDLE_POLL: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct RelaySettings {
    pub brokers: String,
    pub topic: String,
    pub partitions: i32,
    pub replication: i32,
    /// How long the producer tries to deliver an event before leading fails and starts over.
    pub message_timeout: Duration,
}

/// What the relay is doing, for its health report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayState {
    Starting,
    /// Another relay holds the lock and publishes.
    StandingBy,
    Publishing,
    /// Leading failed (the broker or Postgres unreachable): retrying, with the last error.
    Failing(String),
}

pub struct Relay {
    pool: PgPool,
    events: Arc<dyn EventStore>,
    settings: RelaySettings,
    published: watch::Sender<Position>,
    state: watch::Sender<RelayState>,
}

impl Relay {
    /// `pool` is the event log's database (its migrations create `relay_positions`).
    pub fn new(pool: PgPool, events: Arc<dyn EventStore>, settings: RelaySettings) -> Self {
        let state = watch::Sender::new(RelayState::Starting);
        Self { pool, events, settings, published: watch::Sender::new(0), state }
    }

    /// What the relay is doing now.
    pub fn state(&self) -> watch::Receiver<RelayState> {
        self.state.subscribe()
    }

    /// The log position up to which every event is acknowledged by the broker.
    pub fn published(&self) -> watch::Receiver<Position> {
        self.published.subscribe()
    }

    /// Runs until `shutdown` turns true. Failures (Postgres or the broker unreachable) are
    /// retried with backoff; nothing is skipped.
    pub async fn run(&self, shutdown: watch::Receiver<bool>) {
        let stopping = shutdown.clone();
        // Ends on a clean shutdown, or with the last failure once shutdown stops the retries.
        let _ = (|| self.lead(shutdown.clone()))
            .retry(crate::retry_policy())
            .sleep(crate::sleep_until_shutdown(&shutdown))
            .when(move |_| !*stopping.borrow())
            .notify(|error, wait| {
                let error = format!("{error:#}");
                tracing::warn!(error, retry_in = ?wait, "the relay stopped publishing; retrying");
                self.state.send_replace(RelayState::Failing(error));
            })
            .await;
    }

    /// Waits to become the leader, then publishes until shutdown or a failure. The lock's
    /// connection is closed however this ends, releasing the lock.
    async fn lead(&self, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        let mut lock = self.pool.acquire().await.context("connecting to Postgres")?.detach();
        let outcome = self.publish(&mut lock, shutdown).await;
        // A graceful goodbye ends the session (and the lock) at once; if Postgres cannot be
        // reached to say it, dropping the connection closes its socket, which ends it too.
        let _ = tokio::time::timeout(Duration::from_secs(2), lock.close()).await;
        outcome
    }

    async fn publish(
        &self,
        lock: &mut PgConnection,
        mut shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        loop {
            let leader: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(RELAY_LOCK)
                .fetch_one(&mut *lock)
                .await
                .context("taking the relay lock")?;
            if leader {
                break;
            }
            if *self.state.borrow() != RelayState::StandingBy {
                tracing::info!("another relay is publishing; standing by");
                self.state.send_replace(RelayState::StandingBy);
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => return Ok(()),
            }
        }
        tracing::info!(topic = self.settings.topic, "leading relay: publishing the event log");
        let mut listener = PgListener::connect_with(&self.pool).await.context("listening for commits")?;
        listener.listen(CHANNEL).await.context("listening for commits")?;
        self.ensure_topic().await?;
        let producer = self.producer()?;
        let mut position = self.position(&mut *lock).await?;
        self.published.send_replace(position);
        self.state.send_replace(RelayState::Publishing);
        loop {
            if *shutdown.borrow() {
                producer.flush(Duration::from_secs(5)).ok();
                return Ok(());
            }
            // Still the leader? (The lock lives as long as this session.)
            sqlx::query("SELECT 1").execute(&mut *lock).await.context("the relay lock's session ended")?;
            let batch = self.events.read_all(position, BATCH).await.context("reading the event log")?;
            let Some(last) = batch.last().map(|e| e.position) else {
                tokio::select! {
                    notified = listener.recv() => { notified.context("listening for commits")?; }
                    _ = tokio::time::sleep(IDLE_POLL) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            };
            let mut deliveries = Vec::with_capacity(batch.len());
            for envelope in &batch {
                let (key, value, headers) = encode(envelope);
                let record =
                    FutureRecord::to(&self.settings.topic).key(&key).payload(&value).headers(headers);
                deliveries
                    .push(producer.send_result(record).map_err(|(e, _)| e).context("queueing an event")?);
            }
            for delivery in deliveries {
                match delivery.await {
                    Ok(Ok(_)) => {}
                    Ok(Err((error, _))) => {
                        return Err(error).context("the broker did not acknowledge an event")
                    }
                    Err(_) => anyhow::bail!("the producer went away before acknowledging an event"),
                }
            }
            // On the lock's own session (a relay that lost it cannot write here), and never
            // backwards.
            sqlx::query(
                "INSERT INTO relay_positions (topic, position) VALUES ($1, $2) \
                 ON CONFLICT (topic) DO UPDATE SET position = GREATEST(relay_positions.position, excluded.position)",
            )
            .bind(&self.settings.topic)
            .bind(last)
            .execute(&mut *lock)
            .await
            .context("recording the relay position")?;
            position = last;
            self.published.send_replace(position);
            tracing::debug!(position, events = batch.len(), "published");
        }
    }

    async fn position(&self, lock: &mut PgConnection) -> anyhow::Result<Position> {
        let stored: Option<Position> =
            sqlx::query_scalar("SELECT position FROM relay_positions WHERE topic = $1")
                .bind(&self.settings.topic)
                .fetch_optional(lock)
                .await
                .context("reading the relay position")?;
        Ok(stored.unwrap_or(0))
    }

    fn producer(&self) -> anyhow::Result<FutureProducer> {
        ClientConfig::new()
            .set("bootstrap.servers", &self.settings.brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            // Java's partitioner: the same key lands in the same partition whoever produces it.
            .set("partitioner", "murmur2_random")
            .set("linger.ms", "1")
            .set("message.timeout.ms", self.settings.message_timeout.as_millis().to_string())
            .create()
            .context("creating the Kafka producer")
    }

    async fn ensure_topic(&self) -> anyhow::Result<()> {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.settings.brokers)
            .create()
            .context("creating the Kafka admin client")?;
        let topic = NewTopic::new(
            &self.settings.topic,
            self.settings.partitions,
            TopicReplication::Fixed(self.settings.replication),
        );
        // Bounded both ways: without a broker the request would wait for one indefinitely,
        // holding the leader's lock all the while.
        let options = AdminOptions::new()
            .operation_timeout(Some(Duration::from_secs(10)))
            .request_timeout(Some(Duration::from_secs(10)));
        for result in admin.create_topics(&[topic], &options).await.context("creating the topic")? {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => anyhow::bail!("creating the topic {topic}: {code}"),
            }
        }
        Ok(())
    }
}

/// How far the relay has published, from any process on the same database (for lag reports).
pub async fn published_position(pool: &PgPool, topic: &str) -> Option<Position> {
    sqlx::query_scalar("SELECT position FROM relay_positions WHERE topic = $1")
        .bind(topic)
        .fetch_optional(pool)
        .await
        .ok()
        .flatten()
}
