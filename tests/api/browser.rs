//! The console in headless Chromium, driven over WebDriver (the chromedriver `scripts/test`
//! starts, at `MOVIES_TEST_WEBDRIVER`): what a person does with a mouse, a keyboard alone, and
//! with JavaScript off.

use std::time::Duration;

use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

use crate::helpers::spawn_seeded;

/// How long a page may take to show what a step waits for.
const PATIENCE: Duration = Duration::from_secs(10);

/// A new headless Chromium session, with JavaScript on or off.
pub async fn browser(javascript: bool) -> Client {
    let webdriver = std::env::var("MOVIES_TEST_WEBDRIVER")
        .expect("MOVIES_TEST_WEBDRIVER must name a chromedriver (scripts/test starts one)");
    let chromium =
        std::env::var("MOVIES_TEST_CHROMIUM").expect("MOVIES_TEST_CHROMIUM must name Debian's chromium");
    let mut options = json!({
        "binary": chromium,
        "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1200,900", "--no-first-run", "--disable-extensions"],
    });
    if !javascript {
        options["prefs"] = json!({ "profile.managed_default_content_settings.javascript": 2 });
    }
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("goog:chromeOptions".into(), options);
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&webdriver)
        .await
        .expect("a Chromium session")
}

/// Runs `script` until it returns true, for at most `PATIENCE`.
pub async fn until(client: &Client, what: &str, script: &str) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if client.execute(script, vec![]).await.unwrap() == Value::Bool(true) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn eval(client: &Client, script: &str) -> Value {
    client.execute(script, vec![]).await.unwrap()
}

fn key(key: Key) -> String {
    char::from(key).to_string()
}

#[tokio::test]
async fn results_and_suggestions_follow_typing_without_a_page_load() {
    let app = spawn_seeded().await;
    let client = browser(true).await;
    client.goto(&app.url("/")).await.unwrap();
    // A mark on this page's window: a page load would lose it.
    client.execute("window.sameLoad = true", vec![]).await.unwrap();
    client.find(Locator::Css("#q")).await.unwrap().send_keys("godfath").await.unwrap();
    until(&client, "results for what was typed", r#"return [...document.querySelectorAll("ol.hits h3")].some(h => h.textContent.includes("The Godfather"))"#).await;
    until(&client, "a title suggested", r##"return [...document.querySelectorAll("#suggestions option")].some(o => o.value.startsWith("The Godfather"))"##).await;
    assert_eq!(eval(&client, "return window.sameLoad === true").await, Value::Bool(true));
    assert_eq!(eval(&client, "return document.querySelector('mark').textContent").await, json!("Godfather"));
    // The address follows, so the page can be shared or reloaded.
    let address = client.current_url().await.unwrap();
    assert!(address.query_pairs().any(|(k, v)| k == "q" && v == "godfath"), "{address}");
    assert!(!address.query_pairs().any(|(k, _)| k == "fragment"), "{address}");
    client.close().await.unwrap();
}

#[tokio::test]
async fn more_results_load_as_the_reader_scrolls_to_the_end() {
    let app = spawn_seeded().await;
    let client = browser(true).await;
    client.goto(&app.url("/?sort=name")).await.unwrap();
    assert_eq!(eval(&client, "return document.querySelectorAll('ol.hits > li').length").await, json!(20));
    client
        .execute("window.sameLoad = true; document.querySelector('a.more').scrollIntoView()", vec![])
        .await
        .unwrap();
    until(
        &client,
        "a second page appended",
        "return document.querySelectorAll('ol.hits > li').length === 40",
    )
    .await;
    let names = eval(
        &client,
        "return [...document.querySelectorAll('ol.hits h3')].map(h => h.textContent.toLowerCase())",
    )
    .await;
    let names: Vec<String> = serde_json::from_value(names).unwrap();
    assert!(names.windows(2).all(|w| w[0] <= w[1]), "still in name order: {names:?}");
    assert_eq!(eval(&client, "return window.sameLoad === true").await, Value::Bool(true));
    client.close().await.unwrap();
}

#[tokio::test]
async fn the_search_page_and_a_movie_work_by_keyboard_alone() {
    let app = spawn_seeded().await;
    let client = browser(true).await;
    client.goto(&app.url("/")).await.unwrap();
    // The search field has the focus on arrival.
    assert_eq!(eval(&client, "return document.activeElement.id").await, json!("q"));
    let field = client.active_element().await.unwrap();
    field.send_keys(&format!("godfather{}", key(Key::Enter))).await.unwrap();
    until(&client, "results", "return document.querySelectorAll('ol.hits > li').length > 0 && document.querySelector('ol.hits').textContent.includes('Godfather')").await;
    // Tab from the field to the first result: the sort, the button, then the results.
    let mut reached = false;
    for _ in 0..6 {
        client.active_element().await.unwrap().send_keys(&key(Key::Tab)).await.unwrap();
        if eval(&client, "return !!document.activeElement.closest('ol.hits')").await == Value::Bool(true) {
            reached = true;
            break;
        }
    }
    assert!(reached, "a result link is reached within a few tabs");
    let outline = eval(&client, "return getComputedStyle(document.activeElement).outlineStyle").await;
    assert_ne!(outline, json!("none"), "the focused link shows its focus");
    client.active_element().await.unwrap().send_keys(&key(Key::Enter)).await.unwrap();
    until(&client, "the movie's page", "return location.pathname.startsWith('/movies/')").await;
    let heading = client.find(Locator::Css("h1")).await.unwrap().text().await.unwrap();
    assert!(heading.contains("Godfather"), "{heading}");
    // The first tab on a page reaches the skip link, which moves the focus to the content.
    client.find(Locator::Css("body")).await.unwrap().send_keys(&key(Key::Tab)).await.unwrap();
    assert_eq!(eval(&client, "return document.activeElement.className").await, json!("skip"));
    assert!(
        eval(&client, "return document.activeElement.getBoundingClientRect().left >= 0").await == json!(true)
    );
    client.active_element().await.unwrap().send_keys(&key(Key::Enter)).await.unwrap();
    until(&client, "the focus in the content", "return document.activeElement.id === 'main'").await;
    client.close().await.unwrap();
}

#[tokio::test]
async fn searching_paging_and_opening_a_movie_work_with_javascript_off() {
    let app = spawn_seeded().await;
    let client = browser(false).await;
    client.goto(&app.url("/")).await.unwrap();
    client
        .find(Locator::Css("#q"))
        .await
        .unwrap()
        .send_keys(&format!("the{}", key(Key::Enter)))
        .await
        .unwrap();
    client.wait().at_most(PATIENCE).for_element(Locator::Css("ol.hits > li")).await.unwrap();
    assert!(client.current_url().await.unwrap().as_str().contains("q=the"));
    let first: Vec<String> = hits(&client).await;
    assert_eq!(first.len(), 20);
    client.find(Locator::Css("a.more")).await.unwrap().click().await.unwrap();
    until(&client, "the next page", "return location.search.includes('cursor=')").await;
    let second = hits(&client).await;
    assert!(!second.is_empty() && second.iter().all(|h| !first.contains(h)), "a page of other movies");
    client.find(Locator::Css("ol.hits a")).await.unwrap().click().await.unwrap();
    until(&client, "the movie's page", "return location.pathname.startsWith('/movies/')").await;
    let heading = client.find(Locator::Css("h1")).await.unwrap().text().await.unwrap();
    assert_eq!(heading, second[0]);
    client.close().await.unwrap();
}

async fn hits(client: &Client) -> Vec<String> {
    let mut names = Vec::new();
    for hit in client.find_all(Locator::Css("ol.hits h3")).await.unwrap() {
        names.push(hit.text().await.unwrap());
    }
    names
}

/// Fills the field `id` with `text`, replacing what it held.
async fn fill(client: &Client, id: &str, text: &str) {
    let field = client.find(Locator::Id(id)).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(text).await.unwrap();
}

async fn click(client: &Client, css: &str) {
    client.find(Locator::Css(css)).await.unwrap().click().await.unwrap();
}

async fn heading(client: &Client) -> String {
    client.find(Locator::Css("h1")).await.unwrap().text().await.unwrap()
}

/// Opens an admin page, signs in on the way, and waits to be back on it.
async fn sign_in(client: &Client, app: &crate::helpers::TestApp, path: &str) {
    client.goto(&app.url(path)).await.unwrap();
    until(client, "the sign-in form", "return location.pathname === '/admin/sign-in'").await;
    fill(client, "username", "admin").await;
    fill(client, "password", crate::helpers::ADMIN_PASSWORD).await;
    click(client, "main form button[type=submit]").await;
    let back = format!("return location.pathname === '{path}'");
    until(client, "back on the page asked for", &back).await;
}

#[tokio::test]
async fn an_admin_creates_edits_settles_a_conflict_deletes_restores_travels_in_time_and_signs_out() {
    let app = crate::helpers::spawn_app().await;
    let admin = browser(true).await;
    sign_in(&admin, &app, "/admin").await;
    assert_eq!(heading(&admin).await, "Event log");

    // Create: the movie is shown as readers see it.
    click(&admin, "a[href='/admin/movies/new']").await;
    until(&admin, "the new movie form", "return location.pathname === '/admin/movies/new'").await;
    fill(&admin, "name", "Heat").await;
    fill(&admin, "director", "Michael Mann").await;
    fill(&admin, "popularity", "83").await;
    fill(&admin, "imdb_score", "8.3").await;
    fill(&admin, "genres", "Crime\nDrama").await;
    click(&admin, "form.stacked button[type=submit]").await;
    until(&admin, "the reader page", "return location.pathname.startsWith('/movies/')").await;
    assert_eq!(heading(&admin).await, "Heat");
    admin.find(Locator::LinkText("Edit")).await.unwrap().click().await.unwrap();
    until(&admin, "the edit form", "return /^\\/admin\\/movies\\/[^/]+$/.test(location.pathname)").await;
    let edit_url = admin.current_url().await.unwrap().path().to_owned();

    // A second admin, without JavaScript, changes the director meanwhile.
    let other = browser(false).await;
    sign_in(&other, &app, &edit_url).await;
    fill(&other, "director", "Someone Else").await;
    click(&other, "form.stacked button[type=submit]").await;
    until(&other, "the reader page", "return location.pathname.startsWith('/movies/')").await;
    other.close().await.unwrap();

    // The first admin's edit was made against the old version: it shows what changed.
    fill(&admin, "name", "Heat (1995)").await;
    click(&admin, "form.stacked button[type=submit]").await;
    until(
        &admin,
        "the conflict",
        "return document.querySelector('h1').textContent === 'Changed since you opened it'",
    )
    .await;
    let changed = eval(
        &admin,
        "return [...document.querySelectorAll('table.diff tr.changed th')].map(t => t.textContent)",
    )
    .await;
    assert_eq!(changed, json!(["Director"]));
    click(&admin, ".actions button[type=submit]").await;
    until(&admin, "the reader page", "return location.pathname.startsWith('/movies/')").await;
    assert_eq!(heading(&admin).await, "Heat (1995)");
    let director = admin.find(Locator::Css("dl.movie dd")).await.unwrap().text().await.unwrap();
    assert_eq!(director, "Someone Else");

    // Delete, then restore.
    admin.goto(&app.url(&edit_url)).await.unwrap();
    click(&admin, "form.danger button").await;
    until(&admin, "the deleted movie", "return !!document.querySelector('p.notice')").await;
    click(&admin, "main form[action$='/restore'] button").await;
    until(&admin, "the reader page", "return location.pathname.startsWith('/movies/')").await;
    assert_eq!(heading(&admin).await, "Heat (1995)");

    // The history, and the movie as it was at version 1 (the slider moves the page).
    admin.goto(&app.url(&format!("{edit_url}/history"))).await.unwrap();
    assert_eq!(eval(&admin, "return document.querySelectorAll('ol.timeline > li').length").await, json!(5));
    admin
        .execute(
            "const r = document.getElementById('version'); r.value = 1; r.dispatchEvent(new Event('change'))",
            vec![],
        )
        .await
        .unwrap();
    until(&admin, "the movie at version 1", "return location.search === '?version=1'").await;
    let then = admin.find(Locator::Css("section.time-travel p strong")).await.unwrap().text().await.unwrap();
    assert_eq!(then, "Heat");

    // Signing out: admin pages ask to sign in again.
    click(&admin, ".admin-bar button").await;
    until(&admin, "the search page", "return location.pathname === '/'").await;
    admin.goto(&app.url("/admin")).await.unwrap();
    until(&admin, "the sign-in form", "return location.pathname === '/admin/sign-in'").await;
    admin.close().await.unwrap();
}
