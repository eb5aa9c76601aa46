//! `movies verify`: folds the whole event log and compares every projection with it, document by
//! document. The log is the truth; any difference is drift.

use std::collections::HashMap;

use movies_events::{genre_key, Movie, MovieFields, Position, Version};
use movies_read_model::{ListQuery, ReadStore};
use movies_search::SearchIndex;
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

/// A cached document as the cache holds it: the movie, or `None` where it caches "gone".
pub type CachedDocument = (Uuid, Option<(MovieFields, Version)>);

/// A movie as a projection should show it at some position: its fields and version, or `None`
/// where it is absent or deleted.
type State = Option<(MovieFields, Version)>;

/// The positions a projection may reflect when it was read beside a live writer: from its
/// checkpoint as read just before (each projection moves its checkpoint only once what it
/// reflects is visible) to the log's head just after (nothing can reflect more than the log).
#[derive(Debug, Clone, Copy)]
struct Window {
    from: Position,
    to: Position,
}

/// A movie's states from the lowest window start on: the state there, then one after each later
/// event, in log order.
#[derive(Default)]
struct Timeline {
    at_low: State,
    later: Vec<(Position, State)>,
}

impl Timeline {
    /// Every state the movie had within `window`.
    fn within(&self, window: Window) -> impl Iterator<Item = &State> {
        let start = self.later.partition_point(|(p, _)| *p <= window.from);
        let at_from = if start == 0 { &self.at_low } else { &self.later[start - 1].1 };
        std::iter::once(at_from)
            .chain(self.later[start..].iter().take_while(move |(p, _)| *p <= window.to).map(|(_, s)| s))
    }

    /// The newest state within `window`, which a difference is reported against.
    fn at_end(&self, window: Window) -> &State {
        self.within(window).last().expect("a window holds at least its start")
    }
}

/// The log folded once for every window: each movie's timeline, and each genre's movie count
/// at the lowest window start with every later change to it.
struct Folded {
    events: usize,
    timelines: HashMap<Uuid, Timeline>,
    genres_at_low: HashMap<String, (String, i64)>,
    genre_changes: Vec<(Position, String, String, i64)>,
}

impl Folded {
    async fn read(events: &dyn EventStore, low: Position, high: Position) -> anyhow::Result<Self> {
        let mut movies: HashMap<Uuid, (Movie, Version)> = HashMap::new();
        let mut folded = Folded {
            events: 0,
            timelines: HashMap::new(),
            genres_at_low: HashMap::new(),
            genre_changes: Vec::new(),
        };
        let mut after = 0;
        'read: loop {
            let batch = events.read_all(after, BATCH).await?;
            let Some(last) = batch.last() else { break };
            after = last.position;
            for envelope in &batch {
                if envelope.position > high {
                    break 'read;
                }
                folded.events += 1;
                let (movie, version) = movies.entry(envelope.stream_id).or_insert((Movie::Absent, 0));
                let before: Vec<String> = movie.live().map(|f| f.genres.clone()).unwrap_or_default();
                movie.apply(&envelope.event);
                *version = envelope.stream_version;
                let state = movie.live().map(|fields| (fields.clone(), *version));
                let timeline = folded.timelines.entry(envelope.stream_id).or_default();
                if envelope.position <= low {
                    timeline.at_low = state;
                    continue;
                }
                let after_genres: Vec<String> =
                    state.as_ref().map(|(f, _)| f.genres.clone()).unwrap_or_default();
                for (genres, delta) in [(&before, -1), (&after_genres, 1)] {
                    for genre in genres {
                        folded.genre_changes.push((
                            envelope.position,
                            genre_key(genre),
                            genre.clone(),
                            delta,
                        ));
                    }
                }
                timeline.later.push((envelope.position, state));
            }
        }
        for (fields, _) in folded.timelines.values().filter_map(|t| t.at_low.as_ref()) {
            for genre in &fields.genres {
                folded.genres_at_low.entry(genre_key(genre)).or_insert_with(|| (genre.clone(), 0)).1 += 1;
            }
        }
        Ok(folded)
    }

    /// Live movies at the end of `window`.
    fn live_at_end(&self, window: Window) -> usize {
        self.timelines.values().filter(|t| t.at_end(window).is_some()).count()
    }

    /// Compares a projection's documents, read within `window`, with the log: a document is
    /// drift only if it is none of the states its movie had in the window (and a missing one
    /// only if the movie was live throughout).
    fn compare(
        &self,
        projection: &str,
        window: Window,
        actual: HashMap<Uuid, (MovieFields, Version)>,
        differences: &mut Vec<String>,
    ) {
        for (id, timeline) in &self.timelines {
            let mut states = timeline.within(window);
            let found = actual.get(id);
            let fits = match found {
                Some((f, v)) => {
                    states.any(|s| s.as_ref().is_some_and(|(fields, version)| fields == f && version == v))
                }
                None => states.any(Option::is_none),
            };
            if fits {
                continue;
            }
            match (found, timeline.at_end(window)) {
                (None, Some((fields, version))) => differences.push(format!(
                    "{projection}: movie {id} is missing (log: {})",
                    describe(fields, *version)
                )),
                (Some((f, v)), Some((fields, version))) => differences.push(format!(
                    "{projection}: movie {id} differs: has {}, log says {}",
                    describe(f, *v),
                    describe(fields, *version)
                )),
                (Some((f, v)), None) => differences
                    .push(format!("{projection}: movie {id} should not be there (has {})", describe(f, *v))),
                (None, None) => unreachable!("a missing document fits a movie that is gone"),
            }
        }
        for (id, (fields, version)) in actual {
            if !self.timelines.contains_key(&id) {
                differences.push(format!(
                    "{projection}: movie {id} should not be there (has {})",
                    describe(&fields, version)
                ));
            }
        }
    }

    /// Each genre's lowest and highest movie count within `window` (a count moves by one at a
    /// time, so it took every value between), and its name.
    fn genre_counts(&self, window: Window) -> HashMap<String, (String, i64, i64)> {
        let mut now: HashMap<String, (String, i64)> = self.genres_at_low.clone();
        let mut changes = self.genre_changes.iter().peekable();
        while let Some((_, key, genre, delta)) = changes.next_if(|(p, ..)| *p <= window.from) {
            now.entry(key.clone()).or_insert_with(|| (genre.clone(), 0)).1 += delta;
        }
        let mut range: HashMap<String, (String, i64, i64)> =
            now.iter().map(|(key, (genre, n))| (key.clone(), (genre.clone(), *n, *n))).collect();
        for (_, key, genre, delta) in changes.take_while(|(p, ..)| *p <= window.to) {
            let count = now.entry(key.clone()).or_insert_with(|| (genre.clone(), 0));
            count.1 += delta;
            let seen = range.entry(key.clone()).or_insert_with(|| (genre.clone(), 0, 0));
            seen.1 = seen.1.min(count.1);
            seen.2 = seen.2.max(count.1);
        }
        range
    }
}

/// Folds the log and compares the read store (rows and genre counts), the search index and, when
/// given, the cache's documents with it. Each projection is compared with the log as of the
/// positions it may reflect, so a run beside a live server reports drift, never lag: from its
/// checkpoint read just before it (for the cache, the position the caller read before reading
/// it) to the log's head just after. A cache may lack entries (it holds what was read or written
/// lately), but every entry it has must be one of those states.
pub async fn verify(
    events: &dyn EventStore,
    read_store: &dyn ReadStore,
    search: &dyn SearchIndex,
    cache: Option<(Position, Vec<CachedDocument>)>,
) -> anyhow::Result<Verification> {
    let store_from = read_store.checkpoint().await?;
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
    let counted: HashMap<String, i64> =
        read_store.genres().await?.into_iter().map(|g| (genre_key(&g.genre), g.movies)).collect();
    let index_from = search.checkpoint();
    let documents: HashMap<_, _> =
        search.documents()?.into_iter().map(|(id, fields, version)| (id, (fields, version))).collect();
    let head = events.head().await?;
    let (store, index) = (Window { from: store_from, to: head }, Window { from: index_from, to: head });
    let cache = cache.map(|(from, documents)| (Window { from: from.min(head), to: head }, documents));
    let low =
        [store.from, index.from].into_iter().chain(cache.iter().map(|(w, _)| w.from)).min().unwrap_or(0);
    let log = Folded::read(events, low, head).await?;

    let mut differences = Vec::new();
    log.compare("read store", store, rows, &mut differences);
    log.compare("search index", index, documents, &mut differences);
    let genres = log.genre_counts(store);
    for (key, (genre, least, most)) in &genres {
        let found = counted.get(key).copied().unwrap_or(0);
        if found < *least || found > *most {
            let said = if least == most { least.to_string() } else { format!("{least} to {most}") };
            differences
                .push(format!("read store: genre {genre:?} counts {found} movies, the log says {said}"));
        }
    }
    for (key, found) in counted.iter().filter(|(key, _)| !genres.contains_key(*key)) {
        differences.push(format!("read store: genre {key:?} counts {found} movies, the log says none"));
    }

    if let Some((window, documents)) = cache {
        for (id, entry) in documents {
            let timeline = log.timelines.get(&id);
            let fits = timeline.is_some_and(|t| t.within(window).any(|state| *state == entry))
                || (timeline.is_none() && entry.is_none());
            if fits {
                continue;
            }
            let expected = timeline.and_then(|t| t.at_end(window).as_ref());
            match (entry, expected) {
                (Some((fields, version)), Some((f, v))) => differences.push(format!(
                    "cache: movie {id} differs: has {}, log says {}",
                    describe(&fields, version),
                    describe(f, *v)
                )),
                (Some((fields, version)), None) => differences
                    .push(format!("cache: movie {id} should be gone (has {})", describe(&fields, version))),
                (None, Some((f, v))) => differences
                    .push(format!("cache: movie {id} is cached as gone (log: {})", describe(f, *v))),
                (None, None) => {}
            }
        }
    }
    differences.sort();
    Ok(Verification { movies: log.live_at_end(store), events: log.events, differences })
}
