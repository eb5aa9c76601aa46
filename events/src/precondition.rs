//! A write's precondition on a movie's version, as a client states it in `If-Match`.

/// The longest `If-Match` value read: a version has at most 19 digits, with quotes and `W/`.
const MAX_IF_MATCH_CHARS: usize = 32;

/// `If-Match: "3"` (or `W/"3"`, or `3`) as the version the client read; `*` (any existing
/// version) as `None`. A version is a positive number of at most 18 digits without leading zeros
/// (the OpenAPI document's pattern for the header): anything else is refused with the reason.
pub fn parse_if_match(raw: &str) -> Result<Option<i64>, String> {
    let raw = raw.trim();
    if raw == "*" {
        return Ok(None);
    }
    let refuse = || {
        let shown: String = raw.chars().take(MAX_IF_MATCH_CHARS).collect();
        format!("If-Match must be a movie version such as \"3\", not {shown:?}")
    };
    let tag = raw.strip_prefix("W/").unwrap_or(raw);
    let digits = tag.strip_prefix('"').and_then(|t| t.strip_suffix('"')).unwrap_or(tag);
    let well_formed = (1..=18).contains(&digits.len())
        && !digits.starts_with('0')
        && digits.bytes().all(|b| b.is_ascii_digit());
    if !well_formed {
        return Err(refuse());
    }
    digits.parse::<i64>().map(Some).map_err(|_| refuse())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strong_weak_and_bare_versions_are_read() {
        assert_eq!(parse_if_match("\"3\""), Ok(Some(3)));
        assert_eq!(parse_if_match(" W/\"12\" "), Ok(Some(12)));
        assert_eq!(parse_if_match("7"), Ok(Some(7)));
        assert_eq!(parse_if_match("*"), Ok(None));
    }

    #[test]
    fn what_is_not_a_positive_version_is_refused() {
        for raw in [
            "",
            "\"\"",
            "\"-3\"",
            "\"+3\"",
            "\"0\"",
            "\"3",
            "3\"",
            "W/",
            "\"3\", \"4\"",
            "9999999999999999999",
            "\"03\"",
        ] {
            assert!(parse_if_match(raw).is_err(), "{raw:?} was accepted");
        }
    }

    #[test]
    fn a_refusal_quotes_at_most_a_short_prefix_of_what_was_sent() {
        let error = parse_if_match(&"x".repeat(10_000)).expect_err("not a version");
        assert!(error.len() < 100, "{error}");
        // Found by the fuzzer: control characters quote as escapes of six bytes each.
        let escaped = parse_if_match(&format!("*{}  ", "\u{1e}".repeat(40))).expect_err("not a version");
        assert!(escaped.len() <= 400, "{escaped}");
    }
}
