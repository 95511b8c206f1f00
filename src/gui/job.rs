//! The one type for slow work in the workbench: a closure run on its own thread, whose result a
//! later frame picks up with [`Job::poll`] and then keeps. Model and task loading, prompt
//! loading, inspection, scoring, export and import all use it, so a frame never waits on a file
//! or on the model. Knows nothing about views or the session.

use crossbeam_channel::{Receiver, TryRecvError};

/// Work on a background thread, then its result.
pub struct Job<T> {
    /// What the job does, as the view shows it next to its spinner ("loading builtin...").
    label: String,
    state: State<T>,
}

enum State<T> {
    Running(Receiver<Result<T, String>>),
    Done(Result<T, String>),
}

impl<T: Send + 'static> Job<T> {
    /// Runs `f` on a new thread. A panic becomes an error result, so the job always ends.
    pub fn spawn(
        label: impl Into<String>,
        f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
    ) -> Job<T> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
                .unwrap_or_else(|_| Err(anyhow::anyhow!("internal error (panic)")));
            let _ = tx.send(out.map_err(|e| format!("{e:#}")));
        });
        Job {
            label: label.into(),
            state: State::Running(rx),
        }
    }
}

impl<T> Job<T> {
    /// A job whose result is known at once (nothing to run, or an error found before starting).
    pub fn finished(label: impl Into<String>, result: Result<T, String>) -> Job<T> {
        Job {
            label: label.into(),
            state: State::Done(result),
        }
    }

    /// Picks up the result if it has arrived; true on the call that does.
    pub fn poll(&mut self) -> bool {
        let State::Running(rx) = &self.state else {
            return false;
        };
        let result = match rx.try_recv() {
            Ok(r) => r,
            Err(TryRecvError::Empty) => return false,
            Err(TryRecvError::Disconnected) => {
                Err("the background thread ended without a result".into())
            }
        };
        self.state = State::Done(result);
        true
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn is_running(&self) -> bool {
        matches!(self.state, State::Running(_))
    }

    /// The result, once it has been picked up.
    pub fn result(&self) -> Option<&Result<T, String>> {
        match &self.state {
            State::Done(r) => Some(r),
            State::Running(_) => None,
        }
    }

    /// The result, once it has been picked up.
    pub fn into_result(self) -> Option<Result<T, String>> {
        match self.state {
            State::Done(r) => Some(r),
            State::Running(_) => None,
        }
    }
}

/// A job computed for one prompt (or other key), e.g. the scores of the focused prompt.
pub type Keyed<K, T> = Option<(K, Job<T>)>;

/// Removes the finished jobs from `jobs` (polling each) and returns them, in order.
pub fn take_finished<K, T>(jobs: &mut Vec<(K, Job<T>)>) -> Vec<(K, Job<T>)> {
    let mut done = Vec::new();
    let mut i = 0;
    while i < jobs.len() {
        jobs[i].1.poll();
        // Not `if poll()`: a job made already finished (`Job::finished`) polls false forever.
        if !jobs[i].1.is_running() {
            done.push(jobs.remove(i));
        } else {
            i += 1;
        }
    }
    done
}

/// Drops a keyed job, running or done, that was started for another key than `key`: a result
/// that arrives for an old focus is never shown against the new one.
pub fn retain_key<K: PartialEq, T>(slot: &mut Keyed<K, T>, key: Option<&K>) {
    if slot.as_ref().is_some_and(|(k, _)| Some(k) != key) {
        *slot = None;
    }
}

/// The finished result of a keyed job, with its key.
pub fn keyed_result<K, T>(slot: &Keyed<K, T>) -> Option<(&K, &Result<T, String>)> {
    slot.as_ref().and_then(|(k, j)| j.result().map(|r| (k, r)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn wait<T>(job: &mut Job<T>) {
        let start = Instant::now();
        while !job.poll() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the job never ended"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_job_keeps_its_result_after_it_arrives() {
        let mut job = Job::spawn("adding", || Ok(2 + 2));
        wait(&mut job);
        assert!(!job.is_running());
        assert_eq!(job.result(), Some(&Ok(4)));
        assert!(!job.poll(), "the result is picked up once");
        assert_eq!(job.label(), "adding");
    }

    #[test]
    fn a_panicking_job_ends_with_an_error() {
        let mut job: Job<()> = Job::spawn("panicking", || panic!("boom"));
        wait(&mut job);
        assert_eq!(
            job.into_result(),
            Some(Err("internal error (panic)".into()))
        );
    }

    #[test]
    fn take_finished_takes_finished_jobs_in_order_and_leaves_running_ones() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let mut jobs = vec![
            ('a', Job::finished("made finished", Ok(1))),
            (
                'b',
                Job::spawn("waiting", move || Ok(rx.recv().map(|_| 2)?)),
            ),
            ('c', Job::finished("made finished too", Ok(3))),
        ];
        let done: Vec<char> = take_finished(&mut jobs)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(done, ['a', 'c']);
        assert_eq!(jobs.len(), 1, "the running job stays");
        tx.send(()).unwrap();
        wait(&mut jobs[0].1);
        assert_eq!(jobs[0].1.result(), Some(&Ok(2)));
    }

    #[test]
    fn a_keyed_job_for_another_key_is_dropped() {
        let mut slot: Keyed<u8, u8> = Some((1, Job::finished("one", Ok(1))));
        retain_key(&mut slot, Some(&1));
        assert_eq!(keyed_result(&slot), Some((&1, &Ok(1))));
        retain_key(&mut slot, Some(&2));
        assert!(slot.is_none());
    }
}
