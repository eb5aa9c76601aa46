//! Both event store adapters against the one contract.

mod postgres {
    movies_store::event_store_contract!(movies_store::testing::postgres_fixture);
}

mod sqlite {
    movies_store::event_store_contract!(movies_store::testing::sqlite_fixture);
}
