//! The command path: load a stream (from its snapshot), let the domain decide, append what it
//! decided.

use std::sync::Arc;

use chrono::{DateTime, SubsecRound, Utc};
use movies_events::{
    EventEnvelope, EventMetadata, Movie, MovieCommand, MovieDraft, MovieError, NewEvent, Position, Version,
};
use movies_read_model::{Folded, MovieDoc};
use movies_store::{EventStore, Snapshot, StoreError};
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Rejected(#[from] MovieError),
    /// The client's `If-Match` names another version than the stream's.
    #[error("the movie is at version {actual}, not {expected}")]
    VersionMismatch { expected: Version, actual: Version },
    /// Another writer appended between our read and our append.
    #[error("the movie was changed concurrently; reload it and retry")]
    Conflict,
    /// An idempotency key came back with a different request.
    #[error("this Idempotency-Key was already used for a different request")]
    KeyReused,
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for CommandError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict { .. } => CommandError::Conflict,
            other => CommandError::Store(other),
        }
    }
}

/// Who sent a command and on behalf of which request.
#[derive(Debug, Clone)]
pub struct CommandContext {
    pub metadata: EventMetadata,
    /// Set for retry-safe commands (an Idempotency-Key, an ingest record): the id of the first
    /// event. Appending an id that is stored already returns the original outcome.
    pub event_id: Option<Uuid>,
}

/// What a command did.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub id: Uuid,
    /// The movie after the command; `None` once deleted.
    pub movie: Option<MovieDoc>,
    pub version: Version,
    /// The position of the last event of the stream: the command's own event, or for a no-op
    /// the event that made the current state. Read with `min_position` to see the command.
    pub position: Position,
    /// False for a no-op edit (or a retried command): nothing new was recorded.
    pub recorded: bool,
}

/// The movie a stream describes (`None` if absent or deleted), and its state for decisions.
pub fn fold(id: Uuid, history: &[EventEnvelope]) -> (Movie, Option<MovieDoc>) {
    let folded = Folded::default().then(history);
    let doc = folded.doc(id);
    (folded.movie, doc)
}

/// A new snapshot is stored once a stream has this many events past its last one: a command
/// then folds at most this many events, however long the movie's history.
pub const SNAPSHOT_EVERY: usize = 100;
/// The layout of `Folded` (read model) in stored snapshots. Bump it when `Folded`, `Movie` or
/// `MovieFields` change shape or meaning: snapshots of another layout are ignored and rebuilt
/// from the log.
pub const SNAPSHOT_SCHEMA: i32 = 1;

fn snapshot_of(folded: &Folded) -> Option<Snapshot> {
    let state = serde_json::to_value(folded).ok()?;
    Some(Snapshot { version: folded.version, position: folded.position, schema: SNAPSHOT_SCHEMA, state })
}

/// The state a snapshot stores, if it has this build's layout.
fn from_snapshot(snapshot: Snapshot) -> Option<Folded> {
    if snapshot.schema != SNAPSHOT_SCHEMA {
        return None;
    }
    let folded: Folded = serde_json::from_value(snapshot.state).ok()?;
    (folded.version == snapshot.version).then_some(folded)
}

pub struct CommandService {
    events: Arc<dyn EventStore>,
    clock: fn() -> DateTime<Utc>,
}

impl CommandService {
    pub fn new(events: Arc<dyn EventStore>) -> Self {
        Self { events, clock: Utc::now }
    }

    pub fn events(&self) -> &Arc<dyn EventStore> {
        &self.events
    }

    pub async fn load(&self, id: Uuid) -> Result<Option<MovieDoc>, CommandError> {
        Ok(self.current(id).await?.0.doc(id))
    }

    /// The stream's state as commands see it: the movie (absent, live or deleted) and its version.
    pub async fn state(&self, id: Uuid) -> Result<(Movie, Version), CommandError> {
        let (folded, _) = self.current(id).await?;
        Ok((folded.movie, folded.version))
    }

    /// The stream's current state, from its snapshot (when one of this layout is stored) and the
    /// events after it, and how many events that folded.
    async fn current(&self, id: Uuid) -> Result<(Folded, usize), CommandError> {
        let (snapshot, after) = self.events.load_from_snapshot(id).await?;
        let start = match snapshot.map(from_snapshot) {
            Some(Some(folded)) => folded,
            None => Folded::default(),
            // A snapshot this build cannot read: the whole stream instead.
            Some(None) => return Ok(Self::folded(&self.events.load(id).await?)),
        };
        let folded = after.len();
        Ok((start.then(&after), folded))
    }

    fn folded(history: &[EventEnvelope]) -> (Folded, usize) {
        (Folded::default().then(history), history.len())
    }

    pub async fn execute(
        &self,
        id: Uuid,
        if_match: Option<Version>,
        command: MovieCommand,
        context: CommandContext,
    ) -> Result<Outcome, CommandError> {
        let (current, folded) = self.current(id).await?;
        let version = current.version;
        if let Some(expected) = if_match {
            if expected != version && !matches!(current.movie, Movie::Absent) {
                return Err(CommandError::VersionMismatch { expected, actual: version });
            }
        }
        let decided = current.movie.decide(command)?;
        if decided.is_empty() {
            return Ok(Self::outcome(id, &current, false));
        }
        // Microseconds, as the stores keep it: the answer and every later read agree.
        let now = (self.clock)().trunc_subsecs(6);
        let first_id = context.event_id.unwrap_or_else(Uuid::now_v7);
        let new_events: Vec<NewEvent> = decided
            .into_iter()
            .enumerate()
            .map(|(n, event)| NewEvent {
                event_id: if n == 0 { first_id } else { Uuid::now_v7() },
                event,
                recorded_at: now,
                metadata: context.metadata.clone(),
            })
            .collect();
        let sent = new_events[0].event.clone();
        let appended = self.events.append(id, version, new_events.clone()).await?;
        if appended.replayed {
            // A retry: the first attempt's events, wherever the stream stands now.
            let history = self.events.load(appended.stream_id).await?;
            let original = history.iter().find(|e| e.position == appended.first_position);
            if original.is_none_or(|e| e.event != sent) {
                return Err(CommandError::KeyReused);
            }
            // The movie as the command's own events left it, even if the stream has moved on
            // since: headers and body then describe the same version, and a retry answers what
            // the first attempt did.
            let through = history.partition_point(|e| e.position <= appended.last_position);
            return Ok(Self::outcome(appended.stream_id, &Self::folded(&history[..through]).0, false));
        }
        // What was appended, as the log now holds it: consecutive versions after `version`, the
        // last at `last_position`.
        let count = new_events.len() as i64;
        let appended_events: Vec<EventEnvelope> = new_events
            .into_iter()
            .enumerate()
            .map(|(n, event)| EventEnvelope {
                event_id: event.event_id,
                stream_id: id,
                stream_version: version + n as i64 + 1,
                position: if n as i64 == count - 1 {
                    appended.last_position
                } else {
                    appended.first_position
                },
                recorded_at: event.recorded_at,
                metadata: event.metadata,
                event: event.event,
            })
            .collect();
        let after = current.then(&appended_events);
        if folded + appended_events.len() >= SNAPSHOT_EVERY {
            self.save_snapshot(id, &after).await;
        }
        Ok(Self::outcome(id, &after, true))
    }

    /// Stores `folded` as the stream's snapshot. Best effort: without it, the next command folds
    /// more events, and the one after tries again.
    async fn save_snapshot(&self, id: Uuid, folded: &Folded) {
        let Some(snapshot) = snapshot_of(folded) else { return };
        if let Err(error) = self.events.save_snapshot(id, &snapshot).await {
            tracing::warn!(%id, error = format!("{error:#}"), "a snapshot was not stored");
        }
    }

    /// Creates many new movies in one transaction (the bulk ingest path): each is decided
    /// against an absent stream like `execute` would, and appended at version 0. Returns, for
    /// each, whether it was recorded (false: a retry of a stored creation). Fails as a whole,
    /// writing nothing, if any of them exists already (`Conflict`): the caller then takes
    /// them one by one.
    pub async fn create_many(
        &self,
        creations: Vec<(Uuid, MovieDraft, CommandContext)>,
    ) -> Result<Vec<bool>, CommandError> {
        let now = (self.clock)();
        let mut appends = Vec::with_capacity(creations.len());
        for (id, draft, context) in creations {
            let decided = Movie::Absent.decide(MovieCommand::Create(draft))?;
            let new_events = decided
                .into_iter()
                .enumerate()
                .map(|(n, event)| NewEvent {
                    event_id: match (n, context.event_id) {
                        (0, Some(first)) => first,
                        _ => Uuid::now_v7(),
                    },
                    event,
                    recorded_at: now,
                    metadata: context.metadata.clone(),
                })
                .collect();
            appends.push((id, 0, new_events));
        }
        let appended = self.events.append_batch(appends).await?;
        Ok(appended.iter().map(|a| !a.replayed).collect())
    }

    fn outcome(id: Uuid, folded: &Folded, recorded: bool) -> Outcome {
        Outcome { id, movie: folded.doc(id), version: folded.version, position: folded.position, recorded }
    }
}
