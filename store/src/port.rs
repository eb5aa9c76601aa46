use async_trait::async_trait;
use chrono::{DateTime, Utc};
use movies_events::{DecodeError, EventEnvelope, NewEvent, Position, Version};
use tokio::sync::watch;
use uuid::Uuid;

/// What an append wrote (or, for a retry, what the original append wrote).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub stream_id: Uuid,
    /// The stream's version after the append.
    pub version: Version,
    /// The global position of the first and last appended event.
    pub first_position: Position,
    pub last_position: Position,
    /// True when the event ids were already stored: nothing was written this time.
    pub replayed: bool,
}

/// A stream's state folded up to `version`, stored beside the log so a command need not fold the
/// whole stream again. Never the source of truth: the store may lose one at any time, and the
/// log rebuilds it. The store keeps `state` as it is given and does not read it.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub version: Version,
    /// The log position of the event at `version`.
    pub position: Position,
    /// The layout of `state`: a reader that knows another one ignores the snapshot.
    pub schema: i32,
    pub state: serde_json::Value,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The stream is not at the version the caller decided against: someone else appended first.
    #[error("stream {stream_id} is at version {actual}, not {expected}")]
    Conflict { stream_id: Uuid, expected: Version, actual: Version },
    /// One of the event ids (but not the first) is already stored: a malformed retry.
    #[error("event {0} is already stored in another append")]
    DuplicateEvent(Uuid),
    #[error("an append needs at least one event")]
    NothingToAppend,
    #[error("stored event at position {position} cannot be read")]
    Decode {
        position: Position,
        #[source]
        source: DecodeError,
    },
    #[error("the event store is unavailable")]
    Unavailable(#[source] sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        StoreError::Unavailable(error)
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What an audit query selects from the whole log. Unset fields select everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventFilter {
    /// The actor's subject, exactly (`alice`, `system:ingest`).
    pub actor: Option<String>,
    /// The stored event type (`movie.updated`).
    pub event_type: Option<String>,
    /// Recorded at or after.
    pub since: Option<DateTime<Utc>>,
    /// Recorded before.
    pub until: Option<DateTime<Utc>>,
}

/// Append-only streams, one per movie, and one global commit-ordered log over all of them.
///
/// Contract (checked by `contract`, for every adapter):
/// - `append` writes all events or none, with consecutive stream versions after `expected`, and
///   fails with `Conflict` if the stream is no longer at `expected` (0 = a new stream).
/// - Appending events whose first event id is already stored is a retry: it returns the original
///   `Appended` (with `replayed: true`) and writes nothing, whatever stream or version it names.
/// - Positions grow in commit order: once `read_all` has returned position `p`, no event with a
///   position below `p` can appear later. Positions may have gaps.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Every event of one stream, in version order; empty if the stream does not exist.
    async fn load(&self, stream_id: Uuid) -> Result<Vec<EventEnvelope>>;

    /// The stream's stored snapshot, if any, and its events after it (after version 0 without
    /// one), in version order: a stream's whole state, read at one moment.
    async fn load_from_snapshot(&self, stream_id: Uuid) -> Result<(Option<Snapshot>, Vec<EventEnvelope>)>;

    /// Stores `snapshot` for the stream unless one at the same or a later version, of the same
    /// schema, is stored already.
    async fn save_snapshot(&self, stream_id: Uuid, snapshot: &Snapshot) -> Result<()>;

    async fn append(&self, stream_id: Uuid, expected: Version, events: Vec<NewEvent>) -> Result<Appended>;

    /// Appends to many streams in one transaction: all or nothing, positions still commit-ordered.
    /// The bulk path for ingest and benchmarks; each stream follows `append`'s rules.
    async fn append_batch(&self, appends: Vec<(Uuid, Version, Vec<NewEvent>)>) -> Result<Vec<Appended>>;

    /// Up to `limit` events with a position above `after`, in position order.
    async fn read_all(&self, after: Position, limit: i64) -> Result<Vec<EventEnvelope>>;

    /// Up to `limit` events matching `filter` with a position above `after`, in position order.
    async fn query(&self, filter: &EventFilter, after: Position, limit: i64) -> Result<Vec<EventEnvelope>>;

    /// The position of the last committed event (0 for an empty log).
    async fn head(&self) -> Result<Position>;

    /// The current version of each of `ids` that has a stream (absent ones are left out): what
    /// a bulk ingest reads to tell new movies from existing ones in one query per batch.
    async fn stream_versions(&self, ids: &[Uuid]) -> Result<std::collections::HashMap<Uuid, Version>>;

    /// A receiver that changes whenever this process appends: the in-process transport that
    /// wakes a tailing projector without polling.
    fn appended(&self) -> watch::Receiver<Position>;
}
