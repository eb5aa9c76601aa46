//! The distributed deployment as separate OS processes of the built binary, against the real
//! Postgres, Redis and Kafka-protocol broker `scripts/test` starts: end to end, crash recovery
//! and each degradation. Every test gets its own database, topic, consumer group and Redis
//! namespace, so tests share the servers without seeing each other.

mod campaign;
mod config;
mod degradation;
mod end_to_end;
mod harness;
