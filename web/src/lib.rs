//! HTTP pieces both APIs share: RFC 9457 problem responses (and the layer that turns every
//! other error response into one), JWT issuing and verification with Ed25519 keys, password
//! hashing, and the extractors that tell anonymous readers, users and admins apart.
//!
//! Knows nothing of stores or projections: handlers get their data through their own state.

mod auth;
mod compress;
mod edge;
mod json;
pub mod logs;
pub mod metrics;
mod problem;
mod rate_limit;

pub use auth::{
    Admin, AuthError, Caller, Claims, JwtKeys, PasswordHasher, Principal, Subjects, ACCESS_TOKEN_TTL_SECONDS,
    PRIVATE_KEY_FILE, PUBLIC_KEY_FILE, RETIRED_PREFIX,
};
pub use edge::{Edge, EdgeLayer, MAX_HEADER_BYTES, MAX_URI_BYTES};
pub use json::StrictJson;
pub use problem::{problem_layer, ApiError, FieldProblem, Problem, PROBLEM_JSON};
pub use rate_limit::{
    ClientAddress, HitCounter, LocalCounter, RateLimitLayer, RateLimited, RateLimiter, RateLimits,
};

/// The header carrying a request's id: taken from the client if sent, else generated; echoed in
/// every response and recorded in the metadata of the events a request causes.
pub const REQUEST_ID: &str = "x-request-id";

/// The service a layer made ready, to call; its clone stays behind for the next request (tower's
/// contract: the instance `poll_ready` was called on is the one that is called).
fn take_ready<S: Clone>(slot: &mut S) -> S {
    let clone = slot.clone();
    std::mem::replace(slot, clone)
}

/// Bodies above this size get 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
