//! A query's words as one docset. A word can match in several ways (exactly, as a prefix's
//! completion, or with a typo, in each text field), and each way gives its own score. Per
//! segment, every way's postings are read once into a bitset of the word's matches, with one
//! bitset per score level to tell which way a match took (the lowest level needs none: it is
//! what is left). The required words' bitsets are intersected by AND.
//!
//! The word used to be a union of its ways as tantivy scorers. Intersecting two such words seeks
//! the second union once for every candidate of the first, and each of those seeks moves up to
//! five scorers: half of a two-word search's time at 5M movies. A bitset answers a seek by
//! looking at one 64-bit bucket, and ways that overlap (an exact match is also within a typo)
//! cost nothing more once read.
//!
//! Terms in a sixteenth or more of a segment's documents ("the" is in half the titles, "drama"
//! in a third of the genres) would be read again by every search that names them: their bitsets
//! are kept (`DenseTerms`), so such a word costs a lookup instead of millions of postings. So
//! are a prefix's completions taken together, from a five-hundredth of a segment.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, OnceLock, RwLock};

use crate::later::Later;
use crate::query::MAX_TYPO_WORD_CHARS;
use crate::schema::PREFIX_EXPANSIONS;

use tantivy::index::SegmentId;
use tantivy::query::{EmptyScorer, EnableScoring, Explanation, Query, Scorer, Weight};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::{DocId, DocSet, Score, Searcher, SegmentReader, TantivyError, Term, TERMINATED};

/// A term is dense in a segment from this share of its documents (1/16): its bitset is then
/// smaller than its postings, and reading them costs more than a millisecond at 5M movies.
const DENSE_SHARE: u32 = 16;
/// Memory the kept bitsets may take: about a hundred dense terms at 5M movies.
const DENSE_BYTES: u64 = 64 << 20;
/// A union of several terms (a prefix's completions) is kept from this share of a segment's
/// documents (1/512): reading it again costs a dictionary lookup per term (fifty for a short
/// prefix, in each field) besides the postings, and at 5M movies that was a third of a
/// one-letter search when only dense unions were kept. Rarer unions, what most prefixes of
/// three letters or more complete to, are cheap to read and would only crowd the dense terms.
const KEPT_UNION_SHARE: u32 = 512;

pub(crate) type Bits = Arc<Vec<u64>>;

/// The bitsets of dense terms, and of unions of terms in a five-hundredth or more of a segment
/// (a prefix's completions: "s" has fifty, each read from its postings, and together they are
/// in most titles), per segment, least recently used dropped first. Entries of segments merged
/// away are never asked for again and age out.
#[derive(Clone, Debug)]
pub(crate) struct DenseTerms(moka::sync::Cache<(SegmentId, Vec<Term>), Bits>);

impl Default for DenseTerms {
    fn default() -> Self {
        Self(
            moka::sync::Cache::builder()
                .max_capacity(DENSE_BYTES)
                .weigher(|_, bits: &Bits| u32::try_from(bits.len() * 8).unwrap_or(u32::MAX))
                .build(),
        )
    }
}

impl DenseTerms {
    /// How many unions of several terms are kept.
    #[cfg(test)]
    pub(crate) fn unions(&self) -> usize {
        self.0.run_pending_tasks();
        self.0.iter().filter(|(key, _)| key.1.len() > 1).count()
    }
}

/// Terms a segment's prefix scan reads at most: a one-letter prefix of directors' names has
/// tens of thousands; past this the rest are not looked at.
const COMPLETIONS_SCANNED: usize = 100_000;
/// Memory the kept completions may take.
const COMPLETIONS_BYTES: u64 = 16 << 20;

/// A segment's most frequent completions of a prefix in a field, with their document counts.
type Top = Arc<Vec<(Vec<u8>, u32)>>;

/// Each segment's most frequent completions of the prefixes searches asked for, kept: finding
/// them reads every term with the prefix in the segment's dictionary (thousands for one letter,
/// a third of a one-letter search's time when it was done per search). A segment's terms never
/// change, so neither do its completions; entries of segments merged away age out.
#[derive(Clone, Debug)]
pub(crate) struct Completions(moka::sync::Cache<(SegmentId, Field, String), Top>);

impl Default for Completions {
    fn default() -> Self {
        Self(
            moka::sync::Cache::builder()
                .max_capacity(COMPLETIONS_BYTES)
                .weigher(|key: &(SegmentId, Field, String), top: &Top| {
                    let bytes = key.2.len() + top.iter().map(|(text, _)| text.len() + 32).sum::<usize>();
                    u32::try_from(bytes + 64).unwrap_or(u32::MAX)
                })
                .build(),
        )
    }
}

impl Completions {
    /// The segment's `PREFIX_EXPANSIONS` most frequent completions of `prefix` in `field`.
    pub(crate) fn of(&self, segment: &SegmentReader, field: Field, prefix: &str) -> tantivy::Result<Top> {
        let key = (segment.segment_id(), field, prefix.to_owned());
        self.0
            .try_get_with(key, || -> tantivy::Result<Top> {
                let inverted = segment.inverted_index(field)?;
                let mut stream = inverted.terms().range().ge(prefix.as_bytes()).into_stream()?;
                let mut top: Vec<(Vec<u8>, u32)> = Vec::new();
                let mut scanned = 0;
                while scanned < COMPLETIONS_SCANNED && stream.advance() {
                    if !stream.key().starts_with(prefix.as_bytes()) {
                        break;
                    }
                    scanned += 1;
                    top.push((stream.key().to_vec(), stream.value().doc_freq));
                    if top.len() >= 4 * PREFIX_EXPANSIONS {
                        keep_most_frequent(&mut top);
                    }
                }
                keep_most_frequent(&mut top);
                Ok(Arc::new(top))
            })
            .map_err(|e| TantivyError::InternalError(e.to_string()))
    }
}

fn keep_most_frequent(top: &mut Vec<(Vec<u8>, u32)>) {
    top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    top.truncate(PREFIX_EXPANSIONS);
}

/// Memory the kept typo neighbours may take.
const TYPOS_BYTES: u64 = 16 << 20;

/// A word's typo neighbours in a segment's field.
type Neighbours = Arc<Vec<Term>>;

/// Where typo neighbours were found: one segment's dictionary, or the vocabulary of a
/// generation (every segment it has read).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Scope {
    Segment(SegmentId),
    Vocabulary(u64),
}

/// The typo neighbours of the words searches asked for, kept: finding them runs a Levenshtein
/// automaton over a dictionary. Over each segment's, for each text field, a search of one word
/// did that forty times at 5M movies (most of a search's time when its words were new); over
/// the vocabulary (every term of every segment, see `Vocabulary`), once per field, then each
/// neighbour is a lookup in each segment's dictionary. A segment's terms never change, nor do a
/// vocabulary generation's; entries of segments merged away and of old generations age out.
#[derive(Clone, Debug)]
pub(crate) struct Typos {
    kept: KeptNeighbours,
    vocabulary: Arc<Vocabulary>,
}

#[derive(Clone, Debug)]
struct KeptNeighbours(moka::sync::Cache<(Scope, Term), Neighbours>);

impl Default for KeptNeighbours {
    fn default() -> Self {
        Self(
            moka::sync::Cache::builder()
                .max_capacity(TYPOS_BYTES)
                .weigher(|key: &(Scope, Term), terms: &Neighbours| {
                    let bytes = key.1.serialized_term().len()
                        + terms.iter().map(|term| term.serialized_term().len() + 32).sum::<usize>();
                    u32::try_from(bytes + 64).unwrap_or(u32::MAX)
                })
                .build(),
        )
    }
}

impl Typos {
    /// Typos in `fields`, whose terms the vocabulary reads.
    pub(crate) fn new(fields: Vec<Field>) -> Self {
        let vocabulary = Vocabulary { fields, known: RwLock::default(), later: Arc::default() };
        Self { kept: KeptNeighbours::default(), vocabulary: Arc::new(vocabulary) }
    }

    /// The terms of `term`'s field within the automaton's edits of it, but it: those of the
    /// vocabulary once it has read the segment (a superset of the segment's: a term the segment
    /// lacks is a miss in its dictionary), else those of the segment's own dictionary.
    fn of<'d>(
        &self,
        segment: &SegmentReader,
        term: &Term,
        dfa: impl FnOnce() -> &'d Dfa,
    ) -> tantivy::Result<Neighbours> {
        let known = self.vocabulary.known();
        let field = term.field();
        // A plain get, then insert: a search's segments ask for the same vocabulary key at once
        // on the executor's threads, and two first asks of one key racing in moka's
        // `try_get_with` can leak its waiter (seen by the fuzzer's leak check). The race costs
        // at most one automaton run per thread, once.
        let read = |scope: Scope, terms: &dyn Fn(&Dfa) -> tantivy::Result<Vec<Vec<u8>>>| {
            let key = (scope, term.clone());
            if let Some(kept) = self.kept.0.get(&key) {
                return Ok(kept);
            }
            let mut found = Vec::new();
            for bytes in terms(dfa())? {
                if bytes != term.serialized_value_bytes() {
                    let text = std::str::from_utf8(&bytes)
                        .map_err(|e| TantivyError::InternalError(e.to_string()))?;
                    found.push(Term::from_field_text(field, text));
                }
            }
            let found: Neighbours = Arc::new(found);
            self.kept.0.insert(key, found.clone());
            Ok(found)
        };
        match known.fields.get(&field).filter(|_| known.segments.contains(&segment.segment_id())) {
            Some(map) => read(Scope::Vocabulary(known.generation), &|dfa| {
                Ok(tantivy_fst::IntoStreamer::into_stream(map.search(dfa)).into_byte_keys())
            }),
            None => read(Scope::Segment(segment.segment_id()), &|dfa| {
                let inverted = segment.inverted_index(field)?;
                let mut stream = inverted.terms().search(dfa).into_stream()?;
                let mut keys = Vec::new();
                while stream.advance() {
                    keys.push(stream.key().to_vec());
                }
                Ok(keys)
            }),
        }
    }

    /// Has the vocabulary read the searcher's segments it has not read yet, on a thread of its
    /// own: until then their searches use their own dictionaries.
    pub(crate) fn refresh_later(&self, searcher: Searcher) {
        self.vocabulary.refresh_later(searcher);
    }

    #[cfg(test)]
    fn refresh(&self, searcher: &Searcher) {
        self.vocabulary.refresh(searcher).unwrap();
    }
}

/// Every term of some fields in the segments it has read, one FST per field. It only grows: a
/// term whose movies are all gone stays (a miss in every segment's dictionary), so it holds the
/// distinct words ever indexed (about 350,000 title and director words at 5M movies: a few MiB).
#[derive(Debug)]
struct Vocabulary {
    /// The fields whose terms it holds.
    fields: Vec<Field>,
    known: RwLock<Arc<Known>>,
    /// Reads the newest searcher's segments on a thread of its own.
    later: Arc<Later<Searcher>>,
}

#[derive(Debug, Default)]
struct Known {
    /// Moves when a field gains terms.
    generation: u64,
    segments: HashSet<SegmentId>,
    fields: HashMap<Field, Arc<tantivy_fst::Map<Vec<u8>>>>,
}

impl Vocabulary {
    fn known(&self) -> Arc<Known> {
        self.known.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn refresh_later(self: &Arc<Self>, searcher: Searcher) {
        let vocabulary = self.clone();
        self.later.run(searcher, move |searcher| {
            let started = std::time::Instant::now();
            match vocabulary.refresh(&searcher) {
                Ok(()) => tracing::debug!(seconds = started.elapsed().as_secs_f64(), "vocabulary ready"),
                Err(error) => {
                    tracing::warn!(%error, "reading the vocabulary failed; typos use each segment's")
                }
            }
        });
    }

    /// Reads the fields of the searcher's segments not read yet.
    fn refresh(&self, searcher: &Searcher) -> tantivy::Result<()> {
        let fields = &self.fields;
        let known = self.known();
        let live: HashSet<SegmentId> = searcher.segment_readers().iter().map(|s| s.segment_id()).collect();
        let unread: Vec<&SegmentReader> =
            searcher.segment_readers().iter().filter(|s| !known.segments.contains(&s.segment_id())).collect();
        let tracked = fields.iter().all(|field| known.fields.contains_key(field));
        if unread.is_empty() && tracked {
            return Ok(());
        }
        let (mut maps, mut grew) = (HashMap::new(), false);
        for &field in fields {
            let old = known.fields.get(&field).filter(|_| tracked);
            let mut new: BTreeSet<Vec<u8>> = BTreeSet::new();
            let segments: Vec<&SegmentReader> = match old {
                Some(_) => unread.clone(),
                None => searcher.segment_readers().iter().collect(),
            };
            for segment in segments {
                let inverted = segment.inverted_index(field)?;
                let mut stream = inverted.terms().stream()?;
                while stream.advance() {
                    if old.is_none_or(|old| !old.contains_key(stream.key())) {
                        new.insert(stream.key().to_vec());
                    }
                }
            }
            let map = match old {
                Some(old) if new.is_empty() => old.clone(),
                _ => {
                    grew = true;
                    if let Some(old) = old {
                        let mut keys = old.keys();
                        while let Some(key) = tantivy_fst::Streamer::next(&mut keys) {
                            new.insert(key.to_vec());
                        }
                    }
                    let map = tantivy_fst::Map::from_iter(new.into_iter().map(|key| (key, 0)))
                        .map_err(|e| TantivyError::InternalError(e.to_string()))?;
                    Arc::new(map)
                }
            };
            maps.insert(field, map);
        }
        let generation = known.generation + u64::from(grew);
        // Every live segment is read now; those merged away are forgotten (their terms stay).
        *self.known.write().unwrap_or_else(|p| p.into_inner()) =
            Arc::new(Known { generation, segments: live, fields: maps });
        Ok(())
    }
}

/// A word's Levenshtein automaton, an adjacent transposition counting as one edit.
pub(crate) struct Dfa(levenshtein_automata::DFA);

impl Dfa {
    fn new(term: &Term, distance: u8) -> Self {
        static BUILDERS: [OnceLock<levenshtein_automata::LevenshteinAutomatonBuilder>; 3] =
            [const { OnceLock::new() }; 3];
        let distance = distance.min(2);
        let builder = BUILDERS[distance as usize]
            .get_or_init(|| levenshtein_automata::LevenshteinAutomatonBuilder::new(distance, true));
        Self(builder.build_dfa(term.value().as_str().unwrap_or_default()))
    }
}

impl tantivy_fst::Automaton for Dfa {
    type State = u32;

    fn start(&self) -> u32 {
        self.0.initial_state()
    }

    fn is_match(&self, state: &u32) -> bool {
        matches!(self.0.distance(*state), levenshtein_automata::Distance::Exact(_))
    }

    fn can_match(&self, state: &u32) -> bool {
        *state != levenshtein_automata::SINK_STATE
    }

    fn accept(&self, state: &u32, byte: u8) -> u32 {
        self.0.transition(*state, byte)
    }
}

/// One way a word matches: a term's postings, or those of the terms within `distance` edits
/// of it in its field (a typo), the term itself left out (its exact way scores higher).
#[derive(Clone, Debug)]
pub(crate) enum Way {
    Term(Term),
    Typo(Term, u8),
}

/// A word's ways to match, each with the score a match that way gets (a document that
/// matches several ways gets the best of their scores), and whether a match must have it.
#[derive(Clone, Debug)]
pub(crate) struct WordWays {
    pub ways: Vec<(Score, Way)>,
    pub required: bool,
}

/// The words of a query: a document matches if it has every required word; its score is the
/// sum of the scores of the words it has, optional ones included.
///
/// Optional words ("the", "of") are only looked up for the required words' matches, a bit test
/// each. As tantivy clauses they were a union, which walks every one of their documents (half
/// the catalogue for "the") in windows around the matches it is asked about.
#[derive(Clone, Debug)]
pub(crate) struct TextQuery {
    pub(crate) words: Vec<WordWays>,
    pub(crate) dense: DenseTerms,
    pub(crate) typos: Typos,
}

impl TextQuery {
    pub(crate) fn new(words: Vec<WordWays>, dense: DenseTerms, typos: Typos) -> Self {
        Self { words, dense, typos }
    }
}

enum WayWeight {
    Term(Term),
    /// The automaton is made when a segment first needs it, once for the query.
    Typo(Term, u8, OnceLock<Dfa>),
}

/// A word's ways grouped by score, best first.
type Levels = Vec<(Score, Vec<WayWeight>)>;

impl Query for TextQuery {
    fn weight(&self, _: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(self.text_weight()))
    }
}

impl TextQuery {
    /// The query's weight as itself: what a walk in rank order reads each segment's matches
    /// from (see `walk`).
    pub(crate) fn text_weight(&self) -> TextWeight {
        let mut words = Vec::with_capacity(self.words.len());
        for word in &self.words {
            let mut levels: Levels = Vec::new();
            let mut ways: Vec<&(Score, Way)> = word.ways.iter().collect();
            ways.sort_by(|a, b| b.0.total_cmp(&a.0));
            for (score, way) in ways {
                let weight = match way {
                    Way::Term(term) => WayWeight::Term(term.clone()),
                    Way::Typo(term, distance) => WayWeight::Typo(term.clone(), *distance, OnceLock::new()),
                };
                match levels.last_mut() {
                    Some((level, weights)) if level == score => weights.push(weight),
                    _ => levels.push((*score, vec![weight])),
                }
            }
            words.push((levels, word.required));
        }
        TextWeight { words, dense: self.dense.clone(), typos: self.typos.clone() }
    }
}

pub(crate) struct TextWeight {
    words: Vec<(Levels, bool)>,
    pub(crate) dense: DenseTerms,
    typos: Typos,
}

/// A level's bits as they are gathered: kept bitsets are shared until something is added.
#[derive(Default)]
struct Level {
    pub(crate) shared: Vec<Bits>,
    pub(crate) own: Option<Vec<u64>>,
}

impl Level {
    fn own(&mut self, buckets: usize) -> &mut Vec<u64> {
        self.own.get_or_insert_with(|| vec![0u64; buckets])
    }

    /// The union of the level's bits, or `None` if no way matched.
    fn union(mut self, buckets: usize) -> Option<Bits> {
        if self.own.is_none() && self.shared.len() <= 1 {
            return self.shared.pop();
        }
        let mut own = self.own.unwrap_or_else(|| vec![0u64; buckets]);
        for bits in &self.shared {
            own.iter_mut().zip(bits.iter()).for_each(|(all, bits)| *all |= bits);
        }
        Some(Arc::new(own))
    }
}

impl TextWeight {
    /// Adds a term's documents to the level: from the kept bitsets if the term is dense here.
    fn read_term(&self, reader: &SegmentReader, term: &Term, level: &mut Level) -> tantivy::Result<()> {
        let inverted = reader.inverted_index(term.field())?;
        let Some(info) = inverted.get_term_info(term)? else {
            return Ok(());
        };
        let buckets = (reader.max_doc() as usize).div_ceil(64);
        let read = |bits: &mut Vec<u64>| -> tantivy::Result<()> {
            let mut postings = inverted.read_block_postings_from_terminfo(&info, IndexRecordOption::Basic)?;
            while !postings.docs().is_empty() {
                postings.docs().iter().for_each(|doc| insert(bits, *doc));
                postings.advance();
            }
            Ok(())
        };
        if info.doc_freq.saturating_mul(DENSE_SHARE) < reader.max_doc() {
            return read(level.own(buckets));
        }
        let key = (reader.segment_id(), vec![term.clone()]);
        let bits = self.dense.0.try_get_with(key, || -> tantivy::Result<Bits> {
            let mut bits = vec![0u64; buckets];
            read(&mut bits)?;
            Ok(Arc::new(bits))
        });
        level.shared.push(bits.map_err(|e| TantivyError::InternalError(e.to_string()))?);
        Ok(())
    }

    /// One word's matches in the segment, or `None` if it has none.
    fn word(&self, reader: &SegmentReader, levels: &Levels) -> tantivy::Result<Option<WordBits>> {
        let buckets = (reader.max_doc() as usize).div_ceil(64);
        // Only levels with matches take memory (a title word is seldom a director's name).
        let mut found: Vec<(Score, Bits)> = Vec::with_capacity(levels.len());
        for (score, ways) in levels {
            // A level of several terms is kept whole when it is dense.
            let terms: Option<Vec<Term>> = ways
                .iter()
                .map(|way| match way {
                    WayWeight::Term(term) => Some(term.clone()),
                    WayWeight::Typo(..) => None,
                })
                .collect();
            let key = terms.filter(|terms| terms.len() > 1).map(|terms| (reader.segment_id(), terms));
            if let Some(bits) = key.as_ref().and_then(|key| self.dense.0.get(key)) {
                found.push((*score, bits));
                continue;
            }
            let mut level = Level::default();
            for way in ways {
                match way {
                    WayWeight::Term(term) => self.read_term(reader, term, &mut level)?,
                    WayWeight::Typo(term, distance, dfa) => {
                        let dfa = || dfa.get_or_init(|| Dfa::new(term, *distance));
                        for neighbour in self.typos.of(reader, term, dfa)?.iter() {
                            self.read_term(reader, neighbour, &mut level)?;
                        }
                    }
                }
            }
            let Some(bits) = level.union(buckets) else {
                continue;
            };
            if let Some(key) = key {
                let count: u32 = bits.iter().map(|word| word.count_ones()).sum();
                if count.saturating_mul(KEPT_UNION_SHARE) >= reader.max_doc() {
                    self.dense.0.insert(key, bits.clone());
                }
            }
            found.push((*score, bits));
        }
        let all = Level { shared: found.iter().map(|(_, bits)| bits.clone()).collect(), own: None };
        let Some(matches) = all.union(buckets) else {
            return Ok(None);
        };
        // A match in no level above the last is in the last: its bits are never looked at.
        let last = found.pop().map_or(0.0, |(score, _)| score);
        Ok(Some(WordBits { matches, levels: found, last }))
    }
}

impl TextWeight {
    /// How many words the query has.
    pub(crate) fn words(&self) -> usize {
        self.words.len()
    }

    /// The segment's matches, or `None` if it has none.
    pub(crate) fn matches(&self, reader: &SegmentReader) -> tantivy::Result<Option<Matches>> {
        let (mut required, mut optional) = (Vec::new(), Vec::new());
        for (levels, must) in &self.words {
            match (self.word(reader, levels)?, must) {
                (Some(word), true) => required.push(word),
                (Some(word), false) => optional.push(word),
                (None, true) => return Ok(None),
                (None, false) => {}
            }
        }
        let mut sets = required.iter().map(|word| &word.matches);
        let Some(first) = sets.next() else {
            return Ok(None);
        };
        let mut candidates = first.clone();
        for bits in sets {
            Arc::make_mut(&mut candidates).iter_mut().zip(bits.iter()).for_each(|(all, bits)| *all &= bits);
        }
        Ok(Some(Matches { candidates, required, optional }))
    }
}

impl Weight for TextWeight {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        match self.matches(reader)? {
            Some(matches) => Ok(Box::new(TextScorer::new(matches, boost))),
            None => Ok(Box::new(EmptyScorer)),
        }
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        let mut scorer = self.scorer(reader, 1.0)?;
        if scorer.seek(doc) != doc {
            return Err(TantivyError::InvalidArgument(format!("document {doc} does not match the words")));
        }
        Ok(Explanation::new("sum of the best way each word matches", scorer.score()))
    }
}

fn insert(bits: &mut [u64], doc: DocId) {
    bits[doc as usize / 64] |= 1 << (doc % 64);
}

pub(crate) fn has(bits: &[u64], doc: DocId) -> bool {
    bits[doc as usize / 64] >> (doc % 64) & 1 == 1
}

/// One word's matches in a segment, and which level each took.
pub(crate) struct WordBits {
    pub(crate) matches: Bits,
    /// Every level but the last, best first.
    pub(crate) levels: Vec<(Score, Bits)>,
    pub(crate) last: Score,
}

impl WordBits {
    /// The score of a document the word matches.
    fn score(&self, doc: DocId) -> Score {
        self.levels.iter().find(|(_, bits)| has(bits, doc)).map_or(self.last, |(score, _)| *score)
    }
}

/// A segment's documents with every required word, and each word's levels to score them by.
pub(crate) struct Matches {
    pub(crate) candidates: Bits,
    pub(crate) required: Vec<WordBits>,
    pub(crate) optional: Vec<WordBits>,
}

impl Matches {
    /// Every document of a segment of `max_doc`, scored nothing.
    pub(crate) fn everything(max_doc: DocId) -> Self {
        let mut candidates = vec![u64::MAX; (max_doc as usize).div_ceil(64)];
        if !max_doc.is_multiple_of(64) {
            if let Some(last) = candidates.last_mut() {
                *last = (1 << (max_doc % 64)) - 1;
            }
        }
        Self { candidates: Arc::new(candidates), required: Vec::new(), optional: Vec::new() }
    }

    /// The score of a candidate: the sum of the best way each word it has matches.
    pub(crate) fn score(&self, doc: DocId) -> Score {
        let required: Score = self.required.iter().map(|word| word.score(doc)).sum();
        let optional: Score =
            self.optional.iter().filter(|word| has(&word.matches, doc)).map(|word| word.score(doc)).sum();
        required + optional
    }
}

/// Walks the documents with every required word, scoring each by all the words it has.
struct TextScorer {
    pub(crate) matches: Matches,
    pub(crate) boost: Score,
    pub(crate) len: u32,
    pub(crate) bucket: usize,
    /// The bits of `bucket` past the current document.
    pub(crate) ahead: u64,
    pub(crate) doc: DocId,
}

impl TextScorer {
    fn new(matches: Matches, boost: Score) -> Self {
        let len = matches.candidates.iter().map(|bits| bits.count_ones()).sum();
        let ahead = matches.candidates.first().copied().unwrap_or(0);
        let mut scorer = Self { matches, boost, len, bucket: 0, ahead, doc: 0 };
        scorer.advance();
        scorer
    }
}

impl DocSet for TextScorer {
    fn advance(&mut self) -> DocId {
        while self.ahead == 0 {
            self.bucket += 1;
            match self.matches.candidates.get(self.bucket) {
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
            let Some(&bits) = self.matches.candidates.get(bucket) else {
                self.bucket = self.matches.candidates.len();
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

impl Scorer for TextScorer {
    fn score(&mut self) -> Score {
        self.matches.score(self.doc) * self.boost
    }
}

/// The edits a word of this length may carry and still match: 1 from 5 characters, 2 from 9,
/// none past `MAX_TYPO_WORD_CHARS`.
pub(crate) fn typo_budget(word: &str) -> u8 {
    match word.chars().count() {
        0..=4 => 0,
        5..=8 => 1,
        9..=MAX_TYPO_WORD_CHARS => 2,
        _ => 0,
    }
}

/// Levenshtein distance with adjacent transpositions counted as one edit, for highlighting.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (rows[i - 1][j] + 1).min(rows[i][j - 1] + 1).min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = best;
        }
    }
    rows[a.len()][b.len()]
}

/// One word of a query, folded like the index folds text.
#[derive(Debug, Clone)]
pub(crate) struct Word {
    pub(crate) text: String,
    /// The last word of a query still being typed also matches as a prefix.
    pub(crate) prefix: bool,
    pub(crate) common: bool,
}

impl Word {
    pub(crate) fn matches(&self, token: &str) -> bool {
        token == self.text
            || (self.prefix && token.starts_with(&self.text))
            || (typo_budget(&self.text) > 0
                && edit_distance(token, &self.text) <= usize::from(typo_budget(&self.text)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A word matching `docs`, each in the level of its score (a document may be in several).
    fn word(docs: &[(DocId, Score)], max_doc: u32) -> WordBits {
        let buckets = (max_doc as usize).div_ceil(64);
        let mut scores: Vec<Score> = docs.iter().map(|(_, s)| *s).collect();
        scores.sort_by(|a, b| b.total_cmp(a));
        scores.dedup();
        let mut matches = vec![0u64; buckets];
        let mut levels: Vec<(Score, Vec<u64>)> = scores.iter().map(|s| (*s, vec![0u64; buckets])).collect();
        for &(doc, score) in docs {
            insert(&mut matches, doc);
            let level = levels.iter_mut().find(|(s, _)| *s == score).expect("a level");
            insert(&mut level.1, doc);
        }
        let last = levels.pop().map_or(0.0, |(s, _)| s);
        let levels = levels.into_iter().map(|(s, bits)| (s, Arc::new(bits))).collect();
        WordBits { matches: Arc::new(matches), levels, last }
    }

    fn scorer(required: Vec<WordBits>, optional: Vec<WordBits>) -> TextScorer {
        let mut candidates = (*required[0].matches).clone();
        for word in &required[1..] {
            candidates.iter_mut().zip(word.matches.iter()).for_each(|(all, bits)| *all &= bits);
        }
        TextScorer::new(Matches { candidates: Arc::new(candidates), required, optional }, 1.0)
    }

    fn walk(mut scorer: TextScorer) -> Vec<(DocId, Score)> {
        let mut walked = Vec::new();
        while scorer.doc() != TERMINATED {
            walked.push((scorer.doc(), scorer.score()));
            scorer.advance();
        }
        walked
    }

    #[test]
    fn a_word_walks_its_matches_in_order_with_the_best_score_of_each() {
        let one = word(&[(3, 10.0), (3, 30.0), (64, 20.0), (200, 10.0), (199, 30.0)], 201);
        let scorer = scorer(vec![one], vec![]);
        assert_eq!(scorer.size_hint(), 4);
        assert_eq!(walk(scorer), vec![(3, 30.0), (64, 20.0), (199, 30.0), (200, 10.0)]);
    }

    #[test]
    fn documents_need_every_required_word_and_score_the_optional_ones_they_have() {
        let river = word(&[(1, 33.0), (5, 13.0), (70, 33.0), (130, 33.0)], 192);
        let storm = word(&[(5, 33.0), (70, 23.0), (130, 32.0), (131, 33.0)], 192);
        let the = word(&[(0, 33.0), (5, 32.0), (130, 33.0)], 192);
        let scorer = scorer(vec![river, storm], vec![the]);
        assert_eq!(walk(scorer), vec![(5, 13.0 + 33.0 + 32.0), (70, 33.0 + 23.0), (130, 33.0 + 32.0 + 33.0)]);
    }

    #[test]
    fn seeking_lands_on_the_first_match_at_or_after_the_target() {
        let mut scorer = scorer(vec![word(&[(5, 1.0), (70, 1.0), (130, 1.0), (191, 1.0)], 192)], vec![]);
        assert_eq!(scorer.seek(5), 5);
        assert_eq!(scorer.seek(6), 70);
        assert_eq!(scorer.seek(70), 70);
        assert_eq!(scorer.seek(71), 130);
        assert_eq!(scorer.seek(191), 191);
        assert_eq!(scorer.seek(192), TERMINATED);
        assert_eq!(self::scorer(vec![word(&[], 10)], vec![]).doc(), TERMINATED);
        assert_eq!(self::scorer(vec![word(&[(0, 1.0)], 1)], vec![]).doc(), 0);
    }

    #[test]
    fn typo_budgets_follow_word_length() {
        assert_eq!([typo_budget("star"), typo_budget("alien"), typo_budget("godfather")], [0, 1, 2]);
    }

    #[test]
    fn a_transposition_is_one_edit() {
        assert_eq!(edit_distance("frankenstien", "frankenstein"), 1);
        assert_eq!(edit_distance("godfater", "godfather"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}

#[cfg(test)]
mod typo_tests {
    use super::*;
    use tantivy::schema::{Schema, TEXT};
    use tantivy::{doc, Index, IndexWriter};

    /// A word's typo neighbours are the terms of its field within its edits (a transposition
    /// is one), without the word itself, and the same when asked again (kept).
    #[test]
    fn a_words_typo_neighbours_are_within_its_edits_and_leave_it_out() {
        let mut schema = Schema::builder();
        let title = schema.add_text_field("title", TEXT);
        let other = schema.add_text_field("other", TEXT);
        let index = Index::create_in_ram(schema.build());
        let mut writer: IndexWriter = index.writer(15_000_000).unwrap();
        for text in ["night", "light", "nihgt", "nights", "nit", "knights", "nigh"] {
            writer.add_document(doc!(title => text, other => "might")).unwrap();
        }
        writer.commit().unwrap();
        let searcher = index.reader().unwrap().searcher();
        let segment = &searcher.segment_readers()[0];
        let typos = Typos::new(vec![title]);
        let term = Term::from_field_text(title, "night");
        let dfa = Dfa::new(&term, 1);
        let texts = |found: &Neighbours| {
            let mut texts: Vec<String> =
                found.iter().map(|t| t.value().as_str().unwrap_or_default().to_owned()).collect();
            texts.sort();
            texts
        };
        let found = typos.of(segment, &term, || &dfa).unwrap();
        assert_eq!(texts(&found), ["light", "nigh", "nights", "nihgt"]);
        assert!(found.iter().all(|t| t.field() == title));
        // Kept: the second ask does not run the automaton.
        let again = typos.of(segment, &term, || unreachable!("kept")).unwrap();
        assert_eq!(texts(&again), texts(&found));
    }

    /// Once the vocabulary has read every segment, a segment's neighbours come from it: they
    /// include a neighbour only another segment has (a miss in this one's dictionary), and a
    /// term a later segment brings is found after the next refresh.
    #[test]
    fn typo_neighbours_come_from_the_vocabulary_of_every_segment_once_it_is_read() {
        let mut schema = Schema::builder();
        let title = schema.add_text_field("title", TEXT);
        let index = Index::create_in_ram(schema.build());
        let mut writer: IndexWriter = index.writer(15_000_000).unwrap();
        writer.set_merge_policy(Box::new(tantivy::indexer::NoMergePolicy));
        let commit = |writer: &mut IndexWriter, texts: &[&str]| {
            texts.iter().for_each(|text| {
                writer.add_document(doc!(title => *text)).unwrap();
            });
            writer.commit().unwrap();
        };
        commit(&mut writer, &["night", "light"]);
        commit(&mut writer, &["nihgt"]);
        let reader = index.reader_builder().reload_policy(tantivy::ReloadPolicy::Manual).try_into().unwrap();
        let searcher = reader.searcher();
        let first = searcher.segment_readers().iter().find(|s| s.max_doc() == 2).unwrap();
        let term = Term::from_field_text(title, "night");
        let dfa = Dfa::new(&term, 1);
        let typos = Typos::new(vec![title]);
        let texts = |found: Neighbours| {
            let mut texts: Vec<String> =
                found.iter().map(|t| t.value().as_str().unwrap_or_default().to_owned()).collect();
            texts.sort();
            texts
        };
        // Not read yet: the segment's own dictionary.
        assert_eq!(texts(typos.of(first, &term, || &dfa).unwrap()), ["light"]);
        typos.refresh(&searcher);
        assert_eq!(texts(typos.of(first, &term, || &dfa).unwrap()), ["light", "nihgt"]);
        commit(&mut writer, &["fight"]);
        reader.reload().unwrap();
        let searcher = reader.searcher();
        typos.refresh(&searcher);
        let first = searcher.segment_readers().iter().find(|s| s.max_doc() == 2).unwrap();
        assert_eq!(texts(typos.of(first, &term, || &dfa).unwrap()), ["fight", "light", "nihgt"]);
    }
}
