//! The search index as its users name it: readers ask through `SearchIndex`, projectors write
//! through `SearchProjection`. `TantivySearchIndex` is the adapter; `Live` over either swaps
//! generations underneath. Every method blocks: call them from a blocking thread.

use movies_events::{EventEnvelope, MovieFields, Position, Version};
use movies_read_model::{Live, ProjectionResult as Result};
use uuid::Uuid;

use crate::{NamedHit, SearchPage, SearchQuery, TantivySearchIndex};

/// What readers ask of a search index: all the query API can do with one.
pub trait SearchIndex: Send + Sync + 'static {
    /// Every position up to this one is applied (what `min_position` waits for).
    fn checkpoint(&self) -> Position;
    /// Matches for `query`, ranked or sorted as it asks, with genre facets if asked.
    fn search(&self, query: &SearchQuery) -> Result<SearchPage>;
    /// Up to `limit` title completions for a query being typed.
    fn suggest(&self, text: &str, limit: usize) -> Result<Vec<NamedHit>>;
    /// Every document as (movie id, fields, version): what `movies verify` compares with the
    /// log. Reads the whole index: an operator's tool, not a request path.
    fn documents(&self) -> Result<Vec<(Uuid, MovieFields, Version)>>;
}

/// A search index as projectors write it. An event at or below a movie's indexed version is
/// skipped; one past the next version is a `Gap`, and its batch leaves nothing behind.
pub trait SearchProjection: SearchIndex {
    /// Applies events past the checkpoint and commits them with the new checkpoint.
    fn apply(&self, events: &[EventEnvelope]) -> Result<()>;
    /// Applies these events as they are (each movie's version still checked): how a gap is
    /// filled from the log.
    fn apply_exact(&self, events: &[EventEnvelope]) -> Result<()>;
    /// Applies events as a transport delivered them (any order across streams, repeats) and
    /// commits the transport's `state` with them.
    fn apply_delivered(&self, events: &[EventEnvelope], state: serde_json::Value) -> Result<()>;
    /// The state its transport committed last (null for an index fed from the log).
    fn transport_state(&self) -> serde_json::Value;
    /// Commits the transport's state without events: where a transport-fed index starts.
    fn set_transport_state(&self, state: serde_json::Value) -> Result<()>;
}

impl SearchIndex for TantivySearchIndex {
    fn checkpoint(&self) -> Position {
        TantivySearchIndex::checkpoint(self)
    }

    fn search(&self, query: &SearchQuery) -> Result<SearchPage> {
        TantivySearchIndex::search(self, query)
    }

    fn suggest(&self, text: &str, limit: usize) -> Result<Vec<NamedHit>> {
        TantivySearchIndex::suggest(self, text, limit)
    }

    fn documents(&self) -> Result<Vec<(Uuid, MovieFields, Version)>> {
        TantivySearchIndex::documents(self)
    }
}

impl SearchProjection for TantivySearchIndex {
    fn apply(&self, events: &[EventEnvelope]) -> Result<()> {
        TantivySearchIndex::apply(self, events)
    }

    fn apply_exact(&self, events: &[EventEnvelope]) -> Result<()> {
        TantivySearchIndex::apply_exact(self, events)
    }

    fn apply_delivered(&self, events: &[EventEnvelope], state: serde_json::Value) -> Result<()> {
        TantivySearchIndex::apply_delivered(self, events, state)
    }

    fn transport_state(&self) -> serde_json::Value {
        TantivySearchIndex::transport_state(self)
    }

    fn set_transport_state(&self, state: serde_json::Value) -> Result<()> {
        TantivySearchIndex::set_transport_state(self, state)
    }
}

/// Each call goes to whichever generation is current when it starts.
impl<T: SearchIndex + ?Sized> SearchIndex for Live<T> {
    fn checkpoint(&self) -> Position {
        self.get().checkpoint()
    }

    fn search(&self, query: &SearchQuery) -> Result<SearchPage> {
        self.get().search(query)
    }

    fn suggest(&self, text: &str, limit: usize) -> Result<Vec<NamedHit>> {
        self.get().suggest(text, limit)
    }

    fn documents(&self) -> Result<Vec<(Uuid, MovieFields, Version)>> {
        self.get().documents()
    }
}

impl<T: SearchProjection + ?Sized> SearchProjection for Live<T> {
    fn apply(&self, events: &[EventEnvelope]) -> Result<()> {
        self.get().apply(events)
    }

    fn apply_exact(&self, events: &[EventEnvelope]) -> Result<()> {
        self.get().apply_exact(events)
    }

    fn apply_delivered(&self, events: &[EventEnvelope], state: serde_json::Value) -> Result<()> {
        self.get().apply_delivered(events, state)
    }

    fn transport_state(&self) -> serde_json::Value {
        self.get().transport_state()
    }

    fn set_transport_state(&self, state: serde_json::Value) -> Result<()> {
        self.get().set_transport_state(state)
    }
}
