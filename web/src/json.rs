//! `StrictJson`: the body extractor of every write. It refuses what `axum::Json` lets through
//! and a careful API must not: a duplicated key (which copy wins is up to the parser, so two
//! parsers in a chain can disagree on what was sent) and a leading byte-order mark, besides what
//! it already refused (a body that is not JSON: 400; JSON of the wrong shape, including unknown
//! fields where the type denies them: 422; another media type: 415; too large: 413).

use std::collections::HashSet;
use std::fmt;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::{DeserializeOwned, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::Deserializer;

use crate::Problem;

/// A JSON body, checked as the module says.
#[derive(Debug, Clone)]
pub struct StrictJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for StrictJson<T> {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Response> {
        if !json_content_type(&request) {
            let detail = "send the body as application/json".to_owned();
            return Err(Problem::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type", detail)
                .into_response());
        }
        // Its rejections (413 past the body limit) become problems in the edge layer.
        let bytes = Bytes::from_request(request, state).await.map_err(IntoResponse::into_response)?;
        parse(&bytes).map(StrictJson).map_err(IntoResponse::into_response)
    }
}

/// `application/json` or any `application/...+json` (a merge patch), parameters aside.
fn json_content_type(request: &Request) -> bool {
    let Some(value) = request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Parses a body as `T`, refusing a byte-order mark and duplicated keys at any depth.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    let bad = |status: StatusCode, slug: &str, detail: String| Problem::new(status, slug, detail);
    if bytes.starts_with(b"\xEF\xBB\xBF") {
        let detail = "the body starts with a byte-order mark: send UTF-8 JSON without one".to_owned();
        return Err(bad(StatusCode::BAD_REQUEST, "bad-request", detail));
    }
    let mut unique = serde_json::Deserializer::from_slice(bytes);
    if let Err(error) = UniqueKeys.deserialize(&mut unique).and_then(|()| unique.end()) {
        return Err(bad(
            StatusCode::BAD_REQUEST,
            "bad-request",
            format!("the body is not valid JSON: {error}"),
        ));
    }
    serde_json::from_slice(bytes).map_err(|error| match error.classify() {
        serde_json::error::Category::Data => bad(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unprocessable",
            format!("the body does not have the expected shape: {error}"),
        ),
        _ => bad(StatusCode::BAD_REQUEST, "bad-request", format!("the body is not valid JSON: {error}")),
    })
}

/// Walks a JSON document without keeping it, failing on an object that names a key twice.
struct UniqueKeys;

impl<'de> DeserializeSeed<'de> for UniqueKeys {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for UniqueKeys {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("JSON")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(serde::de::Error::custom(format!("the key {key:?} appears twice")));
            }
            map.next_value_seed(UniqueKeys)?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(UniqueKeys)?.is_some() {}
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::Value;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        tags: Vec<String>,
    }

    fn status<T: DeserializeOwned + fmt::Debug>(text: &str) -> u16 {
        parse::<T>(text.as_bytes()).map_or_else(|p| p.status, |_| 200)
    }

    #[test]
    fn a_duplicated_key_is_refused_at_any_depth() {
        assert_eq!(status::<Value>(r#"{"name": "a", "name": "b"}"#), 400);
        assert_eq!(status::<Value>(r#"{"x": [{"k": 1, "k": 2}]}"#), 400);
        assert_eq!(status::<Value>(r#"{"x": [{"k": 1}, {"k": 2}]}"#), 200);
        let detail = parse::<Value>(br#"{"name": 1, "name": 2}"#).unwrap_err().detail.unwrap();
        assert!(detail.contains("\"name\" appears twice"), "{detail}");
    }

    #[test]
    fn a_byte_order_mark_is_refused_and_trailing_text_too() {
        assert_eq!(status::<Value>("\u{FEFF}{\"name\": \"a\"}"), 400);
        assert_eq!(status::<Value>(r#"{"name": "a"} x"#), 400);
    }

    #[test]
    fn syntax_errors_are_400_and_shape_errors_422() {
        assert_eq!(status::<Body>(r#"{"name": "a", "#), 400);
        assert_eq!(status::<Body>(r#"{"name": "a", "tags": []}"#), 200);
        assert_eq!(status::<Body>(r#"{"name": "a", "tags": [], "id": 7}"#), 422);
        assert_eq!(status::<Body>(r#"{"name": 5, "tags": []}"#), 422);
    }
}
