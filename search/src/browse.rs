//! Browsing without words: a page of movies by popularity or score, filtered by genres only,
//! with the total and genre counts. The general search walks every match (1.8M documents for
//! one common genre at 5M movies); this answers from a summary of each segment made once per
//! segment: how many live documents carry each genre mask, and the few thousand documents with
//! the highest and lowest popularity and score. A page is then a walk down those lists, and the
//! total and facets are sums over the masks: exact, in microseconds.
//!
//! Anything a summary cannot answer exactly (words, a director, score or popularity ranges,
//! names, offsets, genres past the mask's 63 bits, a page past the lists) is left to the
//! general search.

use std::collections::HashMap;
use std::sync::Arc;

use tantivy::{DocAddress, DocId, Searcher, SegmentReader};

use crate::facets::{count_bits, GenreBits, OVERFLOW_BIT};
use crate::keys::SortKey;
use crate::segments::PerSegment;

/// Documents kept per segment in each ordered list.
const LISTED: usize = 2048;
/// Columns are read this many documents at a time while summarising.
const BLOCK: usize = 1024;

/// Which packed key orders the page, and which end of it comes first; also the index of its
/// list in a summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Order {
    RankDesc = 0,
    RankAsc = 1,
    ScoreDesc = 2,
    ScoreAsc = 3,
}

/// What a browse asks: the genres (bits of the mask), where to start and how many.
pub(crate) struct Browse {
    pub order: Order,
    pub genres: GenreBits,
    /// The second and third parts of a key (all ones for ascending orders, as the collector's).
    pub tail: u64,
    /// Exclusive: keys at or past it were on earlier pages.
    pub after: Option<SortKey>,
    /// Matches wanted (the page plus one, which tells whether another follows).
    pub wanted: usize,
    pub facets: bool,
}

/// A page as the general search would have found it.
pub(crate) struct Browsed {
    pub ranked: Vec<(SortKey, DocAddress)>,
    pub total: usize,
    /// Live documents per genre bit among the matches.
    pub bit_counts: [u64; 64],
}

/// One segment's summary: live documents per genre mask, and for each order the documents it
/// puts first, as (key as the collector compares it, mask, document).
struct Summary {
    pub(crate) masks: HashMap<u64, u64>,
    pub(crate) lists: [Vec<(u64, u64, DocId)>; 4],
    /// Live documents in the segment: a list shorter than `LISTED` holds all of them.
    pub(crate) live: usize,
}

/// Summaries of the segments searches have met, by segment and number of deleted documents (a
/// delete changes the segment's live documents, so its summary is made again).
pub(crate) struct Summaries {
    made: PerSegment<(u32, Arc<Summary>)>,
    /// Documents kept per segment in each ordered list (`LISTED`; fewer in tests).
    pub(crate) listed: usize,
}

impl Default for Summaries {
    fn default() -> Self {
        Self { made: PerSegment::default(), listed: LISTED }
    }
}

impl Summaries {
    fn of(&self, segment: &SegmentReader) -> tantivy::Result<Arc<Summary>> {
        let (id, deleted) = (segment.segment_id(), segment.num_deleted_docs());
        if let Some((d, summary)) = self.made.get(id) {
            if d == deleted {
                return Ok(summary);
            }
        }
        let summary = Arc::new(summarise(segment, self.listed)?);
        self.made.replace(id, (deleted, summary.clone()));
        Ok(summary)
    }

    /// Forgets segments the searcher no longer has (merged away).
    fn retain(&self, searcher: &Searcher) {
        self.made.retain(searcher);
    }

    /// The page, total and facets of `browse`, or `None` when a summary cannot answer exactly
    /// (the general search must then).
    pub(crate) fn browse(&self, searcher: &Searcher, browse: &Browse) -> tantivy::Result<Option<Browsed>> {
        self.retain(searcher);
        let list = browse.order as usize;
        let mut ranked = Vec::new();
        let (mut total, mut bit_counts) = (0usize, [0u64; 64]);
        for (ordinal, segment) in searcher.segment_readers().iter().enumerate() {
            let summary = self.of(segment)?;
            for (mask, count) in summary.masks.iter().filter(|(mask, _)| browse.genres.matches(**mask)) {
                if browse.facets && mask & (1 << OVERFLOW_BIT) != 0 {
                    // Genres past the 63rd are counted by name, from the documents.
                    return Ok(None);
                }
                total += *count as usize;
                count_bits(&mut bit_counts, *mask, *count);
            }
            // The lists hold live documents only (a delete makes a new summary).
            let mut found = 0;
            for (key, mask, doc) in &summary.lists[list] {
                if found == browse.wanted {
                    break;
                }
                let key = (*key, browse.tail, browse.tail);
                if browse.after.is_some_and(|after| key >= after) || !browse.genres.matches(*mask) {
                    continue;
                }
                ranked.push((key, DocAddress::new(ordinal as u32, *doc)));
                found += 1;
            }
            if found < browse.wanted && summary.lists[list].len() < summary.live {
                // The page goes past what this segment's list holds.
                return Ok(None);
            }
        }
        ranked.sort_by_key(|(key, _)| std::cmp::Reverse(*key));
        ranked.truncate(browse.wanted);
        Ok(Some(Browsed { ranked, total, bit_counts }))
    }
}

/// Reads every live document's mask and keys once.
fn summarise(segment: &SegmentReader, listed: usize) -> tantivy::Result<Summary> {
    let fast = segment.fast_fields();
    let column = |name| fast.u64(name).map(|c| c.first_or_default_col(0));
    let (masks_column, rank, score) = (column("genre_mask")?, column("rank_pack")?, column("score_pack")?);
    let alive = segment.alive_bitset();
    let mut masks: HashMap<u64, u64> = HashMap::new();
    // Min-heaps of the best `listed` keys of each order (ascending orders keep inverted keys).
    let mut heaps: [std::collections::BinaryHeap<std::cmp::Reverse<(u64, u64, DocId)>>; 4] =
        Default::default();
    let mut live = 0;
    let max_doc = segment.max_doc();
    let (mut docs, mut m, mut r, mut s) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for start in (0..max_doc).step_by(BLOCK) {
        docs.clear();
        docs.extend(
            (start..max_doc.min(start + BLOCK as u32)).filter(|d| alive.is_none_or(|a| a.is_alive(*d))),
        );
        for values in [&mut m, &mut r, &mut s] {
            values.resize(docs.len(), 0);
        }
        masks_column.get_vals(&docs, &mut m);
        rank.get_vals(&docs, &mut r);
        score.get_vals(&docs, &mut s);
        for (i, doc) in docs.iter().enumerate() {
            live += 1;
            *masks.entry(m[i]).or_default() += 1;
            // In `Order`'s order.
            for (heap, key) in heaps.iter_mut().zip([r[i], !r[i], s[i], !s[i]]) {
                if heap.len() < listed {
                    heap.push(std::cmp::Reverse((key, m[i], *doc)));
                } else if heap.peek().is_some_and(|least| key > least.0 .0) {
                    heap.pop();
                    heap.push(std::cmp::Reverse((key, m[i], *doc)));
                }
            }
        }
    }
    let lists = heaps.map(|heap| {
        let mut list: Vec<(u64, u64, DocId)> =
            heap.into_iter().map(|std::cmp::Reverse(entry)| entry).collect();
        list.sort_by(|a, b| b.cmp(a));
        list
    });
    Ok(Summary { masks, lists, live })
}
