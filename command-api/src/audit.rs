//! The audit trail, for admins: a movie's history with every field's before and after, and the
//! whole log filtered by actor, type and time. Read straight from the event log, the source of
//! truth, never from a projection.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use movies_events::{EventEnvelope, Movie, MovieEvent, MovieFields, Position, Version};
use movies_store::{EventFilter, EventStore, StoreError};
use serde::Serialize;
use serde_json::{json, Value};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct FieldChange {
    pub field: String,
    /// Null when the field did not exist before (a creation).
    pub before: Value,
    /// Null when the field no longer exists (a deletion).
    pub after: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AuditActor {
    pub subject: String,
    pub role: String,
}

/// One recorded event as an auditor reads it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AuditEvent {
    pub position: Position,
    pub event_id: Uuid,
    pub movie_id: Uuid,
    pub version: Version,
    pub recorded_at: DateTime<Utc>,
    pub actor: AuditActor,
    pub request_id: Option<String>,
    #[serde(rename = "type")]
    pub event_type: String,
    pub schema_version: i32,
    /// Each field the event changed. In the log listing, `before` is left null: it needs the
    /// stream's history, which `.../history` folds.
    pub changes: Vec<FieldChange>,
}

fn field_values(fields: &MovieFields) -> Vec<(&'static str, Value)> {
    vec![
        ("name", json!(fields.name)),
        ("director", json!(fields.director)),
        ("popularity", json!(fields.popularity)),
        ("imdb_score", json!(fields.imdb_score)),
        ("genres", json!(fields.genres)),
    ]
}

/// What `event` changed, given the state before it.
fn changes(before: &Movie, event: &MovieEvent) -> Vec<FieldChange> {
    let mut after = before.clone();
    after.apply(event);
    let values = |movie: &Movie| match movie {
        Movie::Live(fields) => field_values(fields),
        _ => Vec::new(),
    };
    let (old, new) = (values(before), values(&after));
    ["name", "director", "popularity", "imdb_score", "genres"]
        .into_iter()
        .filter_map(|field| {
            let find =
                |list: &[(&str, Value)]| list.iter().find(|(f, _)| *f == field).map(|(_, v)| v.clone());
            let (before, after) = (find(&old).unwrap_or(Value::Null), find(&new).unwrap_or(Value::Null));
            (before != after).then(|| FieldChange { field: field.to_owned(), before, after })
        })
        .collect()
}

fn audit_event(envelope: &EventEnvelope, changes: Vec<FieldChange>) -> AuditEvent {
    AuditEvent {
        position: envelope.position,
        event_id: envelope.event_id,
        movie_id: envelope.stream_id,
        version: envelope.stream_version,
        recorded_at: envelope.recorded_at,
        actor: AuditActor {
            subject: envelope.metadata.actor.subject.clone(),
            role: envelope.metadata.actor.role.as_str().to_owned(),
        },
        request_id: envelope.metadata.request_id.clone(),
        event_type: envelope.event.event_type().to_owned(),
        schema_version: envelope.event.schema_version(),
        changes,
    }
}

/// Every event of one movie, oldest first, each with its fields' before and after.
pub async fn history(events: &dyn EventStore, id: Uuid) -> Result<Vec<AuditEvent>, StoreError> {
    let mut state = Movie::Absent;
    let mut trail = Vec::new();
    for envelope in events.load(id).await? {
        trail.push(audit_event(&envelope, changes(&state, &envelope.event)));
        state.apply(&envelope.event);
    }
    Ok(trail)
}

/// A page of the whole log: events matching `filter` after the cursor, and the next cursor.
pub async fn log_page(
    events: &dyn EventStore,
    filter: &EventFilter,
    after: Position,
    limit: i64,
) -> Result<(Vec<AuditEvent>, Option<Position>), StoreError> {
    let mut page = events.query(filter, after, limit + 1).await?;
    let more = page.len() as i64 > limit;
    page.truncate(limit as usize);
    let next = if more { page.last().map(|e| e.position) } else { None };
    let items = page
        .iter()
        .map(|envelope| {
            let changes = match &envelope.event {
                MovieEvent::Created(fields) | MovieEvent::Restored(fields) => field_values(fields)
                    .into_iter()
                    .map(|(field, after)| FieldChange { field: field.to_owned(), before: Value::Null, after })
                    .collect(),
                MovieEvent::Updated(update) => {
                    let mut fields = MovieFields::default();
                    update.apply_to(&mut fields);
                    field_values(&fields)
                        .into_iter()
                        .filter(|(field, _)| update.field_names().contains(field))
                        .map(|(field, after)| FieldChange {
                            field: field.to_owned(),
                            before: Value::Null,
                            after,
                        })
                        .collect()
                }
                MovieEvent::Deleted => Vec::new(),
            };
            audit_event(envelope, changes)
        })
        .collect();
    Ok((items, next))
}

pub fn encode_cursor(position: Position) -> String {
    URL_SAFE_NO_PAD.encode(format!("p:{position}"))
}

pub fn decode_cursor(raw: &str) -> Option<Position> {
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(raw).ok()?).ok()?;
    text.strip_prefix("p:")?.parse().ok().filter(|p| *p >= 0)
}
