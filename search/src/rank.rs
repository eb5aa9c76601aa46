//! Ranking: the collector that keeps the best hits by sort key, reading the sort columns in
//! batches.

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::{DocAddress, DocId, Score, SegmentReader};

use std::sync::Arc;

use crate::facets::{SegmentTable, SegmentTables, U64Column};
use crate::keys::*;
use crate::query::{SearchCursor, SearchSort};

/// A completed title's bonus: below one point, so it orders hits within a score, never across.
pub(crate) const COMPLETE_BONUS: f32 = 0.9;
/// Matches read per batch of column reads.
pub(crate) const RANK_BLOCK: usize = 64;

/// A hit's sort key from its columns. Relevance: the word score, plus (for queries of two words
/// or more) a completeness bonus when the title has exactly as many words as the query ("star w"
/// puts "Star Wars" before "Star Wars : Episode V"), then popularity, then shorter titles
/// ("Frankenstein" before "Bride of Frankenstein"). Scores are non-negative, so their IEEE bits
/// order like the numbers.
pub(crate) fn key_of(
    sort: SearchSort,
    query_words: usize,
    relevance: Score,
    [rank, score, head, tail]: [u64; 4],
) -> SortKey {
    match sort {
        SearchSort::Relevance => {
            let title_words = 63 - ((rank >> WORDS_SHIFT) & 63);
            let complete = query_words >= 2 && title_words == query_words as u64;
            let total = relevance + if complete { COMPLETE_BONUS } else { 0.0 };
            (u64::from(total.max(0.0).to_bits()), rank, 0)
        }
        SearchSort::Popularity => (rank, 0, 0),
        SearchSort::ImdbScore => (score, 0, 0),
        SearchSort::Name => (head, tail, rank & ID_MASK),
    }
}

/// The best `keep` matches by sort key (highest first), less the first `skip`, keys at or past
/// `after` left out (they were on earlier pages).
///
/// The sort columns are read 64 matches at a time: one batched read per column lets the loads
/// overlap instead of each match waiting on its own cache miss (a one-word search at 5M has
/// ~100k matches; those waits were most of its time). By relevance, best first, a match whose
/// score cannot reach the worst hit held is dropped before anything is read for it.
pub(crate) struct Best<'a> {
    pub(crate) tables: &'a SegmentTables,
    pub(crate) sort: SearchSort,
    pub(crate) query_words: usize,
    pub(crate) ascending: bool,
    pub(crate) after: Option<SearchCursor>,
    pub(crate) keep: usize,
    pub(crate) skip: usize,
}

pub(crate) struct BestSegment {
    pub(crate) ordinal: tantivy::SegmentOrdinal,
    pub(crate) sort: SearchSort,
    pub(crate) query_words: usize,
    pub(crate) flip: u64,
    pub(crate) after: Option<SearchCursor>,
    pub(crate) keep: usize,
    /// rank, score, name head, name tail: the ones this sort reads.
    pub(crate) columns: [Option<U64Column>; 4],
    /// Except by name: the sort column without its id bits and the slot of the full column it
    /// stands for, read for every match instead of that column (whose id bits are read only for
    /// a match that may place or straddles the cursor).
    pub(crate) small: Option<(U64Column, usize)>,
    /// The segment's table, which holds the small columns' values as arrays.
    pub(crate) table: Option<Arc<SegmentTable>>,
    pub(crate) docs: Vec<DocId>,
    pub(crate) scores: Vec<Score>,
    pub(crate) values: [Vec<u64>; 4],
    /// The best so far, worst on top; equal keys keep the earlier document.
    pub(crate) held: std::collections::BinaryHeap<std::cmp::Reverse<(SortKey, std::cmp::Reverse<DocId>)>>,
}

impl Collector for Best<'_> {
    type Fruit = Vec<(SortKey, DocAddress)>;
    type Child = BestSegment;

    fn for_segment(
        &self,
        ordinal: tantivy::SegmentOrdinal,
        segment: &SegmentReader,
    ) -> tantivy::Result<BestSegment> {
        let fast = segment.fast_fields();
        let column = |name, wanted: bool| {
            wanted.then(|| fast.u64(name).map(|c| c.first_or_default_col(0)).ok()).flatten()
        };
        let (by_name, by_score) = (self.sort == SearchSort::Name, self.sort == SearchSort::ImdbScore);
        let small = match self.sort {
            SearchSort::Name => None,
            SearchSort::ImdbScore => column("score_small", true).map(|c| (c, 1)),
            SearchSort::Relevance | SearchSort::Popularity => column("rank_small", true).map(|c| (c, 0)),
        };
        Ok(BestSegment {
            table: if small.is_some() { self.tables.of(segment) } else { None },
            ordinal,
            sort: self.sort,
            query_words: self.query_words,
            flip: flip(self.ascending),
            after: self.after,
            keep: self.keep,
            small,
            columns: [
                column("rank_pack", !by_score),
                column("score_pack", by_score),
                column("name_sort", by_name),
                column("name_sort_tail", by_name),
            ],
            docs: Vec::with_capacity(RANK_BLOCK),
            scores: Vec::with_capacity(RANK_BLOCK),
            values: Default::default(),
            held: std::collections::BinaryHeap::with_capacity(self.keep + 1),
        })
    }

    fn requires_scoring(&self) -> bool {
        self.sort == SearchSort::Relevance
    }

    fn merge_fruits(&self, fruits: Vec<Self::Fruit>) -> tantivy::Result<Self::Fruit> {
        let mut all: Vec<(SortKey, DocAddress)> = fruits.into_iter().flatten().collect();
        all.sort_unstable_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        Ok(all.into_iter().take(self.keep).skip(self.skip).collect())
    }
}

impl BestSegment {
    fn flush(&mut self) {
        let stood_for = self.small.as_ref().map(|(_, slot)| *slot);
        for (slot, (column, values)) in self.columns.iter().zip(&mut self.values).enumerate() {
            values.clear();
            values.resize(self.docs.len(), 0);
            let small = self.small.as_ref().filter(|(_, stands_for)| *stands_for == slot);
            match (small, &self.table) {
                (Some(_), Some(table)) => values
                    .iter_mut()
                    .zip(&self.docs)
                    .for_each(|(value, doc)| *value = table.small(slot, *doc)),
                (Some((small, _)), None) => small.get_vals(&self.docs, values),
                (None, _) => column.iter().for_each(|column| column.get_vals(&self.docs, values)),
            }
        }
        let flip = |key: SortKey| (key.0 ^ self.flip, key.1 ^ self.flip, key.2 ^ self.flip);
        for (i, (&doc, &relevance)) in self.docs.iter().zip(&self.scores).enumerate() {
            let mut read = [self.values[0][i], self.values[1][i], self.values[2][i], self.values[3][i]];
            if let Some(slot) = stood_for {
                // The key lies between those with the id bits all clear and all set: decide
                // from the bounds when they can, read the id bits when they cannot.
                let small = read[slot] << ID_BITS;
                let (mut clear, mut set) = (read, read);
                (clear[slot], set[slot]) = (small, small | ID_MASK);
                let (a, b) = (
                    flip(key_of(self.sort, self.query_words, relevance, clear)),
                    flip(key_of(self.sort, self.query_words, relevance, set)),
                );
                let (low, high) = (a.min(b), a.max(b));
                if self.after.is_some_and(|SearchCursor(cursor)| low >= cursor) {
                    continue;
                }
                if self.held.len() >= self.keep && self.held.peek().is_some_and(|worst| high < worst.0 .0) {
                    continue;
                }
                read[slot] = self.columns[slot].as_ref().map_or(small, |full| full.get_val(doc));
            }
            let key = flip(key_of(self.sort, self.query_words, relevance, read));
            if self.after.is_some_and(|SearchCursor(cursor)| key >= cursor) {
                continue;
            }
            let candidate = std::cmp::Reverse((key, std::cmp::Reverse(doc)));
            if self.held.len() < self.keep {
                self.held.push(candidate);
            } else if let Some(mut worst) = self.held.peek_mut() {
                if candidate < *worst {
                    *worst = candidate;
                }
            }
        }
        self.docs.clear();
        self.scores.clear();
    }
}

impl SegmentCollector for BestSegment {
    type Fruit = Vec<(SortKey, DocAddress)>;

    fn collect(&mut self, doc: DocId, score: Score) {
        if self.sort == SearchSort::Relevance && self.flip == 0 && self.held.len() >= self.keep {
            let bonus = if self.query_words >= 2 { COMPLETE_BONUS } else { 0.0 };
            let best_possible = u64::from((score + bonus).max(0.0).to_bits());
            if self.held.peek().is_some_and(|worst| best_possible < worst.0 .0 .0) {
                return;
            }
        }
        self.docs.push(doc);
        self.scores.push(score);
        if self.docs.len() == RANK_BLOCK {
            self.flush();
        }
    }

    fn harvest(mut self) -> Self::Fruit {
        self.flush();
        let ordinal = self.ordinal;
        self.held
            .into_iter()
            .map(|std::cmp::Reverse((key, std::cmp::Reverse(doc)))| (key, DocAddress::new(ordinal, doc)))
            .collect()
    }
}
