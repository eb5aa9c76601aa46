//! `movies generate`: a deterministic synthetic catalogue in the ingest format, for scale work.
//! The same count and seed always give the same file (ChaCha8 is specified bit for bit).
//!
//! Two shapes:
//! - `realistic` (what benchmarks use): title words drawn by a Zipf law from a vocabulary of
//!   real common title words followed by 50,000 made-up ones ("the" is in about a quarter of the
//!   titles, most words in a handful), titles of 1 to 8 words, directors drawn by a flatter Zipf
//!   law from a pool of at least 300,000, and genres (how many and which), scores and popularity
//!   drawn like the assignment's `data/imdb.json`.
//! - `classic` (the first benchmarks' shape, kept so their runs compare): titles from about 200
//!   words in a dozen patterns (with sequels), popularity with a heavy tail, IMDB scores
//!   bell-shaped around 6.4, one to four genres with rough catalogue weights, and a pool of
//!   directors where a few are prolific.

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

/// Which catalogue the generator draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Shape {
    /// Skewed like a real catalogue (the default).
    #[default]
    Realistic,
    /// The first benchmarks' shape: about 200 title words, evenly used.
    Classic,
}

/// An endless, deterministic stream of distinct movies (no title and director pair repeats).
pub struct Generator {
    rng: ChaCha8Rng,
    directors: Vec<String>,
    /// Hashes of the (title, director) pairs handed out: 8 bytes a movie, even at millions.
    seen: HashSet<u64>,
    genre_total: u32,
    /// The realistic shape's tables (`None`: the classic shape).
    realistic: Option<Realistic>,
}

/// Title words that lead a real catalogue's vocabulary, most common first; the Zipf law gives
/// the first the largest share.
const COMMON_TITLE_WORDS: &[&str] = &[
    "the", "of", "a", "in", "and", "love", "man", "night", "to", "my", "life", "day", "last", "story",
    "girl", "world", "dead", "house", "time", "for", "black", "blood", "city", "war", "king", "home", "dark",
    "little", "big", "one", "american", "lost", "woman", "death", "on", "red", "boy", "great", "blue",
    "first", "with", "me", "from", "white", "good", "new", "star", "road", "dream", "secret", "heart", "sea",
    "long", "money", "high", "wild", "killer", "bad", "hell", "game", "island", "moon", "family", "space",
    "summer", "street", "return", "murder", "power", "west", "sun", "dog", "lady", "ghost", "fire", "devil",
    "angel", "water", "mr", "school", "party", "end", "song", "kiss", "wind", "body", "fall", "gold", "men",
    "women", "children", "brother", "sister", "s", "ii", "2",
];
/// Made-up words after the common ones: enough for a long tail of rare words.
const MADE_UP_WORDS: usize = 50_000;
/// The least directors the realistic pool holds.
const MIN_DIRECTORS: usize = 300_000;
/// Title lengths in words, 1 to 8, as shares of a thousand.
const TITLE_LENGTHS: [u32; 8] = [150, 300, 250, 130, 80, 50, 25, 15];

/// The realistic shape's tables, drawn once from the seed.
struct Realistic {
    /// Title words, most common first, and the Zipf law's cumulative weights over them.
    words: Vec<String>,
    word_weights: Vec<f64>,
    /// Cumulative weights over `directors` (a flatter Zipf law: the busiest directs about one
    /// movie in a thousand).
    director_weights: Vec<f64>,
    /// What `data/imdb.json` holds, to draw genres, scores and popularity like it.
    examples: Vec<Record>,
}

/// Cumulative weights of a Zipf law with exponent `s` over `n` ranks.
fn zipf(n: usize, s: f64) -> Vec<f64> {
    let mut total = 0.0;
    (1..=n)
        .map(|rank| {
            total += 1.0 / (rank as f64).powf(s);
            total
        })
        .collect()
}

/// A rank drawn by cumulative `weights`.
fn draw<R: Rng>(rng: &mut R, weights: &[f64]) -> usize {
    let ticket = rng.gen::<f64>() * weights.last().copied().unwrap_or(0.0);
    weights.partition_point(|w| *w <= ticket).min(weights.len().saturating_sub(1))
}

/// A made-up word of two or three syllables, such as "Marovel".
fn made_up_word<R: Rng>(rng: &mut R) -> String {
    const ONSETS: &[&str] = &[
        "b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z", "br", "ch",
        "cr", "dr", "fl", "gr", "kl", "pr", "sh", "st", "th", "tr",
    ];
    const VOWELS: &[&str] = &["a", "e", "i", "o", "u", "ai", "ea", "ou", "y"];
    const CODAS: &[&str] = &["", "", "", "n", "r", "l", "s", "m", "th", "x"];
    let syllables = rng.gen_range(2..=3);
    let mut word = String::new();
    for _ in 0..syllables {
        word.push_str(pick(rng, ONSETS));
        word.push_str(pick(rng, VOWELS));
        word.push_str(pick(rng, CODAS));
    }
    word
}

/// "word" as a title shows it.
fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

impl Realistic {
    fn new(rng: &mut ChaCha8Rng, expected: usize, directors: &mut Vec<String>) -> Self {
        let mut words: Vec<String> = COMMON_TITLE_WORDS.iter().map(|w| (*w).to_owned()).collect();
        let mut known: HashSet<String> = words.iter().cloned().collect();
        while words.len() < COMMON_TITLE_WORDS.len() + MADE_UP_WORDS {
            let word = made_up_word(rng);
            if known.insert(word.clone()) {
                words.push(word);
            }
        }
        // Directors: a first name and a made-up surname, distinct, as many as the catalogue
        // needs past the minimum (one per 15 movies).
        let wanted = MIN_DIRECTORS.max(expected / 15);
        directors.clear();
        let mut names = HashSet::with_capacity(wanted);
        while directors.len() < wanted {
            let name = format!("{} {}", pick(rng, FIRST_NAMES), capitalized(&made_up_word(rng)));
            if names.insert(name.clone()) {
                directors.push(name);
            }
        }
        let examples = movies_events::record::read_records(include_bytes!("../data/imdb.json"))
            .expect("data/imdb.json is a JSON array")
            .iter()
            .map(|raw| movies_events::record::parse_record(raw).expect("data/imdb.json's records parse"))
            .collect();
        Self {
            word_weights: zipf(words.len(), 1.0),
            words,
            director_weights: zipf(directors.len(), 0.6),
            examples,
        }
    }

    fn title(&self, rng: &mut ChaCha8Rng) -> String {
        let mut length = 1;
        let mut ticket = rng.gen_range(0..TITLE_LENGTHS.iter().sum::<u32>());
        for (n, share) in TITLE_LENGTHS.iter().enumerate() {
            if ticket < *share {
                length = n + 1;
                break;
            }
            ticket -= share;
        }
        (0..length)
            .map(|_| capitalized(&self.words[draw(rng, &self.word_weights)]))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Genres, score and popularity of a movie drawn from `data/imdb.json`: its genres as they
    /// are, its score and popularity moved a little (so the values spread beyond its 248).
    fn like_an_example(&self, rng: &mut ChaCha8Rng) -> (Vec<String>, f64, f64) {
        let example = &self.examples[rng.gen_range(0..self.examples.len())];
        let genres = example.genre.iter().map(|g| g.trim().to_owned()).filter(|g| !g.is_empty()).collect();
        let popularity =
            ((example.popularity + rng.gen_range(-3.0..3.0)).clamp(0.0, 100.0) * 10.0).round() / 10.0;
        let score = ((example.imdb_score + rng.gen_range(-0.3..0.3)).clamp(0.0, 10.0) * 10.0).round() / 10.0;
        (genres, popularity, score)
    }
}

fn pick<'a, R: Rng>(rng: &mut R, words: &[&'a str]) -> &'a str {
    words[rng.gen_range(0..words.len())]
}

impl Generator {
    /// The classic shape; `expected` sizes the director pool (one director per 40 movies, at
    /// least 50).
    pub fn new(seed: u64, expected: usize) -> Self {
        Self::with_shape(seed, expected, Shape::Classic)
    }

    /// `expected` sizes the director pool.
    pub fn with_shape(seed: u64, expected: usize, shape: Shape) -> Self {
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
        let mut generator = Self {
            rng,
            directors,
            seen: HashSet::new(),
            genre_total: GENRES.iter().map(|g| g.1).sum(),
            realistic: None,
        };
        if shape == Shape::Realistic {
            let realistic = Realistic::new(&mut generator.rng, expected, &mut generator.directors);
            generator.realistic = Some(realistic);
        }
        generator
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
        if let Some(realistic) = &self.realistic {
            loop {
                let name = realistic.title(&mut self.rng);
                let director = self.directors[draw(&mut self.rng, &realistic.director_weights)].clone();
                if !first_time(&mut self.seen, &name, &director) {
                    continue;
                }
                let (genre, popularity, imdb_score) = realistic.like_an_example(&mut self.rng);
                return Record { popularity, director, genre, imdb_score, name };
            }
        }
        loop {
            let name = self.title();
            // Prolific directors: the square skews picks towards the front of the pool.
            let u: f64 = self.rng.gen();
            let director = self.directors[((u * u) * self.directors.len() as f64) as usize].clone();
            if !first_time(&mut self.seen, &name, &director) {
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

/// Whether this title and director pair is new (and now taken).
fn first_time(seen: &mut HashSet<u64>, name: &str, director: &str) -> bool {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (name.to_lowercase(), director.to_lowercase()).hash(&mut hasher);
    seen.insert(hasher.finish())
}

/// Writes `count` movies of the classic shape as one JSON array.
pub fn write(out: &mut impl Write, count: usize, seed: u64) -> std::io::Result<()> {
    write_shaped(out, count, seed, Shape::Classic)
}

/// Writes `count` movies of `shape` as one JSON array.
pub fn write_shaped(out: &mut impl Write, count: usize, seed: u64, shape: Shape) -> std::io::Result<()> {
    let mut generator = Generator::with_shape(seed, count, shape);
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

/// What every benchmark example takes: how many generated movies, a directory for what the run
/// makes, and the catalogue's shape (`usage: NAME [--shape classic] COUNT DIR`).
#[derive(Debug, clap::Parser)]
pub struct BenchArgs {
    /// How many generated movies.
    pub count: usize,
    /// Where the run's data goes.
    pub dir: std::path::PathBuf,
    /// `realistic` (skewed like a real catalogue) or `classic` (the first benchmarks' shape, to
    /// compare with their figures).
    #[arg(long, value_enum, default_value_t = Shape::Realistic)]
    pub shape: Shape,
}

impl BenchArgs {
    /// From the command line; prints the usage and exits when it does not parse.
    pub fn from_command_line() -> Self {
        <Self as clap::Parser>::parse()
    }
}

/// A database of its own for one phase of a benchmark, on the Postgres server `DATABASE_URL`
/// names (`None` without it: the phase then runs on SQLite): made empty, so that no phase
/// appends to what an earlier phase or run left, and dropped by `drop`.
pub struct BenchDatabase {
    server: sqlx::postgres::PgConnectOptions,
    name: String,
    /// The phase's database, for `Settings::database_url`.
    pub url: String,
}

impl BenchDatabase {
    /// Makes the empty database `bench_<phase>` (dropping one an interrupted run left).
    pub async fn fresh(phase: &str) -> anyhow::Result<Option<Self>> {
        use sqlx::ConnectOptions;
        let Ok(server) = std::env::var("DATABASE_URL") else { return Ok(None) };
        let server: sqlx::postgres::PgConnectOptions = server.parse()?;
        let name = format!("bench_{phase}");
        anyhow::ensure!(name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "phase {phase:?}");
        let mut admin = server.connect().await?;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut admin).await?;
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await?;
        let url = server.clone().database(&name).to_url_lossy().to_string();
        Ok(Some(Self { server, name, url }))
    }

    /// Drops the database (its connections closed first).
    pub async fn drop(self) -> anyhow::Result<()> {
        use sqlx::ConnectOptions;
        let mut admin = self.server.connect().await?;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
            .execute(&mut admin)
            .await?;
        Ok(())
    }
}

/// Appends `count` generated movies (seed 42, of `shape`) to `events` as `movie.created`
/// events, 10,000 per transaction through the bulk append path, and returns their ids. For
/// benchmarks: it skips the command path (the generator's movies are valid by construction)
/// but not the event log.
pub async fn append_generated(
    events: &dyn movies_store::EventStore,
    count: usize,
    shape: Shape,
    mut progress: impl FnMut(usize),
) -> anyhow::Result<Vec<uuid::Uuid>> {
    use movies_events::{Actor, EventMetadata, MovieDraft, MovieEvent, MovieInput, NewEvent, Role};
    let mut generator = Generator::with_shape(42, count, shape);
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

    #[test]
    fn the_realistic_shape_is_reproducible_and_skewed_like_a_real_catalogue() {
        let run = |seed| {
            let mut out = Vec::new();
            write_shaped(&mut out, 300, seed, Shape::Realistic).unwrap();
            out
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));

        const MOVIES: usize = 20_000;
        let mut generator = Generator::with_shape(1, MOVIES, Shape::Realistic);
        assert!(generator.directors.len() >= MIN_DIRECTORS);
        let realistic = generator.realistic.as_ref().unwrap();
        assert!(realistic.words.len() >= 50_000);
        let records: Vec<Record> = (0..MOVIES).map(|_| generator.next_record()).collect();
        for r in &records {
            assert!(movies_events::MovieDraft::parse(r.clone().into()).is_ok(), "{r:?}");
            let words = r.name.split(' ').count();
            assert!((1..=8).contains(&words), "{}", r.name);
        }
        // Words: a few in a large share of titles, a long tail of rare ones.
        let with = |word: &str| {
            records.iter().filter(|r| r.name.split(' ').any(|w| w.eq_ignore_ascii_case(word))).count()
        };
        let the = with("the");
        assert!(the > MOVIES / 6 && the < MOVIES / 2, "\"the\" is in {the} of {MOVIES} titles");
        let mut counts: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        for r in &records {
            for word in r.name.split(' ') {
                *counts.entry(word.to_lowercase()).or_default() += 1;
            }
        }
        let once = counts.values().filter(|n| **n == 1).count();
        assert!(counts.len() > 10_000 && once > counts.len() / 3, "{} words, {once} used once", counts.len());
        // Directors: many, a few busy.
        let mut directed: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for r in &records {
            *directed.entry(r.director.as_str()).or_default() += 1;
        }
        let busiest = directed.values().max().copied().unwrap_or(0);
        assert!(
            directed.len() > MOVIES / 4 && busiest >= 5,
            "{} directors, busiest {busiest}",
            directed.len()
        );
        // Genres in data/imdb.json's proportions: drama leads, as there.
        let share = |genre: &str| {
            records.iter().filter(|r| r.genre.iter().any(|g| g == genre)).count() as f64 / MOVIES as f64
        };
        assert!((share("Drama") - 121.0 / 248.0).abs() < 0.03, "drama {}", share("Drama"));
        assert!((share("Adventure") - 64.0 / 248.0).abs() < 0.03, "adventure {}", share("Adventure"));
    }
}
