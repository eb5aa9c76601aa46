//! Searching dense words without scoring every match. The general search hands each match to a
//! collector that reads its sort key, counts it and tallies its genres: a word in a third of the
//! titles ("the") or a one-letter prefix matches millions of movies at 5M, and that walk was
//! nearly all of its time. Here a segment's matches stay a bitset:
//! - the total is a popcount of the matches (less the deleted and those the genre filter drops);
//! - genre facets are popcounts of the matches ANDed with each genre's bitset, or a tally of
//!   each match's genres when the matches are few;
//! - the page comes from the segment's documents in rank order (a permutation made once per
//!   segment): by popularity, the first matches met are the page. By relevance, a one-word
//!   search's score is the level its word matched at, so the matches split into tiers by level
//!   and each tier is walked in rank order until the page is full. A tier with few matches is
//!   read directly and sorted instead.
//!
//! Browsing without words, by popularity, is walked the same way when the segment summaries
//! cannot answer (a page past their lists: a rare genre's first page at 5M, or a deep cursor).
//!
//! Several words by relevance add up scores in too many combinations for tiers; they, ranges,
//! directors and names are left to the general search, as are segments without a genre table.

use std::sync::{Arc, OnceLock};

use tantivy::{DocAddress, DocId, Searcher, SegmentReader};

use crate::browse::Browsed;
use crate::facets::{count_bits, GenreBits, SegmentTable, SegmentTables, OVERFLOW_BIT};
use crate::keys::SortKey;
use crate::later::Later;
use crate::segments::PerSegment;
use crate::words::{has, Bits, Matches, TextWeight};

/// What a walk asks.
pub(crate) struct Walk {
    /// By relevance (one word) or by popularity, highest first.
    pub relevance: bool,
    pub genres: GenreBits,
    /// Exclusive: keys at or past it were on earlier pages.
    pub after: Option<SortKey>,
    /// Matches wanted: the skipped ones, the page, and one more.
    pub wanted: usize,
    pub skip: usize,
    pub facets: bool,
}

/// A segment's documents in rank order and its genres as bitsets: made once per segment (its
/// documents never change; deletes are read from its alive bits at each search).
pub(crate) struct SegmentOrder {
    /// Every document, highest `rank_pack` first.
    by_rank: Vec<DocId>,
    /// Per genre bit, the documents that carry it (empty for bits no document carries).
    genres: Vec<Vec<u64>>,
}

/// A segment's order once made; `None` inside: it could not be made.
type OrderCell = OnceLock<Option<Arc<SegmentOrder>>>;

/// The orders of the segments searches have met or were made ready for, and each segment's
/// alive bits as words by its number of deleted documents.
#[derive(Default)]
pub(crate) struct Orders {
    orders: PerSegment<Arc<OrderCell>>,
    alive: PerSegment<(u32, Bits)>,
    /// Makes the newest searcher's orders on a thread of its own.
    later: Arc<Later<(Searcher, Arc<SegmentTables>)>>,
}

impl Orders {
    /// Makes the orders of the searcher's segments that have none yet, so that searches find
    /// them made (a segment of a million movies takes a tenth of a second; 64 searches arriving
    /// at once would all wait for it), and forgets those of segments merged away (a replay
    /// makes and merges many, with no walk in between to forget them).
    fn prepare(&self, searcher: &Searcher, tables: &SegmentTables) {
        self.retain(searcher);
        let started = std::time::Instant::now();
        for segment in searcher.segment_readers() {
            if let Some(table) = tables.of(segment) {
                self.of(segment, &table);
            }
        }
        tracing::debug!(seconds = started.elapsed().as_secs_f64(), "walk orders ready");
    }

    /// `prepare` on a thread of its own (the newest searcher's, when several come at once).
    pub(crate) fn prepare_later(self: &Arc<Self>, searcher: Searcher, tables: Arc<SegmentTables>) {
        let orders = self.clone();
        self.later.run((searcher, tables), move |(searcher, tables)| orders.prepare(&searcher, &tables));
    }

    /// How many segments have an order made.
    #[cfg(test)]
    pub(crate) fn made(&self) -> usize {
        self.orders.count(|cell| cell.get().is_some_and(|order| order.is_some()))
    }

    /// The segment's order, made by the first search that needs it while concurrent ones wait
    /// for it; `None` when its rank column cannot be read (the general search reports that).
    fn of(&self, segment: &SegmentReader, table: &SegmentTable) -> Option<Arc<SegmentOrder>> {
        let cell = self.orders.cell(segment.segment_id());
        cell.get_or_init(|| order_of(segment, table).ok().map(Arc::new)).clone()
    }

    /// The segment's alive documents as bitset words, or `None` when none is deleted.
    fn alive(&self, segment: &SegmentReader) -> Option<Bits> {
        let alive = segment.alive_bitset()?;
        let (id, deleted) = (segment.segment_id(), segment.num_deleted_docs());
        if let Some((d, bits)) = self.alive.get(id) {
            if d == deleted {
                return Some(bits);
            }
        }
        let mut bits = vec![0u64; (segment.max_doc() as usize).div_ceil(64)];
        alive.bitset().iter().for_each(|doc| bits[doc as usize / 64] |= 1 << (doc % 64));
        let bits = Arc::new(bits);
        self.alive.replace(id, (deleted, bits.clone()));
        Some(bits)
    }

    /// Forgets segments the searcher no longer has (merged away).
    fn retain(&self, searcher: &Searcher) {
        self.orders.retain(searcher);
        self.alive.retain(searcher);
    }

    /// The page, total and facets of `walk` over `text`'s matches, or `None` when a segment
    /// has no genre table or genres pass the 63 a mask holds (the general search must then).
    pub(crate) fn walk(
        &self,
        searcher: &Searcher,
        tables: &SegmentTables,
        text: Option<&TextWeight>,
        walk: &Walk,
        genres_registered: usize,
    ) -> tantivy::Result<Option<Browsed>> {
        // By relevance, tiers are one word's levels (several words' scores add up).
        let genres_counted = walk.facets || !walk.genres.is_empty();
        if (genres_counted && genres_registered > OVERFLOW_BIT as usize)
            || (walk.relevance && text.is_none_or(|text| text.words() != 1))
        {
            return Ok(None);
        }
        self.retain(searcher);
        let mut segments = Vec::new();
        for (ordinal, segment) in searcher.segment_readers().iter().enumerate() {
            let Some((table, order)) =
                tables.of(segment).and_then(|t| Some((t.clone(), self.of(segment, &t)?)))
            else {
                return Ok(None);
            };
            segments.push((ordinal as u32, segment, table, order));
        }
        let executor = searcher.index().search_executor();
        let fruits = executor.map(
            |(ordinal, segment, table, order)| self.segment(ordinal, segment, &table, &order, text, walk),
            segments.into_iter(),
        )?;
        let (mut ranked, mut total, mut bit_counts) = (Vec::new(), 0, [0u64; 64]);
        for fruit in fruits.into_iter().flatten() {
            ranked.extend(fruit.ranked);
            total += fruit.total;
            bit_counts.iter_mut().zip(fruit.bit_counts).for_each(|(all, n)| *all += n);
        }
        ranked.sort_unstable_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        let ranked = ranked.into_iter().take(walk.wanted).skip(walk.skip).collect();
        Ok(Some(Browsed { ranked, total, bit_counts }))
    }

    fn segment(
        &self,
        ordinal: u32,
        segment: &SegmentReader,
        table: &SegmentTable,
        order: &SegmentOrder,
        text: Option<&TextWeight>,
        walk: &Walk,
    ) -> tantivy::Result<Option<Browsed>> {
        let matches = match text {
            Some(text) => text.matches(segment)?,
            // Without words, every document matches.
            None => Some(Matches::everything(segment.max_doc())),
        };
        let Some(matches) = matches else {
            return Ok(None);
        };
        let n = segment.max_doc() as usize;
        let mut live = (*matches.candidates).clone();
        if let Some(alive) = self.alive(segment) {
            and(&mut live, &alive);
        }
        let genre = |bit: u32| order.genres.get(bit as usize).filter(|bits| !bits.is_empty());
        if walk.genres.any != 0 {
            let mut any = vec![0u64; live.len()];
            for bit in bits_of(walk.genres.any) {
                if let Some(bits) = genre(bit) {
                    any.iter_mut().zip(bits).for_each(|(any, bits)| *any |= bits);
                }
            }
            and(&mut live, &any);
        }
        for bit in bits_of(walk.genres.all) {
            match genre(bit) {
                Some(bits) => and(&mut live, bits),
                None => live.fill(0),
            }
        }
        let total: usize = live.iter().map(|w| w.count_ones() as usize).sum();
        let mut bit_counts = [0u64; 64];
        if walk.facets && total > 0 {
            // Popcounts cost a pass over the segment per genre; a tally, a table read per match.
            if total * 16 > n {
                for (bit, bits) in order.genres.iter().enumerate().filter(|(_, bits)| !bits.is_empty()) {
                    bit_counts[bit] =
                        live.iter().zip(bits).map(|(live, bits)| u64::from((live & bits).count_ones())).sum();
                }
            } else {
                let mut per_mask = vec![0u64; table.masks.len()];
                for_each_doc(&live, |doc| per_mask[table.of_doc[doc as usize] as usize] += 1);
                for (mask, count) in table.masks.iter().zip(&per_mask).filter(|(_, n)| **n > 0) {
                    count_bits(&mut bit_counts, *mask, *count);
                }
            }
        }
        let ranks = segment.fast_fields().u64("rank_pack")?.first_or_default_col(0);
        let rank = |doc: DocId| ranks.get_val(doc);
        let mut ranked = Vec::new();
        for (score, tier) in tiers(&matches, live, walk.relevance) {
            let need = walk.wanted - ranked.len();
            if need == 0 {
                break;
            }
            // Keys are (score bits, rank, 0) by relevance, (rank, 0, 0) by popularity.
            let key = |rank: u64| match walk.relevance {
                true => (u64::from(score.max(0.0).to_bits()), rank, 0),
                false => (rank, 0, 0),
            };
            let fresh = |key: SortKey| walk.after.is_none_or(|after| key < after);
            if !fresh(key(0)) {
                // Every key of this tier is at or past the cursor.
                continue;
            }
            let count: usize = tier.iter().map(|w| w.count_ones() as usize).sum();
            if count == 0 {
                continue;
            }
            let mut found = Vec::new();
            if count <= need || count * count <= need * n {
                let mut docs = Vec::with_capacity(count);
                for_each_doc(&tier, |doc| docs.push(doc));
                if walk.after.is_none() && docs.len() > need {
                    // A first page needs only the tier's `need` best: those by the small rank
                    // the table holds in an array (ties at the cut all stay), then each one's
                    // whole key from the column.
                    let (_, cut, _) = docs.select_nth_unstable_by_key(need - 1, |doc| {
                        std::cmp::Reverse(table.ranks[*doc as usize])
                    });
                    let cut = table.ranks[*cut as usize];
                    docs.retain(|doc| table.ranks[*doc as usize] >= cut);
                }
                found.extend(docs.into_iter().map(|doc| (key(rank(doc)), doc)));
                found.retain(|(key, _)| fresh(*key));
                found.sort_unstable_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
                found.truncate(need);
            } else {
                // Expected reads: `need` times the segment over the tier, under `count`.
                let start = match walk.after {
                    Some(after) if key(0).0 == after.0 || !walk.relevance => {
                        let small = |rank: u64| (rank >> crate::keys::ID_BITS) as u32;
                        let cursor = small(if walk.relevance { after.1 } else { after.0 });
                        order.by_rank.partition_point(|doc| table.ranks[*doc as usize] > cursor)
                    }
                    _ => 0,
                };
                for &doc in &order.by_rank[start..] {
                    if has(&tier, doc) {
                        let key = key(rank(doc));
                        if fresh(key) {
                            found.push((key, doc));
                            if found.len() == need {
                                break;
                            }
                        }
                    }
                }
            }
            ranked.extend(found.into_iter().map(|(key, doc)| (key, DocAddress::new(ordinal, doc))));
        }
        Ok(Some(Browsed { ranked, total, bit_counts }))
    }
}

/// The matches split by score, best first: by relevance, the one word's levels (a match in
/// the level of the best way it matched); by popularity, one tier. Each tier is made when the
/// walk reaches it: the page usually fills from the first.
fn tiers(matches: &Matches, live: Vec<u64>, relevance: bool) -> impl Iterator<Item = (f32, Vec<u64>)> + '_ {
    let word = match (relevance, matches.required.as_slice()) {
        (true, [word]) => Some(word),
        _ => None,
    };
    let mut levels = word.into_iter().flat_map(|word| word.levels.iter());
    let last = word.map_or(0.0, |word| word.last);
    let mut rest = Some(live);
    std::iter::from_fn(move || {
        let remaining = rest.as_mut()?;
        let Some((score, bits)) = levels.next() else {
            return rest.take().map(|rest| (last, rest));
        };
        let tier = remaining.iter().zip(bits.iter()).map(|(rest, bits)| rest & bits).collect();
        remaining.iter_mut().zip(bits.iter()).for_each(|(rest, bits)| *rest &= !bits);
        Some((*score, tier))
    })
}

/// Reads every document's rank once and sorts them; and each genre bit's documents from the
/// segment's table.
fn order_of(segment: &SegmentReader, table: &SegmentTable) -> tantivy::Result<SegmentOrder> {
    let ranks = segment.fast_fields().u64("rank_pack")?.first_or_default_col(0);
    let docs: Vec<DocId> = (0..segment.max_doc()).collect();
    let mut keyed: Vec<(u64, DocId)> = Vec::with_capacity(docs.len());
    let mut values = vec![0u64; 4096];
    for block in docs.chunks(values.len()) {
        let values = &mut values[..block.len()];
        ranks.get_vals(block, values);
        keyed.extend(values.iter().zip(block).map(|(rank, doc)| (*rank, *doc)));
    }
    keyed.sort_unstable_by(|a, b| b.cmp(a));
    let buckets = docs.len().div_ceil(64);
    let mut genres: Vec<Vec<u64>> = vec![Vec::new(); 64];
    for (doc, place) in table.of_doc.iter().enumerate() {
        for bit in bits_of(table.masks[*place as usize]) {
            let bits = &mut genres[bit as usize];
            if bits.is_empty() {
                bits.resize(buckets, 0);
            }
            bits[doc / 64] |= 1 << (doc % 64);
        }
    }
    Ok(SegmentOrder { by_rank: keyed.into_iter().map(|(_, doc)| doc).collect(), genres })
}

fn and(bits: &mut [u64], with: &[u64]) {
    bits.iter_mut().zip(with).for_each(|(bits, with)| *bits &= with);
}

fn bits_of(mut mask: u64) -> impl Iterator<Item = u32> {
    std::iter::from_fn(move || {
        let bit = (mask != 0).then(|| mask.trailing_zeros())?;
        mask &= mask - 1;
        Some(bit)
    })
}

fn for_each_doc(bits: &[u64], mut f: impl FnMut(DocId)) {
    for (bucket, word) in bits.iter().enumerate() {
        let mut word = *word;
        while word != 0 {
            f(bucket as DocId * 64 + word.trailing_zeros());
            word &= word - 1;
        }
    }
}
