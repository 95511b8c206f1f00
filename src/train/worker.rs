//! The worker thread that owns a training run. Commands (pause, resume, stop) go in and events
//! (steps, evaluations, the result or the failure) come out over crossbeam channels, so neither
//! the command line nor the GUI ever blocks on training work.

use super::checkpoint;
use super::multi_task::train_tasks;
use super::train;
use crate::model::Model;
use crate::run::{Command, Event, MultiTaskSpec, RunSpec};
use crate::task::Task;
use crossbeam_channel::{unbounded, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

pub struct Worker {
    pub commands: Sender<Command>,
    pub events: Receiver<Event>,
    handle: Option<JoinHandle<()>>,
}

impl Worker {
    /// Starts training on a new thread. The last event is always `Finished` or `Failed`.
    pub fn spawn(model: Arc<Model>, task: Arc<Task>, spec: RunSpec) -> Worker {
        Worker::start(move |events, commands| {
            let r = train(&model, &task, &spec, events, commands)?;
            Ok(Event::Finished(Box::new(r)))
        })
    }

    /// Continues a run from its checkpoint on a new thread (`train::resume`).
    pub fn resume(model: Arc<Model>, task: Arc<Task>, saved: checkpoint::Saved) -> Worker {
        Worker::start(move |events, commands| {
            let r = super::resume(&model, &task, &saved, events, commands)?;
            Ok(Event::Finished(Box::new(r)))
        })
    }

    /// Continues a multi-task run from its checkpoint on a new thread (the tasks in the order
    /// the checkpoint lists them).
    pub fn resume_tasks(
        model: Arc<Model>,
        tasks: Arc<Vec<Task>>,
        saved: checkpoint::Saved,
    ) -> Worker {
        Worker::start(move |events, commands| {
            let r = super::multi_task::resume_tasks(&model, &tasks, &saved, events, commands)?;
            Ok(Event::FinishedTasks(Box::new(r)))
        })
    }

    /// Starts a multi-task run on a new thread; it ends with `FinishedTasks` or `Failed`.
    pub fn spawn_tasks(model: Arc<Model>, tasks: Arc<Vec<Task>>, spec: MultiTaskSpec) -> Worker {
        Worker::start(move |events, commands| {
            let r = train_tasks(&model, &tasks, &spec, events, commands)?;
            Ok(Event::FinishedTasks(Box::new(r)))
        })
    }

    fn start(
        work: impl FnOnce(&Sender<Event>, &Receiver<Command>) -> anyhow::Result<Event> + Send + 'static,
    ) -> Worker {
        let (cmd_tx, cmd_rx) = unbounded();
        let (ev_tx, ev_rx) = unbounded();
        let handle = std::thread::Builder::new()
            .name("gradprompt-train".into())
            .spawn(move || run(work, &ev_tx, &cmd_rx))
            .expect("spawn the training thread");
        Worker {
            commands: cmd_tx,
            events: ev_rx,
            handle: Some(handle),
        }
    }

    pub fn send(&self, cmd: Command) {
        // The thread may already have finished; then there is nothing to command.
        let _ = self.commands.send(cmd);
    }

    /// Waits for the thread to end.
    pub fn join(mut self) {
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn run(
    work: impl FnOnce(&Sender<Event>, &Receiver<Command>) -> anyhow::Result<Event>,
    events: &Sender<Event>,
    commands: &Receiver<Command>,
) {
    // A panic in the engine must reach the user as a failure, not as a silent dead thread.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(events, commands)));
    let event = match outcome {
        Ok(Ok(finished)) => finished,
        Ok(Err(e)) => Event::Failed(format!("{e:#}")),
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Event::Failed(format!("internal error: {msg}"))
        }
    };
    let _ = events.send(event);
}
