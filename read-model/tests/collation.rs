//! The read store orders names by their bytes on every Postgres server, whatever its locale: the
//! order SQLite gives, so a list pages the same way on either store and on any server.

use movies_events::{EventEnvelope, MovieEvent, MovieFields};
use movies_read_model::{ListQuery, Order, PgReadStore, ProjectionStore, ReadStore, SortField};
use movies_store::connect_postgres;
use movies_store::testing::{postgres_database_with, recorded};
use uuid::Uuid;

fn created(position: i64, name: &str, director: &str) -> EventEnvelope {
    let fields = MovieFields {
        name: name.into(),
        director: director.into(),
        popularity: 1.0,
        imdb_score: 1.0,
        genres: vec!["Drama".into()],
    };
    recorded(position, Uuid::now_v7(), 1, MovieEvent::Created(fields))
}

#[tokio::test]
async fn names_sort_by_their_bytes_on_a_server_whose_locale_sorts_otherwise() {
    // An English locale puts "Éclair" between "Eagle" and "Zorro"; by bytes it comes last.
    let url = postgres_database_with(
        "TEMPLATE template0 ENCODING 'UTF8' LOCALE 'C' LOCALE_PROVIDER icu ICU_LOCALE 'en-US'",
    )
    .await;
    let pool = connect_postgres(&url, 4).await.unwrap();
    let store = PgReadStore::open(pool).await.unwrap();
    let names = ["Zorro", "Éclair", "Eagle", "a-b", "Ab", "Été", "zoo"];
    let events: Vec<EventEnvelope> = names
        .iter()
        .enumerate()
        .map(|(n, name)| created(n as i64 + 1, name, &format!("Réalisateur {name}")))
        .collect();
    store.apply(&events).await.unwrap();

    let mut by_bytes: Vec<&str> = names.to_vec();
    by_bytes.sort_by_key(|name| name.to_lowercase());
    for order in [Order::Asc, Order::Desc] {
        let query =
            ListQuery { sort: SortField::Name, order, filters: Default::default(), limit: 20, after: None };
        let listed: Vec<String> =
            store.list(&query).await.unwrap().items.into_iter().map(|m| m.name).collect();
        let expected: Vec<&str> = match order {
            Order::Asc => by_bytes.clone(),
            Order::Desc => by_bytes.iter().rev().copied().collect(),
        };
        assert_eq!(listed, expected, "{order:?}");
    }
}
