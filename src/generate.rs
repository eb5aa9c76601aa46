//! `movies generate`: a deterministic synthetic catalogue in the ingest format, for scale work.
//! The same count and seed always give the same file (ChaCha8 is specified bit for bit).
//!
//! Distributions: titles from word lists in a dozen patterns (with sequels), popularity with a
//! heavy tail (most movies obscure, few famous), IMDB scores bell-shaped around 6.4, one to four
//! genres weighted like a real catalogue (drama and comedy common, film-noir rare), and a pool of
//! directors where a few are prolific.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::io::Write;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub use crate::ingest::Record;

const ADJECTIVES: &[&str] = &[
    "Silent",
    "Dark",
    "Golden",
    "Broken",
    "Hidden",
    "Last",
    "Lost",
    "Crimson",
    "Eternal",
    "Savage",
    "Burning",
    "Frozen",
    "Wild",
    "Secret",
    "Forgotten",
    "Electric",
    "Iron",
    "Midnight",
    "Scarlet",
    "Hollow",
    "Bitter",
    "Brave",
    "Distant",
    "Endless",
    "Fallen",
    "Gentle",
    "Grand",
    "Haunted",
    "Infinite",
    "Lonely",
    "Lucky",
    "Mad",
    "Mighty",
    "Northern",
    "Pale",
    "Perfect",
    "Quiet",
    "Restless",
    "Rising",
    "Royal",
    "Sacred",
    "Shattered",
    "Shining",
    "Sleeping",
    "Stolen",
    "Strange",
    "Sweet",
    "Twisted",
    "Velvet",
    "Wicked",
    "Young",
    "Ancient",
    "Blue",
    "Cold",
    "Crooked",
    "Deadly",
    "Desperate",
    "Final",
    "First",
    "Fragile",
    "Glass",
    "Green",
    "Heavy",
    "Invisible",
    "Little",
    "Long",
    "Magic",
    "Modern",
    "Naked",
    "New",
    "Old",
    "Open",
    "Private",
    "Red",
    "Rough",
    "Second",
    "Seventh",
    "Silver",
    "Small",
    "Southern",
    "Steel",
    "Sudden",
    "Tender",
    "Thin",
    "True",
    "Urban",
    "Violent",
    "White",
    "Wooden",
    "Yellow",
];
const NOUNS: &[&str] = &[
    "River",
    "Shadow",
    "Empire",
    "Storm",
    "Heart",
    "Kingdom",
    "Night",
    "Road",
    "City",
    "Garden",
    "Mirror",
    "Island",
    "Dream",
    "Fire",
    "Ghost",
    "Horizon",
    "Hunter",
    "Journey",
    "Key",
    "Legend",
    "Machine",
    "Moon",
    "Ocean",
    "Promise",
    "Queen",
    "Rain",
    "Secret",
    "Sky",
    "Song",
    "Star",
    "Stranger",
    "Summer",
    "Sun",
    "Tide",
    "Tower",
    "Train",
    "Valley",
    "Voice",
    "War",
    "Winter",
    "Wolf",
    "World",
    "Angel",
    "Bridge",
    "Castle",
    "Circle",
    "Crown",
    "Dawn",
    "Desert",
    "Detective",
    "Door",
    "Dragon",
    "Echo",
    "Edge",
    "Falcon",
    "Forest",
    "Frontier",
    "Game",
    "Gate",
    "Harbor",
    "Heist",
    "House",
    "Lady",
    "Letter",
    "Light",
    "Line",
    "Love",
    "Man",
    "Mask",
    "Memory",
    "Mountain",
    "Murder",
    "Mystery",
    "Nation",
    "Orchard",
    "Outlaw",
    "Palace",
    "Passage",
    "Planet",
    "Prince",
    "Prophecy",
    "Rebel",
    "Revenge",
    "Rider",
    "Saint",
    "Sea",
    "Ship",
    "Signal",
    "Soldier",
    "Spy",
    "Station",
    "Street",
    "Sword",
    "Thief",
    "Thunder",
    "Time",
    "Voyage",
    "Witness",
    "Wind",
    "Woman",
];
const FIRST_NAMES: &[&str] = &[
    "Alice", "Anna", "Ben", "Carlos", "Chen", "Claire", "David", "Elena", "Emma", "Farid", "George", "Hana",
    "Ingrid", "Isaac", "James", "Jean", "Julia", "Kenji", "Laura", "Leo", "Lucia", "Marco", "Maria", "Mei",
    "Nadia", "Nikolai", "Olga", "Omar", "Paolo", "Priya", "Rafael", "Rosa", "Sam", "Sofia", "Tariq",
    "Thomas", "Ursula", "Victor", "Wanda", "Yusuf", "Zoe", "Akira", "Bruno", "Dora", "Ewa", "Felix", "Greta",
    "Hugo", "Irene", "Jonas",
];
const LAST_NAMES: &[&str] = &[
    "Andersen",
    "Baker",
    "Bergman",
    "Castillo",
    "Chan",
    "Dubois",
    "Eastwood",
    "Fischer",
    "Garcia",
    "Hartmann",
    "Ito",
    "Jensen",
    "Kowalski",
    "Kurosawa",
    "Lang",
    "Lopez",
    "Moreau",
    "Nakamura",
    "Novak",
    "Okafor",
    "Petrov",
    "Quinn",
    "Rossi",
    "Schmidt",
    "Silva",
    "Tanaka",
    "Umarov",
    "Varga",
    "Weber",
    "Xu",
    "Yamamoto",
    "Zhang",
    "Almodovar",
    "Bianchi",
    "Costa",
    "Duarte",
    "Engel",
    "Ferreira",
    "Gruber",
    "Horvat",
    "Ivanova",
    "Kim",
    "Larsen",
    "Meyer",
    "Nielsen",
    "Olsen",
    "Park",
    "Romano",
    "Santos",
    "Torres",
    "Vogel",
    "Wagner",
    "Wolff",
    "Young",
    "Ziegler",
];
/// Genres with rough catalogue weights.
const GENRES: &[(&str, u32)] = &[
    ("Drama", 30),
    ("Comedy", 20),
    ("Thriller", 10),
    ("Action", 10),
    ("Romance", 9),
    ("Crime", 8),
    ("Horror", 7),
    ("Adventure", 7),
    ("Documentary", 6),
    ("Sci-Fi", 5),
    ("Family", 5),
    ("Fantasy", 5),
    ("Mystery", 5),
    ("Animation", 4),
    ("Biography", 3),
    ("History", 3),
    ("War", 2),
    ("Music", 2),
    ("Musical", 2),
    ("Western", 2),
    ("Sport", 2),
    ("Short", 2),
    ("Film-Noir", 1),
];
const SEQUELS: &[&str] = &["II", "III", "IV", "2", "3", "Returns", "Reloaded", "Rising", "Forever"];

/// An endless, deterministic stream of distinct movies (no title and director pair repeats).
pub struct Generator {
    rng: ChaCha8Rng,
    directors: Vec<String>,
    /// Hashes of the (title, director) pairs handed out: 8 bytes a movie, even at millions.
    seen: HashSet<u64>,
    genre_total: u32,
}

fn pick<'a, R: Rng>(rng: &mut R, words: &[&'a str]) -> &'a str {
    words[rng.gen_range(0..words.len())]
}

impl Generator {
    /// `expected` sizes the director pool (one director per 40 movies, at least 50).
    pub fn new(seed: u64, expected: usize) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let pool = (expected / 40).max(50);
        let directors = (0..pool)
            .map(|n| {
                let name = format!("{} {}", pick(&mut rng, FIRST_NAMES), pick(&mut rng, LAST_NAMES));
                // Past the plain combinations, a middle initial keeps names distinct enough.
                if n < FIRST_NAMES.len() * LAST_NAMES.len() / 2 {
                    name
                } else {
                    let initial = (b'A' + rng.gen_range(0..26u8)) as char;
                    name.replacen(' ', &format!(" {initial}. "), 1)
                }
            })
            .collect();
        Self { rng, directors, seen: HashSet::new(), genre_total: GENRES.iter().map(|g| g.1).sum() }
    }

    fn title(&mut self) -> String {
        let rng = &mut self.rng;
        let (a, n, m) = (pick(rng, ADJECTIVES), pick(rng, NOUNS), pick(rng, NOUNS));
        let title = match rng.gen_range(0..12) {
            0 | 1 => format!("The {a} {n}"),
            2 => format!("{n} of the {m}"),
            3 => format!("The {n} and the {m}"),
            4 => format!("{a} {n}"),
            5 => n.to_owned(),
            6 => format!("The {n}'s {m}"),
            7 => format!("{a} {n} : The {m}"),
            8 => format!("A {n} in the {m}"),
            9 => format!("{n}s of {m}"),
            10 => format!("Return to {a} {m}"),
            _ => format!("The {a} {n} of {m}"),
        };
        if rng.gen_bool(0.08) {
            format!("{title} {}", pick(rng, SEQUELS))
        } else {
            title
        }
    }

    fn genres(&mut self) -> Vec<String> {
        let count = [1, 1, 2, 2, 2, 3, 3, 4][self.rng.gen_range(0..8)];
        let mut genres: Vec<String> = Vec::new();
        while genres.len() < count {
            let mut ticket = self.rng.gen_range(0..self.genre_total);
            let genre = GENRES
                .iter()
                .find(|(_, w)| {
                    ticket < *w || {
                        ticket -= w;
                        false
                    }
                })
                .map_or("Drama", |g| g.0);
            if !genres.iter().any(|g| g == genre) {
                genres.push(genre.to_owned());
            }
        }
        genres
    }

    pub fn next_record(&mut self) -> Record {
        loop {
            let name = self.title();
            // Prolific directors: the square skews picks towards the front of the pool.
            let u: f64 = self.rng.gen();
            let director = self.directors[((u * u) * self.directors.len() as f64) as usize].clone();
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            (name.to_lowercase(), director.to_lowercase()).hash(&mut hasher);
            if !self.seen.insert(hasher.finish()) {
                continue;
            }
            // Heavy-tailed popularity: most movies obscure, a few famous.
            let popularity = (100.0 * self.rng.gen::<f64>().powi(3) * 10.0).round() / 10.0;
            // Bell-shaped scores: the mean of four uniforms, centred near 6.4.
            let bell: f64 = (0..4).map(|_| self.rng.gen::<f64>()).sum::<f64>() / 4.0;
            let imdb_score = ((1.0 + bell * 10.8).clamp(1.0, 10.0) * 10.0).round() / 10.0;
            return Record { popularity, director, genre: self.genres(), imdb_score, name };
        }
    }
}

/// Writes `count` movies as one JSON array.
pub fn write(out: &mut impl Write, count: usize, seed: u64) -> std::io::Result<()> {
    let mut generator = Generator::new(seed, count);
    out.write_all(b"[")?;
    for n in 0..count {
        if n > 0 {
            out.write_all(b",\n")?;
        }
        serde_json::to_writer(&mut *out, &generator.next_record())?;
    }
    out.write_all(b"]\n")?;
    out.flush()
}

/// What every benchmark example takes: how many generated movies, and a directory for what the
/// run makes (`usage: NAME COUNT DIR`).
#[derive(Debug, clap::Parser)]
pub struct BenchArgs {
    /// How many generated movies.
    pub count: usize,
    /// Where the run's data goes.
    pub dir: std::path::PathBuf,
}

impl BenchArgs {
    /// From the command line; prints the usage and exits when it does not parse.
    pub fn from_command_line() -> Self {
        <Self as clap::Parser>::parse()
    }
}

/// Appends `count` generated movies (seed 42) to `events` as `movie.created` events, 10,000 per
/// transaction through the bulk append path, and returns their ids. For benchmarks: it skips
/// the command path (the generator's movies are valid by construction) but not the event log.
pub async fn append_generated(
    events: &dyn movies_store::EventStore,
    count: usize,
    mut progress: impl FnMut(usize),
) -> anyhow::Result<Vec<uuid::Uuid>> {
    use movies_events::{Actor, EventMetadata, MovieDraft, MovieEvent, MovieInput, NewEvent, Role};
    let mut generator = Generator::new(42, count);
    let metadata =
        EventMetadata { actor: Actor { subject: "bench".into(), role: Role::System }, request_id: None };
    let mut ids = Vec::with_capacity(count);
    while ids.len() < count {
        let batch: Vec<_> = (0..10_000.min(count - ids.len()))
            .map(|_| {
                let input = MovieInput::from(generator.next_record());
                let fields = MovieDraft::parse(input).map(MovieDraft::into_fields);
                let event = MovieEvent::Created(fields.expect("generated movies are valid"));
                let new = NewEvent {
                    event_id: uuid::Uuid::now_v7(),
                    event,
                    recorded_at: chrono::Utc::now(),
                    metadata: metadata.clone(),
                };
                (uuid::Uuid::now_v7(), 0, vec![new])
            })
            .collect();
        ids.extend(batch.iter().map(|(id, ..)| *id));
        events.append_batch(batch).await?;
        progress(ids.len());
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_catalogue_and_another_seed_another() {
        let run = |seed| {
            let mut out = Vec::new();
            write(&mut out, 500, seed).unwrap();
            out
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn generated_movies_are_valid_distinct_and_skewed() {
        let mut generator = Generator::new(1, 20_000);
        let records: Vec<Record> = (0..20_000).map(|_| generator.next_record()).collect();
        let pairs: HashSet<_> =
            records.iter().map(|r| (r.name.to_lowercase(), r.director.to_lowercase())).collect();
        assert_eq!(pairs.len(), records.len(), "no title and director pair repeats");
        for r in &records {
            assert!(movies_events::MovieDraft::parse(r.clone().into()).is_ok(), "{r:?}");
        }
        let famous = records.iter().filter(|r| r.popularity >= 90.0).count();
        let obscure = records.iter().filter(|r| r.popularity < 10.0).count();
        assert!(obscure > 5 * famous, "popularity is heavy-tailed: {obscure} obscure, {famous} famous");
        let drama = records.iter().filter(|r| r.genre.contains(&"Drama".to_owned())).count();
        let noir = records.iter().filter(|r| r.genre.contains(&"Film-Noir".to_owned())).count();
        assert!(drama > 10 * noir);
    }
}
