//! What the operator's status page shows, as the all-in-one server sees itself, and the file a
//! running `movies replay` reports its progress in.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use movies_console::{CacheCounts, ProjectionStatus, ReplayProgress, StatusReport, StatusSource};
use movies_events::Position;
use movies_store::EventStore;
use tokio::sync::watch;

use crate::replay::Generations;
use crate::{lag, HEALTHY_LAG};

/// Where a replay reports its progress: beside the generations it builds.
pub fn replay_progress_file(data_dir: &Path) -> PathBuf {
    data_dir.join("replay-progress.json")
}

/// A replay's progress as servers sharing its data directory read it: a small file rewritten
/// (whole, by a rename) at most once a second, and removed when the replay ends, however it ends.
pub(crate) struct ReplayReport {
    path: PathBuf,
    projections: Vec<String>,
    head: Position,
    written: Option<Instant>,
}

impl ReplayReport {
    pub(crate) fn new(data_dir: &Path, projections: Vec<String>, head: Position) -> Self {
        Self { path: replay_progress_file(data_dir), projections, head, written: None }
    }

    /// Reports `position`, unless the last report is under a second old.
    pub(crate) fn at(&mut self, position: Position) {
        if self.written.is_some_and(|at| at.elapsed() < Duration::from_secs(1)) {
            return;
        }
        self.written = Some(Instant::now());
        let progress = ReplayProgress {
            projections: self.projections.clone(),
            position,
            head: self.head,
            updated_at: chrono::Utc::now(),
        };
        let partial = self.path.with_extension("json.partial");
        let written = serde_json::to_vec(&progress)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&partial, bytes))
            .and_then(|()| std::fs::rename(&partial, &self.path));
        if let Err(error) = written {
            // Only the status page misses it: the replay goes on.
            tracing::warn!(%error, "could not report the replay's progress");
        }
    }
}

impl Drop for ReplayReport {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The all-in-one server's status: it holds every part.
pub(crate) struct EmbeddedStatus {
    pub events: Arc<dyn EventStore>,
    pub progress: watch::Receiver<Position>,
    pub generations: Arc<Generations>,
    pub cache: Arc<movies_cache::CachedReadStore>,
    pub data_dir: PathBuf,
}

#[async_trait::async_trait]
impl StatusSource for EmbeddedStatus {
    async fn report(&self) -> StatusReport {
        let head = self.events.head().await.ok();
        let projected = *self.progress.borrow();
        let (read_store, search) = self.generations.numbers();
        let mut degraded = Vec::new();
        match head {
            None => degraded
                .push("event log: unreachable (writes are refused; reads are served as projected)".into()),
            Some(head) if lag(head, projected) > HEALTHY_LAG => degraded.push(format!(
                "projections: {} events behind the log, catching up (reads are that far behind)",
                lag(head, projected)
            )),
            Some(_) => {}
        }
        let stats = self.cache.stats();
        let get = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        let replay = tokio::fs::read(replay_progress_file(&self.data_dir))
            .await
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
        StatusReport {
            log_head: head,
            projections: vec![
                ProjectionStatus {
                    name: "read store".into(),
                    generation: Some(read_store),
                    position: projected,
                },
                ProjectionStatus {
                    name: "search index".into(),
                    generation: Some(search),
                    position: self.generations.search.get().checkpoint(),
                },
            ],
            cache: Some(CacheCounts {
                l1_hits: get(&stats.l1_hits),
                l2_hits: get(&stats.l2_hits),
                misses: get(&stats.misses),
            }),
            degraded,
            replay,
            elsewhere: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replays_report_is_rewritten_at_most_once_a_second_and_removed_when_it_ends() {
        let dir = tempfile::tempdir().unwrap();
        let read = || -> ReplayProgress {
            serde_json::from_slice(&std::fs::read(replay_progress_file(dir.path())).unwrap()).unwrap()
        };
        let mut report = ReplayReport::new(dir.path(), vec!["search".into()], 500);
        report.at(0);
        report.at(100);
        assert_eq!((read().position, read().head), (0, 500), "the second report came too soon");
        report.written = Some(Instant::now() - Duration::from_secs(2));
        report.at(200);
        assert_eq!(read().position, 200);
        drop(report);
        assert!(!replay_progress_file(dir.path()).exists());
    }
}
