//! The read side's model, shared by the projector (which writes it) and the query API (which
//! reads it): the movie document, list queries with keyset cursors, the read store port with its
//! Postgres and SQLite adapters, and the tantivy search index.
//!
//! Depends on the domain's event types only; it never sees commands or HTTP.

mod browse;
mod doc;
mod live;
mod search;
mod store;
mod word;

pub use doc::{
    fold_doc, CompatMovie, Cursor, CursorError, Filters, GenreCount, GenreName, JsonDoc, JsonPage, ListQuery,
    MovieDoc, Order, Page, SortField, SortValue,
};
pub use live::Live;
pub use search::{
    check_query_text, Delivered, Highlight, PartitionMark, QueryTooLarge, SearchCursor, SearchCursorError,
    SearchFilters, SearchHit, SearchPage, SearchQuery, SearchSort, TantivySearchIndex, MAX_QUERY_CHARS,
    MAX_QUERY_WORDS, MAX_TYPO_WORD_CHARS, MAX_WORD_CHARS,
};
pub use store::{PgReadStore, ProjectionError, ReadStore, Result as ProjectionResult, SqliteReadStore};
