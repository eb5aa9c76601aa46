//! The relevance test set: queries over data/imdb.json with the results a reader expects on top
//! (typos, prefixes, directors, genre words, mixed). Each case says what it checks in
//! `search/tests/relevance.json`.

use chrono::Utc;
use movies_events::{Actor, EventEnvelope, EventMetadata, MovieDraft, MovieEvent, MovieInput, Role};
use movies_search::{NamedHit, SearchQuery, TantivySearchIndex};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

#[derive(Deserialize)]
struct Case {
    q: String,
    first: Option<String>,
    #[serde(default)]
    top: Vec<String>,
    within: Option<usize>,
    director: Option<String>,
    genre: Option<String>,
    #[serde(default)]
    genre_from: usize,
    #[serde(default)]
    count: std::collections::HashMap<String, usize>,
}

fn catalogue() -> (TantivySearchIndex, std::collections::HashMap<Uuid, (String, Vec<String>)>) {
    let records: Vec<Value> = serde_json::from_str(include_str!("../../data/imdb.json")).unwrap();
    let mut facts = std::collections::HashMap::new();
    let events: Vec<EventEnvelope> = records
        .iter()
        .enumerate()
        .map(|(n, r)| {
            let input = MovieInput {
                name: r["name"].as_str().unwrap().into(),
                director: r["director"].as_str().unwrap().into(),
                popularity: r["99popularity"].as_f64().unwrap(),
                imdb_score: r["imdb_score"].as_f64().unwrap(),
                genres: r["genre"].as_array().unwrap().iter().map(|g| g.as_str().unwrap().into()).collect(),
            };
            let fields = MovieDraft::parse(input).unwrap().into_fields();
            let id = Uuid::now_v7();
            facts.insert(id, (fields.director.clone(), fields.genres.clone()));
            EventEnvelope {
                event_id: Uuid::now_v7(),
                stream_id: id,
                stream_version: 1,
                position: n as i64 + 1,
                recorded_at: Utc::now(),
                metadata: EventMetadata {
                    actor: Actor { subject: "test".into(), role: Role::System },
                    request_id: None,
                },
                event: MovieEvent::Created(fields),
            }
        })
        .collect();
    let index = TantivySearchIndex::in_memory().unwrap();
    index.apply(&events).unwrap();
    (index, facts)
}

#[test]
fn the_relevance_set_ranks_what_readers_expect_on_top() {
    let cases: Vec<Case> = serde_json::from_str(include_str!("relevance.json")).unwrap();
    assert!(cases.len() >= 40, "at least 40 queries");
    let (index, facts) = catalogue();
    let mut failures = Vec::new();
    for case in &cases {
        let window = case.within.unwrap_or(case.top.len().max(1));
        let page =
            index.search(&SearchQuery { text: case.q.clone(), limit: 20, ..Default::default() }).unwrap();
        let named = index.named_hits(&page).unwrap();
        let hits: Vec<&NamedHit> = named.iter().collect();
        let names: Vec<&str> = hits.iter().map(|h| h.name.as_str()).collect();
        let head = &hits[..window.min(hits.len())];
        let mut fail = |why: String| {
            failures.push(format!("{:?}: {why}; got {:?}", case.q, &names[..names.len().min(8)]))
        };
        if let Some(first) = &case.first {
            if names.first() != Some(&first.as_str()) {
                fail(format!("expected {first:?} first"));
            }
        }
        for expected in &case.top {
            if !head.iter().any(|h| &h.name == expected) {
                fail(format!("expected {expected:?} in the top {window}"));
            }
        }
        for (name, times) in &case.count {
            if head.iter().filter(|h| &h.name == name).count() != *times {
                fail(format!("expected {name:?} {times} times in the top {window}"));
            }
        }
        if let Some(director) = &case.director {
            if head.len() < window || !head.iter().all(|h| &facts[&h.id].0 == director) {
                fail(format!("expected the top {window} by {director}"));
            }
        }
        if let Some(genre) = &case.genre {
            let tail = head.get(case.genre_from..).unwrap_or_default();
            if head.len() < window || !tail.iter().all(|h| facts[&h.id].1.contains(genre)) {
                fail(format!("expected the top {window} (from {}) in {genre}", case.genre_from));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} relevance cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn suggestions_complete_titles_as_they_are_typed() {
    let (index, _) = catalogue();
    let names = |q: &str| index.suggest(q, 10).unwrap().into_iter().map(|h| h.name).collect::<Vec<_>>();
    assert_eq!(names("star w").first().map(String::as_str), Some("Star Wars"));
    assert!(names("sta").iter().take(3).any(|n| n == "Star Wars"), "{:?}", names("sta"));
    assert!(names("termi").iter().take(2).all(|n| n.contains("Terminator")), "{:?}", names("termi"));
    assert!(names("godfat").first().is_some_and(|n| n == "The Godfather"));
    let wizard = names("the wizard of");
    assert_eq!(
        wizard.iter().filter(|n| n.as_str() == "The Wizard of Oz").count(),
        1,
        "titles are distinct: {wizard:?}"
    );
    assert!(names("").is_empty());
    assert!(names("s").len() <= 10);
}

#[test]
fn hits_mark_what_matched() {
    let (index, _) = catalogue();
    let page = index.search(&SearchQuery { text: "star w".into(), limit: 1, ..Default::default() }).unwrap();
    let hit = &page.hits[0];
    assert_eq!(page.marks.mark("Star Wars").as_deref(), Some("<mark>Star</mark> <mark>Wars</mark>"));
    assert_eq!(
        index.named_hits(&page).unwrap()[0].highlight.name.as_deref(),
        page.marks.mark("Star Wars").as_deref()
    );
    assert_eq!(index.named_hits(&page).unwrap()[0].id, hit.id);
    let page =
        index.search(&SearchQuery { text: "hitchcok".into(), limit: 1, ..Default::default() }).unwrap();
    assert_eq!(
        page.marks.highlight("Psycho", "Alfred Hitchcock").director.as_deref(),
        Some("Alfred <mark>Hitchcock</mark>")
    );
    assert_eq!(page.marks.highlight("Psycho", "Alfred Hitchcock").name, None, "nothing to mark");
}

#[test]
fn facets_count_genres_over_all_matches() {
    let (index, facts) = catalogue();
    let page = index
        .search(&SearchQuery { text: "star".into(), limit: 1, facets: true, ..Default::default() })
        .unwrap();
    let all = index.search(&SearchQuery { text: "star".into(), limit: 100, ..Default::default() }).unwrap();
    let sci_fi = all.hits.iter().filter(|h| facts[&h.id].1.contains(&"Sci-Fi".to_owned())).count() as u64;
    assert_eq!(page.facets.iter().find(|(g, _)| g == "Sci-Fi").map(|(_, n)| *n), Some(sci_fi));
    assert!(page.facets.windows(2).all(|w| w[0].1 >= w[1].1));
}
