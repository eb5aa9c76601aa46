//! The tantivy search index: one document per live movie, searchable by name, director and
//! genres. The index is a projection like the read store: its checkpoint (the last applied log
//! position) is stored in the commit payload, so documents and checkpoint commit together.
//!
//! Ranking works like a dedicated search engine's bucket sort rather than raw BM25: each query
//! word scores by how it matched (exact > prefix > typo) and where (title > director > genre),
//! the word scores add up, and popularity breaks ties. Every word must match except common words
//! ("the", "of", ...), which only add to the score; the last word also matches as a prefix.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use movies_events::{genre_key, EventEnvelope, MovieEvent, MovieFields, Position, Version};
use serde::{Deserialize, Serialize};
use tantivy::collector::{Collector, Count, SegmentCollector, TopDocs};
use tantivy::directory::{Directory, MmapDirectory, WatchCallback, WatchHandle};
use tantivy::query::{
    AllQuery, BooleanQuery, ConstScoreQuery, FuzzyTermQuery, Occur, Query, RangeQuery, TermQuery,
};
use tantivy::schema::{
    Field, IndexRecordOption, NumericOptions, Schema, TextFieldIndexing, TextOptions, Value, FAST, INDEXED,
    STORED, STRING,
};
use tantivy::tokenizer::{AsciiFoldingFilter, LowerCaser, SimpleTokenizer, TextAnalyzer};
use tantivy::{
    DocAddress, DocId, Index, IndexReader, IndexWriter, ReloadPolicy, Score, Searcher, SegmentReader,
    TantivyDocument, Term,
};
use uuid::Uuid;

use crate::browse::{Browse, Browsed, Order as BrowseOrder, Summaries};
use crate::doc::Order;
use crate::store::{ProjectionError, Result};
use crate::word::{DenseTerms, TextQuery, Way, WordWays};

const TOKENIZER: &str = "movie_text";
const WRITER_HEAP_BYTES: usize = 50_000_000;
/// A prefix expands to at most this many of its most frequent completions per field.
const PREFIX_EXPANSIONS: usize = 50;
/// Words that only add to a score: requiring them would hide "Matrix" from "the matrix".
const COMMON_WORDS: &[&str] = &[
    "a", "an", "and", "the", "of", "in", "on", "at", "to", "for", "with", "by", "from", "or", "is", "it",
    "la", "le", "les", "el", "il", "de", "des", "der", "die", "das",
];

#[derive(Clone, Copy)]
struct Fields {
    id: Field,
    name: Field,
    director: Field,
    genres: Field,
    genre_key: Field,
    genre_facet: Field,
    genre_mask: Field,
    director_key: Field,
    popularity: Field,
    imdb_score: Field,
    name_sort: Field,
    name_sort_tail: Field,
    rank_pack: Field,
    rank_small: Field,
    score_pack: Field,
    score_small: Field,
    version: Field,
}

fn schema() -> (Schema, Fields) {
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
fn name_sort_key(name: &str) -> (u64, u64) {
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

/// The longest query text a search takes, in characters (a movie's name is at most as long).
pub const MAX_QUERY_CHARS: usize = movies_events::MAX_NAME_CHARS;
/// The most words a query may have: a long title pasted whole fits, a flood of words does not.
pub const MAX_QUERY_WORDS: usize = 16;
/// The longest word a query may have, in characters.
pub const MAX_WORD_CHARS: usize = 100;
/// Words longer than this match exactly or as a prefix, never with typos: a typo automaton costs
/// about 28 KB of memory per letter at two edits (0.7 MB at this length, but 280 MB at 10,000
/// letters, which is what one anonymous search could make the server build before the limits).
pub const MAX_TYPO_WORD_CHARS: usize = 24;

/// Why a query text is refused: each names the limit it passed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryTooLarge {
    #[error("the query must be at most {MAX_QUERY_CHARS} characters, not {0}")]
    Text(usize),
    #[error("the query must have at most {MAX_QUERY_WORDS} words, not {0}")]
    Words(usize),
    #[error("each query word must be at most {MAX_WORD_CHARS} characters; one has {0}")]
    Word(usize),
}

/// Checks a query text against the limits every search applies, splitting words the way the
/// index's tokenizer does (on anything not alphanumeric). Requests are refused with this before
/// any search work; the engine also bounds what it builds on its own (`SearchIndex::words`).
pub fn check_query_text(text: &str) -> std::result::Result<(), QueryTooLarge> {
    let chars = text.chars().count();
    if chars > MAX_QUERY_CHARS {
        return Err(QueryTooLarge::Text(chars));
    }
    let mut words = 0;
    for word in text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        words += 1;
        let letters = word.chars().count();
        if letters > MAX_WORD_CHARS {
            return Err(QueryTooLarge::Word(letters));
        }
    }
    if words > MAX_QUERY_WORDS {
        return Err(QueryTooLarge::Words(words));
    }
    Ok(())
}

/// The edits a word of this length may carry and still match: 1 from 5 characters, 2 from 9,
/// none past `MAX_TYPO_WORD_CHARS`.
fn typo_budget(word: &str) -> u8 {
    match word.chars().count() {
        0..=4 => 0,
        5..=8 => 1,
        9..=MAX_TYPO_WORD_CHARS => 2,
        _ => 0,
    }
}

/// Levenshtein distance with adjacent transpositions counted as one edit, for highlighting.
fn edit_distance(a: &str, b: &str) -> usize {
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
struct Word {
    text: String,
    /// The last word of a query still being typed also matches as a prefix.
    prefix: bool,
    common: bool,
}

impl Word {
    fn matches(&self, token: &str) -> bool {
        token == self.text
            || (self.prefix && token.starts_with(&self.text))
            || (typo_budget(&self.text) > 0
                && edit_distance(token, &self.text) <= usize::from(typo_budget(&self.text)))
    }
}

#[derive(Serialize, Deserialize)]
struct Checkpoint {
    position: Position,
    /// The `SCHEMA_VERSION` the index was built with.
    #[serde(default)]
    schema: u32,
    /// The genre registry: bit n of a document's genre mask stands for genres[n].
    #[serde(default)]
    genres: Vec<String>,
    /// Where an index fed from Kafka stands in each partition of the topic.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    partitions: BTreeMap<i32, PartitionMark>,
    /// Positions past `position` already applied (from partitions that ran ahead of another).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    ahead: BTreeSet<Position>,
}

/// Where an index fed from Kafka stands in one partition: the next offset to read and the
/// highest log position applied from it. The relay publishes in log order, so within a
/// partition a position at or below `position` is a republished duplicate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionMark {
    pub next_offset: i64,
    pub position: Position,
}

/// An event as it came off a Kafka partition.
#[derive(Debug, Clone)]
pub struct Delivered {
    pub partition: i32,
    pub offset: i64,
    pub envelope: EventEnvelope,
}

/// Bump whenever the schema or the way documents are built changes: an index built by another
/// version is rebuilt from the log on open.
const SCHEMA_VERSION: u32 = 9;

/// Filters search combines with its text. Text filters match case-insensitively.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SearchFilters {
    /// Movies with at least one of these genres.
    pub genre_any: Vec<String>,
    /// Movies with every one of these genres.
    pub genre_all: Vec<String>,
    pub director: Option<String>,
    pub min_score: Option<f64>,
    pub max_score: Option<f64>,
    pub min_popularity: Option<f64>,
    pub max_popularity: Option<f64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SearchSort {
    /// Text relevance, popularity breaking ties (an empty text browses by popularity).
    #[default]
    Relevance,
    Popularity,
    ImdbScore,
    Name,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SearchQuery {
    pub text: String,
    pub filters: SearchFilters,
    pub sort: SearchSort,
    /// `None` orders naturally: best or highest first, names from A.
    pub order: Option<Order>,
    pub limit: usize,
    /// Skip this many matches (shallow pages of the compatibility API).
    pub offset: usize,
    /// Start after this cursor (deep paging at a constant cost per page).
    pub after: Option<SearchCursor>,
    /// Count genres over every match.
    pub facets: bool,
}

/// The matched parts of a hit's name and director, as HTML with `<mark>` around each match.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Highlight {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub director: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    pub id: Uuid,
    pub name: String,
    pub score: f32,
    pub highlight: Highlight,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SearchPage {
    pub hits: Vec<SearchHit>,
    /// Where the next page starts, if there is one.
    pub next: Option<SearchCursor>,
    /// How many movies match in all.
    pub total: usize,
    /// Genre counts over every match, most common first (when asked for).
    pub facets: Vec<(String, u64)>,
}

/// A movie as the index holds it: enough to re-index it when an update changes some fields.
#[derive(Debug, Clone)]
struct Indexed {
    fields: MovieFields,
    version: Version,
}

pub struct TantivySearchIndex {
    index: Index,
    fields: Fields,
    reader: IndexReader,
    /// `None` for a read-only view of an index another process writes.
    writer: Option<Mutex<IndexWriter>>,
    /// Every position up to this one is applied (log positions have no holes): what readers
    /// wait for with `min_position`, and what search answers are cached under.
    checkpoint: Arc<AtomicI64>,
    /// Positions past the checkpoint already applied: a Kafka-fed index reads its partitions
    /// side by side, so one may run ahead of another.
    ahead: Mutex<BTreeSet<Position>>,
    /// The genre registry of the last commit (see `OVERFLOW_BIT`).
    genres: Arc<Mutex<Vec<String>>>,
    partitions: Mutex<BTreeMap<i32, PartitionMark>>,
    /// A read-only view follows the writer's commits through this watch.
    _watch: Option<WatchHandle>,
    /// Per-segment summaries that answer browsing by genre (see `browse`).
    summaries: Summaries,
    /// Per-segment genre masks and scores for filters and facets (see `SegmentTables`).
    segment_tables: Arc<SegmentTables>,
    /// The bitsets of terms in many documents, kept across searches (see `word`).
    dense: DenseTerms,
}

impl TantivySearchIndex {
    /// Opens (or creates) the index in `dir`. This process becomes its only writer.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| tantivy::TantivyError::IoError(e.into()))?;
        let (schema, fields) = schema();
        let directory = MmapDirectory::open(dir).map_err(tantivy::TantivyError::from)?;
        let current = Index::open_or_create(directory, schema.clone()).ok().filter(|index| {
            let built_with = index
                .load_metas()
                .ok()
                .and_then(|m| m.payload)
                .and_then(|p| serde_json::from_str::<Checkpoint>(&p).ok());
            built_with.is_none_or(|c| c.schema == SCHEMA_VERSION)
        });
        let index = match current {
            Some(index) => index,
            None => {
                tracing::warn!(dir = %dir.display(), "the search index was built by another version; rebuilding it from the log");
                std::fs::remove_dir_all(dir).map_err(|e| tantivy::TantivyError::IoError(e.into()))?;
                std::fs::create_dir_all(dir).map_err(|e| tantivy::TantivyError::IoError(e.into()))?;
                Index::create_in_dir(dir, schema)?
            }
        };
        Self::with_index(index, fields, true)
    }

    /// Opens an existing index to read it while another process writes it; it reloads as that
    /// process commits, with the genre registry and checkpoint of each commit.
    pub fn open_read_only(dir: &Path) -> Result<Self> {
        let (_, fields) = schema();
        let mut index = Self::with_index(Index::open_in_dir(dir)?, fields, false)?;
        let (metas, reader) = (index.index.clone(), index.reader.clone());
        let (genres, checkpoint) = (index.genres.clone(), index.checkpoint.clone());
        let tables = index.segment_tables.clone();
        let refresh = move || {
            // The registry first: a search then sees either old documents with a newer registry
            // (a superset) or both new. The checkpoint last, once searches see what it names:
            // a reader that waited for a position, or caches an answer under the checkpoint,
            // must never get documents older than it. A failed reload is retried at the next
            // commit.
            let stored = metas
                .load_metas()
                .ok()
                .and_then(|m| m.payload)
                .and_then(|p| serde_json::from_str::<Checkpoint>(&p).ok());
            if let Some(stored) = &stored {
                *genres.lock().unwrap_or_else(|p| p.into_inner()) = stored.genres.clone();
            }
            match reader.reload() {
                Ok(()) => {
                    tables.refresh(&reader.searcher());
                    if let Some(stored) = stored {
                        checkpoint.fetch_max(stored.position, Ordering::SeqCst);
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "reloading the search index failed; retrying at the next commit")
                }
            }
        };
        index._watch = Some(index.index.directory().watch(WatchCallback::new(refresh))?);
        Ok(index)
    }

    /// An index held in memory, for tests.
    pub fn in_memory() -> Result<Self> {
        let (schema, fields) = schema();
        Self::with_index(Index::create_in_ram(schema), fields, true)
    }

    fn with_index(mut index: Index, fields: Fields, writable: bool) -> Result<Self> {
        // A search visits the index's segments in parallel, one thread per core: a broad query
        // on a large index answers in about half the time on two cores.
        index.set_default_multithread_executor()?;
        let analyzer = TextAnalyzer::builder(SimpleTokenizer::default())
            .filter(LowerCaser)
            .filter(AsciiFoldingFilter)
            .build();
        index.tokenizers().register(TOKENIZER, analyzer);
        // Read-only views reload from their own watch (see `open_read_only`).
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;
        let writer = if writable { Some(Mutex::new(index.writer(WRITER_HEAP_BYTES)?)) } else { None };
        let stored = index.load_metas()?.payload.and_then(|p| serde_json::from_str::<Checkpoint>(&p).ok());
        let (checkpoint, genres, partitions, ahead) = stored
            .map_or((0, Vec::new(), BTreeMap::new(), BTreeSet::new()), |c| {
                (c.position, c.genres, c.partitions, c.ahead)
            });
        // The tables of the segments already there, built before searches need them (100 ms at
        // 5M movies; searches that come first wait for that build).
        let segment_tables = Arc::<SegmentTables>::default();
        let (tables, searcher) = (segment_tables.clone(), reader.searcher());
        std::thread::spawn(move || tables.refresh(&searcher));
        Ok(Self {
            index,
            fields,
            reader,
            writer,
            checkpoint: Arc::new(AtomicI64::new(checkpoint)),
            ahead: Mutex::new(ahead),
            genres: Arc::new(Mutex::new(genres)),
            partitions: Mutex::new(partitions),
            _watch: None,
            summaries: Summaries::default(),
            segment_tables,
            dense: DenseTerms::default(),
        })
    }

    /// Where a Kafka-fed index stands in each partition; empty for one fed from the log.
    pub fn partition_marks(&self) -> BTreeMap<i32, PartitionMark> {
        self.partitions.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The log position up to which every event's effect is committed in the index.
    pub fn checkpoint(&self) -> Position {
        self.checkpoint.load(Ordering::SeqCst)
    }

    /// The number of documents visible to searches.
    pub fn len(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn id_term(&self, id: Uuid) -> Term {
        Term::from_field_bytes(self.fields.id, id.as_bytes())
    }

    fn stored(&self, id: Uuid) -> Result<Option<Indexed>> {
        let searcher = self.reader.searcher();
        let query = TermQuery::new(self.id_term(id), IndexRecordOption::Basic);
        let Some((_, address)) = searcher.search(&query, &TopDocs::with_limit(1))?.into_iter().next() else {
            return Ok(None);
        };
        Ok(self.indexed(&searcher.doc(address)?))
    }

    fn stored_id(&self, doc: &TantivyDocument) -> Option<Uuid> {
        doc.get_first(self.fields.id).and_then(|v| v.as_bytes()).and_then(|b| Uuid::from_slice(b).ok())
    }

    fn indexed(&self, doc: &TantivyDocument) -> Option<Indexed> {
        let text = |field| doc.get_first(field).and_then(|v| v.as_str()).map(str::to_owned);
        let number = |field| doc.get_first(field).and_then(|v| v.as_f64());
        Some(Indexed {
            fields: MovieFields {
                name: text(self.fields.name)?,
                director: text(self.fields.director)?,
                popularity: number(self.fields.popularity)?,
                imdb_score: number(self.fields.imdb_score)?,
                genres: doc
                    .get_all(self.fields.genres)
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect(),
            },
            version: doc.get_first(self.fields.version).and_then(|v| v.as_i64())?,
        })
    }

    /// The document for a movie; registers genres it is the first to carry.
    fn document(&self, id: Uuid, movie: &Indexed, registry: &mut Vec<String>) -> TantivyDocument {
        let f = &self.fields;
        let mut mask = 0u64;
        for genre in &movie.fields.genres {
            let bit = match registry.iter().position(|g| genre_key(g) == genre_key(genre)) {
                Some(bit) => bit,
                None => {
                    registry.push(genre.clone());
                    registry.len() - 1
                }
            };
            mask |= 1 << bit.min(OVERFLOW_BIT as usize);
        }
        let mut doc = TantivyDocument::default();
        doc.add_bytes(f.id, id.as_bytes());
        doc.add_text(f.name, &movie.fields.name);
        doc.add_text(f.director, &movie.fields.director);
        doc.add_text(f.director_key, movie.fields.director.to_lowercase());
        for genre in &movie.fields.genres {
            doc.add_text(f.genres, genre);
            doc.add_text(f.genre_key, genre_key(genre));
            doc.add_text(f.genre_facet, genre);
        }
        doc.add_u64(f.genre_mask, mask);
        doc.add_f64(f.popularity, movie.fields.popularity);
        doc.add_f64(f.imdb_score, movie.fields.imdb_score);
        let (head, tail) = name_sort_key(&movie.fields.name);
        doc.add_u64(f.name_sort, head);
        doc.add_u64(f.name_sort_tail, tail);
        let words = movie.fields.name.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).count();
        let (rank, score) = packs(id, movie.fields.popularity, movie.fields.imdb_score, words);
        doc.add_u64(f.rank_pack, rank);
        doc.add_u64(f.rank_small, rank >> ID_BITS);
        doc.add_u64(f.score_pack, score);
        doc.add_u64(f.score_small, score >> ID_BITS);
        doc.add_i64(f.version, movie.version);
        doc
    }

    /// Applies events past the checkpoint and commits them with the new checkpoint. Blocking:
    /// call it from a blocking thread.
    pub fn apply(&self, events: &[EventEnvelope]) -> Result<()> {
        let checkpoint = self.checkpoint();
        self.commit(events.iter().filter(|e| e.position > checkpoint), None, true)
    }

    /// Applies events delivered from Kafka partitions and commits them with each partition's new
    /// mark, so a restart resumes at the next offset. An event is skipped only if its position
    /// is already applied: at or below the checkpoint, among the positions applied ahead of it,
    /// or at or below `floor` (the index was built from the log up to there). Not by its
    /// partition's highest position: a producer retrying a batch can write a partition out of
    /// log order, and an earlier position arriving after a later one is not a duplicate.
    /// Blocking: call it from a blocking thread.
    pub fn apply_partitioned(&self, delivered: &[Delivered], floor: Position) -> Result<()> {
        let mut marks = self.partition_marks();
        let through = self.checkpoint().max(floor);
        let ahead = self.ahead.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut taken = std::collections::HashSet::new();
        let mut fresh = Vec::new();
        for d in delivered {
            let mark = marks.entry(d.partition).or_insert(PartitionMark { next_offset: 0, position: floor });
            mark.next_offset = mark.next_offset.max(d.offset + 1);
            mark.position = mark.position.max(d.envelope.position);
            let position = d.envelope.position;
            if position > through && !ahead.contains(&position) && taken.insert(position) {
                fresh.push(&d.envelope);
            }
        }
        self.commit(fresh.into_iter(), Some(marks), true)
    }

    /// Applies these events as they are (each stream's version still checked): how a gap found
    /// in a Kafka-fed batch is filled from the log. Blocking.
    pub fn apply_exact(&self, events: &[EventEnvelope]) -> Result<()> {
        self.commit(events.iter(), None, false)
    }

    /// Sets a partition's mark without events: where a Kafka-fed index starts reading.
    pub fn mark_partitions(&self, marks: BTreeMap<i32, PartitionMark>) -> Result<()> {
        self.commit(std::iter::empty(), Some(marks), true)
    }

    /// `first_delivery`: no event has been applied before (each is past its checkpoint or mark),
    /// so a creation has no document to replace.
    fn commit<'a>(
        &self,
        events: impl Iterator<Item = &'a EventEnvelope>,
        marks: Option<BTreeMap<i32, PartitionMark>>,
        first_delivery: bool,
    ) -> Result<()> {
        // A poisoned lock means a panic mid-batch; nothing was committed, so carrying on is safe.
        let writer = self.writer.as_ref().ok_or_else(|| {
            tantivy::TantivyError::InvalidArgument("this search index was opened read-only".into())
        })?;
        let mut writer = writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let checkpoint = self.checkpoint();
        let mut registry = self.genre_registry();
        let mut pending: HashMap<Uuid, Option<Indexed>> = HashMap::new();
        // Every position handed over, applied now or found applied before.
        let mut seen = Vec::new();
        // Operations queue in the writer until the commit: a batch that stops early (a gap, a
        // failed add) takes its queued ones back, or the next commit would apply them without
        // their checkpoint and a retried batch would add its creations a second time.
        let queue = |writer: &mut IndexWriter| -> Result<()> {
            for envelope in events {
                seen.push(envelope.position);
                let id = envelope.stream_id;
                let current = match (pending.get(&id), &envelope.event) {
                    (Some(movie), _) => movie.clone(),
                    // A creation starts a stream: nothing to look up (a search per document would
                    // dominate bulk indexing). Replays and duplicates are filtered out before this loop.
                    (None, MovieEvent::Created(_) | MovieEvent::Restored(_)) => None,
                    (None, _) => self.stored(id)?,
                };
                let have = current.as_ref().map_or(0, |m| m.version);
                if current.is_some() && envelope.stream_version <= have {
                    continue;
                }
                if current.is_some() && envelope.stream_version > have + 1 {
                    return Err(ProjectionError::Gap { stream_id: id, have, got: envelope.stream_version });
                }
                let next = match (&envelope.event, current) {
                    (MovieEvent::Created(fields) | MovieEvent::Restored(fields), _) => {
                        Some(Indexed { fields: fields.clone(), version: envelope.stream_version })
                    }
                    (MovieEvent::Updated(changes), Some(mut movie)) => {
                        changes.apply_to(&mut movie.fields);
                        movie.version = envelope.stream_version;
                        Some(movie)
                    }
                    (MovieEvent::Updated(_), None) | (MovieEvent::Deleted, _) => None,
                };
                // A delete is checked against every segment at each commit (a term look-up per
                // segment): a bulk load that issued one per creation spent more on those than on
                // indexing, and more the bigger the index grew.
                let created = matches!(envelope.event, MovieEvent::Created(_)) && !pending.contains_key(&id);
                if !(first_delivery && created) {
                    writer.delete_term(self.id_term(id));
                }
                if let Some(movie) = &next {
                    writer.add_document(self.document(id, movie, &mut registry))?;
                }
                pending.insert(id, next);
            }
            Ok(())
        };
        if let Err(error) = queue(&mut writer) {
            writer.rollback()?;
            return Err(error);
        }
        // Events at or below the checkpoint (a gap filled in from the log while another
        // partition ran ahead) change documents without moving it: they are committed too.
        let changed = !pending.is_empty();
        // The checkpoint moves over every position now applied without a hole below it.
        // Positions come mostly in order (a batch from the log is one run): those extend the
        // checkpoint directly, the set holds only what arrived past a hole.
        let before = self.ahead.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let (mut ahead, mut through) = (before.clone(), checkpoint);
        for position in seen {
            if position == through + 1 {
                through = position;
            } else if position > through {
                ahead.insert(position);
            }
        }
        ahead = ahead.split_off(&(through + 1));
        while ahead.remove(&(through + 1)) {
            through += 1;
        }
        let marks_moved = marks.as_ref().is_some_and(|m| *m != self.partition_marks());
        if through > checkpoint || ahead != before || marks_moved || changed {
            let partitions = marks.unwrap_or_else(|| self.partition_marks());
            let mut commit = writer.prepare_commit()?;
            // A struct of plain values always serializes.
            commit.set_payload(
                &serde_json::to_string(&Checkpoint {
                    position: through,
                    schema: SCHEMA_VERSION,
                    genres: registry.clone(),
                    partitions: partitions.clone(),
                    ahead: ahead.clone(),
                })
                .expect("checkpoint"),
            );
            commit.commit()?;
            *self.partitions.lock().unwrap_or_else(|p| p.into_inner()) = partitions;
            // The registry grows before the searcher that needs it: a search sees either the old
            // documents with the new registry (a superset) or both new.
            *self.genres.lock().unwrap_or_else(|p| p.into_inner()) = registry;
            self.reader.reload()?;
            self.segment_tables.refresh(&self.reader.searcher());
            *self.ahead.lock().unwrap_or_else(|p| p.into_inner()) = ahead;
            self.checkpoint.store(through, Ordering::SeqCst);
        }
        Ok(())
    }

    /// Folds text into tokens the way the index does, with each token's byte range.
    fn tokens(&self, text: &str) -> Result<Vec<(String, usize, usize)>> {
        let mut analyzer = self.index.tokenizer_for_field(self.fields.name)?;
        let mut stream = analyzer.token_stream(text);
        let mut tokens = Vec::new();
        while let Some(token) = stream.next() {
            tokens.push((token.text.clone(), token.offset_from, token.offset_to));
        }
        Ok(tokens)
    }

    /// The query's words. Syntax characters are not special: they separate words like spaces.
    /// Whatever the caller checked, the engine builds no more than `MAX_QUERY_WORDS` words of at
    /// most `MAX_WORD_CHARS` characters from the first `MAX_QUERY_CHARS` of the text.
    fn words(&self, text: &str) -> Result<Vec<Word>> {
        let text = match text.char_indices().nth(MAX_QUERY_CHARS) {
            Some((end, _)) => &text[..end],
            None => text,
        };
        let mut words: Vec<Word> = self
            .tokens(text)?
            .into_iter()
            .filter(|(word, ..)| word.chars().count() <= MAX_WORD_CHARS)
            .take(MAX_QUERY_WORDS)
            .map(|(text, ..)| Word { common: COMMON_WORDS.contains(&text.as_str()), text, prefix: false })
            .collect();
        let still_typing = !text.ends_with(char::is_whitespace);
        if let Some(last) = words.last_mut() {
            last.prefix = still_typing;
        }
        if words.iter().all(|w| w.common) {
            words.iter_mut().for_each(|w| w.common = false);
        }
        Ok(words)
    }

    /// The most frequent indexed completions of `prefix` in `field`, across segments.
    fn completions(&self, searcher: &Searcher, field: Field, prefix: &str) -> Result<Vec<Term>> {
        let mut counts: HashMap<Vec<u8>, u32> = HashMap::new();
        for segment in searcher.segment_readers() {
            let inverted = segment.inverted_index(field)?;
            let mut stream = inverted
                .terms()
                .range()
                .ge(prefix.as_bytes())
                .into_stream()
                .map_err(tantivy::TantivyError::from)?;
            let mut seen = 0;
            while stream.advance() && seen < 20 * PREFIX_EXPANSIONS {
                if !stream.key().starts_with(prefix.as_bytes()) {
                    break;
                }
                *counts.entry(stream.key().to_vec()).or_default() += stream.value().doc_freq;
                seen += 1;
            }
        }
        let mut ranked: Vec<_> = counts.into_iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Ok(ranked
            .into_iter()
            .take(PREFIX_EXPANSIONS)
            .filter_map(|(bytes, _)| String::from_utf8(bytes).ok())
            .map(|text| Term::from_field_text(field, &text))
            .collect())
    }

    /// How one word can match, each way scored by match quality first and field second:
    /// exact 30, prefix 20, typo 10; plus title 3, director 2, genre 1. The best way counts.
    fn word_ways(&self, searcher: &Searcher, word: &Word, fields: &[(Field, f32)]) -> Result<WordWays> {
        let mut ways: Vec<(Score, Way)> = Vec::new();
        for &(field, weight) in fields {
            let term = Term::from_field_text(field, &word.text);
            ways.push((30.0 + weight, Way::Term(term.clone())));
            if word.prefix {
                for completion in self.completions(searcher, field, &word.text)? {
                    ways.push((20.0 + weight, Way::Term(completion)));
                }
            }
            let budget = typo_budget(&word.text);
            // Genres are a small vocabulary of whole words: typos there cost more than they find.
            if budget > 0 && field != self.fields.genres {
                ways.push((10.0 + weight, Way::Query(Box::new(FuzzyTermQuery::new(term, budget, true)))));
            }
        }
        Ok(WordWays { ways, required: !word.common })
    }

    /// The filters as query clauses and as checks on each match's columns. With words to match,
    /// or a genre or director to lead, the words' (or genre's) postings are what the search
    /// walks: testing each match's genre mask and scores is far cheaper than intersecting with
    /// the docsets of a whole genre or score range (millions of documents at 5M movies). Alone,
    /// a score or popularity range is a clause: the column scan is then the fastest way.
    fn filters(
        &self,
        filters: &SearchFilters,
        has_words: bool,
        registry: &[String],
    ) -> (Clauses, PostFilter) {
        let f = &self.fields;
        let term = |field, text: &str| {
            Box::new(TermQuery::new(Term::from_field_text(field, text), IndexRecordOption::Basic))
                as Box<dyn Query>
        };
        let mut post = PostFilter::default();
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        if !filters.genre_any.is_empty() {
            match genre_mask(registry, &filters.genre_any) {
                Some(bits) if has_words => post.genres.any = bits,
                _ => {
                    let any = filters
                        .genre_any
                        .iter()
                        .map(|g| (Occur::Should, term(f.genre_key, &genre_key(g))))
                        .collect();
                    clauses.push((Occur::Must, Box::new(BooleanQuery::new(any))));
                }
            }
        }
        for genre in &filters.genre_all {
            match genre_bit(registry, genre) {
                Some(bit) if has_words => post.genres.all |= 1 << bit,
                _ => clauses.push((Occur::Must, term(f.genre_key, &genre_key(genre)))),
            }
        }
        if let Some(director) = &filters.director {
            clauses.push((Occur::Must, term(f.director_key, &director.trim().to_lowercase())));
        }
        let led = has_words || !clauses.is_empty();
        for (field, min, max, checked) in [
            (f.imdb_score, filters.min_score, filters.max_score, &mut post.score),
            (f.popularity, filters.min_popularity, filters.max_popularity, &mut post.popularity),
        ] {
            if min.is_none() && max.is_none() {
                continue;
            }
            if led {
                *checked = Some((min.unwrap_or(f64::NEG_INFINITY), max.unwrap_or(f64::INFINITY)));
            } else {
                let bound = |value: Option<f64>| match value {
                    Some(v) => Bound::Included(Term::from_field_f64(field, v)),
                    None => Bound::Unbounded,
                };
                clauses.push((Occur::Must, Box::new(RangeQuery::new(bound(min), bound(max)))));
            }
        }
        // Filters narrow; they never add to a score.
        let clauses = clauses
            .into_iter()
            .map(|(occur, q)| (occur, Box::new(ConstScoreQuery::new(q, 0.0)) as Box<dyn Query>))
            .collect();
        (clauses, post)
    }

    fn query(
        &self,
        searcher: &Searcher,
        words: &[Word],
        fields: &[(Field, f32)],
        filters: &SearchFilters,
        registry: &[String],
    ) -> Result<(Box<dyn Query>, PostFilter)> {
        let (mut clauses, post) = self.filters(filters, !words.is_empty(), registry);
        if !words.is_empty() {
            let words = words.iter().map(|word| self.word_ways(searcher, word, fields));
            let text = TextQuery::new(words.collect::<Result<_>>()?, self.dense.clone());
            clauses.push((Occur::Must, Box::new(text)));
        }
        if clauses.is_empty() {
            return Ok((Box::new(AllQuery), post));
        }
        Ok((Box::new(BooleanQuery::new(clauses)), post))
    }

    fn text_fields(&self) -> [(Field, f32); 3] {
        [(self.fields.name, 3.0), (self.fields.director, 2.0), (self.fields.genres, 1.0)]
    }

    /// `text` as HTML with every token that matches a query word inside `<mark>`.
    fn highlight(&self, text: &str, words: &[Word]) -> Result<Option<String>> {
        let mut out = String::with_capacity(text.len() + 16);
        let (mut cursor, mut marked) = (0, false);
        for (token, from, to) in self.tokens(text)? {
            if words.iter().any(|w| w.matches(&token)) {
                out.push_str(&escape_html(&text[cursor..from]));
                out.push_str("<mark>");
                out.push_str(&escape_html(&text[from..to]));
                out.push_str("</mark>");
                cursor = to;
                marked = true;
            }
        }
        out.push_str(&escape_html(&text[cursor..]));
        Ok(marked.then_some(out))
    }

    fn hit(
        &self,
        searcher: &Searcher,
        address: DocAddress,
        score: f32,
        words: &[Word],
    ) -> Result<Option<SearchHit>> {
        let doc: TantivyDocument = searcher.doc(address)?;
        let text = |field| doc.get_first(field).and_then(|v| v.as_str()).unwrap_or_default().to_owned();
        let Some(id) = self.stored_id(&doc) else {
            return Ok(None);
        };
        let (name, director) = (text(self.fields.name), text(self.fields.director));
        let highlight =
            Highlight { name: self.highlight(&name, words)?, director: self.highlight(&director, words)? };
        Ok(Some(SearchHit { id, name, score, highlight }))
    }

    /// Matches for `q`, ranked or sorted as it asks, with genre facets if asked.
    pub fn search(&self, q: &SearchQuery) -> Result<SearchPage> {
        let searcher = self.reader.searcher();
        let words = self.words(&q.text)?;
        // Fetched once: filters, the browse plan and facets all name genres by their bits.
        let registry = self.genre_registry();
        let (query, post) = self.query(&searcher, &words, &self.text_fields(), &q.filters, &registry)?;
        let sort =
            if q.sort == SearchSort::Relevance && words.is_empty() { SearchSort::Popularity } else { q.sort };
        let natural = if sort == SearchSort::Name { Order::Asc } else { Order::Desc };
        let ascending = q.order.unwrap_or(natural) == Order::Asc;
        // One more than asked tells whether another page follows.
        let keep = q.offset + q.limit.max(1) + 1;
        let collector = Best {
            tables: &self.segment_tables,
            sort,
            query_words: words.len(),
            ascending,
            after: q.after,
            keep,
            skip: q.offset,
        };
        let browsed = match self.browse_plan(q, sort, ascending, &words, &registry) {
            Some(browse) => self.summaries.browse(&searcher, &browse)?,
            None => None,
        };
        // Both paths leave out keys at or past the cursor (they were on earlier pages).
        let (mut ranked, total, facet_counts) = match browsed {
            Some(Browsed { ranked, total, bit_counts }) => {
                let facets = q.facets.then(|| {
                    bit_counts
                        .iter()
                        .enumerate()
                        .filter(|(_, n)| **n > 0)
                        .filter_map(|(bit, n)| Some((registry.get(bit)?.clone(), *n)))
                        .collect::<HashMap<String, u64>>()
                });
                (ranked, total, facets)
            }
            None => {
                let facets = q.facets.then_some(GenreFacets { registry, tables: &self.segment_tables });
                searcher.search(
                    &query,
                    &Filtered {
                        filter: post,
                        tables: &self.segment_tables,
                        inner: (collector, Count, facets),
                    },
                )?
            }
        };
        let more = ranked.len() > q.limit.max(1);
        ranked.truncate(q.limit.max(1));
        let next = if more { ranked.last().map(|(key, _)| SearchCursor(*key)) } else { None };
        let mut hits = ranked
            .into_iter()
            .filter_map(|(key, address)| {
                let score = if sort == SearchSort::Relevance {
                    f32::from_bits((key.0 as u32) ^ flip(ascending) as u32)
                } else {
                    0.0
                };
                self.hit(&searcher, address, score, &words).transpose()
            })
            .collect::<Result<Vec<_>>>()?;
        if sort == SearchSort::Name {
            // The sort key holds 16 bytes of the name; order the page by the whole name. (Names
            // that agree on 16 bytes may still straddle a page boundary out of order.)
            hits.sort_by_cached_key(|hit| hit.name.to_lowercase());
            if !ascending {
                hits.reverse();
            }
        }
        let mut facets: Vec<(String, u64)> = facet_counts.unwrap_or_default().into_iter().collect();
        facets.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Ok(SearchPage { hits, total, facets, next })
    }

    /// A browse the segment summaries can answer: no words, genre filters only, sorted by
    /// popularity or score, from the first page or a cursor.
    fn browse_plan(
        &self,
        q: &SearchQuery,
        sort: SearchSort,
        ascending: bool,
        words: &[Word],
        registry: &[String],
    ) -> Option<Browse> {
        let f = &q.filters;
        let ranges = [f.min_score, f.max_score, f.min_popularity, f.max_popularity];
        if !words.is_empty() || q.offset != 0 || f.director.is_some() || ranges.iter().any(Option::is_some) {
            return None;
        }
        let order = match (sort, ascending) {
            (SearchSort::Popularity, false) => BrowseOrder::RankDesc,
            (SearchSort::Popularity, true) => BrowseOrder::RankAsc,
            (SearchSort::ImdbScore, false) => BrowseOrder::ScoreDesc,
            (SearchSort::ImdbScore, true) => BrowseOrder::ScoreAsc,
            _ => return None,
        };
        Some(Browse {
            order,
            genres: GenreBits {
                any: genre_mask(registry, &f.genre_any)?,
                all: genre_mask(registry, &f.genre_all)?,
            },
            tail: flip(ascending),
            after: q.after.map(|c| c.0),
            wanted: q.limit.max(1) + 1,
            facets: q.facets,
        })
    }

    /// Every document in the index as (movie id, fields, version): what `movies verify` compares
    /// with the log. Reads the whole index: an operator's tool, not a request path.
    pub fn documents(&self) -> Result<Vec<(Uuid, MovieFields, Version)>> {
        let searcher = self.reader.searcher();
        let addresses = searcher.search(&AllQuery, &tantivy::collector::DocSetCollector)?;
        let mut documents = Vec::with_capacity(addresses.len());
        for address in addresses {
            let doc: TantivyDocument = searcher.doc(address)?;
            let id = self.stored_id(&doc);
            if let (Some(id), Some(movie)) = (id, self.indexed(&doc)) {
                documents.push((id, movie.fields, movie.version));
            }
        }
        Ok(documents)
    }

    fn genre_registry(&self) -> Vec<String> {
        self.genres.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The cheapest search there is: one exact term in titles, plain BM25, the top ten ids. The
    /// search benchmark's baseline.
    pub fn baseline_term_search(&self, word: &str) -> Result<usize> {
        let searcher = self.reader.searcher();
        let query =
            TermQuery::new(Term::from_field_text(self.fields.name, word), IndexRecordOption::WithFreqs);
        Ok(searcher.search(&query, &TopDocs::with_limit(10))?.len())
    }

    /// Up to `limit` title completions for a query being typed: every word in the title, the
    /// last as a prefix, most relevant then most popular first.
    pub fn suggest(&self, text: &str, limit: usize) -> Result<Vec<SearchHit>> {
        let searcher = self.reader.searcher();
        let mut words = self.words(text)?;
        if let Some(last) = words.last_mut() {
            last.prefix = true;
        }
        if words.is_empty() {
            return Ok(Vec::new());
        }
        let (query, _) =
            self.query(&searcher, &words, &[(self.fields.name, 3.0)], &SearchFilters::default(), &[])?;
        let collector = Best {
            tables: &self.segment_tables,
            sort: SearchSort::Relevance,
            query_words: words.len(),
            ascending: false,
            after: None,
            keep: limit.max(1) * 2,
            skip: 0,
        };
        let mut seen = std::collections::HashSet::new();
        let mut hits = Vec::new();
        for (key, address) in searcher.search(&query, &collector)? {
            let score = f32::from_bits(key.0 as u32);
            if let Some(hit) = self.hit(&searcher, address, score, &words)? {
                if seen.insert(hit.name.to_lowercase()) && hits.len() < limit {
                    hits.push(hit);
                }
            }
        }
        Ok(hits)
    }
}

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
    tables: Mutex<HashMap<tantivy::index::SegmentId, Arc<TableCell>>>,
    /// The most distinct masks a table numbers (a `u16` each).
    limit: usize,
}

impl Default for SegmentTables {
    fn default() -> Self {
        Self { tables: Mutex::default(), limit: usize::from(u16::MAX) + 1 }
    }
}

/// A segment's table once built; `None` inside: the segment has none (see `SegmentTables::of`).
type TableCell = OnceLock<Option<Arc<SegmentTable>>>;

pub(crate) struct SegmentTable {
    masks: Vec<u64>,
    of_doc: Vec<u16>,
    /// Each document's IMDB score in hundredths as the score pack holds it (rounded, within
    /// 0-10), with `INEXACT` set when that is not the stored value exactly (the score filter
    /// then reads the column).
    scores: Vec<u16>,
    /// Each document's `rank_small`: what ranking reads for every match, from an array rather
    /// than a bit-packed column behind a virtual call.
    ranks: Vec<u32>,
}

const INEXACT: u16 = 1 << 15;

impl SegmentTable {
    /// The document's score when the table holds it exactly.
    fn score(&self, doc: DocId) -> Option<f64> {
        let hundredths = self.scores[doc as usize];
        (hundredths & INEXACT == 0).then(|| f64::from(hundredths) / 100.0)
    }

    /// The document's `rank_small` (slot 0) or `score_small` (slot 1), as those columns hold it.
    fn small(&self, slot: usize, doc: DocId) -> u64 {
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
struct MaskHasher(u64);

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
    fn of(&self, segment: &SegmentReader) -> Option<Arc<SegmentTable>> {
        let cell = self
            .tables
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(segment.segment_id())
            .or_default()
            .clone();
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
    fn refresh(&self, searcher: &Searcher) {
        let live: Vec<_> = searcher.segment_readers().iter().map(|s| s.segment_id()).collect();
        self.tables.lock().unwrap_or_else(|p| p.into_inner()).retain(|id, _| live.contains(id));
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
struct GenreFacets<'a> {
    registry: Vec<String>,
    tables: &'a SegmentTables,
}

struct SegmentGenreFacets {
    table: Option<Arc<SegmentTable>>,
    /// Matches per mask of the table.
    per_mask: Vec<u64>,
    masks: Option<std::sync::Arc<dyn tantivy::columnar::ColumnValues<u64>>>,
    overflow: Option<tantivy::columnar::StrColumn>,
    counts: [u64; 64],
    named: HashMap<String, u64>,
    pending: Vec<DocId>,
    values: Vec<u64>,
    registry: Vec<String>,
}

const FACET_BLOCK: usize = 64;

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

type Clauses = Vec<(Occur, Box<dyn Query>)>;

/// A genre's bit in the documents' genre masks, if it has one of its own (not past the 63rd).
fn genre_bit(registry: &[String], genre: &str) -> Option<usize> {
    registry.iter().position(|g| genre_key(g) == genre_key(genre)).filter(|b| *b < OVERFLOW_BIT as usize)
}

/// The bits of all of `genres` (a genre named twice is one bit), if each has its own.
fn genre_mask(registry: &[String], genres: &[String]) -> Option<u64> {
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

    fn is_empty(self) -> bool {
        self.any | self.all == 0
    }
}

/// Filters tested on each match's columns (see `TantivySearchIndex::filters`).
#[derive(Debug, Clone, Copy, Default)]
struct PostFilter {
    genres: GenreBits,
    /// Inclusive bounds.
    score: Option<(f64, f64)>,
    popularity: Option<(f64, f64)>,
}

type U64Column = std::sync::Arc<dyn tantivy::columnar::ColumnValues<u64>>;
type F64Column = std::sync::Arc<dyn tantivy::columnar::ColumnValues<f64>>;

/// How a segment's matches are checked against genre filters.
enum GenreCheck {
    Unfiltered,
    /// Whether each mask of the segment's table passes.
    ByTable(Vec<bool>),
    /// No table: each match's mask from the column.
    ByColumn(U64Column),
}

/// A collector that hands its inner collector only the matches that pass a `PostFilter`.
struct Filtered<'a, C> {
    filter: PostFilter,
    tables: &'a SegmentTables,
    inner: C,
}

struct FilteredSegment<S> {
    filter: PostFilter,
    /// With genre or score filters: the segment's table (scores are read from the column
    /// without one).
    table: Option<Arc<SegmentTable>>,
    genres: GenreCheck,
    scores: Option<F64Column>,
    popularity: Option<F64Column>,
    inner: S,
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

/// Where a hit sorts, as the collector compares it (highest first): three order-preserving
/// integers. Ascending orders invert every bit.
pub(crate) type SortKey = (u64, u64, u64);

const ID_BITS: u32 = 40;
const ID_MASK: u64 = (1 << ID_BITS) - 1;
const WORDS_SHIFT: u32 = ID_BITS;
const POPULARITY_SHIFT: u32 = ID_BITS + 6;
/// Above popularity's 14 bits in the score pack.
const SCORE_SHIFT: u32 = ID_BITS + 14;

/// The tie-breakers a hit needs, packed at index time so ranking reads one column per hit:
/// - rank: popularity in hundredths (14 bits), then 63 minus the title's word count (6 bits,
///   shorter titles first), then 40 bits of the movie id;
/// - score: the IMDB score in hundredths (10 bits), then popularity (14 bits), then the id bits.
///
/// The id bits make keys distinct in practice: two hits tie only if every field and 40 random
/// id bits agree.
fn packs(id: Uuid, popularity: f64, imdb_score: f64, title_words: usize) -> (u64, u64) {
    let id_bits = id.as_u64_pair().1 & ID_MASK;
    let popularity = (popularity.clamp(0.0, 100.0) * 100.0).round() as u64;
    let word_rank = 63 - title_words.min(63) as u64;
    let rank = popularity << POPULARITY_SHIFT | word_rank << WORDS_SHIFT | id_bits;
    let score = u64::from(score_hundredths(imdb_score)) << SCORE_SHIFT | popularity << ID_BITS | id_bits;
    (rank, score)
}

/// An IMDB score in hundredths as the score pack holds it: within 0-10, rounded (NaN is 0).
fn score_hundredths(score: f64) -> u16 {
    (score.clamp(0.0, 10.0) * 100.0).round() as u16
}

fn flip(ascending: bool) -> u64 {
    if ascending {
        u64::MAX
    } else {
        0
    }
}

/// The last key of a page: the next page starts strictly after it. Opaque to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchCursor(SortKey);

/// Why a client's search cursor is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SearchCursorError {
    #[error("the cursor is not one this API issued")]
    Malformed,
    #[error("the cursor was issued for another query, sort or filter: start again without it")]
    OtherQuery,
}

impl SearchCursor {
    /// The cursor as a client holds it, bound to the query that made it (its text, filters,
    /// sort and order; not its page size): a key means nothing in another order or result set.
    pub fn encode(&self, query: &SearchQuery) -> String {
        use base64::Engine;
        let (a, b, c) = self.0;
        let bound = query.fingerprint();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("k:{a:x}:{b:x}:{c:x}:{bound:x}"))
    }

    /// A client's cursor for `query`, refused if it is malformed or was made for another query.
    pub fn decode(raw: &str, query: &SearchQuery) -> std::result::Result<Self, SearchCursorError> {
        use base64::Engine;
        let parse = || {
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(raw).ok()?;
            let text = String::from_utf8(bytes).ok()?;
            let mut parts = text.strip_prefix("k:")?.split(':').map(|p| u64::from_str_radix(p, 16).ok());
            let parsed = ((parts.next()??, parts.next()??, parts.next()??), parts.next()??);
            parts.next().is_none().then_some(parsed)
        };
        let (key, bound) = parse().ok_or(SearchCursorError::Malformed)?;
        if bound != u64::from(query.fingerprint()) {
            return Err(SearchCursorError::OtherQuery);
        }
        Ok(SearchCursor(key))
    }
}

impl SearchQuery {
    /// What a cursor is bound to: everything that decides the result set and its order.
    fn fingerprint(&self) -> u32 {
        let described = format!("{:?}|{:?}|{:?}|{:?}", self.text, self.filters, self.sort, self.order);
        crc32fast::hash(described.as_bytes())
    }
}

/// A completed title's bonus: below one point, so it orders hits within a score, never across.
const COMPLETE_BONUS: f32 = 0.9;
/// Matches read per batch of column reads.
const RANK_BLOCK: usize = 64;

/// A hit's sort key from its columns. Relevance: the word score, plus (for queries of two words
/// or more) a completeness bonus when the title has exactly as many words as the query ("star w"
/// puts "Star Wars" before "Star Wars : Episode V"), then popularity, then shorter titles
/// ("Frankenstein" before "Bride of Frankenstein"). Scores are non-negative, so their IEEE bits
/// order like the numbers.
fn key_of(
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
struct Best<'a> {
    tables: &'a SegmentTables,
    sort: SearchSort,
    query_words: usize,
    ascending: bool,
    after: Option<SearchCursor>,
    keep: usize,
    skip: usize,
}

struct BestSegment {
    ordinal: tantivy::SegmentOrdinal,
    sort: SearchSort,
    query_words: usize,
    flip: u64,
    after: Option<SearchCursor>,
    keep: usize,
    /// rank, score, name head, name tail: the ones this sort reads.
    columns: [Option<U64Column>; 4],
    /// Except by name: the sort column without its id bits and the slot of the full column it
    /// stands for, read for every match instead of that column (whose id bits are read only for
    /// a match that may place or straddles the cursor).
    small: Option<(U64Column, usize)>,
    /// The segment's table, which holds the small columns' values as arrays.
    table: Option<Arc<SegmentTable>>,
    docs: Vec<DocId>,
    scores: Vec<Score>,
    values: [Vec<u64>; 4],
    /// The best so far, worst on top; equal keys keep the earlier document.
    held: std::collections::BinaryHeap<std::cmp::Reverse<(SortKey, std::cmp::Reverse<DocId>)>>,
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

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorting_by_score_or_popularity_is_by_that_value_whatever_the_other() {
        let index = TantivySearchIndex::in_memory().unwrap();
        // Every score against every popularity, extremes included, in scrambled order.
        let values = [0.0, 0.01, 5.0, 6.99, 7.0, 7.01, 9.99, 10.0];
        let popularities = [0.0, 0.01, 10.23, 10.24, 50.0, 99.0, 99.99, 100.0];
        let events: Vec<EventEnvelope> = (0..values.len() * popularities.len())
            .map(|n| {
                let fields = MovieFields {
                    name: format!("Sorted {n}"),
                    director: "Someone".into(),
                    popularity: popularities[(n * 5) % popularities.len()],
                    imdb_score: values[(n * 3 + n / popularities.len()) % values.len()],
                    genres: vec!["Drama".into()],
                };
                created(n as i64 + 1, fields)
            })
            .collect();
        index.apply(&events).unwrap();
        let field = |event: &EventEnvelope, by: SearchSort| match &event.event {
            MovieEvent::Created(f) if by == SearchSort::ImdbScore => f.imdb_score,
            MovieEvent::Created(f) => f.popularity,
            _ => unreachable!(),
        };
        for by in [SearchSort::ImdbScore, SearchSort::Popularity] {
            for text in ["", "sorted"] {
                let q = SearchQuery { text: text.into(), sort: by, limit: 7, ..Default::default() };
                let (ids, ..) = walk(&index, &q);
                let of: HashMap<Uuid, f64> = events.iter().map(|e| (e.stream_id, field(e, by))).collect();
                let sorted: Vec<f64> = ids.iter().map(|id| of[id]).collect();
                assert_eq!(sorted.len(), events.len());
                assert!(sorted.windows(2).all(|w| w[0] >= w[1]), "{by:?} {text:?}: {sorted:?}");
            }
        }
    }

    /// A new movie's creation at `position`, as the log would hand it over.
    fn created(position: i64, fields: MovieFields) -> EventEnvelope {
        movies_store::testing::recorded(position, Uuid::now_v7(), 1, MovieEvent::Created(fields))
    }

    fn golden() -> MovieFields {
        MovieFields {
            name: "Golden".into(),
            director: "Someone".into(),
            popularity: 1.0,
            imdb_score: 1.0,
            genres: vec!["Drama".into()],
        }
    }

    fn delivered(offset: i64, envelope: EventEnvelope) -> Delivered {
        Delivered { partition: 0, offset, envelope }
    }

    fn renamed(position: i64, id: Uuid, version: i64, name: &str) -> EventEnvelope {
        let changes = movies_events::MovieChanges { name: Some(name.into()), ..Default::default() };
        movies_store::testing::recorded(position, id, version, MovieEvent::Updated(changes))
    }

    /// A batch that stops at a gap must leave nothing of itself behind: healed and delivered
    /// again, each of its movies is in the index once.
    #[test]
    fn a_batch_refused_at_a_gap_leaves_no_document_behind_to_be_added_twice() {
        let index = TantivySearchIndex::in_memory().unwrap();
        let alien = created(1, MovieFields { name: "Alien".into(), ..golden() });
        index.apply_exact(std::slice::from_ref(&alien)).unwrap();
        let batch = [
            delivered(0, created(3, MovieFields { name: "Brazil".into(), ..golden() })),
            delivered(1, renamed(4, alien.stream_id, 3, "Aliens")),
        ];
        let gap = index.apply_partitioned(&batch, 0).expect_err("version 2 of Alien is missing");
        assert!(matches!(gap, ProjectionError::Gap { have: 1, got: 3, .. }), "{gap:?}");
        index.apply_exact(&[renamed(2, alien.stream_id, 2, "Alien 2")]).unwrap();
        index.apply_partitioned(&batch, 0).unwrap();
        let brazil = index.search(&SearchQuery { text: "brazil".into(), ..Default::default() }).unwrap();
        assert_eq!(brazil.total, 1, "Brazil is indexed once");
        let documents = index.documents().unwrap();
        assert_eq!(documents.len(), 2, "{documents:?}");
    }

    /// Healing fills in events older than the checkpoint (another partition ran ahead): what it
    /// applies must be committed, or the batch finds the same gap again, forever.
    #[test]
    fn a_gap_healed_below_the_checkpoint_lets_the_batch_through() {
        let index = TantivySearchIndex::in_memory().unwrap();
        let alien = created(1, MovieFields { name: "Alien".into(), ..golden() });
        let ahead = created(5, MovieFields { name: "Brazil".into(), ..golden() });
        index.apply_partitioned(&[delivered(0, alien.clone()), delivered(1, ahead)], 0).unwrap();
        let batch = [delivered(2, renamed(6, alien.stream_id, 3, "Aliens"))];
        assert!(matches!(
            index.apply_partitioned(&batch, 0),
            Err(ProjectionError::Gap { have: 1, got: 3, .. })
        ));
        index.apply_exact(&[renamed(2, alien.stream_id, 2, "Alien 2")]).unwrap();
        index.apply_partitioned(&batch, 0).expect("the gap is healed");
        let names: Vec<String> = index.documents().unwrap().into_iter().map(|(_, f, _)| f.name).collect();
        assert!(names.contains(&"Aliens".to_owned()), "{names:?}");
    }

    /// Partitions are read side by side, so a later position can be applied before an earlier
    /// one: the checkpoint (what `min_position` waits for) names a position only once every one
    /// below it is in, across restarts too.
    #[test]
    fn a_kafka_fed_index_names_a_position_only_once_every_one_below_it_is_applied() {
        let dir = tempfile::tempdir().unwrap();
        let on = |partition, offset, envelope| Delivered { partition, offset, envelope };
        let movie =
            |position: i64| created(position, MovieFields { name: format!("Movie {position}"), ..golden() });
        {
            let index = TantivySearchIndex::open(dir.path()).unwrap();
            index.apply_partitioned(&[on(1, 0, movie(2)), on(1, 1, movie(3))], 0).unwrap();
            assert_eq!(index.checkpoint(), 0, "position 1 is not applied yet");
            assert_eq!(index.len(), 2);
        }
        let index = TantivySearchIndex::open(dir.path()).unwrap();
        assert_eq!(index.checkpoint(), 0, "a restart remembers what ran ahead, not more");
        index.apply_partitioned(&[on(0, 0, movie(1))], 0).unwrap();
        assert_eq!(index.checkpoint(), 3);
        index.apply_partitioned(&[on(1, 2, movie(4))], 0).unwrap();
        assert_eq!(index.checkpoint(), 4);
    }

    /// A producer that retries can write a partition out of log order (position 2 acknowledged
    /// before a retried 1): the earlier position is applied when it comes, not taken for a
    /// duplicate. The fault campaign found an index stuck below such a position for good.
    #[test]
    fn an_earlier_position_arriving_after_a_later_one_in_a_partition_is_applied() {
        let index = TantivySearchIndex::in_memory().unwrap();
        let movie =
            |position: i64| created(position, MovieFields { name: format!("Movie {position}"), ..golden() });
        let on = |offset, envelope| Delivered { partition: 0, offset, envelope };
        index.apply_partitioned(&[on(0, movie(2))], 0).unwrap();
        index.apply_partitioned(&[on(1, movie(1)), on(2, movie(2))], 0).unwrap();
        assert_eq!(index.checkpoint(), 2);
        assert_eq!(index.len(), 2, "each movie once");
    }

    /// A replica's checkpoint is what a reader waits for and what search answers are cached
    /// under: it may only name a commit its searches already see.
    #[test]
    fn a_read_only_index_names_a_checkpoint_only_once_its_searches_see_it() {
        use std::sync::atomic::AtomicBool;
        let dir = tempfile::tempdir().unwrap();
        let writer = TantivySearchIndex::open(dir.path()).unwrap();
        let replica = TantivySearchIndex::open_read_only(dir.path()).unwrap();
        let done = AtomicBool::new(false);
        let (ahead, samples) = std::thread::scope(|scope| {
            let sampler = scope.spawn(|| {
                let (mut ahead, mut samples) = (0, 0u64);
                while !done.load(Ordering::SeqCst) {
                    let checkpoint = replica.checkpoint();
                    // One document per position: fewer documents than the checkpoint means the
                    // checkpoint names a commit searches do not see yet.
                    if (replica.len() as i64) < checkpoint {
                        ahead += 1;
                    }
                    samples += 1;
                }
                (ahead, samples)
            });
            for position in 1..=12 {
                let fields = MovieFields { name: format!("Golden {position}"), ..golden() };
                writer.apply(&[created(position, fields)]).unwrap();
                // The replica notices commits by watching the index's files, about twice a second.
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
                while replica.checkpoint() < position && std::time::Instant::now() < deadline {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                assert_eq!(replica.checkpoint(), position, "the replica follows the writer");
            }
            done.store(true, Ordering::SeqCst);
            sampler.join().unwrap()
        });
        assert_eq!(ahead, 0, "{ahead} of {samples} samples saw a checkpoint ahead of the searches");
    }

    #[test]
    fn a_creation_filled_in_again_from_the_log_replaces_its_document_rather_than_adding_one() {
        let index = TantivySearchIndex::in_memory().unwrap();
        let creation = created(1, golden());
        index.apply(std::slice::from_ref(&creation)).unwrap();
        // The gap-filling path may hand over events already applied.
        index.apply_exact(std::slice::from_ref(&creation)).unwrap();
        // Committed with the next new event.
        index.apply(&[created(2, MovieFields { name: "Other".into(), ..golden() })]).unwrap();
        let page = index.search(&SearchQuery { text: "golden".into(), ..Default::default() }).unwrap();
        assert_eq!(page.total, 1);
        assert_eq!(index.documents().unwrap().len(), 2);
    }

    #[test]
    fn facets_count_every_genre_even_past_the_sixty_three_with_their_own_bit() {
        let index = TantivySearchIndex::in_memory().unwrap();
        let events: Vec<EventEnvelope> = (0..70)
            .map(|n| {
                let genres = vec![format!("Genre {n}"), "Drama".into()];
                created(
                    n + 1,
                    MovieFields { name: format!("Movie {n}"), imdb_score: 1.0, genres, ..golden() },
                )
            })
            .collect();
        index.apply(&events[..35]).unwrap();
        index.apply(&events[35..]).unwrap();
        let page = index.search(&SearchQuery { limit: 1, facets: true, ..Default::default() }).unwrap();
        let counts: HashMap<String, u64> = page.facets.into_iter().collect();
        assert_eq!(counts.len(), 71);
        assert_eq!(counts["Drama"], 70);
        assert!((0..70).all(|n| counts[&format!("Genre {n}")] == 1), "{counts:?}");
    }

    #[test]
    fn genre_filters_and_facets_agree_with_and_without_segment_tables() {
        let genres = |n: usize| -> Vec<String> {
            (0..8).filter(|g| n >> g & 1 == 1).map(|g| format!("G{g}")).collect()
        };
        // Every non-empty mix of eight genres: 255 masks, past the small limit below.
        let events: Vec<EventEnvelope> = (1..256)
            .map(|n| {
                created(n as i64, MovieFields { name: format!("Golden {n}"), genres: genres(n), ..golden() })
            })
            .collect();
        let filters = SearchFilters {
            genre_any: vec!["G0".into(), "G1".into()],
            genre_all: vec!["G2".into()],
            ..Default::default()
        };
        let q =
            SearchQuery { text: "golden".into(), filters, limit: 300, facets: true, ..Default::default() };
        let passing: Vec<usize> = (1..256).filter(|n| n & 0b11 != 0 && n & 0b100 != 0).collect();
        let mut expected: HashMap<String, u64> = HashMap::new();
        for n in &passing {
            for genre in genres(*n) {
                *expected.entry(genre).or_default() += 1;
            }
        }
        let mut without = TantivySearchIndex::in_memory().unwrap();
        without.segment_tables = Arc::new(SegmentTables { limit: 64, ..SegmentTables::default() });
        for index in [TantivySearchIndex::in_memory().unwrap(), without] {
            index.apply(&events).unwrap();
            let page = index.search(&q).unwrap();
            assert_eq!(page.hits.len(), passing.len());
            assert_eq!(page.facets.into_iter().collect::<HashMap<_, _>>(), expected);
        }
    }

    #[test]
    fn score_ranges_filter_exactly_whether_a_score_fits_in_hundredths_or_not() {
        let scores = [0.0, 5.99, 5.995, 6.0, 6.004999, 6.005, 6.01, 7.123456, 7.2, 9.999, 10.0];
        let events: Vec<EventEnvelope> = scores
            .iter()
            .enumerate()
            .map(|(n, score)| {
                let fields = MovieFields { name: format!("Golden {score}"), imdb_score: *score, ..golden() };
                created(n as i64 + 1, fields)
            })
            .collect();
        let mut without = TantivySearchIndex::in_memory().unwrap();
        without.segment_tables = Arc::new(SegmentTables { limit: 0, ..SegmentTables::default() });
        let indexes = [TantivySearchIndex::in_memory().unwrap(), without];
        for index in &indexes {
            index.apply(&events).unwrap();
        }
        for (min, max) in
            [(6.0, 10.0), (6.005, 7.2), (5.995, 6.004999), (0.0, 0.0), (7.123456, 9.999), (6.0001, 6.0049)]
        {
            let filters = SearchFilters { min_score: Some(min), max_score: Some(max), ..Default::default() };
            let q = SearchQuery { text: "golden".into(), filters, limit: 50, ..Default::default() };
            let mut expected: Vec<String> =
                scores.iter().filter(|s| **s >= min && **s <= max).map(|s| format!("Golden {s}")).collect();
            expected.sort();
            for index in &indexes {
                let mut found: Vec<String> =
                    index.search(&q).unwrap().hits.into_iter().map(|h| h.name).collect();
                found.sort();
                assert_eq!(found, expected, "scores in [{min}, {max}]");
            }
        }
    }

    /// Every page of `q`, by cursor: the hits' ids, and the first page's total and facets.
    fn walk(index: &TantivySearchIndex, q: &SearchQuery) -> (Vec<Uuid>, usize, Vec<(String, u64)>) {
        let first = index.search(q).unwrap();
        let (total, facets) = (first.total, first.facets.clone());
        let mut ids: Vec<Uuid> = first.hits.iter().map(|h| h.id).collect();
        let mut next = first.next;
        while let Some(cursor) = next {
            let page = index.search(&SearchQuery { after: Some(cursor), ..q.clone() }).unwrap();
            ids.extend(page.hits.iter().map(|h| h.id));
            next = page.next;
        }
        (ids, total, facets)
    }

    /// 5,000 movies in two segments (one longer than a summary's lists), one in nine deleted.
    fn corpus(index: &TantivySearchIndex) -> Vec<MovieFields> {
        let genres = ["Drama", "Comedy", "Horror", "War", "Crime"];
        // The same ids every time (ties between equal movies break by id bits, so two copies
        // of the corpus rank alike), spread over every bit.
        let ids: Vec<Uuid> = (1..=5000u128)
            .map(|n| Uuid::from_u128(n.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835)))
            .collect();
        let fields: Vec<MovieFields> = (0..5000)
            .map(|n| {
                let pick = |k: usize| genres[(n * 7 + k * 3) % genres.len()].to_owned();
                MovieFields {
                    name: format!("{} {n}", if n % 3 == 1 { "Golden River" } else { "Silent Storm" }),
                    director: "Someone".into(),
                    popularity: ((n * 37) % 1000) as f64 / 10.0,
                    imdb_score: ((n * 13) % 100) as f64 / 10.0,
                    genres: if n % 11 == 0 { vec![] } else { vec![pick(0), pick(n % 3)] },
                }
            })
            .collect();
        let created: Vec<EventEnvelope> = ids
            .iter()
            .zip(&fields)
            .enumerate()
            .map(|(n, (id, f))| {
                movies_store::testing::recorded(n as i64 + 1, *id, 1, MovieEvent::Created(f.clone()))
            })
            .collect();
        index.apply(&created[..3000]).unwrap();
        index.apply(&created[3000..]).unwrap();
        let deleted: Vec<EventEnvelope> = ids
            .iter()
            .step_by(9)
            .enumerate()
            .map(|(n, id)| movies_store::testing::recorded(5001 + n as i64, *id, 2, MovieEvent::Deleted))
            .collect();
        index.apply(&deleted).unwrap();
        fields.into_iter().enumerate().filter(|(n, _)| n % 9 != 0).map(|(_, f)| f).collect()
    }

    #[test]
    fn words_with_genre_and_range_filters_find_exactly_the_movies_that_pass() {
        let index = TantivySearchIndex::in_memory().unwrap();
        let live = corpus(&index);
        let filters = SearchFilters {
            genre_any: vec!["Horror".into(), "war".into()],
            genre_all: vec!["Drama".into()],
            min_score: Some(2.5),
            max_score: Some(8.0),
            min_popularity: Some(10.0),
            ..Default::default()
        };
        let has = |f: &MovieFields, g: &str| f.genres.iter().any(|x| x.eq_ignore_ascii_case(g));
        let expected = live
            .iter()
            .filter(|f| f.name.starts_with("Golden"))
            .filter(|f| (has(f, "Horror") || has(f, "War")) && has(f, "Drama"))
            .filter(|f| (2.5..=8.0).contains(&f.imdb_score) && f.popularity >= 10.0)
            .count();
        let q =
            SearchQuery { text: "golden".into(), filters, limit: 100, facets: true, ..Default::default() };
        let (ids, total, facets) = walk(&index, &q);
        assert!(expected > 50, "{expected}");
        assert_eq!((ids.len(), total), (expected, expected));
        let facets: HashMap<String, u64> = facets.into_iter().collect();
        assert_eq!(facets["Drama"], expected as u64);
    }

    #[test]
    fn small_pages_walk_every_match_once_in_the_order_of_one_big_page() {
        let index = TantivySearchIndex::in_memory().unwrap();
        let fields = corpus(&index);
        for text in ["golden", "golden river", "river 1", "silen"] {
            for (sort, order) in [
                (SearchSort::Relevance, None),
                (SearchSort::Relevance, Some(Order::Asc)),
                (SearchSort::Popularity, None),
                (SearchSort::ImdbScore, Some(Order::Asc)),
                (SearchSort::Name, None),
                (SearchSort::Name, Some(Order::Desc)),
            ] {
                // Pages of 7 keep the best-so-far full from the start, so weaker matches are
                // dropped unread; one page of everything never is.
                let q = SearchQuery { text: text.into(), sort, order, limit: 7, ..Default::default() };
                let (paged, ..) = walk(&index, &q);
                let whole = index.search(&SearchQuery { limit: 10_000, ..q.clone() }).unwrap();
                let whole: Vec<Uuid> = whole.hits.iter().map(|h| h.id).collect();
                assert!(!whole.is_empty(), "{text:?}");
                let case =
                    format!("{text:?} by {sort:?} {order:?}: {} paged, {} whole", paged.len(), whole.len());
                if sort == SearchSort::Name {
                    // Pages order names by their first 16 bytes, then each page by the whole
                    // name: names agreeing on 16 bytes may straddle a page boundary.
                    let (mut paged, mut whole) = (paged, whole);
                    paged.sort();
                    whole.sort();
                    assert!(paged == whole, "{case}");
                } else {
                    assert!(paged == whole, "{case}");
                }
            }
        }
        // One word, all in titles of three words: most popular first, every match found.
        let golden =
            index.search(&SearchQuery { text: "golden ".into(), limit: 10_000, ..Default::default() });
        let hits = golden.unwrap().hits;
        let expected = fields.iter().filter(|f| f.name.starts_with("Golden")).count();
        assert_eq!(hits.len(), expected);
        let by_name: HashMap<&str, f64> = fields.iter().map(|f| (f.name.as_str(), f.popularity)).collect();
        let popularity: Vec<f64> = hits.iter().map(|h| by_name[h.name.as_str()]).collect();
        assert!(popularity.windows(2).all(|w| w[0] >= w[1]), "{popularity:?}");
    }

    #[test]
    fn ranking_reads_the_same_keys_from_segment_tables_as_from_the_columns() {
        let with = TantivySearchIndex::in_memory().unwrap();
        let mut without = TantivySearchIndex::in_memory().unwrap();
        without.segment_tables = Arc::new(SegmentTables { limit: 0, ..SegmentTables::default() });
        corpus(&with);
        corpus(&without);
        for text in ["golden", "silen", "river 1"] {
            for (sort, order) in [
                (SearchSort::Relevance, None),
                (SearchSort::Popularity, Some(Order::Asc)),
                (SearchSort::ImdbScore, None),
                (SearchSort::ImdbScore, Some(Order::Asc)),
            ] {
                // Pages of 7: the best-so-far is full from the start, so the keys' bounds decide
                // which matches are read in full.
                let q = SearchQuery { text: text.into(), sort, order, limit: 7, ..Default::default() };
                let expected = walk(&without, &q);
                assert!(expected.0.len() > 10, "{text:?} by {sort:?}: {}", expected.0.len());
                assert!(walk(&with, &q) == expected, "{text:?} by {sort:?} {order:?}");
            }
        }
    }

    #[test]
    fn browsing_by_genre_answers_as_the_full_search_would() {
        let index = TantivySearchIndex::in_memory().unwrap();
        corpus(&index);
        let genre = |names: &[&str]| names.iter().map(|g| (*g).to_owned()).collect::<Vec<_>>();
        for (sort, order) in [
            (SearchSort::Popularity, None),
            (SearchSort::Popularity, Some(Order::Asc)),
            (SearchSort::ImdbScore, None),
            (SearchSort::ImdbScore, Some(Order::Asc)),
        ] {
            for (any, all) in [
                (vec![], vec![]),
                (genre(&["Horror", "War"]), vec![]),
                (vec![], genre(&["Drama", "Crime"])),
                // A genre named twice is one genre.
                (genre(&["Horror", "horror"]), genre(&["Drama", "DRAMA"])),
            ] {
                let q = SearchQuery {
                    sort,
                    order,
                    limit: 100,
                    facets: true,
                    filters: SearchFilters { genre_any: any, genre_all: all, ..Default::default() },
                    ..Default::default()
                };
                assert!(index
                    .browse_plan(&q, sort, order == Some(Order::Asc), &[], &index.genre_registry())
                    .is_some());
                // A range every movie is in takes the query off the summaries' path.
                let mut full = q.clone();
                full.filters.min_score = Some(-1.0);
                assert!(index
                    .browse_plan(&full, sort, order == Some(Order::Asc), &[], &index.genre_registry())
                    .is_none());
                let (browsed, expected) = (walk(&index, &q), walk(&index, &full));
                assert!(browsed.0.len() > 200, "{sort:?} {order:?} {:?}: {}", q.filters, browsed.0.len());
                assert_eq!(browsed, expected, "{sort:?} {order:?} {:?}", q.filters);
            }
        }
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

    #[test]
    fn name_sort_keys_order_names() {
        assert!(name_sort_key("Alien") < name_sort_key("aliens"));
        assert!(name_sort_key("Aliens") < name_sort_key("Batman"));
        assert!(name_sort_key("Star Wars") < name_sort_key("Star Wars : Episode V"));
    }
}
