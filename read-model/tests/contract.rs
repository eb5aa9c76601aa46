//! Every read store adapter in this crate against the one contract.

mod postgres {
    movies_read_model::read_store_contract!(movies_read_model::contract::postgres_fixture);
}

mod sqlite {
    movies_read_model::read_store_contract!(movies_read_model::contract::sqlite_fixture);
}

mod live {
    movies_read_model::read_store_contract!(movies_read_model::contract::live_fixture);
}
