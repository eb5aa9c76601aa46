//! The console's admin pages as a browser without JavaScript uses them: signing in and out with
//! an HttpOnly cookie, forms that refuse another site's posts, the API's messages beside the
//! fields, edits against an old version, delete and restore, history and time travel, the log.

use reqwest::redirect::Policy;
use reqwest::{header, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{movie, spawn_app, TestApp, ADMIN_PASSWORD};

/// A browser's cookie jar over the app's pages, following no redirect by itself.
struct Visitor<'a> {
    app: &'a TestApp,
    http: reqwest::Client,
    cookies: Vec<(String, String)>,
}

struct Page {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    html: String,
}

impl Page {
    fn location(&self) -> &str {
        self.headers[header::LOCATION].to_str().unwrap()
    }

    /// The `value` of the input named `name` (the first one).
    fn input(&self, name: &str) -> String {
        let at =
            self.html.find(&format!("name=\"{name}\"")).unwrap_or_else(|| panic!("no {name}: {}", self.html));
        let tag_start = self.html[..at].rfind('<').unwrap();
        let tag = &self.html[tag_start..tag_start + self.html[tag_start..].find('>').unwrap()];
        let value = tag.split("value=\"").nth(1).map_or("", |rest| rest.split('"').next().unwrap());
        value.replace("&amp;", "&").replace("&quot;", "\"").replace("&lt;", "<").replace("&gt;", ">")
    }

    fn set_cookies(&self) -> Vec<String> {
        self.headers.get_all(header::SET_COOKIE).iter().map(|v| v.to_str().unwrap().to_owned()).collect()
    }
}

impl<'a> Visitor<'a> {
    fn new(app: &'a TestApp) -> Self {
        let http = reqwest::Client::builder().redirect(Policy::none()).build().unwrap();
        Self { app, http, cookies: Vec::new() }
    }

    fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    async fn keep(&mut self, response: reqwest::Response) -> Page {
        let page = Page {
            status: response.status(),
            headers: response.headers().clone(),
            html: response.text().await.unwrap(),
        };
        for set in page.set_cookies() {
            let pair = set.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            self.cookies.retain(|(k, _)| k != name);
            let expired = set.contains("Max-Age=0");
            if !expired {
                self.cookies.push((name.to_owned(), value.to_owned()));
            }
        }
        page
    }

    async fn get(&mut self, path: &str) -> Page {
        let request = self.http.get(self.app.url(path)).header(header::COOKIE, self.cookie_header());
        let response = request.send().await.unwrap();
        self.keep(response).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let request =
            self.http.post(self.app.url(path)).header(header::COOKIE, self.cookie_header()).form(form);
        let response = request.send().await.unwrap();
        self.keep(response).await
    }

    fn csrf(&self) -> String {
        self.cookies.iter().find(|(k, _)| k == "movies_csrf").map(|(_, v)| v.clone()).expect("a CSRF cookie")
    }

    async fn sign_in(&mut self) {
        self.get("/admin/sign-in").await;
        let csrf = self.csrf();
        let signed = self
            .post(
                "/admin/sign-in",
                &[("username", "admin"), ("password", ADMIN_PASSWORD), ("csrf", &csrf), ("next", "/admin")],
            )
            .await;
        assert_eq!(signed.status, StatusCode::SEE_OTHER, "{}", signed.html);
    }

    /// Follows a write's redirect to the reader page, as a browser would.
    async fn follow(&mut self, page: &Page) -> Page {
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.html);
        let location = page.location().to_owned();
        self.get(&location).await
    }
}

fn movie_form<'a>(csrf: &'a str, name: &'a str, genres: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("csrf", csrf),
        ("name", name),
        ("director", "Michael Mann"),
        ("popularity", "83"),
        ("imdb_score", "8.3"),
        ("genres", genres),
    ]
}

async fn head(app: &TestApp) -> i64 {
    app.get_json("/health").await["log_head"].as_i64().unwrap()
}

#[tokio::test]
async fn an_admin_page_sends_a_visitor_to_sign_in_and_back() {
    let app = spawn_app().await;
    let mut visitor = Visitor::new(&app);
    let page = visitor.get("/admin/movies/new").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), "/admin/sign-in?next=%2Fadmin%2Fmovies%2Fnew");
    let form = visitor.get(page.location()).await;
    assert_eq!(form.status, StatusCode::OK);
    assert_eq!(form.input("next"), "/admin/movies/new");
    assert_eq!(form.headers[header::CACHE_CONTROL], "no-store");
    let csrf = visitor.csrf();
    let signed = visitor
        .post(
            "/admin/sign-in",
            &[
                ("username", "admin"),
                ("password", ADMIN_PASSWORD),
                ("csrf", &csrf),
                ("next", "/admin/movies/new"),
            ],
        )
        .await;
    assert_eq!(signed.status, StatusCode::SEE_OTHER);
    assert_eq!(signed.location(), "/admin/movies/new");
    let session = signed.set_cookies().into_iter().find(|c| c.starts_with("movies_session=")).unwrap();
    assert!(session.contains("HttpOnly") && session.contains("SameSite=Strict"), "{session}");
    let page = visitor.get("/admin/movies/new").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.html.contains("Signed in as <strong>admin</strong>"), "{}", page.html);
    // Another site as the place to go after signing in is not followed.
    let elsewhere = visitor
        .post(
            "/admin/sign-in",
            &[
                ("username", "admin"),
                ("password", ADMIN_PASSWORD),
                ("csrf", &csrf),
                ("next", "//evil.example/"),
            ],
        )
        .await;
    assert_eq!(elsewhere.location(), "/admin");
    // Nor is a path a Location header cannot carry as it is.
    let unsendable = visitor
        .post(
            "/admin/sign-in",
            &[("username", "admin"), ("password", ADMIN_PASSWORD), ("csrf", &csrf), ("next", "/admin/é")],
        )
        .await;
    assert_eq!(unsendable.status, StatusCode::SEE_OTHER);
    assert_eq!(unsendable.location(), "/admin");
}

#[tokio::test]
async fn a_wrong_password_or_a_users_account_signs_nobody_in_and_signing_out_forgets_the_session() {
    let app = spawn_app().await;
    app.user_token().await;
    let mut visitor = Visitor::new(&app);
    visitor.get("/admin/sign-in").await;
    let csrf = visitor.csrf();
    let wrong =
        visitor.post("/admin/sign-in", &[("username", "admin"), ("password", "nope"), ("csrf", &csrf)]).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.html.contains("Wrong username or password."), "{}", wrong.html);
    assert_eq!(wrong.input("username"), "admin");
    let user = visitor
        .post("/admin/sign-in", &[("username", "reader"), ("password", "reader-password"), ("csrf", &csrf)])
        .await;
    assert_eq!(user.status, StatusCode::FORBIDDEN);
    assert!(!visitor.cookies.iter().any(|(k, _)| k == "movies_session"));

    visitor.sign_in().await;
    assert_eq!(visitor.get("/admin").await.status, StatusCode::OK);
    let out = visitor.post("/admin/sign-out", &[("csrf", &csrf)]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(out.set_cookies().iter().any(|c| c.starts_with("movies_session=;") && c.contains("Max-Age=0")));
    assert_eq!(visitor.get("/admin").await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_post_without_the_pages_token_or_from_another_site_changes_nothing() {
    let app = spawn_app().await;
    let mut visitor = Visitor::new(&app);
    visitor.sign_in().await;
    visitor.get("/admin/movies/new").await;
    let before = head(&app).await;
    let forged =
        visitor.post("/admin/movies", &movie_form("0123456789abcdef0123456789abcdef", "Heat", "Crime")).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    // The right token, but sent by another site's page.
    let csrf = visitor.csrf();
    let mut form = movie_form(&csrf, "Heat", "Crime");
    let key = uuid::Uuid::now_v7().to_string();
    form.push(("key", &key));
    let cross = visitor
        .http
        .post(app.url("/admin/movies"))
        .header(header::COOKIE, visitor.cookie_header())
        .header(header::ORIGIN, "http://evil.example")
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), StatusCode::FORBIDDEN);
    assert_eq!(head(&app).await, before, "nothing was recorded");
    // The same form from this site's page is taken.
    let same = visitor.post("/admin/movies", &form).await;
    assert_eq!(same.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_created_movie_is_shown_as_readers_see_it_and_a_form_sent_twice_creates_one() {
    let app = spawn_app().await;
    let mut visitor = Visitor::new(&app);
    visitor.sign_in().await;
    let page = visitor.get("/admin/movies/new").await;
    let (csrf, key) = (visitor.csrf(), page.input("key"));
    let mut form = movie_form(&csrf, "Heat", "Crime\r\nDrama");
    form.push(("key", &key));
    let created = visitor.post("/admin/movies", &form).await;
    let location = created.location().to_owned();
    assert!(location.starts_with("/movies/") && location.contains("?min_position="), "{location}");
    let shown = visitor.follow(&created).await;
    assert_eq!(shown.status, StatusCode::OK);
    assert!(shown.html.contains("<h1>Heat</h1>"), "{}", shown.html);
    assert!(shown.html.contains("Crime") && shown.html.contains("Drama"));
    // A second send of the same form (a double click, a reload) finds the movie it made.
    let again = visitor.post("/admin/movies", &form).await;
    assert_eq!(again.location().split('?').next(), location.split('?').next());
    assert_eq!(app.all_movies().await.len(), 1);
}

#[tokio::test]
async fn a_rejected_form_shows_the_apis_messages_beside_its_fields_and_keeps_what_was_typed() {
    let app = spawn_app().await;
    let mut visitor = Visitor::new(&app);
    visitor.sign_in().await;
    let page = visitor.get("/admin/movies/new").await;
    let (csrf, key) = (visitor.csrf(), page.input("key"));
    let form = [
        ("csrf", csrf.as_str()),
        ("key", key.as_str()),
        ("name", "  "),
        ("director", "Michael <b>Mann</b>"),
        ("popularity", "101"),
        ("imdb_score", "high"),
        ("genres", ""),
    ];
    let rejected = visitor.post("/admin/movies", &form).await;
    assert_eq!(rejected.status, StatusCode::UNPROCESSABLE_ENTITY);
    let html = &rejected.html;
    for message in [
        "id=\"name-error\">Name must",
        "id=\"popularity-error\">Popularity must be between 0 and 100.",
        "id=\"imdb_score-error\">IMDb score must be a number.",
        "id=\"genres-error\">Genres must list at least one genre.",
    ] {
        assert!(html.contains(message), "{message} in {html}");
    }
    assert!(html.contains("aria-invalid=\"true\" aria-describedby=\"name-hint name-error\""), "{html}");
    assert!(!html.contains("director-error"), "{html}");
    assert_eq!(rejected.input("director"), "Michael <b>Mann</b>");
    assert!(!html.contains("<b>Mann"), "typed text is escaped");
    assert_eq!(rejected.input("key"), key, "the same create, once fixed");
    assert_eq!(head(&app).await, 0);
}

#[tokio::test]
async fn an_edit_against_an_old_version_shows_what_changed_meanwhile_and_reapplies_only_the_admins_fields() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let created = app.created(&token, &movie("Heat")).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let mut visitor = Visitor::new(&app);
    visitor.sign_in().await;
    let edit = visitor.get(&format!("/admin/movies/{id}")).await;
    assert_eq!(edit.status, StatusCode::OK);
    assert_eq!(edit.input("version"), "1");
    // Someone else changes the director meanwhile.
    let theirs = app
        .http
        .patch(app.url(&format!("/api/v1/movies/{id}")))
        .bearer_auth(&token)
        .header(header::CONTENT_TYPE, "application/merge-patch+json")
        .body(json!({ "director": "Someone Else" }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(theirs.status(), StatusCode::OK);
    // The admin saves a new name against version 1.
    let csrf = visitor.csrf();
    let (director, popularity, score, genres) =
        (edit.input("director"), edit.input("popularity"), edit.input("imdb_score"), "Drama".to_owned());
    let form = [
        ("csrf", csrf.as_str()),
        ("version", "1"),
        ("name", "Heat (1995)"),
        ("director", &director),
        ("popularity", &popularity),
        ("imdb_score", &score),
        ("genres", &genres),
    ];
    let conflict = visitor.post(&format!("/admin/movies/{id}"), &form).await;
    assert_eq!(conflict.status, StatusCode::CONFLICT);
    let html = &conflict.html;
    assert!(html.contains("<td>Someone Else <span class=\"tag\">changed meanwhile"), "{html}");
    assert!(html.contains("Heat (1995) <span class=\"tag\">your change"), "{html}");
    let current: Value = app.get_json(&format!("/api/v1/movies/{id}")).await;
    assert_eq!(current["name"], "Heat", "nothing of the stale edit was saved");
    // Re-applying puts the new name over their director.
    assert_eq!(conflict.input("version"), "2");
    let fields = ["version", "name", "director", "popularity", "imdb_score", "genres"];
    let values: Vec<String> = fields.iter().map(|f| conflict.input(f)).collect();
    let mut sent: Vec<(&str, &str)> = fields.iter().copied().zip(values.iter().map(String::as_str)).collect();
    sent.push(("csrf", &csrf));
    let saved = visitor.post(&format!("/admin/movies/{id}"), &sent).await;
    let shown = visitor.follow(&saved).await;
    assert!(shown.html.contains("<h1>Heat (1995)</h1>"), "{}", shown.html);
    let current: Value = app.get_json(&format!("/api/v1/movies/{id}")).await;
    assert_eq!(
        (current["name"].as_str(), current["director"].as_str()),
        (Some("Heat (1995)"), Some("Someone Else"))
    );
    assert_eq!(current["genres"], json!(["Drama"]));
}

#[tokio::test]
async fn deleting_and_restoring_from_the_console_shows_each_result() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let id = app.created(&token, &movie("Heat")).await["id"].as_str().unwrap().to_owned();
    let mut visitor = Visitor::new(&app);
    visitor.sign_in().await;
    visitor.get(&format!("/admin/movies/{id}")).await;
    let csrf = visitor.csrf();
    // A delete against a version that is no longer current does nothing.
    let stale =
        visitor.post(&format!("/admin/movies/{id}/delete"), &[("csrf", &csrf), ("version", "7")]).await;
    assert_eq!(stale.status, StatusCode::CONFLICT);
    let deleted =
        visitor.post(&format!("/admin/movies/{id}/delete"), &[("csrf", &csrf), ("version", "1")]).await;
    assert_eq!(deleted.location(), format!("/admin/movies/{id}"));
    let page = visitor.follow(&deleted).await;
    assert!(page.html.contains("This movie is deleted"), "{}", page.html);
    assert_eq!(page.input("version"), "2");
    let restored =
        visitor.post(&format!("/admin/movies/{id}/restore"), &[("csrf", &csrf), ("version", "2")]).await;
    let shown = visitor.follow(&restored).await;
    assert_eq!(shown.status, StatusCode::OK);
    assert!(shown.html.contains("<h1>Heat</h1>"));
}

#[tokio::test]
async fn the_history_page_shows_each_change_and_the_movie_at_any_version_or_instant() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let id = app.created(&token, &movie("Heat")).await["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let between = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let renamed = app
        .http
        .patch(app.url(&format!("/api/v1/movies/{id}")))
        .bearer_auth(&token)
        .header(header::CONTENT_TYPE, "application/merge-patch+json")
        .body(json!({ "name": "Heat (1995)" }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(renamed.status(), StatusCode::OK);
    let mut visitor = Visitor::new(&app);
    visitor.sign_in().await;
    let history = visitor.get(&format!("/admin/movies/{id}/history")).await;
    assert_eq!(history.status, StatusCode::OK);
    assert!(history.html.contains("<h1>History of Heat (1995)</h1>"), "{}", history.html);
    assert!(
        history.html.contains("<strong>name</strong>: <del>Heat</del> → <ins>Heat (1995)</ins>"),
        "{}",
        history.html
    );
    assert!(history.html.contains("<strong>movie.created</strong>"));
    let at_one = visitor.get(&format!("/admin/movies/{id}/history?version=1")).await;
    assert!(at_one.html.contains("<strong>Heat</strong> at version 1"), "{}", at_one.html);
    let at_instant = visitor.get(&format!("/admin/movies/{id}/history?as_of={between}")).await;
    assert!(at_instant.html.contains("<strong>Heat</strong> at version 1"), "{}", at_instant.html);
    let before_it = visitor.get(&format!("/admin/movies/{id}/history?as_of=2000-01-01T00:00")).await;
    assert!(before_it.html.contains("It did not exist yet."));
    let bad = visitor.get(&format!("/admin/movies/{id}/history?as_of=yesterday")).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        visitor.get(&format!("/admin/movies/{}/history", uuid::Uuid::nil())).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn the_log_page_filters_by_type_and_actor_and_pages_on() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let mut id = String::new();
    for i in 0..60 {
        let created = app.create(&token, &movie(&format!("Movie {i}"))).await;
        assert_eq!(created.status(), StatusCode::CREATED);
        id = created.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    }
    let deleted =
        app.http.delete(app.url(&format!("/api/v1/movies/{id}"))).bearer_auth(&token).send().await.unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let mut visitor = Visitor::new(&app);
    visitor.sign_in().await;
    let first = visitor.get("/admin").await;
    assert_eq!(first.html.matches("<strong>movie.created</strong>").count(), 50);
    let more = first
        .html
        .split("class=\"more\" href=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&");
    let second = visitor.get(&more).await;
    assert_eq!(second.html.matches("<strong>movie.created</strong>").count(), 10);
    assert_eq!(second.html.matches("<strong>movie.deleted</strong>").count(), 1);
    let only = visitor.get("/admin?type=movie.deleted&actor=admin").await;
    assert_eq!(only.html.matches("<li><p class=\"meta\">").count(), 1, "{}", only.html);
    let nobody = visitor.get("/admin?actor=nobody").await;
    assert!(nobody.html.contains("No events match."));
    assert_eq!(visitor.get("/admin?since=soon").await.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_status_page_shows_projection_lag_the_cache_and_a_running_replays_progress() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    app.created(&token, &movie("Heat")).await;
    let mut visitor = Visitor::new(&app);
    assert_eq!(visitor.get("/admin/status").await.status, StatusCode::SEE_OTHER, "admins only");
    visitor.sign_in().await;
    let page = visitor.get("/admin/status").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.html.contains("Event log head: <strong>1</strong>"), "{}", page.html);
    assert!(
        page.html.contains("<th scope=\"row\">read store</th><td>0</td><td>1</td><td>0 events"),
        "{}",
        page.html
    );
    assert!(page.html.contains("Every dependency answers and keeps up."));
    assert!(page.html.contains("No replay is running."));
    // A replay in another process reports beside the data it builds.
    let progress =
        json!({ "projections": ["search"], "position": 1, "head": 4, "updated_at": chrono::Utc::now() });
    std::fs::write(app.settings.data_dir.join("replay-progress.json"), progress.to_string()).unwrap();
    let page = visitor.get("/admin/status").await;
    assert!(page.html.contains("Rebuilding search: <strong>1 of 4</strong> events (25.0%)"), "{}", page.html);
}
