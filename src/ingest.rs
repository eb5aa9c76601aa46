//! `movies ingest`: the assignment's data file through the command path, so every imported
//! movie has a history. Re-running it is safe: a movie's id derives from its record, so a record
//! stored before finds its stream (version 1 exists) instead of creating another.

use indicatif::{ProgressBar, ProgressStyle};
use movies_command_api::{system_actor, CommandContext, CommandError, CommandService};
use movies_events::record::{parse_record, read_records};
use movies_events::{EventMetadata, Movie, MovieCommand, MovieDraft, MovieInput};
use serde_json::value::RawValue;
use uuid::Uuid;

/// Records per chunk: one transaction creates the new movies among them.
const BULK: usize = 10_000;
/// Namespaces the ids derived from records, so they never collide with other derived ids.
const INGEST_NAMESPACE: Uuid = Uuid::from_u128(0x6d6f_7669_6573_2d69_6e67_6573_742d_7631);

pub use movies_events::record::Record;

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

/// A valid record ready to append: its index in the file, movie id, draft and context.
type Prepared = (usize, Uuid, MovieDraft, CommandContext);
/// A chunk of prepared records, and the records rejected since the previous chunk.
type Chunk = (Vec<Prepared>, Vec<(usize, String)>);

/// Reads the whole file first: a malformed file writes nothing (its syntax is checked up front;
/// each record is parsed into its fields later, as raw text kept until then). Then appends the
/// valid records in chunks, each checked and prepared on a blocking thread while the previous
/// one is appended: the new movies of a chunk are created in one transaction, existing ones are
/// decided one by one against their current state (updated, or left alone). Invalid records
/// are reported by index.
pub async fn ingest(
    service: &CommandService,
    bytes: &[u8],
    progress: &ProgressBar,
) -> Result<IngestReport, IngestError> {
    let records = read_records(bytes).map_err(IngestError::Malformed)?;
    progress.set_length(records.len() as u64);
    progress.set_style(
        ProgressStyle::with_template("{spinner} ingesting [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let (chunks, mut prepared) = tokio::sync::mpsc::channel::<Chunk>(2);
    let preparer = tokio::task::spawn_blocking(move || prepare(records, chunks));
    let mut report = IngestReport::default();
    // An error returns here, closing the channel: the preparer then stops at its next chunk.
    while let Some((chunk, rejected)) = prepared.recv().await {
        progress.inc(rejected.len() as u64);
        report.rejected.extend(rejected);
        append_chunk(service, chunk, &mut report, progress).await?;
    }
    if let Err(error) = preparer.await {
        std::panic::resume_unwind(error.into_panic());
    }
    progress.finish_and_clear();
    Ok(report)
}

/// Checks each record and prepares the valid ones, sending them in chunks of `BULK`.
fn prepare(records: Vec<Box<RawValue>>, chunks: tokio::sync::mpsc::Sender<Chunk>) {
    let metadata = EventMetadata { actor: system_actor("ingest"), request_id: None };
    let mut seen = std::collections::HashMap::new();
    let (mut valid, mut rejected) = (Vec::with_capacity(BULK), Vec::new());
    for (index, raw) in records.into_iter().enumerate() {
        let record = match parse_record(&raw) {
            Ok(record) => record,
            Err(error) => {
                rejected.push((index, error));
                continue;
            }
        };
        let input = MovieInput::from(record);
        if let Some(first) = seen.insert(identity(&input), index) {
            rejected.push((index, format!("the same title and director as record {first}")));
            continue;
        }
        match MovieDraft::parse(input.clone()) {
            Ok(draft) => {
                // The creation's event id is a fresh, time-ordered one (`None`), so its key lands
                // at the end of the log's event-id index instead of on a random page of it. A
                // rerun is told by the movie's stream, which exists (its id is the record's).
                let context = CommandContext { metadata: metadata.clone(), event_id: None };
                valid.push((index, movie_id(&input), draft, context));
            }
            Err(errors) => rejected.push((index, errors.to_string())),
        }
        if valid.len() == BULK {
            let chunk =
                (std::mem::replace(&mut valid, Vec::with_capacity(BULK)), std::mem::take(&mut rejected));
            if chunks.blocking_send(chunk).is_err() {
                return;
            }
        }
    }
    let _ = chunks.blocking_send((valid, rejected));
}

/// Appends one chunk of prepared records, counting each outcome in `report`.
async fn append_chunk(
    service: &CommandService,
    chunk: Vec<Prepared>,
    report: &mut IngestReport,
    progress: &ProgressBar,
) -> Result<(), IngestError> {
    let fail = |index: usize| move |source| IngestError::Command { index, source };
    // Creates these movies in one transaction; `None` if one of them exists.
    let create_all = |movies: &[&Prepared]| {
        let creations =
            movies.iter().map(|(_, id, draft, context)| (*id, draft.clone(), context.clone())).collect();
        let first = movies.first().map_or(0, |(index, ..)| *index);
        async move {
            match service.create_many(creations).await {
                Ok(recorded) => Ok(Some(recorded)),
                Err(CommandError::Conflict) => Ok(None),
                Err(error) => Err(fail(first)(error)),
            }
        }
    };
    if chunk.is_empty() {
        return Ok(());
    }
    let all: Vec<_> = chunk.iter().collect();
    // A first load creates every movie: tried at once, with nothing looked up first (a
    // record seen before, even in a crashed run, counts as unchanged).
    let (created, mut one_by_one) = match create_all(&all).await? {
        Some(recorded) => (recorded, Vec::new()),
        None => {
            // Some exist: the new ones together, the others one by one against their state.
            let ids: Vec<Uuid> = chunk.iter().map(|(_, id, ..)| *id).collect();
            let existing =
                service.events().stream_versions(&ids).await.map_err(|e| fail(chunk[0].0)(e.into()))?;
            let (known, fresh): (Vec<_>, Vec<_>) =
                all.into_iter().partition(|(_, id, ..)| existing.contains_key(id));
            let together = match fresh.is_empty() {
                true => None,
                false => create_all(&fresh).await?,
            };
            match together {
                Some(recorded) => (recorded, known),
                // Nothing new, or someone created one of them meanwhile: each on its own.
                None => (Vec::new(), known.into_iter().chain(fresh).collect()),
            }
        }
    };
    for recorded in &created {
        *(if *recorded { &mut report.created } else { &mut report.unchanged }) += 1;
    }
    progress.inc(created.len() as u64);
    one_by_one.sort_by_key(|(index, ..)| *index);
    for (index, id, draft, context) in one_by_one {
        let current = Movie::fold(
            service.events().load(*id).await.map_err(|e| fail(*index)(e.into()))?.iter().map(|e| &e.event),
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
        let outcome = service.execute(*id, None, command, context.clone()).await.map_err(fail(*index))?;
        if outcome.recorded {
            *counter += 1;
        } else {
            report.unchanged += 1;
        }
        progress.inc(1);
    }
    Ok(())
}
