//! The tantivy search index: one document per live movie, searchable by name, director and
//! genres. The index is a projection like the read store: its checkpoint (the last applied log
//! position) is stored in the commit payload, so documents and checkpoint commit together.

use std::collections::HashMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;

use movies_events::{genre_key, EventEnvelope, MovieEvent, MovieFields, Position, Version};
use serde::{Deserialize, Serialize};
use tantivy::collector::{Count, TopDocs};
use tantivy::directory::MmapDirectory;
use tantivy::query::{
    AllQuery, BooleanQuery, BoostQuery, DisjunctionMaxQuery, Occur, Query, RangeQuery, TermQuery,
};
use tantivy::schema::{
    Field, IndexRecordOption, NumericOptions, Schema, TextFieldIndexing, TextOptions, Value, STORED, STRING,
};
use tantivy::tokenizer::{AsciiFoldingFilter, LowerCaser, SimpleTokenizer, TextAnalyzer};
use tantivy::{
    DocAddress, DocId, Index, IndexReader, IndexWriter, ReloadPolicy, Score, SegmentReader, TantivyDocument,
    Term,
};
use uuid::Uuid;

use crate::doc::Filters;
use crate::store::{ProjectionError, Result};

/// Relevance, then popularity to break ties.
type Ranked = (Score, f64);

const TOKENIZER: &str = "movie_text";
const WRITER_HEAP_BYTES: usize = 50_000_000;

#[derive(Clone, Copy)]
struct Fields {
    id: Field,
    name: Field,
    director: Field,
    genres: Field,
    genre_key: Field,
    director_key: Field,
    popularity: Field,
    imdb_score: Field,
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
        id: builder.add_text_field("id", STRING | STORED),
        name: builder.add_text_field("name", text.clone()),
        director: builder.add_text_field("director", text.clone()),
        genres: builder.add_text_field("genres", text),
        genre_key: builder.add_text_field("genre_key", STRING),
        director_key: builder.add_text_field("director_key", STRING),
        popularity: builder.add_f64_field("popularity", number.clone()),
        imdb_score: builder.add_f64_field("imdb_score", number),
        version: builder.add_i64_field("version", STORED),
    };
    (builder.build(), fields)
}

#[derive(Serialize, Deserialize)]
struct Checkpoint {
    position: Position,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SearchQuery {
    pub text: String,
    pub filters: Filters,
    pub limit: usize,
    pub offset: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    pub id: Uuid,
    pub score: f32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SearchPage {
    pub hits: Vec<SearchHit>,
    /// How many movies match in all.
    pub total: usize,
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
    writer: Mutex<IndexWriter>,
    checkpoint: AtomicI64,
}

impl TantivySearchIndex {
    /// Opens (or creates) the index in `dir`. This process becomes its only writer.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| tantivy::TantivyError::IoError(e.into()))?;
        let (schema, fields) = schema();
        let directory = MmapDirectory::open(dir).map_err(tantivy::TantivyError::from)?;
        let index = Index::open_or_create(directory, schema)?;
        Self::with_index(index, fields)
    }

    /// An index held in memory, for tests.
    pub fn in_memory() -> Result<Self> {
        let (schema, fields) = schema();
        Self::with_index(Index::create_in_ram(schema), fields)
    }

    fn with_index(index: Index, fields: Fields) -> Result<Self> {
        let analyzer = TextAnalyzer::builder(SimpleTokenizer::default())
            .filter(LowerCaser)
            .filter(AsciiFoldingFilter)
            .build();
        index.tokenizers().register(TOKENIZER, analyzer);
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;
        let writer = index.writer(WRITER_HEAP_BYTES)?;
        let checkpoint = match index.load_metas()?.payload {
            Some(payload) => serde_json::from_str::<Checkpoint>(&payload).map(|c| c.position).unwrap_or(0),
            None => 0,
        };
        Ok(Self { index, fields, reader, writer: Mutex::new(writer), checkpoint: AtomicI64::new(checkpoint) })
    }

    /// The position of the last event whose effect is committed in the index.
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
        Term::from_field_text(self.fields.id, &id.to_string())
    }

    fn stored(&self, id: Uuid) -> Result<Option<Indexed>> {
        let searcher = self.reader.searcher();
        let query = TermQuery::new(self.id_term(id), IndexRecordOption::Basic);
        let Some((_, address)) = searcher.search(&query, &TopDocs::with_limit(1))?.into_iter().next() else {
            return Ok(None);
        };
        let doc: TantivyDocument = searcher.doc(address)?;
        let text = |field| doc.get_first(field).and_then(|v| v.as_str()).unwrap_or_default().to_owned();
        let number = |field| doc.get_first(field).and_then(|v| v.as_f64()).unwrap_or_default();
        Ok(Some(Indexed {
            fields: MovieFields {
                name: text(self.fields.name),
                director: text(self.fields.director),
                popularity: number(self.fields.popularity),
                imdb_score: number(self.fields.imdb_score),
                genres: doc
                    .get_all(self.fields.genres)
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect(),
            },
            version: doc.get_first(self.fields.version).and_then(|v| v.as_i64()).unwrap_or_default(),
        }))
    }

    fn document(&self, id: Uuid, movie: &Indexed) -> TantivyDocument {
        let f = &self.fields;
        let mut doc = TantivyDocument::default();
        doc.add_text(f.id, id.to_string());
        doc.add_text(f.name, &movie.fields.name);
        doc.add_text(f.director, &movie.fields.director);
        doc.add_text(f.director_key, movie.fields.director.to_lowercase());
        for genre in &movie.fields.genres {
            doc.add_text(f.genres, genre);
            doc.add_text(f.genre_key, genre_key(genre));
        }
        doc.add_f64(f.popularity, movie.fields.popularity);
        doc.add_f64(f.imdb_score, movie.fields.imdb_score);
        doc.add_i64(f.version, movie.version);
        doc
    }

    /// Applies events past the checkpoint and commits them with the new checkpoint. Blocking:
    /// call it from a blocking thread.
    pub fn apply(&self, events: &[EventEnvelope]) -> Result<()> {
        // A poisoned lock means a panic mid-batch; nothing was committed, so carrying on is safe.
        let mut writer = self.writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let checkpoint = self.checkpoint();
        let mut pending: HashMap<Uuid, Option<Indexed>> = HashMap::new();
        let mut last = checkpoint;
        for envelope in events.iter().filter(|e| e.position > checkpoint) {
            let id = envelope.stream_id;
            let current = match pending.get(&id) {
                Some(movie) => movie.clone(),
                None => self.stored(id)?,
            };
            let have = current.as_ref().map_or(0, |m| m.version);
            if current.is_some() && envelope.stream_version <= have {
                continue;
            }
            if current.is_some() && envelope.stream_version > have + 1 {
                return Err(ProjectionError::Gap { stream_id: id, have, got: envelope.stream_version });
            }
            let next = match (&envelope.event, current) {
                (MovieEvent::Created(fields), _) => {
                    Some(Indexed { fields: fields.clone(), version: envelope.stream_version })
                }
                (MovieEvent::Updated(changes), Some(mut movie)) => {
                    changes.apply_to(&mut movie.fields);
                    movie.version = envelope.stream_version;
                    Some(movie)
                }
                (MovieEvent::Updated(_), None) | (MovieEvent::Deleted, _) => None,
            };
            writer.delete_term(self.id_term(id));
            if let Some(movie) = &next {
                writer.add_document(self.document(id, movie))?;
            }
            pending.insert(id, next);
            last = envelope.position;
        }
        if last > checkpoint {
            let mut commit = writer.prepare_commit()?;
            // A struct with one integer always serializes.
            commit.set_payload(&serde_json::to_string(&Checkpoint { position: last }).expect("checkpoint"));
            commit.commit()?;
            self.reader.reload()?;
            self.checkpoint.store(last, Ordering::SeqCst);
        }
        Ok(())
    }

    /// The query's words, folded the way the index folds them.
    fn words(&self, text: &str) -> Result<Vec<String>> {
        let mut analyzer = self.index.tokenizer_for_field(self.fields.name)?;
        let mut stream = analyzer.token_stream(text);
        let mut words = Vec::new();
        while let Some(token) = stream.next() {
            words.push(token.text.clone());
        }
        Ok(words)
    }

    fn query(&self, q: &SearchQuery) -> Result<Box<dyn Query>> {
        let f = &self.fields;
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        // Every word must match somewhere; a title match counts most, then director, then genre.
        for word in self.words(&q.text)? {
            let per_field: Vec<Box<dyn Query>> = [(f.name, 3.0), (f.director, 2.0), (f.genres, 1.0)]
                .into_iter()
                .map(|(field, boost)| {
                    let term =
                        TermQuery::new(Term::from_field_text(field, &word), IndexRecordOption::WithFreqs);
                    Box::new(BoostQuery::new(Box::new(term), boost)) as Box<dyn Query>
                })
                .collect();
            clauses.push((Occur::Must, Box::new(DisjunctionMaxQuery::with_tie_breaker(per_field, 0.1))));
        }
        if let Some(genre) = &q.filters.genre {
            let term = Term::from_field_text(f.genre_key, &genre_key(genre));
            clauses.push((Occur::Must, Box::new(TermQuery::new(term, IndexRecordOption::Basic))));
        }
        if let Some(director) = &q.filters.director {
            let term = Term::from_field_text(f.director_key, &director.trim().to_lowercase());
            clauses.push((Occur::Must, Box::new(TermQuery::new(term, IndexRecordOption::Basic))));
        }
        if q.filters.min_score.is_some() || q.filters.max_score.is_some() {
            let bound = |value: Option<f64>| match value {
                Some(v) => Bound::Included(Term::from_field_f64(f.imdb_score, v)),
                None => Bound::Unbounded,
            };
            let range = RangeQuery::new(bound(q.filters.min_score), bound(q.filters.max_score));
            clauses.push((Occur::Must, Box::new(range)));
        }
        if clauses.is_empty() {
            return Ok(Box::new(AllQuery));
        }
        Ok(Box::new(BooleanQuery::new(clauses)))
    }

    /// Ranked matches: relevance first, popularity breaking ties. An empty text browses the
    /// filtered catalogue by popularity.
    pub fn search(&self, q: &SearchQuery) -> Result<SearchPage> {
        let searcher = self.reader.searcher();
        let query = self.query(q)?;
        let top = TopDocs::with_limit(q.limit.max(1)).and_offset(q.offset);
        let by_relevance = top.tweak_score(|segment: &SegmentReader| {
            let popularity =
                segment.fast_fields().f64("popularity").map(|column| column.first_or_default_col(0.0));
            move |doc: DocId, score: Score| {
                let popularity = popularity.as_ref().map_or(0.0, |column| column.get_val(doc));
                (score, popularity)
            }
        });
        let (ranked, total): (Vec<(Ranked, DocAddress)>, usize) =
            searcher.search(&query, &(by_relevance, Count))?;
        let hits = ranked
            .into_iter()
            .map(|((score, _), address)| {
                let doc: TantivyDocument = searcher.doc(address)?;
                let id = doc
                    .get_first(self.fields.id)
                    .and_then(|v| v.as_str())
                    .and_then(|s| Uuid::parse_str(s).ok());
                Ok(id.map(|id| SearchHit { id, score }))
            })
            .filter_map(|hit: Result<Option<SearchHit>>| hit.transpose())
            .collect::<Result<Vec<_>>>()?;
        Ok(SearchPage { hits, total })
    }
}
