//! `movies ingest`: the assignment's data file through the command path, so every imported
//! movie has a history. Re-running it is safe: movie and event ids derive from the record.

use indicatif::{ProgressBar, ProgressStyle};
use movies_command_api::{system_actor, CommandContext, CommandError, CommandService};
use movies_events::{EventMetadata, Movie, MovieCommand, MovieDraft, MovieInput};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Records per chunk: one transaction creates the new movies among them.
const BULK: usize = 10_000;
/// Namespaces the ids derived from records, so they never collide with other derived ids.
const INGEST_NAMESPACE: Uuid = Uuid::from_u128(0x6d6f_7669_6573_2d69_6e67_6573_742d_7631);

/// One record of the assignment's format (note the odd `99popularity` key): what ingest reads
/// and `movies generate` writes.
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

#[derive(Debug, Default, PartialEq)]
pub struct IngestReport {
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
    /// Each rejected record's 0-based index in the file and why.
    pub rejected: Vec<(usize, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("the file is not a JSON array of movies: {0}")]
    Malformed(#[source] serde_json::Error),
    #[error("record {index}: {source}")]
    Command {
        index: usize,
        #[source]
        source: CommandError,
    },
}

/// A record's identity: its title and director, ignoring case and stray spaces. (Two different
/// movies share the title "Batman"; their directors tell them apart.)
fn identity(input: &MovieInput) -> String {
    format!("{}\n{}", input.name.trim().to_lowercase(), input.director.trim().to_lowercase())
}

/// The movie id a record maps to: a UUID v7 whose timestamp and random bits all come from the
/// record's identity (the timestamp falls in 2020-2021), so every run derives the same id.
pub fn movie_id(input: &MovieInput) -> Uuid {
    const JAN_2020_MS: u64 = 1_577_836_800_000;
    let hash = Uuid::new_v5(&INGEST_NAMESPACE, identity(input).as_bytes());
    let bytes = hash.as_bytes();
    let millis =
        JAN_2020_MS + u64::from(u32::from_be_bytes([bytes[10], bytes[11], bytes[12], bytes[13]])) * 8;
    uuid::Builder::from_unix_timestamp_millis(millis, bytes[..10].try_into().expect("10 bytes")).into_uuid()
}

/// Parses every record first: a malformed file writes nothing. Then appends the valid records in
/// chunks: the new movies of a chunk are created in one transaction, existing ones are decided
/// one by one against their current state (updated, or left alone). Invalid records are
/// reported by index.
pub async fn ingest(
    service: &CommandService,
    bytes: &[u8],
    progress: &ProgressBar,
) -> Result<IngestReport, IngestError> {
    let records: Vec<serde_json::Value> = serde_json::from_slice(bytes).map_err(IngestError::Malformed)?;
    let mut report = IngestReport::default();
    let mut seen = std::collections::HashMap::new();
    let mut valid = Vec::new();
    for (index, raw) in records.into_iter().enumerate() {
        let record = match serde_json::from_value::<Record>(raw) {
            Ok(record) => record,
            Err(error) => {
                report.rejected.push((index, error.to_string()));
                continue;
            }
        };
        let input = MovieInput::from(record);
        if let Some(first) = seen.insert(identity(&input), index) {
            report.rejected.push((index, format!("the same title and director as record {first}")));
            continue;
        }
        match MovieDraft::parse(input.clone()) {
            Ok(draft) => valid.push((index, movie_id(&input), draft)),
            Err(errors) => report.rejected.push((index, errors.to_string())),
        }
    }
    progress.set_length(valid.len() as u64);
    progress.set_style(
        ProgressStyle::with_template("{spinner} ingesting [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let metadata = EventMetadata { actor: system_actor("ingest"), request_id: None };
    // The first event's id derives from the record's content: a retry after a crash maps onto
    // the event it already stored.
    let context = |id: Uuid, draft: &MovieDraft| {
        let content = format!("{id}\n{:?}", draft.fields());
        CommandContext {
            metadata: metadata.clone(),
            event_id: Some(Uuid::new_v5(&INGEST_NAMESPACE, content.as_bytes())),
        }
    };
    for chunk in valid.chunks(BULK) {
        let ids: Vec<Uuid> = chunk.iter().map(|(_, id, _)| *id).collect();
        let fail = |index: usize| move |source| IngestError::Command { index, source };
        let existing =
            service.events().stream_versions(&ids).await.map_err(|e| fail(chunk[0].0)(e.into()))?;
        // New movies: created together, one transaction for the whole chunk.
        let fresh: Vec<_> = chunk.iter().filter(|(_, id, _)| !existing.contains_key(id)).collect();
        let mut one_by_one: Vec<_> = chunk.iter().filter(|(_, id, _)| existing.contains_key(id)).collect();
        if !fresh.is_empty() {
            let creations =
                fresh.iter().map(|(_, id, draft)| (*id, draft.clone(), context(*id, draft))).collect();
            match service.create_many(creations).await {
                Ok(recorded) => {
                    for recorded in recorded {
                        *(if recorded { &mut report.created } else { &mut report.unchanged }) += 1;
                    }
                    progress.inc(fresh.len() as u64);
                }
                // Someone created one of them meanwhile: decide each on its own.
                Err(CommandError::Conflict) => one_by_one.extend(fresh),
                Err(error) => return Err(fail(fresh[0].0)(error)),
            }
        }
        for (index, id, draft) in one_by_one {
            let current = Movie::fold(
                service
                    .events()
                    .load(*id)
                    .await
                    .map_err(|e| fail(*index)(e.into()))?
                    .iter()
                    .map(|e| &e.event),
            );
            let (command, counter) = match current {
                Movie::Absent => (MovieCommand::Create(draft.clone()), &mut report.created),
                Movie::Live(fields) if &fields != draft.fields() => {
                    (MovieCommand::Replace(draft.clone()), &mut report.updated)
                }
                // Unchanged, or deleted by an admin since: re-ingesting never resurrects a movie.
                Movie::Live(_) | Movie::Deleted(_) => {
                    report.unchanged += 1;
                    progress.inc(1);
                    continue;
                }
            };
            let outcome =
                service.execute(*id, None, command, context(*id, draft)).await.map_err(fail(*index))?;
            if outcome.recorded {
                *counter += 1;
            } else {
                report.unchanged += 1;
            }
            progress.inc(1);
        }
    }
    progress.finish_and_clear();
    Ok(report)
}
