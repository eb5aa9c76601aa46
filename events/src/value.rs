//! Value types: raw input is parsed once into types that are valid by construction.

use serde::{Deserialize, Serialize};

pub const MAX_NAME_CHARS: usize = 300;
pub const MAX_DIRECTOR_CHARS: usize = 200;
pub const MAX_GENRES: usize = 20;
pub const MAX_GENRE_CHARS: usize = 50;

/// The state of a live movie: what the v1 API calls the movie body.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct MovieFields {
    pub name: String,
    pub director: String,
    pub popularity: f64,
    pub imdb_score: f64,
    pub genres: Vec<String>,
}

/// A full movie body as a client sent it: the same fields, nothing checked yet. Only
/// `MovieDraft::parse` turns one into something the domain accepts.
pub type MovieInput = MovieFields;

/// A partial body (JSON merge patch): `None` leaves a field as it is.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct MoviePatchInput {
    pub name: Option<String>,
    pub director: Option<String>,
    pub popularity: Option<f64>,
    pub imdb_score: Option<f64>,
    pub genres: Option<Vec<String>>,
}

/// A full movie body whose every field passed validation.
#[derive(Debug, Clone, PartialEq)]
pub struct MovieDraft(MovieFields);

/// A partial body whose every present field passed validation.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MoviePatch {
    pub(crate) name: Option<String>,
    pub(crate) director: Option<String>,
    pub(crate) popularity: Option<f64>,
    pub(crate) imdb_score: Option<f64>,
    pub(crate) genres: Option<Vec<String>>,
}

/// One rule a field broke, named by its JSON path (`name`, `genres[2]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// Every rule an input broke: a client fixes them all in one round trip.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, thiserror::Error)]
#[error("invalid movie: {}", self.0.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; "))]
pub struct ValidationErrors(pub Vec<FieldError>);

impl ValidationErrors {
    fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError { field: field.into(), message: message.into() });
    }

    fn into_result<T>(self, value: T) -> Result<T, ValidationErrors> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

/// The case-insensitive identity of a genre, used for de-duplication and filters.
pub fn genre_key(genre: &str) -> String {
    genre.trim().to_lowercase()
}

/// Characters that show nothing and are not whitespace to `str::trim`: zero-width spaces and
/// joiners, word joiners and invisible operators, the byte-order mark, the soft hyphen, the
/// Mongolian vowel separator, Hangul fillers and the blank Braille pattern.
fn invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{2800}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
        | '\u{FFA0}')
}

fn text(field: &str, raw: &str, max: usize, errors: &mut ValidationErrors) -> String {
    let trimmed = raw.trim();
    if trimmed.chars().all(|c| c.is_whitespace() || invisible(c)) {
        errors.push(field, "must not be blank");
    } else if raw.chars().count() > max {
        errors.push(field, format!("must be at most {max} characters"));
    } else if trimmed.chars().any(char::is_control) {
        errors.push(field, "must not contain control characters");
    }
    trimmed.to_owned()
}

fn ranged(field: &str, value: f64, max: f64, errors: &mut ValidationErrors) -> f64 {
    if !(0.0..=max).contains(&value) {
        errors.push(field, format!("must be between 0 and {max}"));
    }
    value
}

fn genres(raw: &[String], errors: &mut ValidationErrors) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for (i, genre) in raw.iter().enumerate() {
        let genre = text(&format!("genres[{i}]"), genre, MAX_GENRE_CHARS, errors);
        if !genre.is_empty() && seen.insert(genre_key(&genre)) {
            out.push(genre);
        }
    }
    if out.is_empty() && raw.iter().all(|g| !g.trim().is_empty()) {
        errors.push("genres", "must list at least one genre");
    } else if out.len() > MAX_GENRES {
        errors.push("genres", format!("must list at most {MAX_GENRES} distinct genres"));
    }
    out
}

impl MovieDraft {
    /// Trims text, de-duplicates genres case-insensitively and checks every rule.
    pub fn parse(input: MovieInput) -> Result<Self, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let fields = MovieFields {
            name: text("name", &input.name, MAX_NAME_CHARS, &mut errors),
            director: text("director", &input.director, MAX_DIRECTOR_CHARS, &mut errors),
            popularity: ranged("popularity", input.popularity, 100.0, &mut errors),
            imdb_score: ranged("imdb_score", input.imdb_score, 10.0, &mut errors),
            genres: genres(&input.genres, &mut errors),
        };
        errors.into_result(MovieDraft(fields))
    }

    pub fn fields(&self) -> &MovieFields {
        &self.0
    }

    pub fn into_fields(self) -> MovieFields {
        self.0
    }
}

impl MoviePatch {
    /// Checks every field the patch sets; absent fields are not looked at.
    pub fn parse(input: MoviePatchInput) -> Result<Self, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let patch = MoviePatch {
            name: input.name.map(|v| text("name", &v, MAX_NAME_CHARS, &mut errors)),
            director: input.director.map(|v| text("director", &v, MAX_DIRECTOR_CHARS, &mut errors)),
            popularity: input.popularity.map(|v| ranged("popularity", v, 100.0, &mut errors)),
            imdb_score: input.imdb_score.map(|v| ranged("imdb_score", v, 10.0, &mut errors)),
            genres: input.genres.map(|v| genres(&v, &mut errors)),
        };
        errors.into_result(patch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> MovieInput {
        MovieInput {
            name: "  Star Wars ".into(),
            director: "George Lucas".into(),
            popularity: 88.0,
            imdb_score: 8.8,
            genres: vec!["Action".into(), " Sci-Fi".into(), "action ".into()],
        }
    }

    #[test]
    fn a_draft_is_trimmed_and_its_genres_deduplicated_case_insensitively() {
        let draft = MovieDraft::parse(input()).unwrap();
        assert_eq!(draft.fields().name, "Star Wars");
        assert_eq!(draft.fields().genres, vec!["Action", "Sci-Fi"]);
    }

    #[test]
    fn every_broken_rule_is_reported_by_field() {
        let bad = MovieInput {
            name: "   ".into(),
            director: "x".repeat(201),
            popularity: 100.5,
            imdb_score: -0.1,
            genres: vec![],
        };
        let errors = MovieDraft::parse(bad).unwrap_err();
        let fields: Vec<_> = errors.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["name", "director", "popularity", "imdb_score", "genres"]);
    }

    #[test]
    fn limits_are_inclusive() {
        let edge = MovieInput {
            name: "n".repeat(MAX_NAME_CHARS),
            director: "d".repeat(MAX_DIRECTOR_CHARS),
            popularity: 100.0,
            imdb_score: 0.0,
            genres: (0..MAX_GENRES).map(|i| format!("g{i}")).collect(),
        };
        assert!(MovieDraft::parse(edge.clone()).is_ok());
        let over = MovieInput { genres: (0..=MAX_GENRES).map(|i| format!("g{i}")).collect(), ..edge };
        assert_eq!(MovieDraft::parse(over).unwrap_err().0[0].field, "genres");
    }

    #[test]
    fn control_characters_are_refused() {
        let bad = MovieInput { name: "Al\u{0}ien".into(), genres: vec!["Dra\nma".into()], ..input() };
        let fields: Vec<_> = MovieDraft::parse(bad).unwrap_err().0.into_iter().map(|e| e.field).collect();
        assert_eq!(fields, ["name", "genres[0]"]);
    }

    #[test]
    fn text_of_only_invisible_characters_is_blank() {
        for blank in [
            "\u{200B}\u{2060}",
            "\u{200B}",
            " \u{200B}\u{FEFF} ",
            "\u{00A0}",
            "\u{2060}\u{3164}",
            "\u{00AD}\u{200D}",
        ] {
            let bad = MovieInput { name: blank.into(), director: blank.into(), ..input() };
            let errors = MovieDraft::parse(bad).unwrap_err().0;
            assert_eq!(errors.len(), 2, "{blank:?}: {errors:?}");
            assert!(errors.iter().all(|e| e.message == "must not be blank"), "{blank:?}");
        }
        // Invisible characters inside visible text are left to it (a zero-width joiner in an emoji).
        let joined = MovieInput { name: "Alien\u{200D}s".into(), ..input() };
        assert!(MovieDraft::parse(joined).is_ok());
    }

    #[test]
    fn a_blank_genre_is_named_by_its_index() {
        let bad = MovieInput { genres: vec!["Drama".into(), "  ".into()], ..input() };
        assert_eq!(MovieDraft::parse(bad).unwrap_err().0[0].field, "genres[1]");
    }

    #[test]
    fn a_patch_checks_only_the_fields_it_sets() {
        assert!(MoviePatch::parse(MoviePatchInput { imdb_score: Some(9.0), ..Default::default() }).is_ok());
        let err =
            MoviePatch::parse(MoviePatchInput { name: Some(" ".into()), ..Default::default() }).unwrap_err();
        assert_eq!(err.0[0].field, "name");
    }
}
