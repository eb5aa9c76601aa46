//! An event as a Kafka message: key = movie id, value = the envelope as JSON, and headers naming
//! the event type, schema version, event id and log position (for routing and inspection
//! without parsing the value). The value is self-describing; decoding reads it alone and upcasts
//! old schema versions like the store does.

use chrono::{DateTime, Utc};
use movies_events::{EventEnvelope, EventMetadata, MovieEvent, Position, Version};
use rdkafka::message::{Header, OwnedHeaders};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Serialize, Deserialize)]
struct Wire {
    event_id: Uuid,
    stream_id: Uuid,
    stream_version: Version,
    position: Position,
    recorded_at: DateTime<Utc>,
    metadata: EventMetadata,
    event_type: String,
    schema_version: i32,
    data: serde_json::Value,
}

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("a message without a value")]
    Empty,
    #[error("an unreadable event message: {0}")]
    Json(#[from] serde_json::Error),
    #[error("an unreadable event: {0}")]
    Event(#[from] movies_events::DecodeError),
}

/// The message key, value and headers for one event.
pub fn encode(envelope: &EventEnvelope) -> (String, Vec<u8>, OwnedHeaders) {
    let event_type = envelope.event.event_type();
    let schema_version = envelope.event.schema_version();
    let wire = Wire {
        event_id: envelope.event_id,
        stream_id: envelope.stream_id,
        stream_version: envelope.stream_version,
        position: envelope.position,
        recorded_at: envelope.recorded_at,
        metadata: envelope.metadata.clone(),
        event_type: event_type.to_owned(),
        schema_version,
        data: envelope.event.payload(),
    };
    // Plain values always serialize.
    let value = serde_json::to_vec(&wire).expect("an envelope serializes");
    let (version, event_id, position) =
        (schema_version.to_string(), envelope.event_id.to_string(), envelope.position.to_string());
    let headers = OwnedHeaders::new()
        .insert(Header { key: "event-type", value: Some(event_type) })
        .insert(Header { key: "schema-version", value: Some(&version) })
        .insert(Header { key: "event-id", value: Some(&event_id) })
        .insert(Header { key: "position", value: Some(&position) });
    (envelope.stream_id.to_string(), value, headers)
}

pub fn decode(value: Option<&[u8]>) -> Result<EventEnvelope, WireError> {
    let wire: Wire = serde_json::from_slice(value.ok_or(WireError::Empty)?)?;
    let event = MovieEvent::decode(&wire.event_type, wire.schema_version, wire.data)?;
    Ok(EventEnvelope {
        event_id: wire.event_id,
        stream_id: wire.stream_id,
        stream_version: wire.stream_version,
        position: wire.position,
        recorded_at: wire.recorded_at,
        metadata: wire.metadata,
        event,
    })
}
