//! One query word as one docset. A word can match in several ways (exactly, as a prefix's
//! completion, or with a typo, in each text field), and each way gives its own score. Per
//! segment, every way's postings are read once into a bitset of the word's matches, with one
//! bitset per score level to tell which way a match took (the lowest level needs none: it is
//! what is left).
//!
//! The word used to be a union of its ways as tantivy scorers. Intersecting two such words seeks
//! the second union once for every candidate of the first, and each of those seeks moves up to
//! five scorers: half of a two-word search's time at 5M movies. A bitset answers a seek by
//! looking at one 64-bit bucket, and ways that overlap (an exact match is also within a typo)
//! cost nothing more once read.

use std::fmt;

use tantivy::query::{EnableScoring, Explanation, Query, Scorer, Weight};
use tantivy::{DocId, DocSet, Score, SegmentReader, TantivyError, COLLECT_BLOCK_BUFFER_LEN, TERMINATED};

/// A word's ways to match, each with the score a match that way gets; a document that matches
/// several ways gets the best of their scores.
pub(crate) struct WordQuery {
    ways: Vec<(Score, Box<dyn Query>)>,
}

impl WordQuery {
    pub(crate) fn new(ways: Vec<(Score, Box<dyn Query>)>) -> Self {
        Self { ways }
    }
}

impl Clone for WordQuery {
    fn clone(&self) -> Self {
        Self { ways: self.ways.iter().map(|(score, way)| (*score, way.box_clone())).collect() }
    }
}

impl fmt::Debug for WordQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.ways.iter().map(|(score, way)| (score, way))).finish()
    }
}

impl Query for WordQuery {
    fn weight(&self, scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        // The ways' own scores are never read: each way's score is its level's.
        let unscored = EnableScoring::Disabled { schema: scoring.schema(), searcher_opt: scoring.searcher() };
        let mut levels: Vec<(Score, Vec<Box<dyn Weight>>)> = Vec::new();
        let mut ways: Vec<&(Score, Box<dyn Query>)> = self.ways.iter().collect();
        ways.sort_by(|a, b| b.0.total_cmp(&a.0));
        for (score, way) in ways {
            let weight = way.weight(unscored)?;
            match levels.last_mut() {
                Some((level, weights)) if level == score => weights.push(weight),
                _ => levels.push((*score, vec![weight])),
            }
        }
        Ok(Box::new(WordWeight { levels }))
    }
}

struct WordWeight {
    /// Best score first, with the ways that give it.
    levels: Vec<(Score, Vec<Box<dyn Weight>>)>,
}

impl Weight for WordWeight {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        let buckets = (reader.max_doc() as usize).div_ceil(64);
        // Only levels with matches take memory (a title word is seldom a director's name).
        let mut levels: Vec<(Score, Vec<u64>)> = Vec::with_capacity(self.levels.len());
        for (score, weights) in &self.levels {
            let mut level: Option<Vec<u64>> = None;
            for weight in weights {
                let mut docs = weight.scorer(reader, 1.0)?;
                if docs.doc() != TERMINATED {
                    read_into(docs.as_mut(), level.get_or_insert_with(|| vec![0u64; buckets]));
                }
            }
            levels.extend(level.map(|bits| (score * boost, bits)));
        }
        let mut matches = levels.first().map(|(_, bits)| bits.clone()).unwrap_or_default();
        for (_, bits) in levels.iter().skip(1) {
            matches.iter_mut().zip(bits).for_each(|(all, bits)| *all |= bits);
        }
        // A match in no level above the last is in the last: its bits are never looked at.
        let last = levels.pop().map_or(0.0, |(score, _)| score);
        Ok(Box::new(WordScorer::new(matches, levels, last)))
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        let mut scorer = self.scorer(reader, 1.0)?;
        if scorer.seek(doc) != doc {
            return Err(TantivyError::InvalidArgument(format!("document {doc} does not match the word")));
        }
        Ok(Explanation::new("best way the word matches", scorer.score()))
    }
}

/// Sets the bit of every document `docs` holds.
fn read_into(docs: &mut dyn Scorer, bits: &mut [u64]) {
    let mut buffer = [0; COLLECT_BLOCK_BUFFER_LEN];
    loop {
        let filled = docs.fill_buffer(&mut buffer);
        for &doc in &buffer[..filled] {
            bits[doc as usize / 64] |= 1 << (doc % 64);
        }
        if filled < buffer.len() {
            return;
        }
    }
}

struct WordScorer {
    matches: Vec<u64>,
    /// Every level but the last, best first.
    levels: Vec<(Score, Vec<u64>)>,
    last: Score,
    len: u32,
    bucket: usize,
    /// The bits of `bucket` past the current document.
    ahead: u64,
    doc: DocId,
}

impl WordScorer {
    fn new(matches: Vec<u64>, levels: Vec<(Score, Vec<u64>)>, last: Score) -> Self {
        let len = matches.iter().map(|bits| bits.count_ones()).sum();
        let ahead = matches.first().copied().unwrap_or(0);
        let mut scorer = Self { matches, levels, last, len, bucket: 0, ahead, doc: 0 };
        scorer.advance();
        scorer
    }
}

impl DocSet for WordScorer {
    fn advance(&mut self) -> DocId {
        while self.ahead == 0 {
            self.bucket += 1;
            match self.matches.get(self.bucket) {
                Some(&bits) => self.ahead = bits,
                None => {
                    self.doc = TERMINATED;
                    return TERMINATED;
                }
            }
        }
        let bit = self.ahead.trailing_zeros();
        self.ahead &= self.ahead - 1;
        self.doc = self.bucket as DocId * 64 + bit;
        self.doc
    }

    fn seek(&mut self, target: DocId) -> DocId {
        if target <= self.doc {
            return self.doc;
        }
        let bucket = target as usize / 64;
        if bucket > self.bucket {
            let Some(&bits) = self.matches.get(bucket) else {
                self.bucket = self.matches.len();
                self.doc = TERMINATED;
                return TERMINATED;
            };
            (self.bucket, self.ahead) = (bucket, bits);
        }
        self.ahead &= u64::MAX << (target % 64);
        self.advance()
    }

    fn doc(&self) -> DocId {
        self.doc
    }

    fn size_hint(&self) -> u32 {
        self.len
    }
}

impl Scorer for WordScorer {
    fn score(&mut self) -> Score {
        let (bucket, bit) = (self.doc as usize / 64, self.doc % 64);
        self.levels
            .iter()
            .find(|(_, bits)| bits[bucket] >> bit & 1 == 1)
            .map_or(self.last, |(score, _)| *score)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scorer(docs: &[(DocId, Score)], max_doc: u32) -> WordScorer {
        let buckets = (max_doc as usize).div_ceil(64);
        let mut scores: Vec<Score> = docs.iter().map(|(_, s)| *s).collect();
        scores.sort_by(|a, b| b.total_cmp(a));
        scores.dedup();
        let mut matches = vec![0u64; buckets];
        let mut levels: Vec<(Score, Vec<u64>)> = scores.iter().map(|s| (*s, vec![0u64; buckets])).collect();
        for &(doc, score) in docs {
            matches[doc as usize / 64] |= 1 << (doc % 64);
            let level = levels.iter_mut().find(|(s, _)| *s == score).expect("a level");
            level.1[doc as usize / 64] |= 1 << (doc % 64);
        }
        let last = levels.pop().map_or(0.0, |(s, _)| s);
        WordScorer::new(matches, levels, last)
    }

    #[test]
    fn a_word_walks_its_matches_in_order_with_the_best_score_of_each() {
        let mut word = scorer(&[(3, 10.0), (3, 30.0), (64, 20.0), (200, 10.0), (199, 30.0)], 201);
        let mut walked = Vec::new();
        while word.doc() != TERMINATED {
            walked.push((word.doc(), word.score()));
            word.advance();
        }
        assert_eq!(walked, vec![(3, 30.0), (64, 20.0), (199, 30.0), (200, 10.0)]);
        assert_eq!(word.size_hint(), 4);
    }

    #[test]
    fn seeking_lands_on_the_first_match_at_or_after_the_target() {
        let mut word = scorer(&[(5, 1.0), (70, 1.0), (130, 1.0), (191, 1.0)], 192);
        assert_eq!(word.seek(5), 5);
        assert_eq!(word.seek(6), 70);
        assert_eq!(word.seek(70), 70);
        assert_eq!(word.seek(71), 130);
        assert_eq!(word.seek(191), 191);
        assert_eq!(word.seek(192), TERMINATED);
        let empty = scorer(&[], 10);
        assert_eq!(empty.doc(), TERMINATED);
        assert_eq!(scorer(&[(0, 1.0)], 1).doc(), 0);
    }
}
