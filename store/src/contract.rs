//! The contract every event store and account store adapter passes. Each case is a plain async
//! function over the ports; `event_store_contract!` turns them into one test per case for an
//! adapter's fixture.

use chrono::{TimeZone, Utc};
use movies_events::{
    Actor, EventMetadata, MovieChanges, MovieEvent, MovieFields, NewEvent, Position, Role, Version,
};
use uuid::Uuid;

use crate::testing::Fixture;
use crate::{Account, AccountChange, AccountError, EventFilter, Snapshot, StoreError};

pub fn created(name: &str) -> MovieEvent {
    MovieEvent::Created(MovieFields {
        name: name.into(),
        director: "Jane Doe".into(),
        popularity: 50.0,
        imdb_score: 7.0,
        genres: vec!["Drama".into()],
    })
}

pub fn renamed(name: &str) -> MovieEvent {
    MovieEvent::Updated(MovieChanges { name: Some(name.into()), ..Default::default() })
}

pub fn new_event(event: MovieEvent) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event,
        recorded_at: Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap(),
        metadata: EventMetadata {
            actor: Actor { subject: "alice".into(), role: Role::Admin },
            request_id: Some("req-1".into()),
        },
    }
}

pub async fn appended_events_load_in_version_order_with_their_envelope(f: Fixture) {
    let stream = Uuid::now_v7();
    let events = vec![new_event(created("Alien")), new_event(renamed("Aliens"))];
    let appended = f.events.append(stream, 0, events.clone()).await.unwrap();
    assert_eq!((appended.version, appended.replayed), (2, false));
    assert_eq!(appended.last_position, appended.first_position + 1);

    let loaded = f.events.load(stream).await.unwrap();
    assert_eq!(loaded.len(), 2);
    for (n, (stored, sent)) in loaded.iter().zip(&events).enumerate() {
        assert_eq!(stored.event_id, sent.event_id);
        assert_eq!(stored.stream_id, stream);
        assert_eq!(stored.stream_version, n as i64 + 1);
        assert_eq!(stored.position, appended.first_position + n as i64);
        assert_eq!(stored.recorded_at, sent.recorded_at);
        assert_eq!(stored.metadata, sent.metadata);
        assert_eq!(stored.event, sent.event);
    }
    assert!(f.events.load(Uuid::now_v7()).await.unwrap().is_empty());
}

pub async fn an_append_at_a_stale_version_is_a_conflict_and_writes_nothing(f: Fixture) {
    let stream = Uuid::now_v7();
    f.events.append(stream, 0, vec![new_event(created("Alien"))]).await.unwrap();
    let stale = f.events.append(stream, 0, vec![new_event(renamed("Aliens"))]).await;
    assert!(matches!(stale, Err(StoreError::Conflict { expected: 0, actual: 1, .. })), "{stale:?}");
    let ahead = f.events.append(stream, 5, vec![new_event(renamed("Aliens"))]).await;
    assert!(matches!(ahead, Err(StoreError::Conflict { expected: 5, actual: 1, .. })), "{ahead:?}");
    assert_eq!(f.events.load(stream).await.unwrap().len(), 1);
}

pub async fn a_retried_append_returns_the_original_result_and_writes_nothing(f: Fixture) {
    let stream = Uuid::now_v7();
    let events = vec![new_event(created("Alien")), new_event(renamed("Aliens"))];
    let first = f.events.append(stream, 0, events.clone()).await.unwrap();
    let head = f.events.head().await.unwrap();

    let retry = f.events.append(stream, 0, events.clone()).await.unwrap();
    assert_eq!(retry, crate::Appended { replayed: true, ..first });
    // A retry that names another stream (a fresh id minted by the retrying client) still
    // resolves to the original stream.
    let elsewhere = f.events.append(Uuid::now_v7(), 0, events).await.unwrap();
    assert_eq!(elsewhere, crate::Appended { replayed: true, ..first });
    assert_eq!(f.events.head().await.unwrap(), head);
    assert_eq!(f.events.load(stream).await.unwrap().len(), 2);
}

pub async fn an_append_reusing_a_stored_event_id_later_in_the_batch_writes_nothing(f: Fixture) {
    let stored = new_event(created("Alien"));
    f.events.append(Uuid::now_v7(), 0, vec![stored.clone()]).await.unwrap();
    let stream = Uuid::now_v7();
    let result = f.events.append(stream, 0, vec![new_event(created("Heat")), stored.clone()]).await;
    assert!(matches!(result, Err(StoreError::DuplicateEvent(id)) if id == stored.event_id), "{result:?}");
    assert!(f.events.load(stream).await.unwrap().is_empty());
}

pub async fn an_empty_append_is_refused(f: Fixture) {
    let result = f.events.append(Uuid::now_v7(), 0, vec![]).await;
    assert!(matches!(result, Err(StoreError::NothingToAppend)));
    assert_eq!(f.events.head().await.unwrap(), 0);
}

pub async fn the_log_reads_across_streams_in_position_order(f: Fixture) {
    assert_eq!(f.events.head().await.unwrap(), 0);
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    f.events.append(a, 0, vec![new_event(created("A"))]).await.unwrap();
    f.events.append(b, 0, vec![new_event(created("B"))]).await.unwrap();
    f.events.append(a, 1, vec![new_event(renamed("A2")), new_event(renamed("A3"))]).await.unwrap();

    let all = f.events.read_all(0, 100).await.unwrap();
    let order: Vec<_> = all.iter().map(|e| (e.stream_id, e.stream_version)).collect();
    assert_eq!(order, vec![(a, 1), (b, 1), (a, 2), (a, 3)]);
    assert!(all.windows(2).all(|w| w[0].position < w[1].position));
    assert_eq!(f.events.head().await.unwrap(), all[3].position);

    let page = f.events.read_all(all[0].position, 2).await.unwrap();
    assert_eq!(page.iter().map(|e| e.position).collect::<Vec<_>>(), vec![all[1].position, all[2].position]);
    assert!(f.events.read_all(all[3].position, 10).await.unwrap().is_empty());
}

pub async fn an_append_wakes_subscribers_with_its_position(f: Fixture) {
    let mut appended = f.events.appended();
    let result = f.events.append(Uuid::now_v7(), 0, vec![new_event(created("A"))]).await.unwrap();
    appended.changed().await.unwrap();
    assert_eq!(*appended.borrow(), result.last_position);
}

pub async fn audit_queries_select_by_actor_type_and_time(f: Fixture) {
    let at = |hour| Utc.with_ymd_and_hms(2026, 11, 23, hour, 0, 0).unwrap();
    let by = |subject: &str, event, hour| NewEvent {
        recorded_at: at(hour),
        metadata: EventMetadata {
            actor: Actor { subject: subject.into(), role: Role::Admin },
            request_id: None,
        },
        ..new_event(event)
    };
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    f.events.append(a, 0, vec![by("alice", created("A"), 8)]).await.unwrap();
    f.events.append(b, 0, vec![by("bob", created("B"), 9)]).await.unwrap();
    f.events.append(a, 1, vec![by("bob", renamed("A2"), 10)]).await.unwrap();
    f.events.append(a, 2, vec![by("alice", MovieEvent::Deleted, 11)]).await.unwrap();
    let query = |filter: EventFilter, after, limit| {
        let events = f.events.clone();
        async move {
            events.query(&filter, after, limit).await.unwrap().iter().map(|e| e.position).collect::<Vec<_>>()
        }
    };
    assert_eq!(query(EventFilter::default(), 0, 10).await, [1, 2, 3, 4]);
    assert_eq!(query(EventFilter { actor: Some("bob".into()), ..Default::default() }, 0, 10).await, [2, 3]);
    let updates = EventFilter { event_type: Some(MovieEvent::UPDATED.into()), ..Default::default() };
    assert_eq!(query(updates, 0, 10).await, [3]);
    let window = EventFilter { since: Some(at(9)), until: Some(at(11)), ..Default::default() };
    assert_eq!(query(window.clone(), 0, 10).await, [2, 3]);
    assert_eq!(query(window.clone(), 2, 10).await, [3]);
    assert_eq!(query(EventFilter::default(), 1, 2).await, [2, 3]);
}

pub async fn a_batch_appends_to_many_streams_atomically(f: Fixture) {
    let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let batch = vec![
        (a, 0, vec![new_event(created("A"))]),
        (b, 0, vec![new_event(created("B")), new_event(renamed("B2"))]),
    ];
    let done = f.events.append_batch(batch.clone()).await.unwrap();
    assert_eq!(
        done.iter().map(|d| (d.stream_id, d.version, d.replayed)).collect::<Vec<_>>(),
        [(a, 1, false), (b, 2, false)]
    );
    assert_eq!(done[1].first_position, done[0].last_position + 1);
    assert_eq!(f.events.load(b).await.unwrap().len(), 2);

    let retry_of_a = batch[0].clone();
    let retried = f.events.append_batch(batch).await.unwrap();
    assert!(retried.iter().all(|r| r.replayed), "a retried batch writes nothing");
    assert_eq!(
        retried.iter().map(|r| r.last_position).collect::<Vec<_>>(),
        done.iter().map(|d| d.last_position).collect::<Vec<_>>()
    );

    let conflicting = f
        .events
        .append_batch(vec![(c, 0, vec![new_event(created("C"))]), (a, 0, vec![new_event(renamed("A2"))])])
        .await;
    assert!(matches!(conflicting, Err(StoreError::Conflict { .. })), "{conflicting:?}");
    assert!(f.events.load(c).await.unwrap().is_empty(), "nothing of a failed batch is written");
    assert_eq!(f.events.head().await.unwrap(), 3);

    // A retried creation beside a new one: the retry is recognised, the new one written.
    let mixed = f.events.append_batch(vec![retry_of_a, (c, 0, vec![new_event(created("C"))])]).await.unwrap();
    assert_eq!(
        mixed.iter().map(|m| (m.replayed, m.last_position)).collect::<Vec<_>>(),
        [(true, 1), (false, 4)]
    );
    // One event id twice in a batch of creations is refused whole.
    let twice = new_event(created("D"));
    let duplicated = f
        .events
        .append_batch(vec![(Uuid::now_v7(), 0, vec![twice.clone()]), (Uuid::now_v7(), 0, vec![twice])])
        .await;
    assert!(matches!(duplicated, Err(StoreError::DuplicateEvent(_))), "{duplicated:?}");
    assert_eq!(f.events.head().await.unwrap(), 4);
}

/// A batch is sent to Postgres in pieces (`COPY` rows built while the server inserts the
/// ones before): a batch of several pieces is stored whole and in order, and one whose key
/// trips in its last piece, after the first ones were sent, stores nothing.
pub async fn a_batch_of_many_pieces_is_stored_whole_or_not_at_all(f: Fixture) {
    let batch: Vec<_> =
        (0..2500).map(|n| (Uuid::now_v7(), 0, vec![new_event(created(&format!("Movie {n}")))])).collect();
    f.events.append_batch(batch.clone()).await.unwrap();
    let log = f.events.read_all(0, 5000).await.unwrap();
    assert_eq!(log.iter().map(|e| e.position).collect::<Vec<_>>(), (1..=2500).collect::<Vec<i64>>());
    assert_eq!(
        log.iter().map(|e| e.stream_id).collect::<Vec<_>>(),
        batch.iter().map(|(id, ..)| *id).collect::<Vec<_>>()
    );

    let mut tripping: Vec<_> =
        (0..2500).map(|n| (Uuid::now_v7(), 0, vec![new_event(created(&format!("Film {n}")))])).collect();
    tripping[2400].2[0].event_id = tripping[0].2[0].event_id;
    let refused = f.events.append_batch(tripping).await;
    assert!(matches!(refused, Err(StoreError::DuplicateEvent(_))), "{refused:?}");
    assert_eq!(f.events.head().await.unwrap(), 2500, "nothing of the refused batch is stored");
}

pub async fn stream_versions_name_each_existing_stream_and_leave_out_the_rest(f: Fixture) {
    let (a, b, never) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    f.events.append(a, 0, vec![new_event(created("Alien")), new_event(renamed("Aliens"))]).await.unwrap();
    f.events.append(b, 0, vec![new_event(created("Heat"))]).await.unwrap();
    let versions = f.events.stream_versions(&[a, b, never]).await.unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!((versions[&a], versions[&b]), (2, 1));
    assert!(f.events.stream_versions(&[]).await.unwrap().is_empty());
}

pub async fn a_batch_keeps_text_that_looks_like_syntax_exactly(f: Fixture) {
    // Bulk appends go in as CSV on Postgres (COPY): quotes, commas, backslashes, newlines and
    // the end-of-data marker must come back as they went in.
    let awkward = "\\.\nSay \"hi\", then\\n leave,\r\n\tÉté \u{1F3AC} 'quoted' NULL";
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    let mut odd = new_event(created(awkward));
    odd.metadata.request_id = None;
    odd.metadata.actor.subject = "\"root\",\\".into();
    let mut empty = new_event(created("B"));
    empty.metadata.request_id = Some(String::new());
    f.events.append_batch(vec![(a, 0, vec![odd.clone()]), (b, 0, vec![empty])]).await.unwrap();
    let stored = f.events.load(a).await.unwrap();
    assert_eq!(stored[0].event, odd.event);
    assert_eq!(stored[0].metadata, odd.metadata);
    assert_eq!(stored[0].recorded_at, odd.recorded_at);
    assert_eq!(
        f.events.load(b).await.unwrap()[0].metadata.request_id.as_deref(),
        Some(""),
        "empty is not NULL"
    );
}

/// An enabled admin account with a fixed creation time.
fn snapshot(version: Version, position: Position, schema: i32, name: &str) -> Snapshot {
    Snapshot { version, position, schema, state: serde_json::json!({ "name": name }) }
}

pub async fn a_stream_loads_from_its_snapshot_with_only_the_events_after_it(f: Fixture) {
    let stream = Uuid::now_v7();
    let events =
        vec![new_event(created("Alien")), new_event(renamed("Aliens")), new_event(renamed("Alien 3"))];
    let appended = f.events.append(stream, 0, events).await.unwrap();
    let (none, all) = f.events.load_from_snapshot(stream).await.unwrap();
    assert_eq!((none, all.len()), (None, 3), "without a snapshot, the whole stream");

    let at_two = snapshot(2, appended.first_position + 1, 1, "Aliens");
    f.events.save_snapshot(stream, &at_two).await.unwrap();
    let (stored, after) = f.events.load_from_snapshot(stream).await.unwrap();
    assert_eq!(stored.as_ref(), Some(&at_two));
    assert_eq!(after.iter().map(|e| e.stream_version).collect::<Vec<_>>(), [3]);
    assert_eq!(after[0].event, renamed("Alien 3"));
    assert_eq!(f.events.load(stream).await.unwrap().len(), 3, "the log is untouched");
    let (none, nothing) = f.events.load_from_snapshot(Uuid::now_v7()).await.unwrap();
    assert_eq!((none, nothing.len()), (None, 0));
}

pub async fn a_snapshot_never_replaces_a_later_one_of_its_schema(f: Fixture) {
    let stream = Uuid::now_v7();
    let events =
        vec![new_event(created("Alien")), new_event(renamed("Aliens")), new_event(renamed("Alien 3"))];
    let appended = f.events.append(stream, 0, events).await.unwrap();
    let later = snapshot(3, appended.last_position, 1, "Alien 3");
    f.events.save_snapshot(stream, &later).await.unwrap();
    f.events.save_snapshot(stream, &snapshot(2, appended.first_position + 1, 1, "Aliens")).await.unwrap();
    f.events.save_snapshot(stream, &snapshot(3, appended.last_position, 1, "Other")).await.unwrap();
    assert_eq!(
        f.events.load_from_snapshot(stream).await.unwrap().0,
        Some(later),
        "an older or equal one loses"
    );
    // A snapshot of another layout is replaced by one of the current, even at an older version.
    let rebuilt = snapshot(2, appended.first_position + 1, 2, "Aliens");
    f.events.save_snapshot(stream, &rebuilt).await.unwrap();
    let (stored, after) = f.events.load_from_snapshot(stream).await.unwrap();
    assert_eq!((stored, after.len()), (Some(rebuilt), 1));
}

fn admin(username: &str, password_hash: &str) -> Account {
    Account {
        username: username.into(),
        password_hash: password_hash.into(),
        role: Role::Admin,
        created_at: Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap(),
        disabled: false,
    }
}

pub async fn accounts_are_created_once_and_found_by_name(f: Fixture) {
    let account = admin("alice", "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA");
    assert_eq!(f.accounts.count_admins().await.unwrap(), 0);
    f.accounts.create(&account).await.unwrap();
    assert_eq!(f.accounts.find("alice").await.unwrap(), Some(account.clone()));
    assert_eq!(f.accounts.find("bob").await.unwrap(), None);
    let again = Account { password_hash: "other".into(), role: Role::User, ..account.clone() };
    assert!(matches!(f.accounts.create(&again).await, Err(AccountError::Exists(_))));
    assert_eq!(f.accounts.find("alice").await.unwrap(), Some(account));
    assert_eq!(f.accounts.count_admins().await.unwrap(), 1);
}

pub async fn an_account_update_changes_only_what_it_names(f: Fixture) {
    let account = admin("carol", "first");
    f.accounts.create(&account).await.unwrap();
    let disable = AccountChange { disabled: Some(true), ..Default::default() };
    assert!(f.accounts.update("carol", &disable).await.unwrap());
    let demote =
        AccountChange { role: Some(Role::User), password_hash: Some("second".into()), ..Default::default() };
    assert!(f.accounts.update("carol", &demote).await.unwrap());
    let now = f.accounts.find("carol").await.unwrap().unwrap();
    let expected =
        Account { password_hash: "second".into(), role: Role::User, disabled: true, ..account.clone() };
    assert_eq!(now, expected);
    assert!(!f.accounts.update("nobody", &disable).await.unwrap());
    let names: Vec<String> = f.accounts.list().await.unwrap().into_iter().map(|a| a.username).collect();
    assert_eq!(names, ["carol"]);
}

/// Expands to one `#[tokio::test]` per contract case, each with a fresh fixture from `$fixture`.
#[macro_export]
macro_rules! event_store_contract {
    ($fixture:path) => {
        $crate::event_store_contract!(@cases $fixture;
            appended_events_load_in_version_order_with_their_envelope,
            an_append_at_a_stale_version_is_a_conflict_and_writes_nothing,
            a_retried_append_returns_the_original_result_and_writes_nothing,
            an_append_reusing_a_stored_event_id_later_in_the_batch_writes_nothing,
            an_empty_append_is_refused,
            the_log_reads_across_streams_in_position_order,
            an_append_wakes_subscribers_with_its_position,
            audit_queries_select_by_actor_type_and_time,
            a_batch_appends_to_many_streams_atomically,
            a_batch_of_many_pieces_is_stored_whole_or_not_at_all,
            stream_versions_name_each_existing_stream_and_leave_out_the_rest,
            a_batch_keeps_text_that_looks_like_syntax_exactly,
            a_stream_loads_from_its_snapshot_with_only_the_events_after_it,
            a_snapshot_never_replaces_a_later_one_of_its_schema,
            accounts_are_created_once_and_found_by_name,
            an_account_update_changes_only_what_it_names,
        );
    };
    (@cases $fixture:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                $crate::contract::$case($fixture().await).await;
            }
        )*
    };
}
