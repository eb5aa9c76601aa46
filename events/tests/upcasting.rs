//! Stored v1 events (fixture files, exactly as the first release wrote them) read as today's
//! events. The fixtures are never edited: they are history.

use movies_events::{MovieChanges, MovieEvent, MovieFields};
use serde_json::Value;

fn expected(reads_as: &Value) -> MovieEvent {
    let mut fields = reads_as.clone();
    let kind = fields.as_object_mut().unwrap().remove("type").unwrap();
    match kind.as_str().unwrap() {
        "created" => MovieEvent::Created(serde_json::from_value::<MovieFields>(fields).unwrap()),
        "updated" => MovieEvent::Updated(serde_json::from_value::<MovieChanges>(fields).unwrap()),
        other => panic!("unknown fixture kind {other}"),
    }
}

#[test]
fn every_v1_fixture_reads_as_the_current_event() {
    // The package's directory as cargo gives it when it runs the test, not as it was when the
    // binary was built: a target directory shared by two checkouts of one tree reuses the test
    // binaries one built for the other.
    let root = std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
    let dir = std::path::Path::new(&root).join("tests/fixtures/v1");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let fixture: Value = serde_json::from_slice(&std::fs::read(entry.unwrap().path()).unwrap()).unwrap();
        let event_type = fixture["event_type"].as_str().unwrap();
        let version = fixture["schema_version"].as_i64().unwrap() as i32;
        assert_eq!(version, 1);
        let event = MovieEvent::decode(event_type, version, fixture["payload"].clone()).unwrap();
        assert_eq!(event, expected(&fixture["reads_as"]), "{event_type}");
        // Written again today, it is a v2 event in the current shape.
        assert_eq!(event.schema_version(), 2);
        assert_eq!(MovieEvent::decode(event_type, 2, event.payload()).unwrap(), event);
        checked += 1;
    }
    assert_eq!(checked, 3);
}
