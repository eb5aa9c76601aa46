//! Commit-ordered positions: many appenders race, some sleep inside their transactions and some
//! roll back, while one reader tails the log by position. The reader must see every committed
//! event exactly once, in position order, and nothing that rolled back.
//!
//! The suite runs 12 appenders to 360 committed events, one a transaction; `bench/appends.sh`
//! runs the same test at size (`MOVIES_APPEND_WRITERS` appenders, `MOVIES_APPEND_EVENTS`
//! committed events in all, 1 to `MOVIES_APPEND_BATCH` a transaction) and prints its figures.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use movies_store::contract::{created, new_event, renamed};
use movies_store::{connect_postgres, EventStore, PgEventStore};
use rand::Rng;
use tokio::sync::Mutex;
use uuid::Uuid;

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name).map_or(default, |v| v.parse().unwrap_or_else(|_| panic!("{name} is a number")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tailing_reader_sees_every_committed_event_once_in_position_order() {
    let appenders_count = setting("MOVIES_APPEND_WRITERS", 12);
    let commits_each = setting("MOVIES_APPEND_EVENTS", 360).div_ceil(appenders_count);
    // Events per transaction, 1 to this many.
    let batch = setting("MOVIES_APPEND_BATCH", 1);
    // Small pages make the reader interleave with the appends; at size, larger ones keep up.
    let page_size = if commits_each * appenders_count > 10_000 { 1000 } else { 7 };
    let url = movies_store::testing::postgres_database().await;
    let pool = connect_postgres(&url, appenders_count as u32 + 2).await.unwrap();
    let store = Arc::new(PgEventStore::open(pool.clone()).await.unwrap());
    let committed = Arc::new(Mutex::new(HashSet::new()));
    let rolled_back = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();

    let mut appenders = Vec::new();
    for _ in 0..appenders_count {
        let (pool, committed, rolled_back) = (pool.clone(), committed.clone(), rolled_back.clone());
        appenders.push(tokio::spawn(async move {
            let stream = Uuid::now_v7();
            let (mut version, mut n) = (0, 0);
            while version < commits_each as i64 {
                let size = rand::thread_rng().gen_range(1..=batch).min(commits_each - version as usize);
                let events: Vec<_> = (0..size)
                    .map(|i| {
                        n += 1;
                        new_event(if version == 0 && i == 0 {
                            created("Film")
                        } else {
                            renamed(&format!("Film {n}"))
                        })
                    })
                    .collect();
                let mut tx = pool.begin().await.unwrap();
                let appended = PgEventStore::append_in(&mut tx, stream, version, &events).await.unwrap();
                // One transaction in ten pauses (holding the append lock) up to 3 ms; one in five
                // rolls back.
                let (delay, roll_back) = {
                    let mut rng = rand::thread_rng();
                    (if rng.gen_bool(0.1) { rng.gen_range(1..4) } else { 0 }, rng.gen_bool(0.2))
                };
                if delay > 0 {
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                }
                if roll_back {
                    tx.rollback().await.unwrap();
                    rolled_back.fetch_add(1, Ordering::Relaxed);
                } else {
                    tx.commit().await.unwrap();
                    committed.lock().await.extend(events.iter().map(|e| e.event_id));
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
                let page = store.read_all(after, page_size).await.unwrap();
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
    let appended = started.elapsed();
    let seen =
        tokio::time::timeout(Duration::from_secs(60), reader).await.expect("reader caught up").unwrap();
    let committed = committed.lock().await.clone();
    let rolled_back = rolled_back.load(Ordering::Relaxed);
    println!(
        "{appenders_count} appenders: {} events committed, {rolled_back} transactions rolled back, {} events \
         read, in {:.1} s ({:.0} committed events/s); the reader caught up {:.1} s after the last commit",
        committed.len(),
        seen.len(),
        appended.as_secs_f64(),
        committed.len() as f64 / appended.as_secs_f64(),
        (started.elapsed() - appended).as_secs_f64(),
    );

    let unique: HashSet<_> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "an event was read twice");
    assert_eq!(unique, committed, "the reader saw exactly the committed events");
    assert!(rolled_back > 0, "some appends rolled back");
}
