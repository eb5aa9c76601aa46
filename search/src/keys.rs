//! The packed sort keys: popularity, score, title length and id bits packed at index time into
//! integers that order like the values, so ranking, browsing and cursors compare plain numbers.

use uuid::Uuid;

/// Where a hit sorts, as the collector compares it (highest first): three order-preserving
/// integers. Ascending orders invert every bit.
pub(crate) type SortKey = (u64, u64, u64);

pub(crate) const ID_BITS: u32 = 40;
pub(crate) const ID_MASK: u64 = (1 << ID_BITS) - 1;
pub(crate) const WORDS_SHIFT: u32 = ID_BITS;
pub(crate) const POPULARITY_SHIFT: u32 = ID_BITS + 6;
/// Above popularity's 14 bits in the score pack.
pub(crate) const SCORE_SHIFT: u32 = ID_BITS + 14;

/// The tie-breakers a hit needs, packed at index time so ranking reads one column per hit:
/// - rank: popularity in hundredths (14 bits), then 63 minus the title's word count (6 bits,
///   shorter titles first), then 40 bits of the movie id;
/// - score: the IMDB score in hundredths (10 bits), then popularity (14 bits), then the id bits.
///
/// The id bits make keys distinct in practice: two hits tie only if every field and 40 random
/// id bits agree.
pub(crate) fn packs(id: Uuid, popularity: f64, imdb_score: f64, title_words: usize) -> (u64, u64) {
    let id_bits = id.as_u64_pair().1 & ID_MASK;
    let popularity = (popularity.clamp(0.0, 100.0) * 100.0).round() as u64;
    let word_rank = 63 - title_words.min(63) as u64;
    let rank = popularity << POPULARITY_SHIFT | word_rank << WORDS_SHIFT | id_bits;
    let score = u64::from(score_hundredths(imdb_score)) << SCORE_SHIFT | popularity << ID_BITS | id_bits;
    (rank, score)
}

/// An IMDB score in hundredths as the score pack holds it: within 0-10, rounded (NaN is 0).
pub(crate) fn score_hundredths(score: f64) -> u16 {
    (score.clamp(0.0, 10.0) * 100.0).round() as u16
}

pub(crate) fn flip(ascending: bool) -> u64 {
    if ascending {
        u64::MAX
    } else {
        0
    }
}
