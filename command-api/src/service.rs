//! The command path: load a stream, let the domain decide, append what it decided.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use movies_events::{
    EventEnvelope, EventMetadata, Movie, MovieCommand, MovieDraft, MovieError, NewEvent, Position, Version,
};
use movies_read_model::MovieDoc;
use movies_store::{EventStore, StoreError};
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
    (Movie::fold(history.iter().map(|e| &e.event)), movies_read_model::fold_doc(id, history))
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
        let history = self.events.load(id).await?;
        Ok(fold(id, &history).1)
    }

    pub async fn execute(
        &self,
        id: Uuid,
        if_match: Option<Version>,
        command: MovieCommand,
        context: CommandContext,
    ) -> Result<Outcome, CommandError> {
        let history = self.events.load(id).await?;
        let version = history.last().map_or(0, |e| e.stream_version);
        let (movie, _) = fold(id, &history);
        if let Some(expected) = if_match {
            if expected != version && !matches!(movie, Movie::Absent) {
                return Err(CommandError::VersionMismatch { expected, actual: version });
            }
        }
        let decided = movie.decide(command)?;
        if decided.is_empty() {
            return Ok(self.outcome(id, &history, false));
        }
        let now = (self.clock)();
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
        let appended = self.events.append(id, version, new_events).await?;
        let history = self.events.load(appended.stream_id).await?;
        if appended.replayed {
            let original = history.iter().find(|e| e.position == appended.first_position);
            if original.is_none_or(|e| e.event != sent) {
                return Err(CommandError::KeyReused);
            }
        }
        // The movie as the command's own events left it, even if the stream has moved on since
        // (a retried command, or a write right after this one): headers and body then describe
        // the same version, and a retry answers what the first attempt did.
        let through = history.partition_point(|e| e.position <= appended.last_position);
        Ok(self.outcome(appended.stream_id, &history[..through], !appended.replayed))
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

    fn outcome(&self, id: Uuid, history: &[EventEnvelope], recorded: bool) -> Outcome {
        let (_, movie) = fold(id, history);
        Outcome {
            id,
            movie,
            version: history.last().map_or(0, |e| e.stream_version),
            position: history.last().map_or(0, |e| e.position),
            recorded,
        }
    }
}
