//! The read side's model, shared by the projector (which writes it) and the query API (which
//! reads it): the movie document, list queries with keyset cursors, and the read store port with
//! its Postgres and SQLite adapters. The search engine is a crate of its own (`movies-search`).
//!
//! Depends on the domain's event types only; it never sees commands or HTTP.

#[cfg(feature = "testing")]
pub mod contract;
mod doc;
mod live;
mod store;

pub use doc::{
    fold_doc, CompatMovie, Cursor, CursorError, Filters, Folded, GenreCount, GenreName, JsonDoc, JsonPage,
    ListQuery, MovieDoc, Order, Page, SortField, SortValue,
};
pub use live::Live;
pub use store::{
    BulkLoad, PgReadStore, ProjectionError, ProjectionStore, ReadCache, ReadStore,
    Result as ProjectionResult, SqliteReadStore, SuspendedIndexes,
};
