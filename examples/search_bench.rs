//! Indexes a generated catalogue and measures every kind of search on it. Run by
//! `bench/search.sh`, which records the figures in docs/benchmarks.md.
//!
//! Usage: search_bench COUNT INDEX_DIR

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::Utc;
use movies::generate::{BenchArgs, Generator};
use movies_events::{Actor, EventEnvelope, EventMetadata, MovieDraft, MovieEvent, MovieInput, Role};
use movies_read_model::Order;
use movies_search::{SearchFilters, SearchQuery, SearchSort, TantivySearchIndex};
use rand::{Rng, SeedableRng};
use uuid::Uuid;

const BATCH: usize = 100_000;
const QUERIES: usize = 1000;

fn dir_size(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.metadata().map_or(0, |m| if m.is_dir() { dir_size(&e.path()) } else { m.len() }))
                .sum()
        })
        .unwrap_or(0)
}

struct Figures {
    p50: Duration,
    p99: Duration,
    qps: f64,
}

fn measure(mut run: impl FnMut(usize)) -> Figures {
    for n in 0..QUERIES / 10 {
        run(n);
    }
    let mut times = Vec::with_capacity(QUERIES);
    let started = Instant::now();
    for n in 0..QUERIES {
        let t = Instant::now();
        run(n);
        times.push(t.elapsed());
    }
    let total = started.elapsed();
    times.sort();
    Figures {
        p50: times[QUERIES / 2],
        p99: times[QUERIES * 99 / 100],
        qps: QUERIES as f64 / total.as_secs_f64(),
    }
}

fn main() {
    let BenchArgs { count, dir, shape } = BenchArgs::from_command_line();
    let dir = dir.as_path();
    // SEARCH_BENCH_REUSE=1 times queries on an index an earlier run left in INDEX_DIR (for
    // iterating on query code); the figures of record always build the index afresh.
    let reuse = std::env::var_os("SEARCH_BENCH_REUSE").is_some() && dir.join("meta.json").exists();
    if !reuse {
        let _ = std::fs::remove_dir_all(dir);
    }
    let index = TantivySearchIndex::open(dir).expect("open index");

    // ---- indexing: the projector's own path (apply + commit with checkpoint), in batches.
    let mut generator = Generator::with_shape(42, count, shape);
    let mut vocabulary: Vec<(String, String)> = Vec::new();
    let metadata =
        EventMetadata { actor: Actor { subject: "bench".into(), role: Role::System }, request_id: None };
    let started = Instant::now();
    let mut position = 0i64;
    if reuse {
        vocabulary = (0..5000).map(|_| generator.next_record()).map(|r| (r.name, r.director)).collect();
        position = count as i64;
    }
    while (position as usize) < count {
        let batch: Vec<EventEnvelope> = (0..BATCH.min(count - position as usize))
            .map(|_| {
                let r = generator.next_record();
                if vocabulary.len() < 5000 {
                    vocabulary.push((r.name.clone(), r.director.clone()));
                }
                let input = MovieInput::from(r);
                position += 1;
                EventEnvelope {
                    event_id: Uuid::now_v7(),
                    stream_id: Uuid::now_v7(),
                    stream_version: 1,
                    position,
                    recorded_at: Utc::now(),
                    metadata: metadata.clone(),
                    event: MovieEvent::Created(
                        MovieDraft::parse(input).expect("generated movies are valid").into_fields(),
                    ),
                }
            })
            .collect();
        index.apply(&batch).expect("index batch");
        eprint!("\rindexed {position}/{count}");
    }
    let index_time = started.elapsed();
    eprintln!();
    println!("movies indexed:      {count}");
    println!(
        "index time:          {:.1} s ({:.0} movies/s)",
        index_time.as_secs_f64(),
        count as f64 / index_time.as_secs_f64()
    );
    println!("index size:          {:.0} MiB", dir_size(dir) as f64 / 1024.0 / 1024.0);

    // ---- queries drawn from the catalogue's own words, the same for every run.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let words: Vec<String> = vocabulary
        .iter()
        .flat_map(|(name, _)| name.split(' ').map(str::to_lowercase).collect::<Vec<_>>())
        .filter(|w| w.len() >= 5 && w.chars().all(char::is_alphabetic))
        .collect();
    let pick = |rng: &mut rand_chacha::ChaCha8Rng| words[rng.gen_range(0..words.len())].clone();
    // The catalogue's most common title word ("the" in a realistic one): alone, every query's
    // worst case, as are one letter and a two-letter prefix.
    let common = {
        let mut counts = std::collections::HashMap::<String, usize>::new();
        for (name, _) in &vocabulary {
            for word in name.split(' ') {
                *counts.entry(word.to_lowercase()).or_default() += 1;
            }
        }
        counts
            .into_iter()
            .max_by_key(|(word, n)| (*n, word.clone()))
            .map(|(word, _)| word)
            .unwrap_or_default()
    };
    println!("most common word:    {common:?}");
    let typo = |word: &str, rng: &mut rand_chacha::ChaCha8Rng| {
        let mut chars: Vec<char> = word.chars().collect();
        let at = rng.gen_range(1..chars.len());
        chars.remove(at);
        chars.into_iter().collect::<String>()
    };
    let sets: Vec<(&str, Vec<SearchQuery>)> = {
        let mut make = |build: &mut dyn FnMut(&mut rand_chacha::ChaCha8Rng) -> SearchQuery| {
            (0..QUERIES).map(|_| build(&mut rng)).collect::<Vec<_>>()
        };
        let base = SearchQuery { limit: 20, facets: true, ..SearchQuery::default() };
        vec![
            ("one term", make(&mut |r| SearchQuery { text: format!("{} ", pick(r)), ..base.clone() })),
            (
                "one term, no facets",
                make(&mut |r| SearchQuery { text: format!("{} ", pick(r)), facets: false, ..base.clone() }),
            ),
            (
                "two terms",
                make(&mut |r| SearchQuery { text: format!("{} {} ", pick(r), pick(r)), ..base.clone() }),
            ),
            (
                "with common words",
                make(&mut |r| SearchQuery {
                    text: format!("the {} of {} ", pick(r), pick(r)),
                    ..base.clone()
                }),
            ),
            ("typo", make(&mut |r| SearchQuery { text: format!("{} ", typo(&pick(r), r)), ..base.clone() })),
            (
                "prefix",
                make(&mut |r| SearchQuery {
                    text: {
                        let w = pick(r);
                        format!("{} {}", pick(r), &w[..3])
                    },
                    ..base.clone()
                }),
            ),
            (
                "filtered + sorted",
                make(&mut |r| SearchQuery {
                    text: format!("{} ", pick(r)),
                    filters: SearchFilters {
                        genre_any: vec!["Drama".into(), "Comedy".into()],
                        min_score: Some(6.0),
                        ..Default::default()
                    },
                    sort: SearchSort::ImdbScore,
                    order: Some(Order::Desc),
                    ..base.clone()
                }),
            ),
            (
                "browse, faceted",
                make(&mut |r| SearchQuery {
                    filters: SearchFilters {
                        genre_all: vec![["Drama", "Comedy", "Horror", "War"][r.gen_range(0..4)].into()],
                        ..Default::default()
                    },
                    ..base.clone()
                }),
            ),
        ]
    };
    let baseline_words: Vec<String> = (0..QUERIES).map(|_| pick(&mut rng)).collect();
    let suggests: Vec<String> = (0..QUERIES)
        .map(|_| {
            let w = pick(&mut rng);
            w[..rng.gen_range(2..=4)].to_owned()
        })
        .collect();
    // The worst cases, drawn after the rows above so those stay the queries earlier runs timed.
    let base = SearchQuery { limit: 20, facets: true, ..SearchQuery::default() };
    let mut make = |build: &mut dyn FnMut(&mut rand_chacha::ChaCha8Rng) -> SearchQuery| {
        (0..QUERIES).map(|_| build(&mut rng)).collect::<Vec<_>>()
    };
    let worst: Vec<(&str, Vec<SearchQuery>)> = vec![
        ("common word alone", make(&mut |_| SearchQuery { text: format!("{common} "), ..base.clone() })),
        (
            "one letter",
            make(&mut |r| SearchQuery {
                text: char::from(b'a' + r.gen_range(0..26u8)).to_string(),
                ..base.clone()
            }),
        ),
        ("two-letter prefix", make(&mut |r| SearchQuery { text: pick(r)[..2].to_owned(), ..base.clone() })),
    ];
    let mut sets = sets;
    let at = sets.iter().position(|(name, _)| *name == "typo").unwrap_or(sets.len());
    sets.splice(at..at, worst);

    let baseline = measure(|n| {
        index.baseline_term_search(&baseline_words[n]).expect("baseline");
    });
    println!();
    println!("{:<22} {:>9} {:>9} {:>9} {:>12}", "query (1 thread)", "p50 ms", "p99 ms", "q/s", "p50 vs base");
    let row = |name: &str, f: &Figures| {
        println!(
            "{:<22} {:>9.2} {:>9.2} {:>9.0} {:>11.1}x",
            name,
            f.p50.as_secs_f64() * 1e3,
            f.p99.as_secs_f64() * 1e3,
            f.qps,
            f.p50.as_secs_f64() / baseline.p50.as_secs_f64()
        )
    };
    row("baseline: bare term", &baseline);
    // SEARCH_BENCH_ONLY=NAME times only the query types whose name contains NAME (profiling).
    let only = std::env::var("SEARCH_BENCH_ONLY").unwrap_or_default();
    for (name, queries) in sets.iter().filter(|(name, _)| name.contains(only.as_str())) {
        let figures = measure(|n| {
            index.search(&queries[n]).expect("search");
        });
        row(name, &figures);
    }
    let figures = measure(|n| {
        index.suggest(&suggests[n], 10).expect("suggest");
    });
    row("suggest", &figures);
}
