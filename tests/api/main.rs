//! HTTP tests against the all-in-one server spawned on port 0. Writes are checked through the
//! query API (written, then visible), and bad input is checked to leave everything stored as it was.

mod admin_pages;
mod audit;
mod auth;
mod browser;
mod commands;
mod compat;
mod compression;
mod errors;
mod helpers;
mod ingest;
mod lifecycle;
mod limits;
mod observability;
mod pages;
mod queries;
mod rate_limits;
mod replay;
mod upcasting;
