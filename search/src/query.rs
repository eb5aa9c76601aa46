//! What a search asks and answers: the query with its filters, sort and cursor, the limits every
//! query text is held to, and the hits.

use movies_read_model::Order;
use serde::Serialize;
use tantivy::tokenizer::TextAnalyzer;
use uuid::Uuid;

use crate::keys::SortKey;
use crate::words::Word;

/// The longest query text a search takes, in characters (a movie's name is at most as long).
pub const MAX_QUERY_CHARS: usize = movies_events::MAX_NAME_CHARS;
/// The most words a query may have: a long title pasted whole fits, a flood of words does not.
pub const MAX_QUERY_WORDS: usize = 16;
/// The longest word a query may have, in characters.
pub const MAX_WORD_CHARS: usize = 100;
/// Words longer than this match exactly or as a prefix, never with typos: a typo automaton costs
/// about 28 KB of memory per letter at two edits (0.7 MB at this length, but 280 MB at 10,000
/// letters, which is what one anonymous search could make the server build before the limits).
pub const MAX_TYPO_WORD_CHARS: usize = 24;

/// Why a query text is refused: each names the limit it passed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryTooLarge {
    #[error("the query must be at most {MAX_QUERY_CHARS} characters, not {0}")]
    Text(usize),
    #[error("the query must have at most {MAX_QUERY_WORDS} words, not {0}")]
    Words(usize),
    #[error("each query word must be at most {MAX_WORD_CHARS} characters; one has {0}")]
    Word(usize),
}

/// Checks a query text against the limits every search applies, splitting words the way the
/// index's tokenizer does (on anything not alphanumeric). Requests are refused with this before
/// any search work; the engine also bounds what it builds on its own (`SearchIndex::words`).
pub fn check_query_text(text: &str) -> std::result::Result<(), QueryTooLarge> {
    let chars = text.chars().count();
    if chars > MAX_QUERY_CHARS {
        return Err(QueryTooLarge::Text(chars));
    }
    let mut words = 0;
    for word in text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        words += 1;
        let letters = word.chars().count();
        if letters > MAX_WORD_CHARS {
            return Err(QueryTooLarge::Word(letters));
        }
    }
    if words > MAX_QUERY_WORDS {
        return Err(QueryTooLarge::Words(words));
    }
    Ok(())
}

/// Filters search combines with its text. Text filters match case-insensitively.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SearchFilters {
    /// Movies with at least one of these genres.
    pub genre_any: Vec<String>,
    /// Movies with every one of these genres.
    pub genre_all: Vec<String>,
    pub director: Option<String>,
    pub min_score: Option<f64>,
    pub max_score: Option<f64>,
    pub min_popularity: Option<f64>,
    pub max_popularity: Option<f64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SearchSort {
    /// Text relevance, popularity breaking ties (an empty text browses by popularity).
    #[default]
    Relevance,
    Popularity,
    ImdbScore,
    Name,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SearchQuery {
    pub text: String,
    pub filters: SearchFilters,
    pub sort: SearchSort,
    /// `None` orders naturally: best or highest first, names from A.
    pub order: Option<Order>,
    pub limit: usize,
    /// Skip this many matches (shallow pages of the compatibility API).
    pub offset: usize,
    /// Start after this cursor (deep paging at a constant cost per page).
    pub after: Option<SearchCursor>,
    /// Count genres over every match.
    pub facets: bool,
}

/// The matched parts of a hit's name and director, as HTML with `<mark>` around each match.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Highlight {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub director: Option<String>,
}

/// A match: the movie and its relevance score (0 when sorted otherwise). Read from the index's
/// fast fields only, never its document store: a hit's name and director are the read store's,
/// marked with `SearchPage::marks`.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    pub id: Uuid,
    pub score: f32,
}

/// A hit with the name the index stored, the query's words marked in it and in the director:
/// what title completions answer, and what tools and tests read.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedHit {
    pub id: Uuid,
    pub name: String,
    pub score: f32,
    pub highlight: Highlight,
}

#[derive(Debug, Clone)]
pub struct SearchPage {
    pub hits: Vec<SearchHit>,
    /// Where the next page starts, if there is one.
    pub next: Option<SearchCursor>,
    /// How many movies match in all.
    pub total: usize,
    /// Genre counts over every match, most common first (when asked for).
    pub facets: Vec<(String, u64)>,
    /// Marks the query's words in a hit's name and director.
    pub marks: Marks,
    /// Sorted by name: whether ascending (see `arrange`).
    pub(crate) by_name: Option<bool>,
}

impl SearchPage {
    /// Orders what a page's hits became by their whole names when the search sorted by name:
    /// the index's sort key holds a name's first sixteen bytes. (Names that agree on sixteen
    /// bytes may still straddle a page boundary out of order.)
    pub fn arrange<T>(&self, items: &mut [T], name: impl Fn(&T) -> &str) {
        if let Some(ascending) = self.by_name {
            items.sort_by_cached_key(|item| name(item).to_lowercase());
            if !ascending {
                items.reverse();
            }
        }
    }
}

/// A query's words, to mark in a text the way the index reads it.
#[derive(Clone)]
pub struct Marks {
    pub(crate) words: Vec<Word>,
    pub(crate) analyzer: TextAnalyzer,
}

impl Marks {
    /// `text` as HTML with every token that matches a query word inside `<mark>`, or `None`
    /// where none does. Every character that means something in HTML is escaped.
    pub fn mark(&self, text: &str) -> Option<String> {
        let mut out = String::with_capacity(text.len() + 16);
        let (mut cursor, mut marked) = (0, false);
        let mut analyzer = self.analyzer.clone();
        let mut tokens = analyzer.token_stream(text);
        while let Some(token) = tokens.next() {
            let (from, to) = (token.offset_from, token.offset_to);
            if from >= cursor && self.words.iter().any(|w| w.matches(&token.text)) {
                out.push_str(&html_escape::encode_safe(&text[cursor..from]));
                out.push_str("<mark>");
                out.push_str(&html_escape::encode_safe(&text[from..to]));
                out.push_str("</mark>");
                cursor = to;
                marked = true;
            }
        }
        out.push_str(&html_escape::encode_safe(&text[cursor..]));
        marked.then_some(out)
    }

    /// A movie's name and director, marked.
    pub fn highlight(&self, name: &str, director: &str) -> Highlight {
        Highlight { name: self.mark(name), director: self.mark(director) }
    }
}

impl std::fmt::Debug for Marks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Marks").field("words", &self.words).finish_non_exhaustive()
    }
}

/// The last key of a page: the next page starts strictly after it. Opaque to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchCursor(pub(crate) SortKey);

/// Why a client's search cursor is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SearchCursorError {
    #[error("the cursor is not one this API issued")]
    Malformed,
    #[error("the cursor was issued for another query, sort or filter: start again without it")]
    OtherQuery,
}

impl SearchCursor {
    /// The cursor as a client holds it, bound to the query that made it (its text, filters,
    /// sort and order; not its page size): a key means nothing in another order or result set.
    pub fn encode(&self, query: &SearchQuery) -> String {
        use base64::Engine;
        let (a, b, c) = self.0;
        let bound = query.fingerprint();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("k:{a:x}:{b:x}:{c:x}:{bound:x}"))
    }

    /// A client's cursor for `query`, refused if it is malformed or was made for another query.
    pub fn decode(raw: &str, query: &SearchQuery) -> std::result::Result<Self, SearchCursorError> {
        use base64::Engine;
        let parse = || {
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(raw).ok()?;
            let text = String::from_utf8(bytes).ok()?;
            let mut parts = text.strip_prefix("k:")?.split(':').map(|p| u64::from_str_radix(p, 16).ok());
            let parsed = ((parts.next()??, parts.next()??, parts.next()??), parts.next()??);
            parts.next().is_none().then_some(parsed)
        };
        let (key, bound) = parse().ok_or(SearchCursorError::Malformed)?;
        if bound != u64::from(query.fingerprint()) {
            return Err(SearchCursorError::OtherQuery);
        }
        Ok(SearchCursor(key))
    }
}

impl SearchQuery {
    /// What a cursor is bound to: everything that decides the result set and its order.
    pub(crate) fn fingerprint(&self) -> u32 {
        let described = format!("{:?}|{:?}|{:?}|{:?}", self.text, self.filters, self.sort, self.order);
        crc32fast::hash(described.as_bytes())
    }
}
