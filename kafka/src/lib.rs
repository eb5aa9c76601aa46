//! The distributed deployment's event transport. The event log is the outbox: the relay
//! publishes its rows in commit order to one Kafka topic (key = movie id, so each movie's events
//! stay in order in one partition), and projectors consume the topic: a consumer group shares
//! the read store's work, and each query replica's search projector reads every partition.
//!
//! Works with Apache Kafka and with any broker speaking its protocol (the tests use nisshi).

mod consume;
mod relay;
mod wire;

pub use consume::{project_read_store, project_search, ConsumerSettings};
pub use relay::{published_position, Relay, RelaySettings, RelayState, RELAY_LOCK};
pub use wire::{decode, encode, WireError};

/// The topic every event is published to.
pub const DEFAULT_TOPIC: &str = "movies.events";
