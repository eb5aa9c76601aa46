//! The search engine: a tantivy index with one document per live movie, searchable by name,
//! director and genres. The index is a projection like the read store: its checkpoint (the last
//! applied log position) is stored in the commit payload, so documents and checkpoint commit
//! together.
//!
//! Ranking works like a dedicated search engine's bucket sort rather than raw BM25: each query
//! word scores by how it matched (exact > prefix > typo) and where (title > director > genre),
//! the word scores add up, and popularity breaks ties. Every word must match except common words
//! ("the", "of", ...), which only add to the score; the last word also matches as a prefix.
//!
//! The modules, each using only those listed before it:
//! - `keys`: the packed sort keys every document carries and every ranking compares;
//! - `query`: what a search asks and answers, its limits and its cursor;
//! - `schema`: the index's fields and how text is analysed;
//! - `segments`: what the index keeps per segment, forgotten once merges take the segment away;
//! - `words`: a query's words, and the docset that matches them all;
//! - `facets`: per-segment genre and score tables, genre filters and facet counts;
//! - `rank`: the collector that keeps the best hits by sort key;
//! - `browse`: browsing by genre from per-segment summaries, without words;
//! - `walk`: dense words' pages, totals and facets from bitsets and a rank order, unscored;
//! - `index`: the index itself: applying events, its gapless checkpoint, search and suggest;
//! - `port`: the traits its users name (`SearchIndex` to read, `SearchProjection` to write).
//!
//! Depends on the domain's events and the read model's shared vocabulary (sort order, the
//! projection error); nothing depends on how events reach it.

mod browse;
mod facets;
mod index;
mod keys;
mod later;
mod port;
mod query;
mod rank;
mod schema;
mod segments;
mod walk;
mod words;

pub use index::TantivySearchIndex;
pub use port::{SearchIndex, SearchProjection};
pub use query::{
    check_query_text, Highlight, Marks, NamedHit, QueryTooLarge, SearchCursor, SearchCursorError,
    SearchFilters, SearchHit, SearchPage, SearchQuery, SearchSort, MAX_QUERY_CHARS, MAX_QUERY_WORDS,
    MAX_TYPO_WORD_CHARS, MAX_WORD_CHARS,
};
