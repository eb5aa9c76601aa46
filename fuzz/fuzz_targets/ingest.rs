//! The ingest reader over an arbitrary file: the file is refused, or each record is read or
//! refused with a reason, and each record read is validated, never a panic. A record read
//! writes back (as `movies generate` does) to the same record.
#![no_main]

use libfuzzer_sys::fuzz_target;
use movies_events::record::{parse_record, read_records};
use movies_events::{MovieDraft, MovieInput};

fuzz_target!(|data: &[u8]| {
    let Ok(records) = read_records(data) else { return };
    for raw in &records {
        let Ok(record) = parse_record(raw) else { continue };
        let written = serde_json::to_string(&record).expect("a record serializes");
        let raw_again = serde_json::value::RawValue::from_string(written).expect("valid JSON");
        assert_eq!(parse_record(&raw_again).as_ref(), Ok(&record));
        let _ = MovieDraft::parse(MovieInput::from(record));
    }
});
