//! The audit trail, for admins: a movie's history with every field's before and after, and the
//! whole log filtered by actor, type and time. Read straight from the event log, the source of
//! truth, never from a projection.

use std::collections::{BTreeSet, HashMap};

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
    /// Each field the event changed, with its value before and after (in the log listing too:
    /// each listed movie's stream is folded up to the event).
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
    Ok(history_page(events, id, 0, usize::MAX).await?.0)
}

/// The audit trail of a loaded stream (in version order): each event with its fields' before
/// and after.
pub fn trail(stream: &[EventEnvelope]) -> Vec<AuditEvent> {
    page_of(stream, 0, usize::MAX).0
}

/// A page of one movie's history: up to `limit` events after version `after`, oldest first,
/// each with its fields' before and after, and the version the next page starts after (if
/// there is one). However long the history, an answer holds at most `limit` events.
pub async fn history_page(
    events: &dyn EventStore,
    id: Uuid,
    after: Version,
    limit: usize,
) -> Result<(Vec<AuditEvent>, Option<Version>), StoreError> {
    Ok(page_of(&events.load(id).await?, after, limit))
}

/// `history_page` of a loaded stream.
fn page_of(stream: &[EventEnvelope], after: Version, limit: usize) -> (Vec<AuditEvent>, Option<Version>) {
    let mut state = Movie::Absent;
    let mut trail = Vec::new();
    let mut rest = stream.iter().peekable();
    while let Some(envelope) = rest.next() {
        if envelope.stream_version > after {
            trail.push(audit_event(envelope, changes(&state, &envelope.event)));
            if trail.len() == limit && rest.peek().is_some() {
                return (trail, Some(envelope.stream_version));
            }
        }
        state.apply(&envelope.event);
    }
    (trail, None)
}

/// A page of the whole log: events matching `filter` after the cursor, and the next cursor.
/// Each event's before-values come from its movie's stream, folded up to it: one stream read per
/// movie on the page (an admin's page is at most 500 events).
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
    // The versions listed per movie, then each one's changes from one pass over its stream.
    let mut listed: HashMap<Uuid, BTreeSet<Version>> = HashMap::new();
    for envelope in &page {
        listed.entry(envelope.stream_id).or_default().insert(envelope.stream_version);
    }
    let mut changed: HashMap<(Uuid, Version), Vec<FieldChange>> = HashMap::new();
    for (id, versions) in listed {
        let last = versions.last().copied().unwrap_or(0);
        let mut state = Movie::Absent;
        for envelope in events.load(id).await?.iter().take_while(|e| e.stream_version <= last) {
            if versions.contains(&envelope.stream_version) {
                changed.insert((id, envelope.stream_version), changes(&state, &envelope.event));
            }
            state.apply(&envelope.event);
        }
    }
    let items = page
        .iter()
        .map(|e| audit_event(e, changed.remove(&(e.stream_id, e.stream_version)).unwrap_or_default()))
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

/// A movie history's cursor: the version the next page starts after.
pub fn encode_history_cursor(version: Version) -> String {
    URL_SAFE_NO_PAD.encode(format!("v:{version}"))
}

pub fn decode_history_cursor(raw: &str) -> Option<Version> {
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(raw).ok()?).ok()?;
    text.strip_prefix("v:")?.parse().ok().filter(|v| *v >= 0)
}

#[cfg(test)]
mod tests {
    use movies_store::contract::{created, new_event};
    use movies_store::testing::sqlite_fixture;

    use super::*;

    /// The log listing shows what an edit changed from, as the movie's own history does.
    #[tokio::test]
    async fn the_log_shows_each_changes_value_before_as_the_history_does() {
        let store = sqlite_fixture().await;
        let id = Uuid::now_v7();
        let rescore = |score| {
            MovieEvent::Updated(movies_events::MovieChanges { imdb_score: Some(score), ..Default::default() })
        };
        let appends = [created("Film"), rescore(7.9), rescore(8.0)];
        for (version, event) in appends.into_iter().enumerate() {
            store.events.append(id, version as i64, vec![new_event(event)]).await.unwrap();
        }
        let filter = EventFilter { event_type: Some("movie.updated".into()), ..Default::default() };
        let (listed, _) = log_page(store.events.as_ref(), &filter, 0, 10).await.unwrap();
        let history = history(store.events.as_ref(), id).await.unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[1].changes, history[2].changes);
        assert_eq!(
            listed[1].changes,
            vec![FieldChange { field: "imdb_score".into(), before: json!(7.9), after: json!(8.0) }]
        );
    }
}
