//! `movies verify`: folds the whole event log and compares every projection with it, document by
//! document. The log is the truth; any difference is drift.

use std::collections::HashMap;

use movies_events::{genre_key, Movie, MovieFields, Version};
use movies_read_model::{ListQuery, ReadStore, TantivySearchIndex};
use movies_store::EventStore;
use uuid::Uuid;

const BATCH: i64 = 5000;

#[derive(Debug, Default, PartialEq)]
pub struct Verification {
    /// Live movies according to the log.
    pub movies: usize,
    /// Events folded.
    pub events: usize,
    /// Every difference found, one line each.
    pub differences: Vec<String>,
}

impl Verification {
    pub fn is_clean(&self) -> bool {
        self.differences.is_empty()
    }
}

fn describe(fields: &MovieFields, version: Version) -> String {
    format!(
        "v{version} {:?} by {:?}, popularity {}, score {}, genres {:?}",
        fields.name, fields.director, fields.popularity, fields.imdb_score, fields.genres
    )
}

fn compare(
    projection: &str,
    expected: &HashMap<Uuid, (MovieFields, Version)>,
    actual: HashMap<Uuid, (MovieFields, Version)>,
    differences: &mut Vec<String>,
) {
    for (id, (fields, version)) in expected {
        match actual.get(id) {
            None => differences
                .push(format!("{projection}: movie {id} is missing (log: {})", describe(fields, *version))),
            Some((f, v)) if f != fields || v != version => differences.push(format!(
                "{projection}: movie {id} differs: has {}, log says {}",
                describe(f, *v),
                describe(fields, *version)
            )),
            Some(_) => {}
        }
    }
    for (id, (fields, version)) in actual {
        if !expected.contains_key(&id) {
            differences.push(format!(
                "{projection}: movie {id} should not be there (has {})",
                describe(&fields, version)
            ));
        }
    }
}

/// A cached document as the cache holds it: the movie, or `None` where it caches "gone".
pub type CachedDocument = (Uuid, Option<(MovieFields, Version)>);

/// Folds the log and compares the read store (rows and genre counts), the search index and, when
/// given, the cache's documents with it. A cache may lack entries (it holds what was read or
/// written lately), but every entry it has must be what the log says.
pub async fn verify(
    events: &dyn EventStore,
    read_store: &dyn ReadStore,
    search: &TantivySearchIndex,
    cache: Option<Vec<CachedDocument>>,
) -> anyhow::Result<Verification> {
    let mut streams: HashMap<Uuid, (Movie, Version)> = HashMap::new();
    let (mut after, mut folded) = (0, 0);
    loop {
        let batch = events.read_all(after, BATCH).await?;
        let Some(last) = batch.last() else { break };
        after = last.position;
        folded += batch.len();
        for envelope in &batch {
            let (movie, version) = streams.entry(envelope.stream_id).or_insert((Movie::Absent, 0));
            movie.apply(&envelope.event);
            *version = envelope.stream_version;
        }
    }
    let expected: HashMap<Uuid, (MovieFields, Version)> = streams
        .into_iter()
        .filter_map(|(id, (movie, version))| movie.live().map(|fields| (id, (fields.clone(), version))))
        .collect();

    let mut differences = Vec::new();
    let mut rows = HashMap::new();
    let mut query = ListQuery { limit: 1000, ..ListQuery::default() };
    loop {
        let page = read_store.list(&query).await?;
        for doc in page.items {
            rows.insert(doc.id, (doc.fields(), doc.version));
        }
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    compare("read store", &expected, rows, &mut differences);
    let documents =
        search.documents()?.into_iter().map(|(id, fields, version)| (id, (fields, version))).collect();
    compare("search index", &expected, documents, &mut differences);

    let mut genres: HashMap<String, (String, i64)> = HashMap::new();
    for (fields, _) in expected.values() {
        for genre in &fields.genres {
            genres.entry(genre_key(genre)).or_insert_with(|| (genre.clone(), 0)).1 += 1;
        }
    }
    let counted: HashMap<String, i64> =
        read_store.genres().await?.into_iter().map(|g| (genre_key(&g.genre), g.movies)).collect();
    for (key, (genre, movies)) in &genres {
        let found = counted.get(key).copied().unwrap_or(0);
        if found != *movies {
            differences
                .push(format!("read store: genre {genre:?} counts {found} movies, the log says {movies}"));
        }
    }
    for (key, found) in counted.iter().filter(|(key, _)| !genres.contains_key(*key)) {
        differences.push(format!("read store: genre {key:?} counts {found} movies, the log says none"));
    }

    for (id, entry) in cache.unwrap_or_default() {
        match (entry, expected.get(&id)) {
            (None, None) => {}
            (Some((fields, version)), Some((f, v))) if fields == *f && version == *v => {}
            (Some((fields, version)), Some((f, v))) => differences.push(format!(
                "cache: movie {id} differs: has {}, log says {}",
                describe(&fields, version),
                describe(f, *v)
            )),
            (Some((fields, version)), None) => differences
                .push(format!("cache: movie {id} should be gone (has {})", describe(&fields, version))),
            (None, Some((f, v))) => {
                differences.push(format!("cache: movie {id} is cached as gone (log: {})", describe(f, *v)))
            }
        }
    }
    differences.sort();
    Ok(Verification { movies: expected.len(), events: folded, differences })
}
