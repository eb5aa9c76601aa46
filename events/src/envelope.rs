//! The envelope every stored event travels in.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::event::MovieEvent;

/// A stream's version: 1 after its first event. 0 means "no events yet".
pub type Version = i64;
/// A global, commit-ordered position in the whole log. Gaps are allowed, reordering is not.
pub type Position = i64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    User,
    /// Automated writers such as the ingest command.
    System,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
            Role::System => "system",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Role::Admin),
            "user" => Some(Role::User),
            "system" => Some(Role::System),
            _ => None,
        }
    }
}

/// Who caused an event: the JWT subject and role, or a system actor such as `system:ingest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub subject: String,
    pub role: Role,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMetadata {
    pub actor: Actor,
    /// The request or correlation id that caused the event, for the audit trail.
    pub request_id: Option<String>,
}

/// An event on its way into the store. The store assigns version and position.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Unique across the log: appending an id that is already stored is a retry, not a new fact.
    pub event_id: Uuid,
    pub event: MovieEvent,
    pub recorded_at: DateTime<Utc>,
    pub metadata: EventMetadata,
}

/// A stored event with everything the store assigned.
#[derive(Debug, Clone, PartialEq)]
pub struct EventEnvelope {
    pub event_id: Uuid,
    /// The movie id (a UUID v7).
    pub stream_id: Uuid,
    pub stream_version: Version,
    pub position: Position,
    pub recorded_at: DateTime<Utc>,
    pub metadata: EventMetadata,
    pub event: MovieEvent,
}
