//! Writes run records (`run.json`), deletes run folders and sets unreadable ones aside (into
//! the runs folder's `.removed/`) on a thread of its own, in the order
//! they were asked for, so no frame waits on the disk. [`RecordWriter::flush`] waits until
//! everything asked so far is done (on exit, and for tests that read the disk); dropping the
//! writer also finishes every pending write, so a record sent at the end of a run is never
//! lost. Failures come back as messages for the status line. Knows nothing about egui.

use crate::runs::{remove_record, set_aside, write_record, RunRecord};
use crossbeam_channel::{Receiver, Sender};
use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::thread::JoinHandle;

enum Request {
    Write(Box<RunRecord>),
    Delete(String),
    /// Move an unreadable run folder (by name) into `.removed/`.
    SetAside(OsString),
    /// Answered once every request before it is done.
    Flush(Sender<()>),
}

pub struct RecordWriter {
    requests: Option<Sender<Request>>,
    errors: Receiver<String>,
    thread: Option<JoinHandle<()>>,
}

impl RecordWriter {
    /// Starts the writer for the runs folder `dir`.
    pub fn spawn(dir: PathBuf) -> RecordWriter {
        let (tx, rx) = crossbeam_channel::unbounded::<Request>();
        let (err_tx, err_rx) = crossbeam_channel::unbounded();
        let thread = std::thread::Builder::new()
            .name("gradprompt-records".into())
            .spawn(move || {
                for req in rx {
                    let done = match req {
                        Request::Write(r) => write_record(&dir, &r)
                            .map_err(|e| format!("cannot save the run: {e:#}")),
                        Request::Delete(id) => {
                            remove_record(&dir, &id).map_err(|e| format!("{e:#}"))
                        }
                        Request::SetAside(name) => set_aside(&dir, &name)
                            .map(|_| ())
                            .map_err(|e| format!("cannot remove the run folder: {e:#}")),
                        Request::Flush(ack) => {
                            let _ = ack.send(());
                            Ok(())
                        }
                    };
                    if let Err(e) = done {
                        let _ = err_tx.send(e);
                    }
                }
            })
            .expect("spawn the record writer");
        RecordWriter {
            requests: Some(tx),
            errors: err_rx,
            thread: Some(thread),
        }
    }

    /// Queues a write of the record as it is now.
    pub fn write(&self, record: &RunRecord) {
        self.send(Request::Write(Box::new(record.clone())));
    }

    /// Queues the removal of a run's folder.
    pub fn delete(&self, id: &str) {
        self.send(Request::Delete(id.to_string()));
    }

    /// Queues the move of an unreadable run folder into the runs folder's `.removed/`.
    pub fn set_aside(&self, folder: &OsStr) {
        self.send(Request::SetAside(folder.to_os_string()));
    }

    fn send(&self, req: Request) {
        if let Some(tx) = &self.requests {
            let _ = tx.send(req);
        }
    }

    /// Waits until every write and delete asked for so far is done.
    pub fn flush(&self) {
        let (ack, done) = crossbeam_channel::bounded(1);
        self.send(Request::Flush(ack));
        let _ = done.recv();
    }

    /// The next failure to report, if any.
    pub fn error(&self) -> Option<String> {
        self.errors.try_recv().ok()
    }
}

impl Drop for RecordWriter {
    fn drop(&mut self) {
        // Closing the channel ends the thread once the pending requests are done.
        self.requests = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::methods::MethodKind;
    use crate::run::RunSpec;
    use crate::runs::{RunStatus, RunStore, RECORD_FILE};
    use std::path::Path;

    fn record(id: &str) -> RunRecord {
        let spec = RunSpec {
            method: MethodKind::PromptTuning,
            settings: Default::default(),
            template: None,
            config: Default::default(),
            out: None,
        };
        RunRecord::new(id.into(), "m", "t", Path::new("t"), spec)
    }

    #[test]
    fn writes_and_deletes_reach_the_disk_in_order_by_the_flush() {
        let dir = tempfile::tempdir().unwrap();
        let w = RecordWriter::spawn(dir.path().to_path_buf());
        let mut r = record("1-001-prompt-tuning");
        w.write(&r);
        r.status = RunStatus::Finished;
        w.write(&r);
        w.write(&record("2-001-prompt-tuning"));
        w.delete("2-001-prompt-tuning");
        w.flush();
        let store = RunStore::open(dir.path()).unwrap();
        assert_eq!(store.runs.len(), 1);
        assert_eq!(store.runs[0].status, RunStatus::Finished);
        assert_eq!(w.error(), None);
    }

    #[test]
    fn a_pending_write_is_done_when_the_writer_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let w = RecordWriter::spawn(dir.path().to_path_buf());
        w.write(&record("1-001-prompt-tuning"));
        drop(w);
        assert!(dir
            .path()
            .join("1-001-prompt-tuning")
            .join(RECORD_FILE)
            .is_file());
    }

    #[test]
    fn a_failed_write_comes_back_as_a_message() {
        let dir = tempfile::tempdir().unwrap();
        // The record's folder is a file: it cannot be created.
        std::fs::write(dir.path().join("1-001-prompt-tuning"), "").unwrap();
        let w = RecordWriter::spawn(dir.path().to_path_buf());
        w.write(&record("1-001-prompt-tuning"));
        w.flush();
        assert!(w
            .error()
            .is_some_and(|e| e.starts_with("cannot save the run")));
    }
}
