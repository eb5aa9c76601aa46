//! The assignment's data file: a JSON array of movie records, as `movies ingest` reads it and
//! `movies generate` writes it. Reading is split in two so that a malformed file is refused
//! before anything is written: `read_records` checks the file's syntax, `parse_record` each
//! record's fields.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::MovieInput;

/// One record of the assignment's format (note the odd `99popularity` key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    #[serde(rename = "99popularity")]
    pub popularity: f64,
    pub director: String,
    pub genre: Vec<String>,
    pub imdb_score: f64,
    pub name: String,
}

impl From<Record> for MovieInput {
    fn from(r: Record) -> Self {
        MovieInput {
            name: r.name,
            director: r.director,
            popularity: r.popularity,
            imdb_score: r.imdb_score,
            genres: r.genre,
        }
    }
}

/// The file's records as raw text, each kept until `parse_record` reads it; an error if the
/// file is not a JSON array.
pub fn read_records(bytes: &[u8]) -> Result<Vec<Box<RawValue>>, serde_json::Error> {
    serde_json::from_slice(bytes)
}

/// One record's fields, or what is wrong with them (without serde's position: that is within
/// the record's own text, not the file's; the record's index says where it is).
pub fn parse_record(raw: &RawValue) -> Result<Record, String> {
    serde_json::from_str::<Record>(raw.get()).map_err(|error| {
        let text = error.to_string();
        let suffix = format!(" at line {} column {}", error.line(), error.column());
        text.strip_suffix(&suffix).map(str::to_owned).unwrap_or(text)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_is_not_an_array_is_refused_before_any_record_is_read() {
        assert!(read_records(br#"{"name": "Alien"}"#).is_err());
        assert!(read_records(b"[1, 2").is_err());
        assert_eq!(read_records(b"[1, {}]").expect("an array").len(), 2);
    }

    #[test]
    fn a_bad_record_says_what_is_wrong_without_a_position() {
        let records = read_records(br#"[{"name": "Alien"}, 7]"#).expect("an array");
        let missing = parse_record(&records[0]).expect_err("fields are missing");
        assert!(missing.starts_with("missing field"), "{missing}");
        assert!(!missing.contains(" at line "), "{missing}");
        assert!(parse_record(&records[1]).is_err());
    }

    #[test]
    fn a_record_reads_back_as_it_was_written() {
        let record = Record {
            popularity: 83.0,
            director: "Victor Fleming".into(),
            genre: vec!["Adventure".into(), " Family".into()],
            imdb_score: 8.3,
            name: "The Wizard of Oz".into(),
        };
        let file = serde_json::to_vec(&[&record]).expect("serializes");
        let records = read_records(&file).expect("an array");
        assert_eq!(parse_record(&records[0]), Ok(record));
    }
}
