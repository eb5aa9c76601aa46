//! Response compression, inside the edge layer: a response of 1 KiB to 64 KiB of JSON, HTML,
//! CSS or JavaScript is compressed when the client accepts brotli (preferred) or gzip, at
//! quality 4 (about as fast as gzip's default and smaller; brotli's own default, 11, is far too
//! slow for answers made per request). A request that accepts neither costs a header lookup.
//!
//! Compressed bodies are kept (32 MiB, least used dropped first) by a 128-bit hash of the plain
//! bytes and the encoding: a cached page or search answer is the same bytes for every client
//! until the data changes, and hashing it costs about a microsecond where compressing it cost
//! about 50 (a cached list page served compressed went from 77k to 21k requests a second).
//! Kept by content, not by route, so nothing can be served for the wrong request: only the same
//! bytes give the same key.
//!
//! Every body here is a buffer made whole by its handler, so it is compressed in one piece. A
//! movie's detail (about 300 bytes) is sent as it is: compressing it saves nothing. Above
//! 64 KiB nothing is compressed: the largest API answers (100 search hits) and pages stay under
//! it, and past it are only the bundled API docs' stylesheet and script, which are not rate
//! limited: compressing them per request would be a cheap way to burn a core.

use std::io::Write;
use std::sync::LazyLock;

use axum::body::Body;
use axum::http::header::{ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, ETAG, VARY};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;
use http_body::Body as _;

/// The smallest body worth compressing.
pub const COMPRESS_FROM_BYTES: u64 = 1024;
/// The largest body compressed per request.
pub const COMPRESS_UP_TO_BYTES: u64 = 64 * 1024;
const QUALITY: u32 = 4;
/// The most memory compressed bodies kept take.
const KEPT_BYTES: u64 = 32 << 20;

/// Compressed bodies by the plain bytes' hash and the encoding, for every server in the process
/// (the same bytes compress the same whichever server sends them).
static KEPT: LazyLock<moka::sync::Cache<(u128, Encoding), axum::body::Bytes>> = LazyLock::new(|| {
    moka::sync::Cache::builder()
        .max_capacity(KEPT_BYTES)
        .weigher(|_, body: &axum::body::Bytes| u32::try_from(body.len() + 48).unwrap_or(u32::MAX))
        .build()
});

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Encoding {
    Brotli,
    Gzip,
}

/// The encoding a client accepts that the server prefers: brotli, then gzip (`q=0` refuses one,
/// `*` stands for those not named).
pub(crate) fn accepted(headers: &HeaderMap) -> Option<Encoding> {
    let (mut br, mut gzip, mut any) = (None, None, None);
    let items =
        headers.get_all(ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(','));
    for item in items {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or_default().trim();
        let q = parts
            .find_map(|p| p.trim().strip_prefix("q=").and_then(|q| q.trim().parse::<f32>().ok()))
            .unwrap_or(1.0);
        if name.eq_ignore_ascii_case("br") {
            br = Some(q);
        } else if name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip") {
            gzip = Some(q);
        } else if name == "*" {
            any = Some(q);
        }
    }
    let (br, gzip) = (br.or(any).unwrap_or(0.0), gzip.or(any).unwrap_or(0.0));
    if br > 0.0 && br >= gzip {
        Some(Encoding::Brotli)
    } else if gzip > 0.0 {
        Some(Encoding::Gzip)
    } else {
        None
    }
}

/// Whether a response's type is text that compresses.
fn compressible(headers: &HeaderMap) -> bool {
    let kind = headers.get(CONTENT_TYPE).map_or(&[][..], HeaderValue::as_bytes);
    !headers.contains_key(CONTENT_ENCODING)
        && (kind.starts_with(b"text/") || kind.starts_with(b"application/json") || kind.ends_with(b"+json"))
}

/// `response` compressed in `encoding` when it is worth it; either way it says that it varies
/// by `Accept-Encoding`. A compressed response's ETag (a version) is made weak: RFC 9110 asks a
/// strong one to name exact bytes, and revalidation compares weakly anyway.
pub(crate) async fn compress(mut response: Response, encoding: Option<Encoding>) -> Response {
    if !compressible(response.headers()) {
        return response;
    }
    response.headers_mut().insert(VARY, HeaderValue::from_static("accept-encoding"));
    let size = response.body().size_hint().exact();
    let (Some(encoding), Some(size)) = (encoding, size) else {
        return response;
    };
    if !(COMPRESS_FROM_BYTES..=COMPRESS_UP_TO_BYTES).contains(&size) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // The size is known and bounded: the whole body, at once.
    let Ok(plain) = axum::body::to_bytes(body, COMPRESS_UP_TO_BYTES as usize).await else {
        return Response::from_parts(parts, Body::empty());
    };
    let name = match encoding {
        Encoding::Brotli => "br",
        Encoding::Gzip => "gzip",
    };
    let key = (xxhash_rust::xxh3::xxh3_128(&plain), encoding);
    let compressed = KEPT.get_with(key, || squeeze(&plain, encoding).into());
    let headers = &mut parts.headers;
    headers.insert(CONTENT_ENCODING, HeaderValue::from_static(name));
    headers.remove(CONTENT_LENGTH);
    if let Some(tag) = headers.get(ETAG).filter(|tag| !tag.as_bytes().starts_with(b"W/")) {
        if let Ok(weak) = HeaderValue::from_bytes(&[b"W/".as_slice(), tag.as_bytes()].concat()) {
            headers.insert(ETAG, weak);
        }
    }
    Response::from_parts(parts, Body::from(compressed))
}

fn squeeze(plain: &[u8], encoding: Encoding) -> Vec<u8> {
    match encoding {
        Encoding::Brotli => {
            let mut out = Vec::with_capacity(plain.len() / 4);
            {
                let mut writer = brotli::CompressorWriter::new(&mut out, 4096, QUALITY, 22);
                writer.write_all(plain).expect("writing to memory");
            }
            out
        }
        Encoding::Gzip => {
            let mut writer = flate2::write::GzEncoder::new(
                Vec::with_capacity(plain.len() / 4),
                flate2::Compression::new(QUALITY),
            );
            writer.write_all(plain).expect("writing to memory");
            writer.finish().expect("writing to memory")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepting(value: &str) -> Option<Encoding> {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT_ENCODING, HeaderValue::from_str(value).unwrap());
        accepted(&headers)
    }

    #[tokio::test]
    async fn a_body_is_compressed_once_then_served_from_what_was_kept() {
        use std::io::Read;
        let plain: Vec<u8> =
            (0..4000u32).flat_map(|n| format!("{{\"n\":{n}}}").into_bytes()).take(8000).collect();
        let response = |body: Vec<u8>| {
            Response::builder().header(CONTENT_TYPE, "application/json").body(Body::from(body)).unwrap()
        };
        let key = (xxhash_rust::xxh3::xxh3_128(&plain), Encoding::Gzip);
        KEPT.invalidate(&key);
        let first = compress(response(plain.clone()), Some(Encoding::Gzip)).await;
        let kept = KEPT.get(&key).expect("the compressed body is kept");
        let second = compress(response(plain.clone()), Some(Encoding::Gzip)).await;
        for sent in [first, second] {
            assert_eq!(sent.headers()[CONTENT_ENCODING], "gzip");
            let bytes = axum::body::to_bytes(sent.into_body(), usize::MAX).await.unwrap();
            assert_eq!(bytes, kept);
            let mut unzipped = Vec::new();
            flate2::read::GzDecoder::new(&bytes[..]).read_to_end(&mut unzipped).unwrap();
            assert_eq!(unzipped, plain);
        }
    }

    #[test]
    fn brotli_is_preferred_unless_refused_or_ranked_lower() {
        assert_eq!(accepting("gzip, deflate, br"), Some(Encoding::Brotli));
        assert_eq!(accepting("br;q=0, gzip"), Some(Encoding::Gzip));
        assert_eq!(accepting("br;q=0.5, gzip;q=0.8"), Some(Encoding::Gzip));
        assert_eq!(accepting("*"), Some(Encoding::Brotli));
        assert_eq!(accepting("*;q=0, gzip"), Some(Encoding::Gzip));
        assert_eq!(accepting("identity"), None);
        assert_eq!(accepting("gzip;q=0, br;q=0"), None);
        assert_eq!(accepted(&HeaderMap::new()), None);
    }
}
