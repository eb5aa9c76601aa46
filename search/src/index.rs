//! The index itself: events applied as documents under a gapless checkpoint committed with
//! them, and search and suggest over it.

use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use movies_events::{genre_key, EventEnvelope, MovieEvent, MovieFields, Position, Version};
use movies_read_model::{Order, ProjectionError, ProjectionResult as Result};
use serde::{Deserialize, Serialize};
use tantivy::collector::{Count, TopDocs};
use tantivy::columnar::Column;
use tantivy::directory::{Directory, MmapDirectory, WatchCallback, WatchHandle};
use tantivy::query::{AllQuery, BooleanQuery, ConstScoreQuery, Occur, Query, RangeQuery, TermQuery};
use tantivy::schema::{Field, IndexRecordOption, Value};
use tantivy::tokenizer::{AsciiFoldingFilter, LowerCaser, SimpleTokenizer, TextAnalyzer};
use tantivy::{
    DocAddress, DocId, Index, IndexReader, IndexWriter, ReloadPolicy, Score, Searcher, SegmentReader,
    TantivyDocument, Term,
};
use uuid::Uuid;

use crate::browse::{Browse, Browsed, Order as BrowseOrder, Summaries};
use crate::facets::*;
use crate::keys::*;
use crate::query::*;
use crate::rank::Best;
use crate::schema::*;
use crate::segments::PerSegment;
use crate::walk::{Orders, Walk};
use crate::words::{typo_budget, Completions, DenseTerms, TextQuery, Typos, Way, Word, WordWays};

#[derive(Serialize, Deserialize)]
struct Checkpoint {
    position: Position,
    /// The `SCHEMA_VERSION` the index was built with.
    #[serde(default)]
    schema: u32,
    /// The genre registry: bit n of a document's genre mask stands for genres[n].
    #[serde(default)]
    genres: Vec<String>,
    /// Where the transport that feeds the index stands (Kafka's partition marks), committed
    /// with the documents so a restart resumes exactly there. Opaque here: the transport reads
    /// and writes it. (Its key was `partitions` when the marks were the engine's.)
    #[serde(default, alias = "partitions", skip_serializing_if = "serde_json::Value::is_null")]
    transport: serde_json::Value,
    /// Positions past `position` already applied (from partitions that ran ahead of another).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    ahead: BTreeSet<Position>,
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
    /// The transport's state as of the last commit (see `Checkpoint::transport`).
    transport: Mutex<serde_json::Value>,
    /// A read-only view follows the writer's commits through this watch.
    _watch: Option<WatchHandle>,
    /// Per-segment summaries that answer browsing by genre (see `browse`).
    summaries: Summaries,
    /// What searches read per segment, made ahead for each new searcher (see `Segments`).
    segments: Segments,
    /// The bitsets of terms in many documents, kept across searches (see `word`).
    dense: DenseTerms,
    /// Each segment's most frequent completions of the prefixes searches have asked for.
    completions: Completions,
    /// Whether searches are expected: an index being rebuilt (see `open_for_rebuild`) makes
    /// nothing for them ahead at its commits.
    serving: bool,
}

/// How a process uses the index it opens.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Opened {
    /// The only writer, and searched (a projector, or a server with its own index).
    Writer,
    /// The only writer, filled from the log before anyone searches it (`movies replay`).
    Rebuild,
    /// Searched while another process writes it.
    ReadOnly,
}

impl TantivySearchIndex {
    /// Opens (or creates) the index in `dir`. This process becomes its only writer.
    pub fn open(dir: &Path) -> Result<Self> {
        Self::open_writable(dir, Opened::Writer)
    }

    /// Opens (or creates) an index that `movies replay` fills from the log before any server
    /// opens it. Its commits make nothing ahead for searches (the tables, walk orders and typo
    /// vocabulary a serving index refreshes at each commit): nobody searches it until a server
    /// opens it, which makes them then, once. Searches still answer, building what they need.
    /// Its writer has `REBUILD_HEAP_BYTES` of memory, room for a whole replay batch.
    pub fn open_for_rebuild(dir: &Path) -> Result<Self> {
        Self::open_writable(dir, Opened::Rebuild)
    }

    fn open_writable(dir: &Path, opened: Opened) -> Result<Self> {
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
        Self::with_index(index, fields, opened)
    }

    /// Opens an existing index to read it while another process writes it; it reloads as that
    /// process commits, with the genre registry and checkpoint of each commit.
    pub fn open_read_only(dir: &Path) -> Result<Self> {
        let (_, fields) = schema();
        let mut index = Self::with_index(Index::open_in_dir(dir)?, fields, Opened::ReadOnly)?;
        let (metas, reader) = (index.index.clone(), index.reader.clone());
        let (genres, checkpoint) = (index.genres.clone(), index.checkpoint.clone());
        let segments = index.segments.clone();
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
                    segments.prepare(reader.searcher());
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
        Self::with_index(Index::create_in_ram(schema), fields, Opened::Writer)
    }

    fn with_index(mut index: Index, fields: Fields, opened: Opened) -> Result<Self> {
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
        // What searches need per segment, for the segments already there, made on a thread
        // before they need it (about a second at 5M movies; searches that come first wait for
        // what they need).
        let segments = Segments::new(&fields);
        let writer = match opened {
            Opened::Writer => {
                let mut writer = index.writer(WRITER_HEAP_BYTES)?;
                writer.set_merge_policy(Box::new(serving_merge_policy()));
                merge_what_was_left(&index, &mut writer, &reader, &segments)?;
                Some(Mutex::new(writer))
            }
            Opened::Rebuild => Some(Mutex::new(index.writer(REBUILD_HEAP_BYTES)?)),
            Opened::ReadOnly => None,
        };
        let serving = opened != Opened::Rebuild;
        let stored = index.load_metas()?.payload.and_then(|p| serde_json::from_str::<Checkpoint>(&p).ok());
        let (checkpoint, genres, transport, ahead) = stored
            .map_or((0, Vec::new(), serde_json::Value::Null, BTreeSet::new()), |c| {
                (c.position, c.genres, c.transport, c.ahead)
            });
        if serving {
            let (searcher, made) = (reader.searcher(), segments.clone());
            std::thread::spawn(move || made.prepare(searcher));
        }
        Ok(Self {
            index,
            fields,
            reader,
            writer,
            checkpoint: Arc::new(AtomicI64::new(checkpoint)),
            ahead: Mutex::new(ahead),
            genres: Arc::new(Mutex::new(genres)),
            transport: Mutex::new(transport),
            _watch: None,
            summaries: Summaries::default(),
            segments,
            dense: DenseTerms::default(),
            completions: Completions::default(),
            serving,
        })
    }

    /// The state its transport committed with the documents (null for an index fed from the
    /// log).
    pub fn transport_state(&self) -> serde_json::Value {
        self.transport.lock().unwrap_or_else(|p| p.into_inner()).clone()
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
        let (hi, lo) = id.as_u64_pair();
        doc.add_u64(f.id_hi, hi);
        doc.add_u64(f.id_lo, lo);
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

    /// Applies events as a transport delivered them (in any order across streams, with
    /// repeats) and commits them with the transport's new `state`, so a restart resumes where it
    /// stood. An event is skipped only if its position is already applied: at or below the
    /// checkpoint, or among the positions applied ahead of it. (Not by anything the transport
    /// saw: a producer retrying a batch can write a partition out of log order, and an earlier
    /// position arriving after a later one is not a duplicate.) Blocking: call it from a
    /// blocking thread.
    pub fn apply_delivered(&self, events: &[EventEnvelope], state: serde_json::Value) -> Result<()> {
        let through = self.checkpoint();
        let ahead = self.ahead.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut taken = std::collections::HashSet::new();
        let fresh = events
            .iter()
            .filter(|e| e.position > through && !ahead.contains(&e.position) && taken.insert(e.position));
        self.commit(fresh, Some(state), true)
    }

    /// Applies these events as they are (each stream's version still checked): how a gap found
    /// in a Kafka-fed batch is filled from the log. Blocking.
    pub fn apply_exact(&self, events: &[EventEnvelope]) -> Result<()> {
        self.commit(events.iter(), None, false)
    }

    /// Commits the transport's state without events: where a transport-fed index starts.
    pub fn set_transport_state(&self, state: serde_json::Value) -> Result<()> {
        self.commit(std::iter::empty(), Some(state), true)
    }

    /// `first_delivery`: no event has been applied before (each is past its checkpoint or mark),
    /// so a creation has no document to replace.
    fn commit<'a>(
        &self,
        events: impl Iterator<Item = &'a EventEnvelope>,
        transport: Option<serde_json::Value>,
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
                let next = envelope
                    .event
                    .fold(current.map(|movie| movie.fields))
                    .map(|fields| Indexed { fields, version: envelope.stream_version });
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
        let transport_moved = transport.as_ref().is_some_and(|t| *t != self.transport_state());
        if through > checkpoint || ahead != before || transport_moved || changed {
            let transport = transport.unwrap_or_else(|| self.transport_state());
            let mut commit = writer.prepare_commit()?;
            // A struct of plain values always serializes.
            commit.set_payload(
                &serde_json::to_string(&Checkpoint {
                    position: through,
                    schema: SCHEMA_VERSION,
                    genres: registry.clone(),
                    transport: transport.clone(),
                    ahead: ahead.clone(),
                })
                .expect("checkpoint"),
            );
            commit.commit()?;
            *self.transport.lock().unwrap_or_else(|p| p.into_inner()) = transport;
            // The registry grows before the searcher that needs it: a search sees either the old
            // documents with the new registry (a superset) or both new.
            *self.genres.lock().unwrap_or_else(|p| p.into_inner()) = registry;
            self.reader.reload()?;
            if self.serving {
                self.segments.prepare(self.reader.searcher());
            }
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

    /// The most frequent indexed completions of `prefix` in `field`, across segments: each
    /// segment's most frequent ones (kept per segment, see `Completions`) added up.
    fn completions(&self, searcher: &Searcher, field: Field, prefix: &str) -> Result<Vec<Term>> {
        let mut counts: HashMap<&[u8], u32> = HashMap::new();
        let mut kept = Vec::with_capacity(searcher.segment_readers().len());
        for segment in searcher.segment_readers() {
            kept.push(self.completions.of(segment, field, prefix)?);
        }
        for (text, freq) in kept.iter().flat_map(|top| top.iter()) {
            *counts.entry(text.as_slice()).or_default() += freq;
        }
        let mut ranked: Vec<_> = counts.into_iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        Ok(ranked
            .into_iter()
            .take(PREFIX_EXPANSIONS)
            .filter_map(|(bytes, _)| std::str::from_utf8(bytes).ok())
            .map(|text| Term::from_field_text(field, text))
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
            if budget > 0 && self.fields.typo().contains(&field) {
                ways.push((10.0 + weight, Way::Typo(term, budget)));
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
            clauses.push((Occur::Must, Box::new(self.text_query(searcher, words, fields)?)));
        }
        if clauses.is_empty() {
            return Ok((Box::new(AllQuery), post));
        }
        Ok((Box::new(BooleanQuery::new(clauses)), post))
    }

    /// Every word in any of `fields`, scored by how and where it matched.
    fn text_query(&self, searcher: &Searcher, words: &[Word], fields: &[(Field, f32)]) -> Result<TextQuery> {
        let words = words.iter().map(|word| self.word_ways(searcher, word, fields));
        Ok(TextQuery::new(words.collect::<Result<_>>()?, self.dense.clone(), self.segments.typos.clone()))
    }

    fn text_fields(&self) -> [(Field, f32); 3] {
        [(self.fields.name, 3.0), (self.fields.director, 2.0), (self.fields.genres, 1.0)]
    }

    /// What marks the query's `words` in a text.
    fn marks(&self, words: &[Word]) -> Result<Marks> {
        Ok(Marks { words: words.to_vec(), analyzer: self.index.tokenizer_for_field(self.fields.name)? })
    }

    /// A hit with its stored name, marked: a read of the document store.
    fn named(
        &self,
        searcher: &Searcher,
        address: DocAddress,
        score: f32,
        marks: &Marks,
    ) -> Result<Option<NamedHit>> {
        let doc: TantivyDocument = searcher.doc(address)?;
        let text = |field| doc.get_first(field).and_then(|v| v.as_str()).unwrap_or_default().to_owned();
        let Some(id) = self.stored_id(&doc) else {
            return Ok(None);
        };
        let (name, director) = (text(self.fields.name), text(self.fields.director));
        let highlight = marks.highlight(&name, &director);
        Ok(Some(NamedHit { id, name, score, highlight }))
    }

    /// A page's hits with the names and directors the index stored, marked and arranged as the
    /// API arranges the read store's: for tools and tests (a read of the document store per hit).
    pub fn named_hits(&self, page: &SearchPage) -> Result<Vec<NamedHit>> {
        let mut named = Vec::with_capacity(page.hits.len());
        for hit in &page.hits {
            if let Some(movie) = self.stored(hit.id)? {
                let highlight = page.marks.highlight(&movie.fields.name, &movie.fields.director);
                named.push(NamedHit { id: hit.id, name: movie.fields.name, score: hit.score, highlight });
            }
        }
        page.arrange(&mut named, |hit| &hit.name);
        Ok(named)
    }

    /// Matches for `q`, ranked or sorted as it asks, with genre facets if asked.
    pub fn search(&self, q: &SearchQuery) -> Result<SearchPage> {
        let searcher = self.reader.searcher();
        let words = self.words(&q.text)?;
        // Fetched once: filters, the browse plan and facets all name genres by their bits.
        let registry = self.genre_registry();
        let sort =
            if q.sort == SearchSort::Relevance && words.is_empty() { SearchSort::Popularity } else { q.sort };
        let natural = if sort == SearchSort::Name { Order::Asc } else { Order::Desc };
        let ascending = q.order.unwrap_or(natural) == Order::Asc;
        // One more than asked tells whether another page follows.
        let keep = q.offset + q.limit.max(1) + 1;
        let collector = Best {
            tables: &self.segments.tables,
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
        // What the summaries cannot answer (a page past their lists) may still be walked.
        let browsed = match (browsed, self.walk_plan(q, sort, ascending, &words, &registry)) {
            (Some(browsed), _) => Some(browsed),
            (None, Some(walk)) => {
                let text = match words.is_empty() {
                    true => None,
                    false => Some(self.text_query(&searcher, &words, &self.text_fields())?.text_weight()),
                };
                self.segments.orders.walk(
                    &searcher,
                    &self.segments.tables,
                    text.as_ref(),
                    &walk,
                    registry.len(),
                )?
            }
            (None, None) => None,
        };
        // Every path leaves out keys at or past the cursor (they were on earlier pages).
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
                let (query, post) =
                    self.query(&searcher, &words, &self.text_fields(), &q.filters, &registry)?;
                let facets = q.facets.then_some(GenreFacets { registry, tables: &self.segments.tables });
                searcher.search(
                    &query,
                    &Filtered {
                        filter: post,
                        tables: &self.segments.tables,
                        inner: (collector, Count, facets),
                    },
                )?
            }
        };
        let more = ranked.len() > q.limit.max(1);
        ranked.truncate(q.limit.max(1));
        let next = if more { ranked.last().map(|(key, _)| SearchCursor(*key)) } else { None };
        let mut hits = Vec::with_capacity(ranked.len());
        for (key, address) in ranked {
            let score = if sort == SearchSort::Relevance {
                f32::from_bits((key.0 as u32) ^ flip(ascending) as u32)
            } else {
                0.0
            };
            if let Some(id) =
                self.segments.ids.id(searcher.segment_reader(address.segment_ord), address.doc_id)?
            {
                hits.push(SearchHit { id, score });
            }
        }
        let mut facets: Vec<(String, u64)> = facet_counts.unwrap_or_default().into_iter().collect();
        facets.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let marks = self.marks(&words)?;
        let by_name = (sort == SearchSort::Name).then_some(ascending);
        Ok(SearchPage { hits, total, facets, next, marks, by_name })
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
        if !words.is_empty() || q.offset != 0 || !genres_only(&q.filters) {
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
            genres: genre_bits(registry, &q.filters)?,
            tail: flip(ascending),
            after: q.after.map(|c| c.0),
            wanted: q.limit.max(1) + 1,
            facets: q.facets,
        })
    }

    /// A search that walks its matches as bitsets in rank order (see `walk`): by popularity
    /// (with words or without), or by relevance for one word, highest first, with genre filters
    /// only.
    fn walk_plan(
        &self,
        q: &SearchQuery,
        sort: SearchSort,
        ascending: bool,
        words: &[Word],
        registry: &[String],
    ) -> Option<Walk> {
        if ascending || !genres_only(&q.filters) {
            return None;
        }
        let relevance = match sort {
            SearchSort::Popularity => false,
            SearchSort::Relevance if words.len() == 1 => true,
            _ => return None,
        };
        let wanted = q.offset + q.limit.max(1) + 1;
        Some(Walk {
            relevance,
            genres: genre_bits(registry, &q.filters)?,
            after: q.after.map(|c| c.0),
            wanted,
            skip: q.offset,
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
    pub fn suggest(&self, text: &str, limit: usize) -> Result<Vec<NamedHit>> {
        let searcher = self.reader.searcher();
        let mut words = self.words(text)?;
        if let Some(last) = words.last_mut() {
            last.prefix = true;
        }
        if words.is_empty() {
            return Ok(Vec::new());
        }
        let (fields, keep) = ([(self.fields.name, 3.0)], limit.max(1) * 2);
        // One word (a prefix being typed) may match a large share of the titles: walked.
        let walked = match words.len() {
            1 => {
                let text = self.text_query(&searcher, &words, &fields)?;
                let text = text.text_weight();
                let walk = Walk {
                    relevance: true,
                    genres: GenreBits::default(),
                    after: None,
                    wanted: keep,
                    skip: 0,
                    facets: false,
                };
                self.segments.orders.walk(&searcher, &self.segments.tables, Some(&text), &walk, 0)?
            }
            _ => None,
        };
        let ranked = match walked {
            Some(walked) => walked.ranked,
            None => {
                let (query, _) = self.query(&searcher, &words, &fields, &SearchFilters::default(), &[])?;
                let collector = Best {
                    tables: &self.segments.tables,
                    sort: SearchSort::Relevance,
                    query_words: words.len(),
                    ascending: false,
                    after: None,
                    keep,
                    skip: 0,
                };
                searcher.search(&query, &collector)?
            }
        };
        let marks = self.marks(&words)?;
        let mut seen = std::collections::HashSet::new();
        let mut hits = Vec::new();
        for (key, address) in ranked {
            let score = f32::from_bits(key.0 as u32);
            if let Some(hit) = self.named(&searcher, address, score, &marks)? {
                if seen.insert(hit.name.to_lowercase()) && hits.len() < limit {
                    hits.push(hit);
                }
            }
        }
        Ok(hits)
    }
}

/// Starts the merges the writer's policy asks of the segments it finds at open (a rebuilt
/// index has many, merged by tantivy's default policy), and once they end has searches
/// read the merged segments: tantivy merges only after a commit, and a served catalogue may go
/// a long while without a change. Searches read the segments they had until then.
fn merge_what_was_left(
    index: &Index,
    writer: &mut IndexWriter,
    reader: &IndexReader,
    segments: &Segments,
) -> Result<()> {
    let metas = index.searchable_segment_metas()?;
    let merges: Vec<_> = writer
        .get_merge_policy()
        .compute_merge_candidates(&metas)
        .into_iter()
        .map(|candidate| writer.merge(&candidate.0))
        .collect();
    if merges.is_empty() {
        return Ok(());
    }
    let (reader, segments) = (reader.clone(), segments.clone());
    std::thread::spawn(move || {
        for merge in merges {
            if let Err(error) = merge.wait() {
                tracing::warn!(%error, "a merge of the segments found at open failed; they stay as they were");
            }
        }
        match reader.reload() {
            Ok(()) => segments.prepare(reader.searcher()),
            Err(error) => tracing::warn!(%error, "reloading after the merges at open failed"),
        }
    });
    Ok(())
}

/// Whether the filters name genres at most (no director, no score or popularity range): what
/// the summaries and the walk can answer.
fn genres_only(f: &SearchFilters) -> bool {
    let ranges = [f.min_score, f.max_score, f.min_popularity, f.max_popularity];
    f.director.is_none() && ranges.iter().all(Option::is_none)
}

/// The genre filters as mask bits, if every genre named has a bit of its own.
fn genre_bits(registry: &[String], f: &SearchFilters) -> Option<GenreBits> {
    Some(GenreBits { any: genre_mask(registry, &f.genre_any)?, all: genre_mask(registry, &f.genre_all)? })
}

/// Each segment's two id columns (a hit's movie id), opened once. Opening a column reads its
/// block index, thousands of blocks in a segment of millions: opened for each hit, that was a
/// third of a one-word search's time at 5M movies (about 0.15 ms a hit).
#[derive(Default)]
struct IdColumns(PerSegment<Arc<HiLo>>);

/// The high and low halves of a segment's ids.
type HiLo = (Column<u64>, Column<u64>);

impl IdColumns {
    /// The movie id of `doc` in `segment`.
    fn id(&self, segment: &SegmentReader, doc: DocId) -> Result<Option<Uuid>> {
        let columns = match self.0.get(segment.segment_id()) {
            Some(columns) => columns,
            None => {
                let fast = segment.fast_fields();
                self.0.keep(segment.segment_id(), Arc::new((fast.u64(ID_HI)?, fast.u64(ID_LO)?)))
            }
        };
        let (hi, lo) = &*columns;
        Ok(hi.first(doc).zip(lo.first(doc)).map(|(hi, lo)| Uuid::from_u64_pair(hi, lo)))
    }
}

/// What searches read per segment and a new searcher gets made ahead (see `prepare`); cloned
/// into the watch that reloads a read-only view.
#[derive(Clone)]
struct Segments {
    /// Genre masks, scores and ranks for filters, facets and ranking (see `SegmentTables`).
    tables: Arc<SegmentTables>,
    /// Rank orders and genre bitsets for walking dense words (see `walk`).
    orders: Arc<Orders>,
    /// The typo neighbours of the words searches have asked for, and the vocabulary of every
    /// segment's title and director terms they are found in.
    typos: Typos,
    /// Each segment's id columns, opened once (see `IdColumns`).
    ids: Arc<IdColumns>,
}

impl Segments {
    fn new(fields: &Fields) -> Self {
        Self {
            tables: Arc::default(),
            orders: Arc::default(),
            typos: Typos::new(fields.typo().to_vec()),
            ids: Arc::default(),
        }
    }

    /// Makes ahead, for a new searcher, what its searches need per segment: the tables at once
    /// (a filter reads them), the walk orders and the typo vocabulary each on a thread of its
    /// own, and forgets what segments merged away had. Called at open, after each commit and
    /// after a read-only view's reload.
    fn prepare(&self, searcher: Searcher) {
        self.ids.0.retain(&searcher);
        self.tables.refresh(&searcher);
        self.orders.prepare_later(searcher.clone(), self.tables.clone());
        self.typos.refresh_later(searcher);
    }
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

    /// Waits (up to 10 s) until every segment of the index has its walk order made.
    fn orders_made(index: &TantivySearchIndex) -> bool {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            // Read each time: a serving index may merge what it opened meanwhile.
            if index.segments.orders.made() == index.reader.searcher().segment_readers().len() {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        false
    }

    #[test]
    fn walk_orders_are_made_after_a_commit_and_at_open_before_any_search() {
        let dir = tempfile::tempdir().unwrap();
        {
            let index = TantivySearchIndex::open(dir.path()).unwrap();
            for batch in 0..3 {
                let events: Vec<EventEnvelope> =
                    (0..20).map(|n| created(batch * 20 + n + 1, golden())).collect();
                index.apply(&events).unwrap();
            }
            assert!(!index.reader.searcher().segment_readers().is_empty());
            assert!(orders_made(&index), "the commits' segments have their orders without a search");
        }
        let reopened = TantivySearchIndex::open(dir.path()).unwrap();
        assert!(orders_made(&reopened), "an opened index's segments have their orders without a search");
    }

    /// Seven commits of a hundred movies each: seven small segments of one level, which
    /// tantivy's default policy leaves alone until there are eight.
    fn seven_commits(index: &TantivySearchIndex) {
        for batch in 0..7 {
            let events: Vec<EventEnvelope> =
                (0..100).map(|n| created(batch * 100 + n + 1, golden())).collect();
            index.apply(&events).unwrap();
        }
    }

    #[test]
    fn a_serving_index_merges_its_small_segments_into_few() {
        let index = TantivySearchIndex::in_memory().unwrap();
        seven_commits(&index);
        let segments = || index.index.searchable_segment_metas().unwrap().len();
        let waited = std::time::Instant::now();
        while segments() > 2 && waited.elapsed() < std::time::Duration::from_secs(20) {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(segments() <= 2, "{} segments", segments());
        assert_eq!(index.len(), 700);
    }

    #[test]
    fn a_rebuilt_index_is_merged_into_few_segments_once_served_without_a_change() {
        // Seven commits of a rebuild leave seven segments: its policy is tantivy's default.
        let dir = tempfile::tempdir().unwrap();
        let rebuilt = TantivySearchIndex::open_for_rebuild(dir.path()).unwrap();
        seven_commits(&rebuilt);
        assert_eq!(rebuilt.reader.searcher().segment_readers().len(), 7);
        drop(rebuilt);
        // Served, with no change to commit: the merges start at open and searches then read
        // the merged segments.
        let served = TantivySearchIndex::open(dir.path()).unwrap();
        let segments = || served.reader.searcher().segment_readers().len();
        let waited = std::time::Instant::now();
        while segments() > 2 && waited.elapsed() < std::time::Duration::from_secs(20) {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(segments() <= 2, "{} segments", segments());
        let all = served.search(&SearchQuery { text: "golden".into(), limit: 1, ..Default::default() });
        assert_eq!(all.unwrap().total, 700);
    }

    #[test]
    fn an_index_being_rebuilt_makes_nothing_ahead_yet_answers_and_is_served_once_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let events: Vec<EventEnvelope> = (0..60).map(|n| created(n + 1, golden())).collect();
        let query = SearchQuery { text: "golden".into(), limit: 100, ..Default::default() };
        {
            let index = TantivySearchIndex::open_for_rebuild(dir.path()).unwrap();
            for batch in events.chunks(20) {
                index.apply(batch).unwrap();
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
            assert_eq!(index.segments.orders.made(), 0, "a rebuild's commits make no walk orders");
            assert_eq!(walk(&index, &query).1, 60, "a search still answers, making what it needs");
        }
        let reopened = TantivySearchIndex::open(dir.path()).unwrap();
        assert!(orders_made(&reopened), "the server that opens it makes its orders without a search");
        assert_eq!(walk(&reopened, &query).1, 60);
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

    /// A highlight is HTML: every character that means something in HTML or in an attribute
    /// (the apostrophe included) comes back escaped, around the marks.
    #[test]
    fn highlights_escape_everything_html_gives_a_meaning() {
        let index = TantivySearchIndex::in_memory().unwrap();
        let name = r#"Schindler's <List> & "Friends""#;
        index.apply(&[created(1, MovieFields { name: name.into(), ..golden() })]).unwrap();
        let page =
            index.search(&SearchQuery { text: "list".into(), limit: 5, ..Default::default() }).unwrap();
        assert_eq!(
            index.named_hits(&page).unwrap()[0].highlight.name.as_deref(),
            Some("Schindler&#x27;s &lt;<mark>List</mark>&gt; &amp; &quot;Friends&quot;")
        );
    }

    fn renamed(position: i64, id: Uuid, version: i64, name: &str) -> EventEnvelope {
        let changes = movies_events::MovieChanges { name: Some(name.into()), ..Default::default() };
        movies_store::testing::recorded(position, id, version, MovieEvent::Updated(changes))
    }

    /// What a transport hands over with a batch: here, just the batch's number.
    fn state(batch: u64) -> serde_json::Value {
        serde_json::json!({ "batch": batch })
    }

    /// A batch that stops at a gap must leave nothing of itself behind: healed and delivered
    /// again, each of its movies is in the index once.
    #[test]
    fn a_batch_refused_at_a_gap_leaves_no_document_behind_to_be_added_twice() {
        let index = TantivySearchIndex::in_memory().unwrap();
        let alien = created(1, MovieFields { name: "Alien".into(), ..golden() });
        index.apply_exact(std::slice::from_ref(&alien)).unwrap();
        let batch = [
            created(3, MovieFields { name: "Brazil".into(), ..golden() }),
            renamed(4, alien.stream_id, 3, "Aliens"),
        ];
        let gap = index.apply_delivered(&batch, state(1)).expect_err("version 2 of Alien is missing");
        assert!(matches!(gap, ProjectionError::Gap { have: 1, got: 3, .. }), "{gap:?}");
        assert_eq!(index.transport_state(), serde_json::Value::Null, "a refused batch moves no state");
        index.apply_exact(&[renamed(2, alien.stream_id, 2, "Alien 2")]).unwrap();
        index.apply_delivered(&batch, state(1)).unwrap();
        let brazil = index.search(&SearchQuery { text: "brazil".into(), ..Default::default() }).unwrap();
        assert_eq!(brazil.total, 1, "Brazil is indexed once");
        let documents = index.documents().unwrap();
        assert_eq!(documents.len(), 2, "{documents:?}");
        assert_eq!(index.transport_state(), state(1));
    }

    /// Healing fills in events older than the checkpoint (another partition ran ahead): what it
    /// applies must be committed, or the batch finds the same gap again, forever.
    #[test]
    fn a_gap_healed_below_the_checkpoint_lets_the_batch_through() {
        let index = TantivySearchIndex::in_memory().unwrap();
        let alien = created(1, MovieFields { name: "Alien".into(), ..golden() });
        let ahead = created(5, MovieFields { name: "Brazil".into(), ..golden() });
        index.apply_delivered(&[alien.clone(), ahead], state(1)).unwrap();
        let batch = [renamed(6, alien.stream_id, 3, "Aliens")];
        assert!(matches!(
            index.apply_delivered(&batch, state(2)),
            Err(ProjectionError::Gap { have: 1, got: 3, .. })
        ));
        index.apply_exact(&[renamed(2, alien.stream_id, 2, "Alien 2")]).unwrap();
        index.apply_delivered(&batch, state(2)).expect("the gap is healed");
        let names: Vec<String> = index.documents().unwrap().into_iter().map(|(_, f, _)| f.name).collect();
        assert!(names.contains(&"Aliens".to_owned()), "{names:?}");
    }

    /// A transport can hand over a later position before an earlier one (Kafka's partitions are
    /// read side by side): the checkpoint (what `min_position` waits for) names a position only
    /// once every one below it is in, across restarts too, and the transport's state commits
    /// with the documents.
    #[test]
    fn a_delivered_index_names_a_position_only_once_every_one_below_it_is_applied() {
        let dir = tempfile::tempdir().unwrap();
        let movie =
            |position: i64| created(position, MovieFields { name: format!("Movie {position}"), ..golden() });
        {
            let index = TantivySearchIndex::open(dir.path()).unwrap();
            index.apply_delivered(&[movie(2), movie(3)], state(1)).unwrap();
            assert_eq!(index.checkpoint(), 0, "position 1 is not applied yet");
            assert_eq!(index.len(), 2);
        }
        let index = TantivySearchIndex::open(dir.path()).unwrap();
        assert_eq!(index.checkpoint(), 0, "a restart remembers what ran ahead, not more");
        assert_eq!(index.transport_state(), state(1));
        index.apply_delivered(&[movie(1)], state(2)).unwrap();
        assert_eq!(index.checkpoint(), 3);
        index.apply_delivered(&[movie(4)], state(3)).unwrap();
        assert_eq!(index.checkpoint(), 4);
    }

    /// A producer that retries can write a partition out of log order (position 2 acknowledged
    /// before a retried 1): the earlier position is applied when it comes, not taken for a
    /// duplicate, and the repeated one is applied once. The fault campaign found an index stuck
    /// below such a position for good.
    #[test]
    fn an_earlier_position_arriving_after_a_later_one_is_applied_and_a_repeat_is_not() {
        let index = TantivySearchIndex::in_memory().unwrap();
        let movie =
            |position: i64| created(position, MovieFields { name: format!("Movie {position}"), ..golden() });
        index.apply_delivered(&[movie(2)], state(1)).unwrap();
        index.apply_delivered(&[movie(1), movie(2)], state(2)).unwrap();
        assert_eq!(index.checkpoint(), 2);
        assert_eq!(index.len(), 2, "each movie once");
    }

    /// An index written before the transport's state had a name of its own kept Kafka's
    /// partition marks under `partitions`: they still load, as the transport wrote them.
    #[test]
    fn partition_marks_committed_by_an_older_build_load_as_the_transport_state() {
        let old =
            r#"{"position":7,"schema":9,"genres":[],"partitions":{"0":{"next_offset":3,"position":7}}}"#;
        let checkpoint: Checkpoint = serde_json::from_str(old).unwrap();
        assert_eq!(checkpoint.transport, serde_json::json!({ "0": { "next_offset": 3, "position": 7 } }));
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
        without.segments.tables = Arc::new(SegmentTables { limit: 64, ..SegmentTables::default() });
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
        without.segments.tables = Arc::new(SegmentTables { limit: 0, ..SegmentTables::default() });
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
                let mut found: Vec<String> = index
                    .named_hits(&index.search(&q).unwrap())
                    .unwrap()
                    .into_iter()
                    .map(|h| h.name)
                    .collect();
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

    /// The index sorts by a name's first sixteen bytes; a page is arranged by whole names.
    #[test]
    fn a_page_sorted_by_name_is_arranged_by_whole_names() {
        let index = TantivySearchIndex::in_memory().unwrap();
        let names = ["Golden River Chronicle B", "Golden River Chronicle C", "Golden River Chronicle A"];
        let events: Vec<EventEnvelope> = (1..)
            .zip(names)
            .map(|(n, name)| created(n, MovieFields { name: name.into(), ..golden() }))
            .collect();
        index.apply(&events).unwrap();
        for (order, expected) in [(Order::Asc, ["A", "B", "C"]), (Order::Desc, ["C", "B", "A"])] {
            let q = SearchQuery {
                text: "chronicle".into(),
                sort: SearchSort::Name,
                order: Some(order),
                limit: 10,
                ..Default::default()
            };
            let named = index.named_hits(&index.search(&q).unwrap()).unwrap();
            let last: Vec<&str> = named.iter().map(|hit| &hit.name[hit.name.len() - 1..]).collect();
            assert_eq!(last, expected, "{order:?}");
        }
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
        let hits = index.named_hits(&golden.unwrap()).unwrap();
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
        without.segments.tables = Arc::new(SegmentTables { limit: 0, ..SegmentTables::default() });
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
    fn walking_dense_words_in_rank_order_answers_as_the_full_search_would() {
        let index = TantivySearchIndex::in_memory().unwrap();
        corpus(&index);
        let genre = |names: &[&str]| names.iter().map(|g| (*g).to_owned()).collect::<Vec<_>>();
        // A dense title word, a prefix over two title words and every director, a prefix of
        // genres only, a rare word, several words by popularity.
        for text in ["golden ", "s", "c", "golden", "river 17", "silent storm"] {
            for sort in [SearchSort::Relevance, SearchSort::Popularity] {
                for (any, all) in [
                    (vec![], vec![]),
                    (genre(&["Horror", "War"]), vec![]),
                    (vec![], genre(&["Drama", "Crime"])),
                    (genre(&["Comedy"]), genre(&["Drama"])),
                ] {
                    let filters = SearchFilters { genre_any: any, genre_all: all, ..Default::default() };
                    let q = SearchQuery {
                        text: text.into(),
                        sort,
                        limit: 7,
                        facets: true,
                        filters,
                        ..Default::default()
                    };
                    let words = index.words(text).unwrap();
                    let registry = index.genre_registry();
                    let planned = index.walk_plan(&q, sort, false, &words, &registry).is_some();
                    assert_eq!(planned, sort == SearchSort::Popularity || words.len() == 1, "{text:?}");
                    // A range every movie is in takes the query off the walk.
                    let mut full = q.clone();
                    full.filters.min_score = Some(-1.0);
                    assert!(index.walk_plan(&full, sort, false, &words, &registry).is_none());
                    let case = format!("{text:?} by {sort:?} {:?}", q.filters);
                    let (walked, expected) = (walk(&index, &q), walk(&index, &full));
                    if q.filters == SearchFilters::default() {
                        assert!(expected.0.len() > 7 || text == "river 17", "{case}: {}", expected.0.len());
                    }
                    assert!(
                        walked == expected,
                        "{case}: {} walked, {} expected",
                        walked.0.len(),
                        expected.0.len()
                    );
                    // Offsets skip into the same order.
                    let skipped = SearchQuery { offset: 5, limit: 20, ..q.clone() };
                    let (a, b) = (
                        index.search(&skipped).unwrap(),
                        index.search(&SearchQuery { offset: 5, limit: 20, ..full.clone() }).unwrap(),
                    );
                    let ids =
                        |page: &SearchPage| page.hits.iter().map(|h| (h.id, h.score)).collect::<Vec<_>>();
                    assert_eq!((ids(&a), a.total), (ids(&b), b.total), "{case} from offset 5");
                }
            }
        }
    }

    #[test]
    fn a_few_matches_tied_in_popularity_are_ranked_by_their_whole_keys_on_a_walked_page() {
        // 30 matches among 2,000 movies: few enough to be read directly, not walked in rank
        // order. Ten share the best popularity and title length, so the page's cut falls
        // among ties that only the id bits of their whole keys order.
        let index = TantivySearchIndex::in_memory().unwrap();
        let created: Vec<EventEnvelope> = (0..2000)
            .map(|n| {
                let (name, popularity) = match n {
                    0..=9 => (format!("Twin Peak {n}"), 50.0),
                    10..=29 => (format!("Twin Peak {n}"), 40.0),
                    _ => (format!("Filler {n}"), (n % 97) as f64),
                };
                let fields = MovieFields { name, popularity, ..golden() };
                let id =
                    Uuid::from_u128((n as u128 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835));
                movies_store::testing::recorded(n + 1, id, 1, MovieEvent::Created(fields))
            })
            .collect();
        index.apply(&created).unwrap();
        for sort in [SearchSort::Relevance, SearchSort::Popularity] {
            let q = SearchQuery { text: "twin ".into(), sort, limit: 5, facets: true, ..Default::default() };
            let words = index.words(&q.text).unwrap();
            assert!(index.walk_plan(&q, sort, false, &words, &index.genre_registry()).is_some());
            let full = SearchQuery {
                filters: SearchFilters { min_score: Some(-1.0), ..Default::default() },
                ..q.clone()
            };
            let (walked, expected) = (index.search(&q).unwrap(), index.search(&full).unwrap());
            let ids = |page: &SearchPage| page.hits.iter().map(|h| h.id).collect::<Vec<_>>();
            assert_eq!(ids(&walked).len(), 5, "{sort:?}");
            assert_eq!(ids(&walked), ids(&expected), "{sort:?}");
            assert_eq!(walk(&index, &q), walk(&index, &full), "{sort:?}, every page");
        }
    }

    #[test]
    fn browsing_past_the_summaries_lists_is_walked_as_the_full_search_would_answer() {
        let mut index = TantivySearchIndex::in_memory().unwrap();
        // Lists of 16: every page past the first few goes past them.
        index.summaries.listed = 16;
        corpus(&index);
        for genres in [vec![], vec!["War".to_owned()], vec!["Horror".to_owned(), "Crime".to_owned()]] {
            let filters = SearchFilters { genre_all: genres, ..Default::default() };
            let q = SearchQuery {
                sort: SearchSort::Popularity,
                limit: 50,
                facets: true,
                filters,
                ..Default::default()
            };
            let registry = index.genre_registry();
            assert!(index.browse_plan(&q, SearchSort::Popularity, false, &[], &registry).is_some());
            assert!(index.walk_plan(&q, SearchSort::Popularity, false, &[], &registry).is_some());
            let mut full = q.clone();
            full.filters.min_score = Some(-1.0);
            let (walked, expected) = (walk(&index, &q), walk(&index, &full));
            assert!(expected.0.len() > 100, "{:?}: {}", q.filters, expected.0.len());
            assert!(walked == expected, "{:?}", q.filters);
        }
    }

    #[test]
    fn a_prefix_completes_to_its_most_frequent_words_however_many_come_before_them() {
        let index = TantivySearchIndex::in_memory().unwrap();
        // 10,000 rare words sort before "star", which five titles share (however the writer
        // splits them among segments).
        let rare = (0..10_000).map(|n| format!("Saa{n:05}"));
        let names: Vec<String> = rare.chain((0..5).map(|n| format!("Star {n}"))).collect();
        let events: Vec<EventEnvelope> = names
            .iter()
            .enumerate()
            .map(|(n, name)| {
                created(
                    n as i64 + 1,
                    MovieFields { name: name.clone(), director: "Xavier".into(), ..golden() },
                )
            })
            .collect();
        index.apply(&events).unwrap();
        let page = index.search(&SearchQuery { text: "s".into(), limit: 100, ..Default::default() }).unwrap();
        let stars =
            index.named_hits(&page).unwrap().iter().filter(|hit| hit.name.starts_with("Star")).count();
        assert_eq!(stars, 5, "{} hits of {}", page.hits.len(), page.total);
        assert_eq!(page.total, PREFIX_EXPANSIONS - 1 + 5);
    }

    #[test]
    fn a_prefix_whose_completions_are_dense_is_kept_whole_and_answers_the_same_from_it() {
        let index = TantivySearchIndex::in_memory().unwrap();
        corpus(&index);
        let q = SearchQuery { text: "s".into(), limit: 10, facets: true, ..Default::default() };
        let first = index.search(&q).unwrap();
        // "silent" and "storm" in titles ("someone" alone among directors is a single term).
        assert!(index.dense.unions() > 0);
        let again = index.search(&q).unwrap();
        assert_eq!(
            (again.hits, again.total, again.facets, again.next),
            (first.hits, first.total, first.facets, first.next)
        );
    }

    #[test]
    fn a_prefix_in_one_movie_of_a_few_hundred_is_kept_whole_and_a_rarer_one_is_read_again() {
        let index = TantivySearchIndex::in_memory().unwrap();
        // Of 5,000 titles, 40 complete "qua" (one in 125) and 2 complete "ze".
        let events: Vec<EventEnvelope> = (0..5000)
            .map(|n| {
                let name = match n {
                    _ if n % 250 == 0 => format!("Quasar {n}"),
                    _ if n % 250 == 1 => format!("Quartz {n}"),
                    1002 => "Zebra".to_owned(),
                    3002 => "Zenith".to_owned(),
                    _ => format!("Filler {n}"),
                };
                created(n + 1, MovieFields { name, ..golden() })
            })
            .collect();
        index.apply(&events).unwrap();
        let search = |text: &str| {
            let q = SearchQuery { text: text.into(), limit: 10, facets: true, ..Default::default() };
            let page = index.search(&q).unwrap();
            (page.hits.iter().map(|h| h.id).collect::<Vec<_>>(), page.total, page.facets)
        };
        let rare = search("ze");
        assert_eq!(rare.1, 2);
        assert_eq!(index.dense.unions(), 0, "a union of two movies in thousands is not kept");
        let first = search("qua");
        assert_eq!(first.1, 40);
        assert!(index.dense.unions() > 0, "a union of one movie in 125 is kept");
        assert_eq!(search("qua"), first);
        assert_eq!(search("ze"), rare);
    }

    #[test]
    fn suggestions_walked_in_rank_order_are_those_of_the_full_search() {
        let with = TantivySearchIndex::in_memory().unwrap();
        // Without segment tables, nothing is walked.
        let mut without = TantivySearchIndex::in_memory().unwrap();
        without.segments.tables = Arc::new(SegmentTables { limit: 0, ..SegmentTables::default() });
        corpus(&with);
        corpus(&without);
        for text in ["g", "s", "golden", "sil", "golden r", "storm 1"] {
            let expected = without.suggest(text, 10).unwrap();
            assert!(!expected.is_empty(), "{text:?}");
            assert_eq!(with.suggest(text, 10).unwrap(), expected, "{text:?}");
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
}
