//! Work on the newest value on a thread of its own (see `Later`).

use std::sync::{Arc, Mutex};

/// Runs work, on one thread at a time, on the newest value it was given: a value given while
/// the thread is at work replaces any still waiting, and the thread takes it when done. Commits
/// in a burst then never pile up threads, nor work for searchers already replaced.
#[derive(Debug)]
pub(crate) struct Later<T> {
    /// The newest value to work on, and whether a thread is at work.
    next: Mutex<(Option<T>, bool)>,
}

impl<T> Default for Later<T> {
    fn default() -> Self {
        Self { next: Mutex::new((None, false)) }
    }
}

impl<T: Send + 'static> Later<T> {
    /// Has `work` done on `value`, or on a newer value if one comes first. A thread already at
    /// work goes on with its own `work`: every caller of one `Later` gives the same.
    pub(crate) fn run(self: &Arc<Self>, value: T, work: impl Fn(T) + Send + 'static) {
        {
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
            next.0 = Some(value);
            if std::mem::replace(&mut next.1, true) {
                return;
            }
        }
        let later = self.clone();
        std::thread::spawn(move || loop {
            let taken = {
                let mut next = later.next.lock().unwrap_or_else(|p| p.into_inner());
                let taken = next.0.take();
                next.1 = taken.is_some();
                taken
            };
            let Some(value) = taken else {
                return;
            };
            // A panic must not end the thread with the flag still up: no thread would start
            // again. (The panic itself is reported by the panic hook.)
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(value))).is_err() {
                tracing::error!("background work on a searcher panicked; the next one goes on");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn values_given_while_at_work_collapse_into_the_newest() {
        let later = Arc::new(Later::default());
        let (started, wait_started) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        let released = Arc::new(Mutex::new(released));
        let (done, finished) = mpsc::channel();
        let work = move |value: u32| {
            started.send(value).unwrap();
            if value == 1 {
                released.lock().unwrap().recv().unwrap();
            }
            done.send(value).unwrap();
        };
        later.run(1, work.clone());
        assert_eq!(wait_started.recv_timeout(Duration::from_secs(5)), Ok(1));
        // While 1 is worked on, 2 and 3 come: only 3 is worked on after it.
        later.run(2, work.clone());
        later.run(3, work);
        release.send(()).unwrap();
        let seen: Vec<u32> = (0..2).map(|_| finished.recv_timeout(Duration::from_secs(5)).unwrap()).collect();
        assert_eq!(seen, [1, 3]);
        assert!(finished.recv_timeout(Duration::from_millis(200)).is_err(), "2 was never worked on");
    }

    #[test]
    fn work_that_panicked_does_not_stop_later_work() {
        let later = Arc::new(Later::default());
        let (done, finished) = mpsc::channel();
        let work = move |value: u32| {
            done.send(value).unwrap();
            assert_ne!(value, 1, "the first value's work fails");
        };
        later.run(1, work.clone());
        assert_eq!(finished.recv_timeout(Duration::from_secs(5)), Ok(1));
        // Its thread goes on, or ends with its flag down: either way a later value is worked on.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut seen = None;
        while seen.is_none() && std::time::Instant::now() < deadline {
            later.run(2, work.clone());
            seen = finished.recv_timeout(Duration::from_millis(50)).ok();
        }
        assert_eq!(seen, Some(2));
    }
}
