//! A stored or published event, as the store and the Kafka consumer read it (its type, schema
//! version and JSON payload): it decodes, upcast to the current schema, or is refused, never a
//! panic; and a decoded event written in the current schema reads back as the same event.
#![no_main]

use libfuzzer_sys::fuzz_target;
use movies_events::MovieEvent;

#[derive(serde::Deserialize)]
struct Stored {
    event_type: String,
    schema_version: i32,
    data: serde_json::Value,
}

fuzz_target!(|data: &[u8]| {
    let Ok(stored) = serde_json::from_slice::<Stored>(data) else { return };
    let Ok(event) = MovieEvent::decode(&stored.event_type, stored.schema_version, stored.data) else {
        return;
    };
    let again = MovieEvent::decode(event.event_type(), event.schema_version(), event.payload())
        .expect("an event in the current schema decodes");
    assert_eq!(again, event);
});
