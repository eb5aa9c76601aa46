//! Genres and scores per segment: the tables filters and facets read instead of columns, genre
//! filters as bit masks, and the facet counts over every match.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use movies_events::genre_key;
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::query::{Occur, Query};
use tantivy::{DocId, Score, Searcher, SegmentReader};

use crate::keys::{score_hundredths, ID_BITS, POPULARITY_SHIFT, SCORE_SHIFT};
use crate::segments::PerSegment;

/// Genres get a bit each in a per-document mask, in the order the index first saw them; the
/// registry is committed in the payload with the documents. Genres past the 63rd share the last
/// bit, and documents carrying it are counted from the genre column instead.
pub(crate) const OVERFLOW_BIT: u32 = 63;

/// Adds `count` to each bit of `mask` in `counts`.
pub(crate) fn count_bits(counts: &mut [u64; 64], mask: u64, count: u64) {
    let mut bits = mask;
    while bits != 0 {
        counts[bits.trailing_zeros() as usize] += count;
        bits &= bits - 1;
    }
}

/// What filters and facets read of every match, per segment, in plain arrays: the segment's
/// distinct genre masks (a catalogue has a few thousand genre mixes) and each document's place
/// among them, and each document's score in hundredths. Read once per segment (its documents
/// never change), then a match's genres or score cost an array read instead of a column read
/// (bit-unpacked through virtual calls): what facets and score filters spent most of a broad
/// query's time on.
pub(crate) struct SegmentTables {
    /// One cell per segment: concurrent searches that meet a new segment wait for one build
    /// instead of each making its own.
    pub(crate) tables: PerSegment<Arc<TableCell>>,
    /// The most distinct masks a table numbers (a `u16` each).
    pub(crate) limit: usize,
}

impl Default for SegmentTables {
    fn default() -> Self {
        Self { tables: PerSegment::default(), limit: usize::from(u16::MAX) + 1 }
    }
}

/// A segment's table once built; `None` inside: the segment has none (see `SegmentTables::of`).
pub(crate) type TableCell = OnceLock<Option<Arc<SegmentTable>>>;

pub(crate) struct SegmentTable {
    pub(crate) masks: Vec<u64>,
    pub(crate) of_doc: Vec<u16>,
    /// Each document's IMDB score in hundredths as the score pack holds it (rounded, within
    /// 0-10), with `INEXACT` set when that is not the stored value exactly (the score filter
    /// then reads the column).
    pub(crate) scores: Vec<u16>,
    /// Each document's `rank_small`: what ranking reads for every match, from an array rather
    /// than a bit-packed column behind a virtual call.
    pub(crate) ranks: Vec<u32>,
}

pub(crate) const INEXACT: u16 = 1 << 15;

impl SegmentTable {
    /// The document's score when the table holds it exactly.
    pub(crate) fn score(&self, doc: DocId) -> Option<f64> {
        let hundredths = self.scores[doc as usize];
        (hundredths & INEXACT == 0).then(|| f64::from(hundredths) / 100.0)
    }

    /// The document's `rank_small` (slot 0) or `score_small` (slot 1), as those columns hold it.
    pub(crate) fn small(&self, slot: usize, doc: DocId) -> u64 {
        let rank = u64::from(self.ranks[doc as usize]);
        match slot {
            0 => rank,
            _ => {
                let hundredths = u64::from(self.scores[doc as usize] & !INEXACT);
                hundredths << (SCORE_SHIFT - ID_BITS) | rank >> (POPULARITY_SHIFT - ID_BITS)
            }
        }
    }
}

/// Hashes a mask with one multiplication: building a table looks one up per document.
#[derive(Default)]
pub(crate) struct MaskHasher(u64);

impl std::hash::Hasher for MaskHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.write_u64(u64::from(*byte));
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = (self.0 ^ value).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29);
    }
}

impl SegmentTables {
    /// The segment's table; `None` when it has more distinct masks than the limit (or its mask
    /// column cannot be read: the column path then reports that).
    pub(crate) fn of(&self, segment: &SegmentReader) -> Option<Arc<SegmentTable>> {
        let cell = self.tables.cell(segment.segment_id());
        cell.get_or_init(|| self.build(segment).map(Arc::new)).clone()
    }

    fn build(&self, segment: &SegmentReader) -> Option<SegmentTable> {
        let column = segment.fast_fields().u64("genre_mask").ok()?.first_or_default_col(0);
        let score_column = segment.fast_fields().f64("imdb_score").ok()?.first_or_default_col(f64::NAN);
        let rank_column = segment.fast_fields().u64("rank_small").ok()?.first_or_default_col(0);
        let mut places: HashMap<u64, u16, std::hash::BuildHasherDefault<MaskHasher>> = HashMap::default();
        let capacity = segment.max_doc() as usize;
        let mut table = SegmentTable {
            masks: Vec::new(),
            of_doc: Vec::with_capacity(capacity),
            scores: Vec::with_capacity(capacity),
            ranks: Vec::with_capacity(capacity),
        };
        let mut values = vec![0; FACET_BLOCK * 16];
        let mut scores = vec![0.0; values.len()];
        let mut ranks = vec![0; values.len()];
        let docs: Vec<DocId> = (0..segment.max_doc()).collect();
        for block in docs.chunks(values.len()) {
            let values = &mut values[..block.len()];
            column.get_vals(block, values);
            let scores = &mut scores[..block.len()];
            score_column.get_vals(block, scores);
            table.scores.extend(scores.iter().map(|score| {
                let hundredths = score_hundredths(*score);
                match f64::from(hundredths) / 100.0 == *score {
                    true => hundredths,
                    false => hundredths | INEXACT,
                }
            }));
            let ranks = &mut ranks[..block.len()];
            rank_column.get_vals(block, ranks);
            table.ranks.extend(ranks.iter().map(|rank| *rank as u32));
            for mask in values.iter() {
                let place = match places.get(mask) {
                    Some(place) => *place,
                    None => {
                        let place =
                            u16::try_from(table.masks.len()).ok().filter(|p| usize::from(*p) < self.limit)?;
                        table.masks.push(*mask);
                        places.insert(*mask, place);
                        place
                    }
                };
                table.of_doc.push(place);
            }
        }
        Some(table)
    }

    /// Forgets segments the searcher no longer has (merged away) and builds the tables of the
    /// ones it has not met: called as a new searcher is loaded, so searches find them ready.
    pub(crate) fn refresh(&self, searcher: &Searcher) {
        self.tables.retain(searcher);
        let started = std::time::Instant::now();
        for segment in searcher.segment_readers() {
            self.of(segment);
        }
        tracing::debug!(seconds = started.elapsed().as_secs_f64(), "segment tables ready");
    }
}

/// Counts genres over every match: by mask table (above), or from the single-valued mask column
/// 64 documents at a time for a segment without one and for documents with genres past the
/// 63rd (counted by name).
pub(crate) struct GenreFacets<'a> {
    pub(crate) registry: Vec<String>,
    pub(crate) tables: &'a SegmentTables,
}

pub(crate) struct SegmentGenreFacets {
    pub(crate) table: Option<Arc<SegmentTable>>,
    /// Matches per mask of the table.
    pub(crate) per_mask: Vec<u64>,
    pub(crate) masks: Option<std::sync::Arc<dyn tantivy::columnar::ColumnValues<u64>>>,
    pub(crate) overflow: Option<tantivy::columnar::StrColumn>,
    pub(crate) counts: [u64; 64],
    pub(crate) named: HashMap<String, u64>,
    pub(crate) pending: Vec<DocId>,
    pub(crate) values: Vec<u64>,
    pub(crate) registry: Vec<String>,
}

pub(crate) const FACET_BLOCK: usize = 64;

impl SegmentGenreFacets {
    fn flush(&mut self) {
        self.values.clear();
        match (&self.table, &self.masks) {
            (Some(table), _) => self
                .values
                .extend(self.pending.iter().map(|doc| table.masks[table.of_doc[*doc as usize] as usize])),
            (None, Some(masks)) => {
                self.values.resize(self.pending.len(), 0);
                masks.get_vals(&self.pending, &mut self.values);
            }
            (None, None) => self.values.resize(self.pending.len(), 0),
        }
        for (doc, mask) in self.pending.iter().zip(&self.values) {
            count_bits(&mut self.counts, mask & !(1 << OVERFLOW_BIT), 1);
            if mask & (1 << OVERFLOW_BIT) == 0 {
                continue;
            }
            if let Some(column) = &self.overflow {
                for ord in column.term_ords(*doc) {
                    let mut genre = String::new();
                    if column.ord_to_str(ord, &mut genre).unwrap_or(false)
                        && !self.registry.iter().take(OVERFLOW_BIT as usize).any(|g| *g == genre)
                    {
                        *self.named.entry(genre).or_default() += 1;
                    }
                }
            }
        }
        self.pending.clear();
    }
}

impl Collector for GenreFacets<'_> {
    type Fruit = HashMap<String, u64>;
    type Child = SegmentGenreFacets;

    fn for_segment(
        &self,
        _: tantivy::SegmentOrdinal,
        segment: &SegmentReader,
    ) -> tantivy::Result<SegmentGenreFacets> {
        let fast = segment.fast_fields();
        let table = self.tables.of(segment);
        // Without a table, the masks come from their column.
        let masks = match table {
            Some(_) => None,
            None => fast.u64("genre_mask").map(|c| c.first_or_default_col(0)).ok(),
        };
        Ok(SegmentGenreFacets {
            per_mask: vec![0; table.as_ref().map_or(0, |t| t.masks.len())],
            table,
            masks,
            overflow: fast.str("genre_facet")?,
            counts: [0; 64],
            named: HashMap::new(),
            pending: Vec::with_capacity(FACET_BLOCK),
            values: Vec::with_capacity(FACET_BLOCK),
            registry: self.registry.clone(),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<HashMap<String, u64>>) -> tantivy::Result<HashMap<String, u64>> {
        let mut total = HashMap::new();
        for (genre, count) in fruits.into_iter().flatten() {
            *total.entry(genre).or_default() += count;
        }
        Ok(total)
    }
}

impl SegmentCollector for SegmentGenreFacets {
    type Fruit = HashMap<String, u64>;

    fn collect(&mut self, doc: DocId, _: Score) {
        if let Some(table) = &self.table {
            let place = table.of_doc[doc as usize] as usize;
            if table.masks[place] & (1 << OVERFLOW_BIT) == 0 {
                self.per_mask[place] += 1;
                return;
            }
        }
        self.pending.push(doc);
        if self.pending.len() == FACET_BLOCK {
            self.flush();
        }
    }

    fn harvest(mut self) -> HashMap<String, u64> {
        self.flush();
        if let Some(table) = &self.table {
            for (mask, count) in table.masks.iter().zip(&self.per_mask).filter(|(_, n)| **n > 0) {
                count_bits(&mut self.counts, *mask, *count);
            }
        }
        for (bit, count) in
            self.counts.iter().enumerate().take(OVERFLOW_BIT as usize).filter(|(_, n)| **n > 0)
        {
            if let Some(genre) = self.registry.get(bit) {
                *self.named.entry(genre.clone()).or_default() += count;
            }
        }
        self.named
    }
}

pub(crate) type Clauses = Vec<(Occur, Box<dyn Query>)>;

/// A genre's bit in the documents' genre masks, if it has one of its own (not past the 63rd).
pub(crate) fn genre_bit(registry: &[String], genre: &str) -> Option<usize> {
    registry.iter().position(|g| genre_key(g) == genre_key(genre)).filter(|b| *b < OVERFLOW_BIT as usize)
}

/// The bits of all of `genres` (a genre named twice is one bit), if each has its own.
pub(crate) fn genre_mask(registry: &[String], genres: &[String]) -> Option<u64> {
    genres.iter().try_fold(0, |mask, genre| Some(mask | 1 << genre_bit(registry, genre)?))
}

/// Genre conditions on the documents' genre masks.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct GenreBits {
    /// At least one of these bits (0: no condition).
    pub any: u64,
    /// Every one of these bits.
    pub all: u64,
}

impl GenreBits {
    pub(crate) fn matches(self, mask: u64) -> bool {
        (self.any == 0 || mask & self.any != 0) && mask & self.all == self.all
    }

    pub(crate) fn is_empty(self) -> bool {
        self.any | self.all == 0
    }
}

/// Filters tested on each match's columns (see `TantivySearchIndex::filters`).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PostFilter {
    pub(crate) genres: GenreBits,
    /// Inclusive bounds.
    pub(crate) score: Option<(f64, f64)>,
    pub(crate) popularity: Option<(f64, f64)>,
}

pub(crate) type U64Column = std::sync::Arc<dyn tantivy::columnar::ColumnValues<u64>>;
pub(crate) type F64Column = std::sync::Arc<dyn tantivy::columnar::ColumnValues<f64>>;

/// How a segment's matches are checked against genre filters.
pub(crate) enum GenreCheck {
    Unfiltered,
    /// Whether each mask of the segment's table passes.
    ByTable(Vec<bool>),
    /// No table: each match's mask from the column.
    ByColumn(U64Column),
}

/// A collector that hands its inner collector only the matches that pass a `PostFilter`.
pub(crate) struct Filtered<'a, C> {
    pub(crate) filter: PostFilter,
    pub(crate) tables: &'a SegmentTables,
    pub(crate) inner: C,
}

pub(crate) struct FilteredSegment<S> {
    pub(crate) filter: PostFilter,
    /// With genre or score filters: the segment's table (scores are read from the column
    /// without one).
    pub(crate) table: Option<Arc<SegmentTable>>,
    pub(crate) genres: GenreCheck,
    pub(crate) scores: Option<F64Column>,
    pub(crate) popularity: Option<F64Column>,
    pub(crate) inner: S,
}

impl<C: Collector> Collector for Filtered<'_, C> {
    type Fruit = C::Fruit;
    type Child = FilteredSegment<C::Child>;

    fn for_segment(
        &self,
        ordinal: tantivy::SegmentOrdinal,
        segment: &SegmentReader,
    ) -> tantivy::Result<Self::Child> {
        let fast = segment.fast_fields();
        let f = &self.filter;
        let needs = |wanted: bool, name| {
            wanted.then(|| fast.f64(name).map(|c| c.first_or_default_col(f64::NAN))).transpose()
        };
        let table = if f.genres.is_empty() && f.score.is_none() { None } else { self.tables.of(segment) };
        let genres = match &table {
            _ if f.genres.is_empty() => GenreCheck::Unfiltered,
            Some(table) => {
                GenreCheck::ByTable(table.masks.iter().map(|mask| f.genres.matches(*mask)).collect())
            }
            None => GenreCheck::ByColumn(fast.u64("genre_mask")?.first_or_default_col(0)),
        };
        Ok(FilteredSegment {
            filter: self.filter,
            table,
            genres,
            scores: needs(f.score.is_some(), "imdb_score")?,
            popularity: needs(f.popularity.is_some(), "popularity")?,
            inner: self.inner.for_segment(ordinal, segment)?,
        })
    }

    fn requires_scoring(&self) -> bool {
        self.inner.requires_scoring()
    }

    fn merge_fruits(&self, fruits: Vec<<C::Child as SegmentCollector>::Fruit>) -> tantivy::Result<C::Fruit> {
        self.inner.merge_fruits(fruits)
    }
}

impl<S: SegmentCollector> FilteredSegment<S> {
    fn passes(&self, doc: DocId) -> bool {
        let f = &self.filter;
        let genres_pass = match (&self.genres, &self.table) {
            (GenreCheck::ByTable(passing), Some(table)) => passing[table.of_doc[doc as usize] as usize],
            (GenreCheck::ByColumn(masks), _) => f.genres.matches(masks.get_val(doc)),
            _ => true,
        };
        if !genres_pass {
            return false;
        }
        let within = |value: f64, (min, max): (f64, f64)| value >= min && value <= max;
        let column = |column: &Option<F64Column>| column.as_ref().map_or(f64::NAN, |c| c.get_val(doc));
        if let Some(bounds) = f.score {
            let score =
                self.table.as_ref().and_then(|t| t.score(doc)).unwrap_or_else(|| column(&self.scores));
            if !within(score, bounds) {
                return false;
            }
        }
        f.popularity.is_none_or(|bounds| within(column(&self.popularity), bounds))
    }
}

impl<S: SegmentCollector> SegmentCollector for FilteredSegment<S> {
    type Fruit = S::Fruit;

    fn collect(&mut self, doc: DocId, score: Score) {
        if self.passes(doc) {
            self.inner.collect(doc, score);
        }
    }

    fn harvest(self) -> S::Fruit {
        self.inner.harvest()
    }
}
