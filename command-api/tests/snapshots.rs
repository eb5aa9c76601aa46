//! Commands on a movie with a long history fold from its snapshot, and answer exactly what
//! folding its whole log would, on both event stores.

use std::sync::Arc;

use movies_command_api::{fold, CommandContext, CommandService, Outcome, SNAPSHOT_EVERY, SNAPSHOT_SCHEMA};
use movies_events::{
    Actor, EventMetadata, MovieCommand, MovieDraft, MovieInput, MoviePatch, MoviePatchInput, Role,
};
use movies_store::testing::{postgres_fixture, sqlite_fixture, Fixture};
use movies_store::{EventStore, Snapshot};
use uuid::Uuid;

fn context(key: Option<Uuid>) -> CommandContext {
    CommandContext {
        metadata: EventMetadata {
            actor: Actor { subject: "alice".into(), role: Role::Admin },
            request_id: None,
        },
        event_id: key,
    }
}

fn create() -> MovieCommand {
    MovieCommand::Create(
        MovieDraft::parse(MovieInput {
            name: "Groundhog Day".into(),
            director: "Harold Ramis".into(),
            popularity: 50.0,
            imdb_score: 8.0,
            genres: vec!["Comedy".into()],
        })
        .unwrap(),
    )
}

fn rename(n: usize) -> MovieCommand {
    MovieCommand::Patch(
        MoviePatch::parse(MoviePatchInput { name: Some(format!("Groundhog Day {n}")), ..Default::default() })
            .unwrap(),
    )
}

/// The outcome folding the whole log gives at the stream's current version.
async fn from_the_log(
    events: &Arc<dyn EventStore>,
    id: Uuid,
) -> (Option<movies_read_model::MovieDoc>, i64, i64) {
    let history = events.load(id).await.unwrap();
    let last = history.last().unwrap();
    (fold(id, &history).1, last.stream_version, last.position)
}

fn described(outcome: &Outcome) -> (Option<movies_read_model::MovieDoc>, i64, i64) {
    (outcome.movie.clone(), outcome.version, outcome.position)
}

async fn a_long_history_folds_from_snapshots_and_answers_as_the_log_does(f: Fixture) {
    let service = CommandService::new(f.events.clone());
    let id = Uuid::now_v7();
    service.execute(id, None, create(), context(None)).await.unwrap();
    for n in 1..=(2 * SNAPSHOT_EVERY + 30) {
        let outcome = service.execute(id, Some(n as i64), rename(n), context(None)).await.unwrap();
        assert!(outcome.recorded);
        assert_eq!(described(&outcome), from_the_log(&f.events, id).await, "after edit {n}");
    }
    let (snapshot, after) = f.events.load_from_snapshot(id).await.unwrap();
    let snapshot = snapshot.expect("a snapshot was stored");
    assert_eq!(snapshot.schema, SNAPSHOT_SCHEMA);
    assert!(
        after.len() < SNAPSHOT_EVERY,
        "a command folds at most {SNAPSHOT_EVERY} events, not {}",
        after.len()
    );
    assert_eq!(service.load(id).await.unwrap(), from_the_log(&f.events, id).await.0);

    // A delete and a restore through the snapshot keep the first creation's time.
    service.execute(id, None, MovieCommand::Delete, context(None)).await.unwrap();
    assert_eq!(service.load(id).await.unwrap(), None);
    let restored = service.execute(id, None, MovieCommand::Restore, context(None)).await.unwrap();
    assert_eq!(described(&restored), from_the_log(&f.events, id).await);
}

async fn a_retried_command_older_than_the_snapshot_answers_what_it_did_first(f: Fixture) {
    let service = CommandService::new(f.events.clone());
    let (id, key) = (Uuid::now_v7(), Uuid::now_v7());
    let first = service.execute(id, None, create(), context(Some(key))).await.unwrap();
    for n in 1..=SNAPSHOT_EVERY + 5 {
        service.execute(id, None, rename(n), context(None)).await.unwrap();
    }
    assert!(f.events.load_from_snapshot(id).await.unwrap().0.is_some());
    // As the API retries a create: under a new id, with the same first event id.
    let retried = service.execute(Uuid::now_v7(), None, create(), context(Some(key))).await.unwrap();
    assert!(!retried.recorded);
    assert_eq!((retried.id, described(&retried)), (id, described(&first)));
    assert_eq!(retried.movie.unwrap().name, "Groundhog Day");
}

async fn a_snapshot_of_another_layout_is_ignored_and_replaced(f: Fixture) {
    let service = CommandService::new(f.events.clone());
    let id = Uuid::now_v7();
    let created = service.execute(id, None, create(), context(None)).await.unwrap();
    // A snapshot of a layout this build does not know, which would say something else.
    let foreign = Snapshot {
        version: 1,
        position: created.position,
        schema: SNAPSHOT_SCHEMA + 1,
        state: serde_json::json!({ "movie": { "state": "absent" }, "somewhere": "else" }),
    };
    f.events.save_snapshot(id, &foreign).await.unwrap();
    for n in 1..=SNAPSHOT_EVERY {
        let outcome = service.execute(id, None, rename(n), context(None)).await.unwrap();
        assert_eq!(described(&outcome), from_the_log(&f.events, id).await, "after edit {n}");
    }
    let (snapshot, _) = f.events.load_from_snapshot(id).await.unwrap();
    assert_eq!(snapshot.unwrap().schema, SNAPSHOT_SCHEMA, "rebuilt from the log in this build's layout");
}

macro_rules! on_both_stores {
    ($($case:ident),* $(,)?) => {
        mod postgres {
            $(#[tokio::test]
            async fn $case() {
                super::$case(super::postgres_fixture().await).await;
            })*
        }
        mod sqlite {
            $(#[tokio::test]
            async fn $case() {
                super::$case(super::sqlite_fixture().await).await;
            })*
        }
    };
}

on_both_stores!(
    a_long_history_folds_from_snapshots_and_answers_as_the_log_does,
    a_retried_command_older_than_the_snapshot_answers_what_it_did_first,
    a_snapshot_of_another_layout_is_ignored_and_replaced,
);
