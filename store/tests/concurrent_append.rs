//! Commit-ordered positions: many appenders race, some sleep inside their transactions and some
//! roll back, while one reader tails the log by position. The reader must see every committed
//! event exactly once, in position order, and nothing that rolled back.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use movies_store::contract::{created, new_event, renamed};
use movies_store::{connect_postgres, EventStore, PgEventStore};
use rand::Rng;
use tokio::sync::Mutex;
use uuid::Uuid;

const APPENDERS: usize = 12;
const APPENDS_EACH: usize = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tailing_reader_sees_every_committed_event_once_in_position_order() {
    let url = movies_store::testing::postgres_database().await;
    let pool = connect_postgres(&url, 32).await.unwrap();
    let store = Arc::new(PgEventStore::open(pool.clone()).await.unwrap());
    let committed = Arc::new(Mutex::new(HashSet::new()));

    let mut appenders = Vec::new();
    for _ in 0..APPENDERS {
        let (pool, committed) = (pool.clone(), committed.clone());
        appenders.push(tokio::spawn(async move {
            let stream = Uuid::now_v7();
            let mut version = 0;
            for n in 0..APPENDS_EACH {
                let event =
                    new_event(if version == 0 { created("Film") } else { renamed(&format!("Film {n}")) });
                let mut tx = pool.begin().await.unwrap();
                let appended =
                    PgEventStore::append_in(&mut tx, stream, version, std::slice::from_ref(&event))
                        .await
                        .unwrap();
                let (delay, roll_back) = {
                    let mut rng = rand::thread_rng();
                    (rng.gen_range(0..4), rng.gen_bool(0.2))
                };
                tokio::time::sleep(Duration::from_millis(delay)).await;
                if roll_back {
                    tx.rollback().await.unwrap();
                } else {
                    tx.commit().await.unwrap();
                    committed.lock().await.insert(event.event_id);
                    version = appended.version;
                }
            }
        }));
    }

    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (store, done) = (store.clone(), done.clone());
        tokio::spawn(async move {
            let (mut seen, mut after) = (Vec::new(), 0);
            loop {
                // Read `done` before the page: an empty page read after every appender finished
                // means the reader has caught up with everything that committed.
                let finished = done.load(Ordering::SeqCst);
                let page = store.read_all(after, 7).await.unwrap();
                for event in &page {
                    assert!(event.position > after, "position {} after {after}", event.position);
                    after = event.position;
                    seen.push(event.event_id);
                }
                if page.is_empty() {
                    if finished {
                        return seen;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        })
    };

    for appender in appenders {
        appender.await.unwrap();
    }
    done.store(true, Ordering::SeqCst);
    let seen =
        tokio::time::timeout(Duration::from_secs(60), reader).await.expect("reader caught up").unwrap();
    let committed = committed.lock().await.clone();

    let unique: HashSet<_> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "an event was read twice");
    assert_eq!(unique, committed, "the reader saw exactly the committed events");
    assert!(committed.len() < APPENDERS * APPENDS_EACH, "some appends rolled back");
}
