//! The cache is a read store too: the read store's contract, read through it (with no Redis:
//! its in-process tier over SQLite), written beneath it.

use movies_cache::{CachedReadStore, L1Settings};
use movies_read_model::contract::{sqlite_store, ReadFixture};

async fn cached_fixture() -> ReadFixture {
    let (store, dir) = sqlite_store().await;
    let cached = CachedReadStore::new(store.clone(), None, L1Settings::default()).await;
    ReadFixture { reads: cached, writes: store, guard: Box::new(dir) }
}

mod cached {
    movies_read_model::read_store_contract!(reads_only super::cached_fixture);
}
