//! Screenshots of each console page for `docs/console.md`, taken in headless Chromium from a
//! throwaway server seeded with the bundled catalogue. Run by `scripts/screenshots.sh`, which
//! starts chromedriver and names it in `MOVIES_TEST_WEBDRIVER`.
//!
//! Usage: console_screenshots OUT_DIR

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use fantoccini::{Client, ClientBuilder, Locator};
use movies::{Seed, Settings};
use movies_web::{PasswordHasher, RateLimits};
use serde_json::json;

const PASSWORD: &str = "screenshots-only";

async fn browser(webdriver: &str, chromium: &str, width: u32) -> anyhow::Result<Client> {
    let options = json!({
        "binary": chromium,
        "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 format!("--window-size={width},900"), "--hide-scrollbars", "--force-color-profile=srgb"],
    });
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("goog:chromeOptions".into(), options);
    Ok(ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(webdriver)
        .await?)
}

/// Waits until `script` returns true (a page loaded, a list filled).
async fn until(client: &Client, script: &str) -> anyhow::Result<()> {
    for _ in 0..200 {
        if client.execute(script, vec![]).await? == json!(true) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("never happened: {script}")
}

async fn shot(client: &Client, dir: &Path, name: &str) -> anyhow::Result<()> {
    let path = dir.join(format!("{name}.png"));
    std::fs::write(&path, client.screenshot().await?)
        .with_context(|| format!("writing {}", path.display()))?;
    println!("{}", path.display());
    Ok(())
}

async fn fill(client: &Client, id: &str, text: &str) -> anyhow::Result<()> {
    let field = client.find(Locator::Id(id)).await?;
    field.clear().await?;
    field.send_keys(text).await?;
    Ok(())
}

async fn submit(client: &Client, css: &str) -> anyhow::Result<()> {
    client.find(Locator::Css(css)).await?.click().await?;
    Ok(())
}

async fn sign_in(client: &Client, base: &str) -> anyhow::Result<()> {
    client.goto(&format!("{base}/admin/sign-in?next=/admin")).await?;
    fill(client, "username", "admin").await?;
    fill(client, "password", PASSWORD).await?;
    submit(client, "main form button").await?;
    until(client, "return location.pathname === '/admin'").await
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let out = PathBuf::from(std::env::args().nth(1).context("usage: console_screenshots OUT_DIR")?);
    std::fs::create_dir_all(&out)?;
    let webdriver = std::env::var("MOVIES_TEST_WEBDRIVER").context("MOVIES_TEST_WEBDRIVER")?;
    let chromium = std::env::var("MOVIES_TEST_CHROMIUM").context("MOVIES_TEST_CHROMIUM")?;

    let data = tempfile::tempdir()?;
    let settings = Settings {
        listen: "127.0.0.1:0".parse()?,
        data_dir: data.path().to_path_buf(),
        database_url: None,
        admin_password: Some(PASSWORD.into()),
        seed: Seed::Bundled,
        hasher: PasswordHasher::cheap_for_tests(),
        rate: RateLimits::unlimited(),
        http: movies::HttpLimits::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    let embedded = movies::build(&settings).await?;
    tokio::spawn(movies::run(listener, embedded, shutdown));
    let http = reqwest::Client::new();
    while http.get(format!("{base}/ready")).send().await.map(|r| r.status().is_success()).ok() != Some(true) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let reader = browser(&webdriver, &chromium, 1100).await?;
    reader.goto(&format!("{base}/?q=godfathr")).await?;
    until(&reader, "return document.querySelectorAll('ol.hits > li').length > 0").await?;
    shot(&reader, &out, "search").await?;
    reader.find(Locator::Css("ol.hits a")).await?.click().await?;
    until(&reader, "return location.pathname.startsWith('/movies/')").await?;
    shot(&reader, &out, "movie").await?;
    let movie = reader.current_url().await?.path().to_owned();
    let narrow = browser(&webdriver, &chromium, 420).await?;
    narrow.goto(&format!("{base}/?genre=Drama&sort=imdb_score")).await?;
    until(&narrow, "return document.querySelectorAll('ol.hits > li').length > 0").await?;
    shot(&narrow, &out, "search-narrow").await?;
    narrow.close().await?;
    reader.close().await?;

    let admin = browser(&webdriver, &chromium, 1100).await?;
    admin.goto(&format!("{base}/admin/sign-in")).await?;
    shot(&admin, &out, "sign-in").await?;
    sign_in(&admin, &base).await?;
    shot(&admin, &out, "event-log").await?;
    admin.goto(&format!("{base}/admin/movies/new")).await?;
    fill(&admin, "name", " ").await?;
    fill(&admin, "popularity", "140").await?;
    fill(&admin, "imdb_score", "high").await?;
    submit(&admin, "form.stacked button").await?;
    until(&admin, "return !!document.querySelector('.error-summary')").await?;
    shot(&admin, &out, "create-invalid").await?;

    // A conflict: a second admin saves first.
    let edit = movie.replacen("/movies/", "/admin/movies/", 1);
    admin.goto(&format!("{base}{edit}")).await?;
    shot(&admin, &out, "edit").await?;
    let other = browser(&webdriver, &chromium, 1100).await?;
    sign_in(&other, &base).await?;
    other.goto(&format!("{base}{edit}")).await?;
    fill(&other, "director", "F. F. Coppola").await?;
    submit(&other, "form.stacked button").await?;
    until(&other, "return location.pathname.startsWith('/movies/')").await?;
    other.close().await?;
    fill(&admin, "imdb_score", "9.3").await?;
    submit(&admin, "form.stacked button").await?;
    until(&admin, "return !!document.querySelector('table.diff')").await?;
    shot(&admin, &out, "conflict").await?;
    submit(&admin, ".actions button").await?;
    until(&admin, "return location.pathname.startsWith('/movies/')").await?;

    admin.goto(&format!("{base}{edit}")).await?;
    submit(&admin, "form.danger button").await?;
    until(&admin, "return !!document.querySelector('p.notice')").await?;
    shot(&admin, &out, "deleted").await?;
    submit(&admin, "main form[action$='/restore'] button").await?;
    until(&admin, "return location.pathname.startsWith('/movies/')").await?;
    admin.goto(&format!("{base}{edit}/history?version=2")).await?;
    shot(&admin, &out, "history").await?;
    admin.goto(&format!("{base}/admin/status")).await?;
    shot(&admin, &out, "status").await?;
    admin.close().await?;
    Ok(())
}
