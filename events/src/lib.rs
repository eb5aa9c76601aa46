//! The heart of the write side: the Movie aggregate, the commands it accepts, the events it
//! records and the envelope every stored event travels in.
//!
//! Pure by design: no I/O, no clock, no async. Callers fetch what a decision needs (the stream's
//! past events), pass time and actor in, and store what `decide` returns. Everything here must stay
//! free of sqlx, tokio and axum so the rules can be read and tested on their own.

mod envelope;
mod event;
mod movie;
mod precondition;
pub mod record;
mod value;

pub use envelope::{Actor, EventEnvelope, EventMetadata, NewEvent, Position, Role, Version};
pub use event::{DecodeError, MovieChanges, MovieEvent};
pub use movie::{Movie, MovieCommand, MovieError};
pub use precondition::parse_if_match;
pub use value::{
    genre_key, FieldError, MovieDraft, MovieFields, MovieInput, MoviePatch, MoviePatchInput,
    ValidationErrors, MAX_DIRECTOR_CHARS, MAX_GENRES, MAX_GENRE_CHARS, MAX_NAME_CHARS,
};
