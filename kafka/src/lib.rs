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

/// How the transport retries a step that failed for want of a dependency (Postgres or the
/// broker down): without end, 200 ms doubling to 5 s with jitter, each wait cut short by
/// shutdown (after which the step is not retried again).
fn retry_policy() -> backon::ExponentialBuilder {
    backon::ExponentialBuilder::default()
        .with_min_delay(std::time::Duration::from_millis(200))
        .with_max_delay(std::time::Duration::from_secs(5))
        .with_jitter()
        .without_max_times()
}

/// A wait between retries that ends early when `shutdown` turns true.
fn sleep_until_shutdown(
    shutdown: &tokio::sync::watch::Receiver<bool>,
) -> impl Fn(std::time::Duration) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    let shutdown = shutdown.clone();
    move |wait| {
        let mut shutdown = shutdown.clone();
        Box::pin(async move {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.wait_for(|stop| *stop) => {}
            }
        })
    }
}
