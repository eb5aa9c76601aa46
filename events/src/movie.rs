//! The Movie aggregate: `decide` turns a command into events, `apply` folds events into state.

use crate::event::{MovieChanges, MovieEvent};
use crate::value::{MovieDraft, MovieFields, MoviePatch, ValidationErrors};

/// A movie as its stream describes it. (Serialized only into snapshots, which record the layout
/// they were written with: a change here is a new snapshot schema.)
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(tag = "state", content = "fields", rename_all = "snake_case")]
pub enum Movie {
    /// The stream has no events.
    #[default]
    Absent,
    Live(MovieFields),
    /// Deleted; the last fields are kept for the audit trail.
    Deleted(MovieFields),
}

#[derive(Debug, Clone, PartialEq)]
pub enum MovieCommand {
    Create(MovieDraft),
    Replace(MovieDraft),
    Patch(MoviePatch),
    Delete,
    /// Bring a deleted movie back as it was.
    Restore,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MovieError {
    #[error(transparent)]
    Invalid(#[from] ValidationErrors),
    #[error("the movie already exists")]
    AlreadyExists,
    #[error("the movie does not exist")]
    NotFound,
    #[error("the movie is not deleted")]
    NotDeleted,
}

fn changes(current: &MovieFields, wanted: MovieFields) -> MovieChanges {
    let differs = |a: &f64, b: &f64| a.to_bits() != b.to_bits();
    MovieChanges {
        name: (current.name != wanted.name).then_some(wanted.name),
        director: (current.director != wanted.director).then_some(wanted.director),
        popularity: differs(&current.popularity, &wanted.popularity).then_some(wanted.popularity),
        imdb_score: differs(&current.imdb_score, &wanted.imdb_score).then_some(wanted.imdb_score),
        genres: (current.genres != wanted.genres).then_some(wanted.genres),
    }
}

impl Movie {
    pub fn fold<'a>(events: impl IntoIterator<Item = &'a MovieEvent>) -> Self {
        let mut movie = Movie::Absent;
        for event in events {
            movie.apply(event);
        }
        movie
    }

    pub fn live(&self) -> Option<&MovieFields> {
        match self {
            Movie::Live(fields) => Some(fields),
            _ => None,
        }
    }

    /// Checks the command against the current state and returns the facts to record.
    /// An edit that changes nothing returns no events.
    pub fn decide(&self, command: MovieCommand) -> Result<Vec<MovieEvent>, MovieError> {
        match (self, command) {
            (Movie::Absent, MovieCommand::Create(draft)) => {
                Ok(vec![MovieEvent::Created(draft.into_fields())])
            }
            (_, MovieCommand::Create(_)) => Err(MovieError::AlreadyExists),
            (Movie::Live(current), MovieCommand::Replace(draft)) => {
                Ok(Self::updated(changes(current, draft.into_fields())))
            }
            (Movie::Live(current), MovieCommand::Patch(patch)) => {
                let mut wanted = current.clone();
                MovieChanges {
                    name: patch.name,
                    director: patch.director,
                    popularity: patch.popularity,
                    imdb_score: patch.imdb_score,
                    genres: patch.genres,
                }
                .apply_to(&mut wanted);
                Ok(Self::updated(changes(current, wanted)))
            }
            (Movie::Live(_), MovieCommand::Delete) => Ok(vec![MovieEvent::Deleted]),
            (Movie::Deleted(fields), MovieCommand::Restore) => Ok(vec![MovieEvent::Restored(fields.clone())]),
            (Movie::Live(_), MovieCommand::Restore) => Err(MovieError::NotDeleted),
            (Movie::Absent | Movie::Deleted(_), _) => Err(MovieError::NotFound),
        }
    }

    fn updated(changes: MovieChanges) -> Vec<MovieEvent> {
        if changes.is_empty() {
            Vec::new()
        } else {
            vec![MovieEvent::Updated(changes)]
        }
    }

    /// Folds one recorded fact into the state. Never fails: events are history.
    pub fn apply(&mut self, event: &MovieEvent) {
        let before = std::mem::take(self);
        *self = match event.fold(before.live().cloned()) {
            Some(fields) => Movie::Live(fields),
            // A live movie that is no longer live was deleted (and keeps its fields for a
            // restore); one that was not live stays as it was.
            None => match before {
                Movie::Live(fields) => Movie::Deleted(fields),
                other => other,
            },
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::{MovieInput, MoviePatchInput};
    use proptest::prelude::*;

    fn draft(name: &str, score: f64) -> MovieDraft {
        MovieDraft::parse(MovieInput {
            name: name.into(),
            director: "Someone".into(),
            popularity: 50.0,
            imdb_score: score,
            genres: vec!["Drama".into()],
        })
        .unwrap()
    }

    fn given(events: &[MovieEvent]) -> Movie {
        Movie::fold(events)
    }

    #[test]
    fn creating_a_new_movie_records_its_full_state() {
        let events = Movie::Absent.decide(MovieCommand::Create(draft("Up", 8.2))).unwrap();
        assert_eq!(events, vec![MovieEvent::Created(draft("Up", 8.2).into_fields())]);
    }

    #[test]
    fn creating_an_existing_movie_is_rejected() {
        let movie = given(&[MovieEvent::Created(draft("Up", 8.2).into_fields())]);
        assert_eq!(movie.decide(MovieCommand::Create(draft("Up", 8.2))), Err(MovieError::AlreadyExists));
    }

    #[test]
    fn a_replace_records_only_the_fields_that_changed() {
        let movie = given(&[MovieEvent::Created(draft("Up", 8.2).into_fields())]);
        let events = movie.decide(MovieCommand::Replace(draft("Up", 8.3))).unwrap();
        assert_eq!(
            events,
            vec![MovieEvent::Updated(MovieChanges { imdb_score: Some(8.3), ..Default::default() })]
        );
    }

    #[test]
    fn an_edit_that_changes_nothing_records_nothing() {
        let movie = given(&[MovieEvent::Created(draft("Up", 8.2).into_fields())]);
        assert_eq!(movie.decide(MovieCommand::Replace(draft(" Up ", 8.2))), Ok(vec![]));
        let same =
            MoviePatch::parse(MoviePatchInput { name: Some("Up".into()), ..Default::default() }).unwrap();
        assert_eq!(movie.decide(MovieCommand::Patch(same)), Ok(vec![]));
    }

    #[test]
    fn a_deleted_movie_can_be_restored_once_as_it_was() {
        let fields = draft("Up", 8.2).into_fields();
        let mut movie = given(&[MovieEvent::Created(fields.clone()), MovieEvent::Deleted]);
        let events = movie.decide(MovieCommand::Restore).unwrap();
        assert_eq!(events, vec![MovieEvent::Restored(fields.clone())]);
        movie.apply(&events[0]);
        assert_eq!(movie, Movie::Live(fields));
        assert_eq!(movie.decide(MovieCommand::Restore), Err(MovieError::NotDeleted));
        assert_eq!(Movie::Absent.decide(MovieCommand::Restore), Err(MovieError::NotFound));
    }

    #[test]
    fn a_deleted_movie_cannot_be_edited_or_deleted_again() {
        let movie = given(&[MovieEvent::Created(draft("Up", 8.2).into_fields()), MovieEvent::Deleted]);
        assert_eq!(movie.decide(MovieCommand::Delete), Err(MovieError::NotFound));
        assert_eq!(movie.decide(MovieCommand::Replace(draft("Up", 1.0))), Err(MovieError::NotFound));
    }

    // ---- property: the fold of accepted commands' events is the state the commands describe ----

    /// The model: what a sequence of commands means, written without events.
    #[derive(Debug, Clone, PartialEq)]
    enum Model {
        Absent,
        Live(MovieFields),
        Deleted,
    }

    #[derive(Debug, Clone)]
    enum RawCommand {
        Create(MovieInput),
        Replace(MovieInput),
        Patch(MoviePatchInput),
        Delete,
    }

    fn normalize_genres(genres: &[String]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for g in genres.iter().map(|g| g.trim().to_string()) {
            if !out.iter().any(|o| o.to_lowercase() == g.to_lowercase()) {
                out.push(g);
            }
        }
        out
    }

    fn model_fields(input: &MovieInput) -> MovieFields {
        MovieFields {
            name: input.name.trim().into(),
            director: input.director.trim().into(),
            popularity: input.popularity,
            imdb_score: input.imdb_score,
            genres: normalize_genres(&input.genres),
        }
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => "[A-Za-z]{1,6}( [A-Za-z]{1,6})?",
            1 => Just("   ".to_string()),
            1 => Just(" Padded ".to_string()),
        ]
    }

    fn genre_list() -> impl Strategy<Value = Vec<String>> {
        prop::collection::vec(prop_oneof![Just("Drama"), Just("drama "), Just(" Comedy"), Just("War")], 0..4)
            .prop_map(|v| v.into_iter().map(String::from).collect())
    }

    fn input() -> impl Strategy<Value = MovieInput> {
        (text(), text(), -5.0..105.0f64, -1.0..11.0f64, genre_list()).prop_map(
            |(name, director, popularity, imdb_score, genres)| MovieInput {
                name,
                director,
                popularity: popularity.round(),
                imdb_score: (imdb_score * 10.0).round() / 10.0,
                genres,
            },
        )
    }

    fn patch() -> impl Strategy<Value = MoviePatchInput> {
        (
            prop::option::of(text()),
            prop::option::of(text()),
            prop::option::of((-5.0..105.0f64).prop_map(f64::round)),
            prop::option::of(Just(7.5f64)),
            prop::option::of(genre_list()),
        )
            .prop_map(|(name, director, popularity, imdb_score, genres)| MoviePatchInput {
                name,
                director,
                popularity,
                imdb_score,
                genres,
            })
    }

    fn command() -> impl Strategy<Value = RawCommand> {
        prop_oneof![
            2 => input().prop_map(RawCommand::Create),
            3 => input().prop_map(RawCommand::Replace),
            4 => patch().prop_map(RawCommand::Patch),
            1 => Just(RawCommand::Delete),
        ]
    }

    fn valid(fields: &MovieFields) -> bool {
        !fields.name.is_empty()
            && !fields.director.is_empty()
            && (0.0..=100.0).contains(&fields.popularity)
            && (0.0..=10.0).contains(&fields.imdb_score)
            && !fields.genres.is_empty()
            && fields.genres.iter().all(|g| !g.is_empty())
    }

    /// What the command should do to the model, or `None` if it must be rejected.
    fn expected(model: &Model, command: &RawCommand) -> Option<Model> {
        match (model, command) {
            (Model::Absent, RawCommand::Create(input)) => {
                let fields = model_fields(input);
                valid(&fields).then_some(Model::Live(fields))
            }
            (Model::Live(_), RawCommand::Replace(input)) => {
                let fields = model_fields(input);
                valid(&fields).then_some(Model::Live(fields))
            }
            (Model::Live(current), RawCommand::Patch(p)) => {
                let mut fields = current.clone();
                let mut ok = true;
                if let Some(v) = &p.name {
                    fields.name = v.trim().into();
                    ok &= !fields.name.is_empty();
                }
                if let Some(v) = &p.director {
                    fields.director = v.trim().into();
                    ok &= !fields.director.is_empty();
                }
                if let Some(v) = p.popularity {
                    fields.popularity = v;
                }
                if let Some(v) = p.imdb_score {
                    fields.imdb_score = v;
                }
                if let Some(v) = &p.genres {
                    fields.genres = normalize_genres(v);
                }
                (ok && valid(&fields)).then_some(Model::Live(fields))
            }
            (Model::Live(_), RawCommand::Delete) => Some(Model::Deleted),
            _ => None,
        }
    }

    fn parse(command: RawCommand) -> Result<MovieCommand, ValidationErrors> {
        Ok(match command {
            RawCommand::Create(input) => MovieCommand::Create(MovieDraft::parse(input)?),
            RawCommand::Replace(input) => MovieCommand::Replace(MovieDraft::parse(input)?),
            RawCommand::Patch(input) => MovieCommand::Patch(MoviePatch::parse(input)?),
            RawCommand::Delete => MovieCommand::Delete,
        })
    }

    proptest! {
        #[test]
        fn folding_accepted_events_gives_the_state_the_commands_describe(
            commands in prop::collection::vec(command(), 1..25)
        ) {
            let mut model = Model::Absent;
            let mut log: Vec<MovieEvent> = Vec::new();
            for raw in commands {
                let want = expected(&model, &raw);
                let state = Movie::fold(&log);
                let outcome = parse(raw).map_err(MovieError::from).and_then(|c| state.decide(c));
                match (want, outcome) {
                    (Some(next), Ok(events)) => {
                        prop_assert_eq!(events.is_empty(), next == model, "no-op edits append nothing");
                        log.extend(events);
                        model = next;
                    }
                    (None, Err(_)) => {}
                    (want, got) => prop_assert!(false, "model {:?} but decide gave {:?}", want, got),
                }
                let folded = match Movie::fold(&log) {
                    Movie::Absent => Model::Absent,
                    Movie::Live(fields) => Model::Live(fields),
                    Movie::Deleted(_) => Model::Deleted,
                };
                prop_assert_eq!(&folded, &model);
            }
        }
    }
}
