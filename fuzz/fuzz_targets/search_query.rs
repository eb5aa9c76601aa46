//! A search text as an anonymous client sends it: the limits refuse it, or search and suggest
//! answer it over a small index, never a panic. What the limits let through is what the engine
//! handles; libFuzzer's `-rss_limit_mb` and `-timeout` flag an input that costs too much.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use movies_events::{MovieEvent, MovieFields};
use movies_search::{check_query_text, SearchQuery, SearchSort, TantivySearchIndex};

fn index() -> &'static TantivySearchIndex {
    static INDEX: OnceLock<TantivySearchIndex> = OnceLock::new();
    INDEX.get_or_init(|| {
        let index = TantivySearchIndex::in_memory().expect("an in-memory index");
        let movies = [
            ("Star Wars", "George Lucas", &["Adventure", "Sci-Fi"][..]),
            ("Star Trek: The Motion Picture", "Robert Wise", &["Sci-Fi"]),
            ("Amélie", "Jean-Pierre Jeunet", &["Comedy", "Romance"]),
            ("千と千尋の神隠し", "宮崎駿", &["Animation"]),
            ("The Godfather", "Francis Ford Coppola", &["Crime", "Drama"]),
            ("Frankenstein", "James Whale", &["Horror"]),
        ];
        let events: Vec<_> = movies
            .iter()
            .enumerate()
            .map(|(n, (name, director, genres))| {
                let fields = MovieFields {
                    name: (*name).into(),
                    director: (*director).into(),
                    popularity: 10.0 * n as f64,
                    imdb_score: 1.0 + n as f64,
                    genres: genres.iter().map(|g| (*g).to_owned()).collect(),
                };
                let position = n as i64 + 1;
                movies_store::testing::recorded(position, uuid::Uuid::now_v7(), 1, MovieEvent::Created(fields))
            })
            .collect();
        index.apply(&events).expect("the movies index");
        index
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if check_query_text(text).is_err() {
        return;
    }
    let index = index();
    for sort in [SearchSort::Relevance, SearchSort::Name] {
        let query = SearchQuery { text: text.into(), sort, limit: 10, facets: true, ..Default::default() };
        let page = index.search(&query).expect("a search within the limits answers");
        assert!(page.hits.len() <= 10);
    }
    index.suggest(text, 5).expect("a suggestion within the limits answers");
});
