//! The event log is append-only in the database itself: UPDATE and DELETE fail for the role the
//! services use, in both dialects.

use movies_store::contract::{created, new_event};
use movies_store::{connect_postgres, open_sqlite, EventStore, PgEventStore, SqliteEventStore};
use uuid::Uuid;

#[tokio::test]
async fn postgres_refuses_to_update_or_delete_events() {
    let pool = connect_postgres(&movies_store::testing::postgres_database().await, 4).await.unwrap();
    let store = PgEventStore::open(pool.clone()).await.unwrap();
    store.append(Uuid::now_v7(), 0, vec![new_event(created("Alien"))]).await.unwrap();
    for statement in
        ["UPDATE events SET event_type = 'movie.deleted'", "DELETE FROM events", "TRUNCATE events"]
    {
        let refused = sqlx::query(statement).execute(&pool).await.unwrap_err();
        assert!(refused.to_string().contains("events are immutable"), "{statement}: {refused}");
    }
    assert_eq!(store.read_all(0, 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn sqlite_refuses_to_update_or_delete_events() {
    let dir = tempfile::tempdir().unwrap();
    let file = open_sqlite(&dir.path().join("events.db")).await.unwrap();
    let store = SqliteEventStore::open(file.clone()).await.unwrap();
    store.append(Uuid::now_v7(), 0, vec![new_event(created("Alien"))]).await.unwrap();
    for statement in ["UPDATE events SET event_type = 'movie.deleted'", "DELETE FROM events"] {
        let refused = sqlx::query(statement).execute(&file.writer).await.unwrap_err();
        assert!(refused.to_string().contains("events are immutable"), "{statement}: {refused}");
    }
    assert_eq!(store.read_all(0, 10).await.unwrap().len(), 1);
}
