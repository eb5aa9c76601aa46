//! Every sort and filter the list endpoint offers is served by an index on Postgres: the plans
//! of a 20,000-movie read store, read from EXPLAIN, never scan the movies table.

use chrono::Utc;
use movies_events::{Actor, EventEnvelope, EventMetadata, MovieEvent, MovieFields, Role};
use movies_read_model::{Filters, ListQuery, Order, PgReadStore, ProjectionStore, ReadStore, SortField};
use movies_store::connect_postgres;
use movies_store::testing::postgres_database;
use uuid::Uuid;

const MOVIES: i64 = 20_000;
const GENRES: [&str; 8] =
    ["Drama", "Comedy", "Action", "Horror", "Romance", "Thriller", "Western", "Musical"];

fn envelope(n: i64) -> EventEnvelope {
    let fields = MovieFields {
        name: format!("Movie {:05}", (n * 7919) % MOVIES),
        director: format!("Director {}", n % 500),
        popularity: ((n * 37) % 1000) as f64 / 10.0,
        imdb_score: ((n * 53) % 100) as f64 / 10.0,
        genres: vec![
            GENRES[(n % 8) as usize].into(),
            GENRES[((n % 8 + 1 + (n / 8) % 7) % 8) as usize].into(),
        ],
    };
    EventEnvelope {
        event_id: Uuid::now_v7(),
        stream_id: Uuid::now_v7(),
        stream_version: 1,
        position: n,
        recorded_at: Utc::now(),
        metadata: EventMetadata {
            actor: Actor { subject: "plans".into(), role: Role::System },
            request_id: None,
        },
        event: MovieEvent::Created(fields),
    }
}

#[tokio::test]
async fn every_sort_and_filter_of_the_list_is_served_by_an_index() {
    let url = postgres_database().await;
    let pool = connect_postgres(&url, 4).await.unwrap();
    let store = PgReadStore::open(pool.clone()).await.unwrap();
    let events: Vec<EventEnvelope> = (1..=MOVIES).map(envelope).collect();
    for chunk in events.chunks(2000) {
        store.apply(chunk).await.unwrap();
    }
    sqlx::query("ANALYZE").execute(&pool).await.unwrap();

    let filters = [
        Filters::default(),
        Filters { genre: Some("western".into()), ..Filters::default() },
        Filters { director: Some("Director 42".into()), ..Filters::default() },
        Filters { min_score: Some(9.5), ..Filters::default() },
        Filters { min_score: Some(2.0), max_score: Some(2.5), ..Filters::default() },
        Filters { genre: Some("drama".into()), director: Some("director 8".into()), ..Filters::default() },
    ];
    let mut checked = 0;
    for sort in [SortField::Name, SortField::Popularity, SortField::ImdbScore] {
        for order in [Order::Asc, Order::Desc] {
            for filter in &filters {
                let first = ListQuery { sort, order, filters: filter.clone(), limit: 20, after: None };
                let next = store.list(&first).await.unwrap().next;
                for query in [first.clone(), ListQuery { after: next.clone(), ..first.clone() }] {
                    let plan = store.explain_list(&query).await.unwrap().join("\n");
                    assert!(
                        !plan.contains("Seq Scan on movies") && plan.contains("Index"),
                        "{sort:?} {order:?} {filter:?} (cursor: {}) scans the table:\n{plan}",
                        query.after.is_some()
                    );
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 3 * 2 * filters.len() * 2);
}
