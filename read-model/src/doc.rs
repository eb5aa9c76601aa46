use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A movie as readers see it: the v1 body plus what the store assigned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MovieDoc {
    pub id: Uuid,
    pub name: String,
    pub director: String,
    pub popularity: f64,
    pub imdb_score: f64,
    pub genres: Vec<String>,
    /// The movie's stream version; also its ETag.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl MovieDoc {
    pub fn new(
        id: Uuid,
        fields: &movies_events::MovieFields,
        version: i64,
        created_at: DateTime<Utc>,
        updated_at: DateTime<Utc>,
    ) -> Self {
        MovieDoc {
            id,
            name: fields.name.clone(),
            director: fields.director.clone(),
            popularity: fields.popularity,
            imdb_score: fields.imdb_score,
            genres: fields.genres.clone(),
            version,
            created_at,
            updated_at,
        }
    }

    /// The movie's own fields, without what the store assigned.
    pub fn fields(&self) -> movies_events::MovieFields {
        movies_events::MovieFields {
            name: self.name.clone(),
            director: self.director.clone(),
            popularity: self.popularity,
            imdb_score: self.imdb_score,
            genres: self.genres.clone(),
        }
    }
}

/// A movie's document serialized once: what `GET /movies/{id}` sends, with the version that is
/// its ETag. Cloning shares the bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonDoc {
    pub version: i64,
    pub body: bytes::Bytes,
}

impl From<&MovieDoc> for JsonDoc {
    fn from(doc: &MovieDoc) -> Self {
        // A document is plain values: it always serializes.
        let body = serde_json::to_vec(doc).expect("a movie document serializes");
        JsonDoc { version: doc.version, body: body.into() }
    }
}

/// A page of movies with its items serialized once (a JSON array of documents), as list
/// responses send them, and the cursor of the next page.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonPage {
    pub items: bytes::Bytes,
    pub next: Option<Cursor>,
}

impl From<&Page<MovieDoc>> for JsonPage {
    fn from(page: &Page<MovieDoc>) -> Self {
        let items = serde_json::to_vec(&page.items).expect("movie documents serialize");
        JsonPage { items: items.into(), next: page.next.clone() }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GenreCount {
    pub genre: String,
    pub movies: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SortField {
    #[default]
    Name,
    Popularity,
    ImdbScore,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    #[default]
    Asc,
    Desc,
}

/// Filters every list and search accepts. Text filters match case-insensitively.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Filters {
    pub genre: Option<String>,
    pub director: Option<String>,
    pub min_score: Option<f64>,
    pub max_score: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SortValue {
    Number(f64),
    Text(String),
}

/// Where the previous page ended: the last row's sort value and id, for keyset pagination.
/// Opaque to clients; it names its sort so it cannot be replayed against another one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    #[serde(rename = "s")]
    pub sort: SortField,
    #[serde(rename = "o")]
    pub order: Order,
    #[serde(rename = "v")]
    pub value: SortValue,
    #[serde(rename = "i")]
    pub id: Uuid,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CursorError {
    #[error("the cursor is not one this API issued")]
    Malformed,
    #[error("the cursor belongs to another sort order")]
    OtherSort,
}

impl Cursor {
    pub fn encode(&self) -> String {
        // A struct of plain values always serializes.
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).expect("cursor serializes"))
    }

    pub fn decode(raw: &str, sort: SortField, order: Order) -> Result<Self, CursorError> {
        let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| CursorError::Malformed)?;
        let cursor: Cursor = serde_json::from_slice(&bytes).map_err(|_| CursorError::Malformed)?;
        let value_fits = match (sort, &cursor.value) {
            (SortField::Name, SortValue::Text(text)) => !text.chars().any(char::is_control),
            (SortField::Popularity | SortField::ImdbScore, SortValue::Number(n)) => n.is_finite(),
            _ => false,
        };
        if !value_fits {
            return Err(CursorError::Malformed);
        }
        if cursor.sort != sort || cursor.order != order {
            return Err(CursorError::OtherSort);
        }
        Ok(cursor)
    }

    pub fn after(doc: &MovieDoc, sort: SortField, order: Order) -> Self {
        let value = match sort {
            SortField::Name => SortValue::Text(doc.name.to_lowercase()),
            SortField::Popularity => SortValue::Number(doc.popularity),
            SortField::ImdbScore => SortValue::Number(doc.imdb_score),
        };
        Cursor { sort, order, value, id: doc.id }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct ListQuery {
    pub sort: SortField,
    pub order: Order,
    pub filters: Filters,
    pub limit: i64,
    pub after: Option<Cursor>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<Cursor>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_and_refuses_another_sort() {
        let cursor = Cursor {
            sort: SortField::Popularity,
            order: Order::Desc,
            value: SortValue::Number(42.5),
            id: Uuid::now_v7(),
        };
        let raw = cursor.encode();
        assert_eq!(Cursor::decode(&raw, SortField::Popularity, Order::Desc), Ok(cursor));
        assert_eq!(Cursor::decode(&raw, SortField::Popularity, Order::Asc), Err(CursorError::OtherSort));
        assert_eq!(Cursor::decode(&raw, SortField::Name, Order::Desc), Err(CursorError::Malformed));
        assert_eq!(Cursor::decode("not a cursor", SortField::Name, Order::Asc), Err(CursorError::Malformed));
    }
}

/// The movie a stream's events describe (`None` if absent or deleted), with its version and
/// the times its history gives: created when first created, updated at the last event.
pub fn fold_doc(id: Uuid, history: &[movies_events::EventEnvelope]) -> Option<MovieDoc> {
    Folded::default().then(history).doc(id)
}

/// A stream folded up to a version: the movie's state and what its history says of it (version,
/// position, times). What the command path decides against and keeps in snapshots, and what
/// `fold_doc` makes a document of.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Folded {
    pub movie: movies_events::Movie,
    pub version: i64,
    /// The position of the event at `version`.
    pub position: i64,
    /// When the movie was first created, and when its last event was recorded.
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

impl Folded {
    /// This state with `events` (the stream's next ones, in version order) folded in.
    pub fn then<'a>(mut self, events: impl IntoIterator<Item = &'a movies_events::EventEnvelope>) -> Self {
        for envelope in events {
            self.movie.apply(&envelope.event);
            if matches!(envelope.event, movies_events::MovieEvent::Created(_)) && self.created_at.is_none() {
                self.created_at = Some(envelope.recorded_at);
            }
            self.version = envelope.stream_version;
            self.position = envelope.position;
            self.updated_at = Some(envelope.recorded_at);
        }
        self
    }

    /// The movie as the read side shows it; `None` while it is absent or deleted.
    pub fn doc(&self, id: Uuid) -> Option<MovieDoc> {
        let fields = self.movie.live()?;
        Some(MovieDoc::new(id, fields, self.version, self.created_at?, self.updated_at?))
    }
}

/// A genre in the assignment's original shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GenreName {
    pub name: String,
}

/// A movie in the assignment's original API shape, served by the compatibility layer.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct CompatMovie {
    pub id: Uuid,
    pub name: String,
    pub director: String,
    pub popularity: f64,
    pub imdb_score: f64,
    pub genre: Vec<GenreName>,
}

impl From<&MovieDoc> for CompatMovie {
    fn from(doc: &MovieDoc) -> Self {
        CompatMovie {
            id: doc.id,
            name: doc.name.clone(),
            director: doc.director.clone(),
            popularity: doc.popularity,
            imdb_score: doc.imdb_score,
            genre: doc.genres.iter().map(|g| GenreName { name: g.clone() }).collect(),
        }
    }
}
