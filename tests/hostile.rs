//! Hostile clients against the whole server process: what one anonymous client can make it hold
//! (memory, connections, time) is bounded. The server runs under a memory cap of its own here,
//! so a regression fails this test instead of taking the machine's memory.

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Child;

#[path = "support/process.rs"]
mod process;
use process::{movies, movies_capped, serve_with};

/// The server's address space cap: well above what it needs on the bundled catalogue, well below
/// what the hostile searches below cost without their limits (about 1 GB of typo automaton per
/// 10,000-letter word, built by each of several at once).
const MEMORY_CAP: u64 = 3 << 30;

async fn server(dir: &Path, capped: bool, flags: &[&str]) -> (Child, String) {
    let mut command = if capped { movies_capped(dir, MEMORY_CAP) } else { movies(dir) };
    command.args(flags).env("MOVIES_ADMIN_PASSWORD", "hostile-test-admin");
    let (child, base, _) = serve_with(command).await;
    (child, base)
}

fn host(base: &str) -> String {
    base.trim_start_matches("http://").to_owned()
}

#[tokio::test]
async fn concurrent_searches_with_huge_words_are_refused_and_the_capped_server_lives_on() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, base) = server(dir.path(), true, &["--rate-anonymous", "0"]).await;
    let http = reqwest::Client::new();
    let ask = |path: String| {
        let http = http.clone();
        let url = format!("{base}{path}");
        async move {
            let response = http.get(url).send().await.expect("the server answers");
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    // Words that fit a URL (5,000 letters) on every search route, and words past the URL limit.
    let mut asks = Vec::new();
    for n in 0..8u8 {
        let letter = char::from(b'a' + n);
        let word = letter.to_string().repeat(5_000);
        asks.push(ask(format!("/api/v1/search?q={word}")));
        asks.push(ask(format!("/api/v1/suggest?q={word}")));
        asks.push(ask(format!("/api/movies/?search={word}")));
        asks.push(ask(format!("/api/v1/search?q={}", letter.to_string().repeat(60_000))));
    }
    for (status, body) in futures::future::join_all(asks).await {
        assert!(status == 400 || status == 414, "{status}: {body:.200}");
        assert!(body.contains("urn:movies:problem:"), "{body:.200}");
    }
    let health = http.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert!(child.try_wait().unwrap().is_none(), "the server died");
    let found = http.get(format!("{base}/api/v1/search?q=godfather")).send().await.unwrap();
    assert_eq!(found.status(), 200);
}

/// Reads until the server closes the connection (or `limit` passes); returns what it sent.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut received = Vec::new();
    let closed = tokio::time::timeout(limit, stream.read_to_end(&mut received)).await;
    closed.ok().map(|_| String::from_utf8_lossy(&received).into_owned())
}

#[tokio::test]
async fn a_half_sent_request_and_an_idle_keep_alive_connection_are_closed_after_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (_child, base) = server(dir.path(), false, &["--header-timeout", "1"]).await;
    let addr = host(&base);

    // Slowloris: a request line and one header, then nothing.
    let mut half = TcpStream::connect(&addr).await.unwrap();
    half.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n").await.unwrap();
    let sent = read_until_closed(&mut half, Duration::from_secs(10)).await;
    assert!(sent.is_some(), "a half-sent request kept its connection open for 10 s");

    // A connection that opens and never sends anything.
    let mut silent = TcpStream::connect(&addr).await.unwrap();
    assert!(read_until_closed(&mut silent, Duration::from_secs(10)).await.is_some());

    // Keep-alive: one full request answered, then idle.
    let mut idle = TcpStream::connect(&addr).await.unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let sent = read_until_closed(&mut idle, Duration::from_secs(10)).await.expect("closed once idle");
    assert!(sent.starts_with("HTTP/1.1 200"), "{sent}");
}

#[tokio::test]
async fn connections_past_the_cap_wait_until_one_closes() {
    let dir = tempfile::tempdir().unwrap();
    let (_child, base) =
        server(dir.path(), false, &["--max-connections", "2", "--header-timeout", "30"]).await;
    let addr = host(&base);
    let first = TcpStream::connect(&addr).await.unwrap();
    let _second = TcpStream::connect(&addr).await.unwrap();
    // Accepted by the kernel, not by the server: its request waits.
    let mut third = TcpStream::connect(&addr).await.unwrap();
    third.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await.unwrap();
    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(1500), third.read(&mut byte)).await;
    assert!(early.is_err(), "a third connection was served while two held the cap of two");
    drop(first);
    let sent =
        read_until_closed(&mut third, Duration::from_secs(10)).await.expect("served once a slot freed");
    assert!(sent.starts_with("HTTP/1.1 200"), "{sent}");
}
