//! Recorded facts. Each carries only what changed; its type tag and schema version are stable
//! strings (rename Rust variants freely, never tags).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::value::MovieFields;

/// The fields an update changed, and only those.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct MovieChanges {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub director: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub popularity: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imdb_score: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub genres: Option<Vec<String>>,
}

impl MovieChanges {
    pub fn is_empty(&self) -> bool {
        *self == MovieChanges::default()
    }

    /// The names of the fields this change sets, in body order.
    pub fn field_names(&self) -> Vec<&'static str> {
        [
            ("name", self.name.is_some()),
            ("director", self.director.is_some()),
            ("popularity", self.popularity.is_some()),
            ("imdb_score", self.imdb_score.is_some()),
            ("genres", self.genres.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect()
    }

    pub fn apply_to(&self, fields: &mut MovieFields) {
        if let Some(v) = &self.name {
            fields.name.clone_from(v);
        }
        if let Some(v) = &self.director {
            fields.director.clone_from(v);
        }
        if let Some(v) = self.popularity {
            fields.popularity = v;
        }
        if let Some(v) = self.imdb_score {
            fields.imdb_score = v;
        }
        if let Some(v) = &self.genres {
            fields.genres.clone_from(v);
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum MovieEvent {
    /// `movie.created` v1: the full initial state.
    Created(MovieFields),
    /// `movie.updated` v1: only the fields that changed.
    Updated(MovieChanges),
    /// `movie.deleted` v1.
    Deleted,
    /// `movie.restored` v1: a deleted movie is back, with the state it had when deleted.
    Restored(MovieFields),
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown event type {0:?} (schema version {1})")]
    UnknownType(String, i32),
    #[error("malformed {0} payload: {1}")]
    Payload(&'static str, #[source] serde_json::Error),
}

/// An event's payload as serde writes it: the fields, the changes, or an empty object.
#[derive(Serialize)]
#[serde(untagged)]
enum Body<'a> {
    Fields(&'a MovieFields),
    Changes(&'a MovieChanges),
    Nothing {},
}

impl MovieEvent {
    /// A live movie's fields after this event, from its fields before (`None`: not live, never
    /// created or deleted). The one fold: the aggregate, the read store, the search index and
    /// the audit trail all derive a movie's state through it, so an event type or a field cannot
    /// mean one thing to one projection and another to the next. An edit of a movie that is not
    /// live changes nothing.
    pub fn fold(&self, before: Option<MovieFields>) -> Option<MovieFields> {
        match self {
            MovieEvent::Created(fields) | MovieEvent::Restored(fields) => Some(fields.clone()),
            MovieEvent::Updated(changes) => before.map(|mut fields| {
                changes.apply_to(&mut fields);
                fields
            }),
            MovieEvent::Deleted => None,
        }
    }

    pub const CREATED: &'static str = "movie.created";
    pub const UPDATED: &'static str = "movie.updated";
    pub const DELETED: &'static str = "movie.deleted";
    pub const RESTORED: &'static str = "movie.restored";

    pub fn event_type(&self) -> &'static str {
        match self {
            MovieEvent::Created(_) => Self::CREATED,
            MovieEvent::Updated(_) => Self::UPDATED,
            MovieEvent::Deleted => Self::DELETED,
            MovieEvent::Restored(_) => Self::RESTORED,
        }
    }

    /// The schema version new events of this type are written with. `movie.created` and
    /// `movie.updated` are at v2: v1 kept the assignment's keys (`99popularity`, `genre`); the
    /// upcaster in `decode` reads v1 as v2, and stored v1 events are never rewritten.
    pub fn schema_version(&self) -> i32 {
        match self {
            MovieEvent::Created(_) | MovieEvent::Updated(_) => 2,
            MovieEvent::Deleted | MovieEvent::Restored(_) => 1,
        }
    }

    pub fn payload(&self) -> Value {
        // Serializing plain structs of strings and numbers into a Value cannot fail.
        serde_json::to_value(self.body()).expect("event payloads serialize")
    }

    /// [`payload`](Self::payload) as JSON text, written straight from the fields (no `Value`
    /// tree to build first): what bulk appends store. Its keys keep the fields' order.
    pub fn payload_json(&self) -> String {
        serde_json::to_string(&self.body()).expect("event payloads serialize")
    }

    /// What the payload is made of, borrowed.
    fn body(&self) -> Body<'_> {
        match self {
            MovieEvent::Created(fields) | MovieEvent::Restored(fields) => Body::Fields(fields),
            MovieEvent::Updated(changes) => Body::Changes(changes),
            MovieEvent::Deleted => Body::Nothing {},
        }
    }

    /// Reads a stored event. Older schema versions are upcast here, so nothing else sees them.
    pub fn decode(event_type: &str, schema_version: i32, payload: Value) -> Result<Self, DecodeError> {
        match (event_type, schema_version) {
            (Self::CREATED | Self::UPDATED, 1) => Self::decode(event_type, 2, upcast_v1(payload)),
            (Self::CREATED, 2) => serde_json::from_value(payload)
                .map(MovieEvent::Created)
                .map_err(|e| DecodeError::Payload(Self::CREATED, e)),
            (Self::UPDATED, 2) => serde_json::from_value(payload)
                .map(MovieEvent::Updated)
                .map_err(|e| DecodeError::Payload(Self::UPDATED, e)),
            (Self::DELETED, 1) => Ok(MovieEvent::Deleted),
            (Self::RESTORED, 1) => serde_json::from_value(payload)
                .map(MovieEvent::Restored)
                .map_err(|e| DecodeError::Payload(Self::RESTORED, e)),
            (other, version) => Err(DecodeError::UnknownType(other.to_owned(), version)),
        }
    }
}

/// `movie.created` / `movie.updated` v1 to v2: the assignment's keys become the API's
/// (`99popularity` to `popularity`, `genre` to `genres`, whose entries v1 kept untrimmed).
/// Payloads already in the v2 shape pass through unchanged.
fn upcast_v1(payload: Value) -> Value {
    let Value::Object(mut fields) = payload else {
        return payload;
    };
    if let Some(popularity) = fields.remove("99popularity") {
        fields.insert("popularity".into(), popularity);
    }
    if let Some(Value::Array(genres)) = fields.remove("genre") {
        let trimmed = genres
            .into_iter()
            .map(|g| match g {
                Value::String(s) => Value::String(s.trim().to_owned()),
                other => other,
            })
            .collect();
        fields.insert("genres".into(), Value::Array(trimmed));
    }
    Value::Object(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_stores_only_the_changed_fields() {
        let event = MovieEvent::Updated(MovieChanges { imdb_score: Some(9.1), ..Default::default() });
        assert_eq!(event.payload(), serde_json::json!({ "imdb_score": 9.1 }));
    }

    #[test]
    fn a_delete_stores_an_empty_object() {
        assert_eq!(MovieEvent::Deleted.payload(), serde_json::json!({}));
        assert_eq!(MovieEvent::Deleted.payload_json(), "{}");
    }

    #[test]
    fn every_event_round_trips_through_its_stored_form() {
        let fields = MovieFields {
            name: "Alien".into(),
            director: "Ridley Scott".into(),
            popularity: 85.0,
            imdb_score: 8.5,
            genres: vec!["Horror".into()],
        };
        for event in [
            MovieEvent::Created(fields),
            MovieEvent::Updated(MovieChanges { name: Some("Aliens".into()), ..Default::default() }),
            MovieEvent::Deleted,
            MovieEvent::Restored(MovieFields {
                name: "Alien".into(),
                director: "Ridley Scott".into(),
                popularity: 85.0,
                imdb_score: 8.5,
                genres: vec!["Horror".into()],
            }),
        ] {
            let decoded = MovieEvent::decode(event.event_type(), event.schema_version(), event.payload());
            assert_eq!(decoded.unwrap(), event);
            let text: Value = serde_json::from_str(&event.payload_json()).unwrap();
            assert_eq!(text, event.payload(), "the text form of {event:?}");
        }
    }

    #[test]
    fn an_unknown_type_is_an_error_not_a_guess() {
        assert!(matches!(
            MovieEvent::decode("movie.renamed", 1, serde_json::json!({})),
            Err(DecodeError::UnknownType(..))
        ));
    }
}
