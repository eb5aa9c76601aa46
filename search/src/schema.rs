//! The index's fields, and how text is analysed into them.

use tantivy::schema::{
    Field, IndexRecordOption, NumericOptions, Schema, TextFieldIndexing, TextOptions, FAST, INDEXED, STORED,
    STRING,
};

pub(crate) const TOKENIZER: &str = "movie_text";
pub(crate) const ID_HI: &str = "id_hi";
pub(crate) const ID_LO: &str = "id_lo";
pub(crate) const WRITER_HEAP_BYTES: usize = 50_000_000;
/// The writer's memory while `movies replay` rebuilds the index: room for a whole replay batch
/// between commits, so each commit writes a few large segments rather than many small ones
/// that merges then read and write again.
pub(crate) const REBUILD_HEAP_BYTES: usize = 200_000_000;
/// How a serving index merges its segments: into few. Every search pays a dictionary lookup
/// per term, a bitset and a walk per segment; at 5M movies tantivy's default policy (eight
/// segments of a size before they merge) left 25 segments, and merged into 4 a one-word prefix
/// search took a quarter of the time (p99 a third). Levels four times apart in size, merged
/// from three: at most a few segments per level, each document rewritten about once per level
/// (five from 10,000 movies to 5M). A rebuild keeps tantivy's default: its big batches make
/// big segments, and the serving writer that opens it merges them (`merge_what_was_left`).
pub(crate) fn serving_merge_policy() -> tantivy::indexer::LogMergePolicy {
    let mut policy = tantivy::indexer::LogMergePolicy::default();
    policy.set_level_log_size(2.0);
    policy.set_min_num_segments(3);
    policy
}
/// A prefix expands to at most this many of its most frequent completions per field.
pub(crate) const PREFIX_EXPANSIONS: usize = 50;
/// Words that only add to a score: requiring them would hide "Matrix" from "the matrix".
pub(crate) const COMMON_WORDS: &[&str] = &[
    "a", "an", "and", "the", "of", "in", "on", "at", "to", "for", "with", "by", "from", "or", "is", "it",
    "la", "le", "les", "el", "il", "de", "des", "der", "die", "das",
];

#[derive(Clone, Copy)]
pub(crate) struct Fields {
    pub(crate) id: Field,
    pub(crate) id_hi: Field,
    pub(crate) id_lo: Field,
    pub(crate) name: Field,
    pub(crate) director: Field,
    pub(crate) genres: Field,
    pub(crate) genre_key: Field,
    pub(crate) genre_facet: Field,
    pub(crate) genre_mask: Field,
    pub(crate) director_key: Field,
    pub(crate) popularity: Field,
    pub(crate) imdb_score: Field,
    pub(crate) name_sort: Field,
    pub(crate) name_sort_tail: Field,
    pub(crate) rank_pack: Field,
    pub(crate) rank_small: Field,
    pub(crate) score_pack: Field,
    pub(crate) score_small: Field,
    pub(crate) version: Field,
}

impl Fields {
    /// The fields a word may match with a typo in (genres are a small vocabulary of whole
    /// words: typos there cost more than they find).
    pub(crate) fn typo(&self) -> [Field; 2] {
        [self.name, self.director]
    }
}

pub(crate) fn schema() -> (Schema, Fields) {
    let mut builder = Schema::builder();
    let text = TextOptions::default()
        .set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(TOKENIZER)
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        )
        .set_stored();
    let number = NumericOptions::default().set_indexed().set_fast().set_stored();
    let fields = Fields {
        // The 16 bytes, not the 36-character text: every document adds a term of its own to its
        // segment's dictionary, built and rebuilt at every flush and merge.
        id: builder.add_bytes_field("id", INDEXED | STORED),
        // The id again as two columns: a hit's id without a read of the document store, whose
        // pages every hit would otherwise bring into memory (most of them, under a load of
        // searches over a large catalogue).
        id_hi: builder.add_u64_field(ID_HI, FAST),
        id_lo: builder.add_u64_field(ID_LO, FAST),
        name: builder.add_text_field("name", text.clone()),
        director: builder.add_text_field("director", text.clone()),
        genres: builder.add_text_field("genres", text),
        genre_key: builder.add_text_field("genre_key", STRING),
        genre_facet: builder.add_text_field("genre_facet", STRING | FAST),
        genre_mask: builder.add_u64_field("genre_mask", FAST),
        director_key: builder.add_text_field("director_key", STRING),
        popularity: builder.add_f64_field("popularity", number.clone()),
        imdb_score: builder.add_f64_field("imdb_score", number),
        name_sort: builder.add_u64_field("name_sort", FAST),
        name_sort_tail: builder.add_u64_field("name_sort_tail", FAST),
        rank_pack: builder.add_u64_field("rank_pack", FAST),
        // `rank_pack` without its id bits: 20 bits a document, a column small enough to stay in
        // the processor's cache while a common word's matches are ranked.
        rank_small: builder.add_u64_field("rank_small", FAST),
        score_pack: builder.add_u64_field("score_pack", FAST),
        // Likewise `score_pack` without its id bits (24 bits).
        score_small: builder.add_u64_field("score_small", FAST),
        version: builder.add_i64_field("version", STORED),
    };
    (builder.build(), fields)
}

/// The first sixteen bytes of the lower-cased name as two big-endian integers: sorting by the
/// pair orders names exactly up to their sixteenth byte (beyond it, ties keep index order).
pub(crate) fn name_sort_key(name: &str) -> (u64, u64) {
    let mut bytes = [0u8; 16];
    for (slot, byte) in bytes.iter_mut().zip(name.trim().to_lowercase().bytes()) {
        *slot = byte;
    }
    let (head, tail) = bytes.split_at(8);
    (
        u64::from_be_bytes(head.try_into().expect("8 bytes")),
        u64::from_be_bytes(tail.try_into().expect("8 bytes")),
    )
}

/// Bump whenever the schema or the way documents are built changes: an index built by another
/// version is rebuilt from the log on open.
pub(crate) const SCHEMA_VERSION: u32 = 10;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_sort_keys_order_names() {
        assert!(name_sort_key("Alien") < name_sort_key("aliens"));
        assert!(name_sort_key("Aliens") < name_sort_key("Batman"));
        assert!(name_sort_key("Star Wars") < name_sort_key("Star Wars : Episode V"));
    }
}
