//! A client's page cursor (lists and search): any text decodes to a cursor or a refusal, never a
//! panic, and a cursor that decodes encodes back to itself (it would page from the same place).
#![no_main]

use libfuzzer_sys::fuzz_target;
use movies_read_model::{Cursor, Order, SortField};
use movies_search::{SearchCursor, SearchQuery, SearchSort};

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else { return };
    for sort in [SortField::Name, SortField::Popularity, SortField::ImdbScore] {
        for order in [Order::Asc, Order::Desc] {
            if let Ok(cursor) = Cursor::decode(raw, sort, order) {
                assert_eq!(Cursor::decode(&cursor.encode(), sort, order).as_ref(), Ok(&cursor));
            }
        }
    }
    for sort in [SearchSort::Relevance, SearchSort::Popularity, SearchSort::ImdbScore, SearchSort::Name] {
        let query = SearchQuery { text: "star".into(), sort, ..Default::default() };
        if let Ok(cursor) = SearchCursor::decode(raw, &query) {
            assert_eq!(SearchCursor::decode(&cursor.encode(&query), &query), Ok(cursor));
        }
    }
});
