//! The write side's storage: the event store port, the accounts port, and their two adapters,
//! Postgres (distributed) and SQLite (embedded). Every adapter passes the same contract suite
//! (`contract`, behind the `testing` feature).
//!
//! Depends on the domain (`movies-events`) and sqlx only; nothing here knows about HTTP.

mod accounts;
mod adapters;
pub mod copy;
mod port;

#[cfg(feature = "testing")]
pub mod contract;
#[cfg(feature = "testing")]
pub mod testing;

pub use accounts::{Account, AccountChange, AccountError, AccountStore, GenerationStore};
pub use adapters::{
    connect_postgres, connect_postgres_schema, drop_postgres_schema, open_sqlite, PgEventStore,
    SqliteEventStore, SqliteFile,
};
pub use port::{Appended, EventFilter, EventStore, Snapshot, StoreError};
