//! `If-Match` as a client sends it: a version, any version (`*`) or a refusal, never a panic; a
//! version read is positive and reads back from its own ETag.
#![no_main]

use libfuzzer_sys::fuzz_target;
use movies_events::parse_if_match;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else { return };
    match parse_if_match(raw) {
        Ok(Some(version)) => {
            assert!(version >= 1, "{raw:?} read as {version}");
            assert_eq!(parse_if_match(&format!("\"{version}\"")), Ok(Some(version)));
        }
        Ok(None) => assert_eq!(raw.trim(), "*"),
        // The reason quotes at most 32 characters, each at most 10 bytes once escaped.
        Err(reason) => assert!(reason.len() <= 400, "an unbounded reason for {} bytes", raw.len()),
    }
});
