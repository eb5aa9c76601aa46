//! The operator's status page: how far each projection has got behind the event log, how the
//! caches do, which dependencies are degraded, and a running replay's progress. Each deployment
//! gathers what it can see (`StatusSource`); the page only shows it.

use chrono::{DateTime, Utc};
use maud::{html, Markup};
use serde::{Deserialize, Serialize};

/// What a deployment can say of itself at one moment.
#[derive(Debug, Clone, Default)]
pub struct StatusReport {
    /// The event log's last position; `None` when the log could not be reached.
    pub log_head: Option<i64>,
    pub projections: Vec<ProjectionStatus>,
    /// The read cache's counts since the server started, if this server has one.
    pub cache: Option<CacheCounts>,
    /// Each dependency that does not answer or keeps up, with what that means for readers.
    pub degraded: Vec<String>,
    /// A replay rebuilding projections beside the live ones, as it last reported.
    pub replay: Option<ReplayProgress>,
    /// What this server does not see (the other roles of a distributed deployment).
    pub elsewhere: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ProjectionStatus {
    pub name: String,
    pub generation: Option<i64>,
    /// The last log position it has applied.
    pub position: i64,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct CacheCounts {
    pub l1_hits: u64,
    pub l2_hits: u64,
    pub misses: u64,
}

/// What `movies replay` reports while it runs (the file it rewrites each second or so).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplayProgress {
    pub projections: Vec<String>,
    /// The last position applied to the new generations.
    pub position: i64,
    /// The log's head when the replay started: where it will stop.
    pub head: i64,
    pub updated_at: DateTime<Utc>,
}

/// A replay not heard from for this long has probably stopped.
const REPLAY_SILENT_SECONDS: i64 = 30;

/// Gathers a deployment's status, quickly: the page waits for it.
#[async_trait::async_trait]
pub trait StatusSource: Send + Sync + 'static {
    async fn report(&self) -> StatusReport;
}

fn percent(part: f64, whole: f64) -> String {
    if whole <= 0.0 {
        "–".to_owned()
    } else {
        format!("{:.1}%", 100.0 * part / whole)
    }
}

/// The status page's content, as of `now`.
pub fn status_main(report: &StatusReport, now: DateTime<Utc>) -> Markup {
    html! {
        h1 { "Status" }
        p.count { "As of " (now.format("%Y-%m-%d %H:%M:%S UTC")) ". " a href="/admin/status" { "Refresh" } }
        section aria-labelledby="dependencies" {
            h2 #dependencies { "Dependencies" }
            @if report.degraded.is_empty() {
                p { "Every dependency answers and keeps up." }
            } @else {
                ul.degraded role="alert" { @for problem in &report.degraded { li.error { (problem) } } }
            }
        }
        section aria-labelledby="projections" {
            h2 #projections { "Projections" }
            p { "Event log head: " strong { @match report.log_head { Some(head) => (head), None => "unreachable" } } }
            table.diff {
                thead { tr { th scope="col" { "Projection" } th scope="col" { "Generation" } th scope="col" { "Position" } th scope="col" { "Behind by" } } }
                tbody {
                    @for projection in &report.projections {
                        tr {
                            th scope="row" { (projection.name) }
                            td { @if let Some(g) = projection.generation { (g) } @else { "–" } }
                            td { (projection.position) }
                            td { @match report.log_head {
                                Some(head) => { @let lag = (head - projection.position).max(0);
                                    (lag) " events" @if lag == 0 { " " span.tag { "caught up" } } }
                                None => "unknown",
                            } }
                        }
                    }
                }
            }
        }
        section aria-labelledby="cache" {
            h2 #cache { "Read cache" }
            @match report.cache {
                Some(c) => {
                    @let total = (c.l1_hits + c.l2_hits + c.misses) as f64;
                    dl.movie {
                        dt { "In-process hits" } dd { (c.l1_hits) " (" (percent(c.l1_hits as f64, total)) ")" }
                        dt { "Shared (Redis) hits" } dd { (c.l2_hits) " (" (percent(c.l2_hits as f64, total)) ")" }
                        dt { "Misses" } dd { (c.misses) " (" (percent(c.misses as f64, total)) ")" }
                        dt { "Hit ratio" } dd { strong { (percent((c.l1_hits + c.l2_hits) as f64, total)) } }
                    }
                }
                None => p { "This server has no read cache." },
            }
        }
        section aria-labelledby="replay" {
            h2 #replay { "Replay" }
            @match &report.replay {
                Some(r) => {
                    @let silent = (now - r.updated_at).num_seconds();
                    p {
                        "Rebuilding " (r.projections.join(" and ")) ": " strong { (r.position) " of " (r.head) } " events ("
                        (percent(r.position as f64, r.head as f64)) ")."
                    }
                    progress max=(r.head.max(1)) value=(r.position) aria-label="Replay progress" {}
                    @if silent > REPLAY_SILENT_SECONDS {
                        p.error { "Not heard from for " (silent) " seconds: the replay has probably stopped. The live projections are untouched; run it again." }
                    }
                }
                None => p { "No replay is running." },
            }
        }
        @if let Some(elsewhere) = &report.elsewhere { p.notice { (elsewhere) } }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replay_not_heard_from_is_said_to_have_stopped_and_lag_is_counted_from_the_head() {
        let now = Utc::now();
        let report = StatusReport {
            log_head: Some(120),
            projections: vec![ProjectionStatus {
                name: "read store".into(),
                generation: Some(2),
                position: 100,
            }],
            cache: Some(CacheCounts { l1_hits: 3, l2_hits: 0, misses: 1 }),
            replay: Some(ReplayProgress {
                projections: vec!["search".into()],
                position: 60,
                head: 120,
                updated_at: now - chrono::Duration::seconds(45),
            }),
            ..StatusReport::default()
        };
        let html = status_main(&report, now).into_string();
        assert!(html.contains("<td>20 events</td>"), "{html}");
        assert!(html.contains("<strong>75.0%</strong>"), "{html}");
        assert!(html.contains("60 of 120"), "{html}");
        assert!(html.contains("Not heard from for 45 seconds"), "{html}");
        let fresh = ReplayProgress { updated_at: now, ..report.replay.clone().unwrap() };
        let html = status_main(&StatusReport { replay: Some(fresh), ..report }, now).into_string();
        assert!(!html.contains("Not heard from"), "{html}");
    }
}
