//! The workbench's shared state: the run store (and its writer thread), the loaded model, the
//! current task, the run queue, the active run with its worker and events, and the focused
//! prompt. Views receive it as a parameter and change the store only through its methods.
//! Every slow step (reading a model, a task or a prompt, writing a record) happens on a
//! background thread; [`Session::pump`] picks up what has arrived, once per frame. Knows nothing
//! about the views.
//!
//! A multi-task run ([`Session::queue_tasks`]) is queued like any other; when its turn comes
//! every one of its task folders is read in the background, then one worker trains them all.
//!
//! An interrupted run (the workbench closed or crashed mid-run, or the run was stopped) whose
//! checkpoint is on disk can be resumed ([`Session::resume_run`]): it goes through the same
//! queue, its task folder (a multi-task run's every task folder, in the checkpoint's order)
//! and checkpoint are read in the background, its record goes back to the checkpoint's step
//! (each task's dev curve too), and the worker continues it ([`Worker::resume`],
//! [`Worker::resume_tasks`]) under the same id.
//!
//! A run can be repeated over seeds ([`Session::seeds`], the setup's "seeds"): each run queued
//! is then recorded once per seed, in order, as runs that differ only in seed (the comparison
//! groups them). Each run records its task's test split size when it starts, the n of its test
//! score's confidence interval.
//!
//! When another workbench owns the runs folder the store is read-only
//! ([`crate::runs::ReadOnly`]): the session then queues, writes, deletes and removes nothing,
//! and [`Session::recheck_runs_folder`] re-reads the folder (taking it over if the other one
//! has gone).

use super::job::{take_finished, Job};
use super::record_writer::RecordWriter;
use super::Options;
use crate::artifact::Artifact;
use crate::model::Model;
use crate::run::{Command, Event, MultiTaskSpec, RunSpec};
use crate::runs::{RunRecord, RunStatus, RunStore, TaskRef};
use crate::task::Task;
use crate::train::checkpoint;
use crate::train::worker::Worker;
use anyhow::Context as _;
use crossbeam_channel::{Receiver, Sender};
use std::collections::{HashMap, VecDeque};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Step events are frequent: a record is rewritten for them at most this often (any other
/// event writes at once), so closing or crashing loses at most this much of a curve.
const STEP_WRITE_INTERVAL: Duration = Duration::from_millis(1000);

pub enum ModelState {
    Empty,
    Loading { spec: String, job: Job<Arc<Model>> },
    Ready(Arc<Model>),
    Failed { spec: String, error: String },
}

impl ModelState {
    pub fn ready(&self) -> Option<&Arc<Model>> {
        match self {
            ModelState::Ready(m) => Some(m),
            _ => None,
        }
    }
}

/// The run being trained and its channels.
pub struct Active {
    pub id: String,
    pub commands: Sender<Command>,
    pub events: Receiver<Event>,
    /// None when the channels were attached by hand (tests feed events directly).
    pub worker: Option<Worker>,
}

/// A prompt the inspect and export views work on: a run's, or one imported from a folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Focus {
    Run(String),
    Imported(PathBuf),
}

/// Wall time of the active run since its `Started` event, less the time spent paused: the ETA
/// divides it by the steps done, so evaluations so far are part of the estimate.
#[derive(Debug, Clone)]
pub struct RunClock {
    /// The run this clock times.
    pub id: String,
    /// The step the run started from (a resumed run's checkpoint step): the pace counts only
    /// the steps done since.
    from_step: usize,
    /// The training time recorded before it (a resumed run's), which the clock goes on from.
    from_secs: f64,
    started: Instant,
    paused_at: Option<Instant>,
    paused: Duration,
}

impl RunClock {
    pub fn new(id: String, from_step: usize) -> RunClock {
        RunClock {
            id,
            from_step,
            from_secs: 0.0,
            started: Instant::now(),
            paused_at: None,
            paused: Duration::ZERO,
        }
    }

    /// Follows pauses and resumes.
    pub fn on_event(&mut self, ev: &Event) {
        match ev {
            Event::Paused => {
                self.paused_at.get_or_insert_with(Instant::now);
            }
            Event::Resumed => {
                if let Some(t) = self.paused_at.take() {
                    self.paused += t.elapsed();
                }
            }
            _ => {}
        }
    }

    /// Time spent running (not paused).
    pub fn elapsed(&self) -> Duration {
        let now = self.paused_at.unwrap_or_else(Instant::now);
        now.saturating_duration_since(self.started)
            .saturating_sub(self.paused)
    }

    /// Goes on from `secs` of training recorded before (a resumed run's).
    pub fn after(mut self, secs: f64) -> RunClock {
        self.from_secs = secs;
        self
    }

    /// The run's training time so far, with what came before it was resumed: what the plots
    /// against wall-clock time put a point at.
    pub fn run_secs(&self) -> f64 {
        self.from_secs + self.elapsed().as_secs_f64()
    }

    /// Seconds left at the average pace so far, once a step has been done.
    pub fn eta_secs(&self, step: usize, total: usize) -> Option<f64> {
        let done = step.saturating_sub(self.from_step);
        (done > 0)
            .then(|| self.elapsed().as_secs_f64() / done as f64 * total.saturating_sub(step) as f64)
    }
}

/// What [`Session::pump`] saw arrive that the app may act on.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Arrived {
    /// A task chosen in the setup was read and is now the current task.
    pub task: bool,
    /// The model finished loading and is ready.
    pub model: bool,
}

/// A queued run whose task (or tasks) is being read before its worker starts.
struct Starting {
    id: String,
    model: Arc<Model>,
    tasks: Job<RunTasks>,
}

/// What a run trains on: one task, or a multi-task run's tasks in order, or (a resumed run)
/// its task and the checkpoint it continues from.
enum RunTasks {
    One(Arc<Task>),
    Many(Arc<Vec<Task>>),
    Resume(Arc<Task>, Box<checkpoint::Saved>),
    /// A multi-task run continued: its tasks in the order the checkpoint lists them.
    ResumeMany(Arc<Vec<Task>>, Box<checkpoint::Saved>),
}

/// Whether a stored run offers Resume, as the runs view shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResumeOffer {
    /// No Resume at all: the run is not interrupted, is queued, or the store is read-only.
    Hidden,
    /// Resume, disabled, and why.
    Unavailable(String),
    Ready,
}

/// A prompt imported from a folder, and its test score when it was evaluated here (the Export
/// tab's "Evaluate on the test split").
#[derive(Clone)]
pub struct Imported {
    pub dir: PathBuf,
    pub artifact: Arc<Artifact>,
    pub test: Option<f64>,
}

pub struct Session {
    /// Writes the store's records off the UI thread. Declared before the store so that it is
    /// dropped first: its last writes land while the store still holds the runs folder's lock.
    records: RecordWriter,
    pub store: RunStore,
    /// When each record was last sent to the writer (step events are spaced out).
    last_write: HashMap<String, Instant>,
    pub model: ModelState,
    pub task: Option<Arc<Task>>,
    /// A task folder being read for the setup (the current task stays until it is ready).
    pub task_job: Option<Job<Task>>,
    /// Why the last task folder chosen could not be read.
    pub task_error: Option<String>,
    /// The sample task folders offered in the setup.
    pub sample_tasks: Vec<PathBuf>,
    /// Tasks read for prompts trained on another task than the current one, by folder.
    named_tasks: HashMap<PathBuf, Job<Arc<Task>>>,
    /// Run ids waiting to start, in order; the first stays here until its worker starts.
    pub queue: VecDeque<String>,
    starting: Option<Starting>,
    pub active: Option<Active>,
    /// Times the active run for its ETA (started by its `Started` event).
    pub run_clock: Option<RunClock>,
    /// The prompt the inspect and export views work on.
    pub focus: Option<Focus>,
    /// The focused prompt, loading or loaded (or why it could not be).
    artifact: Option<(Focus, Job<Arc<Artifact>>)>,
    /// The last problem worth telling the user that has no better place.
    pub notice: Option<String>,
    /// The window is closing: no queued run starts any more (they are saved as interrupted).
    pub closing: bool,
    /// The runs folder being read again (see [`Session::recheck_runs_folder`]).
    store_job: Option<Job<RunStore>>,
    /// The run that was told to stop (by Stop, or "Stop and quit"): when it ends before its
    /// last step it is interrupted, not finished, and can be resumed.
    stopping: Option<String>,
    /// Queued runs that continue from their checkpoint rather than start afresh, with the
    /// status they had before (they go back to it if they leave the queue unstarted).
    resuming: HashMap<String, RunStatus>,
    /// Runs just stopped whose checkpoint is being looked for on disk.
    checkpoint_checks: Vec<(String, Job<bool>)>,
    /// The seeds each run queued by [`Session::queue_run`] and [`Session::queue_tasks`] is
    /// repeated over, as the setup's "seeds" reads (it sets this as it is drawn). Empty: the
    /// spec's own seed, once. Err: the list cannot be read, and queueing says so.
    pub seeds: Result<Vec<u64>, String>,
    /// Imports listed in the runs folder's `imports.json`, being read (each becomes an
    /// [`Imported`] when its folder has been read).
    import_jobs: Vec<(crate::runs::ImportRecord, Job<Artifact>)>,
    /// Prompts imported (a PEFT adapter, a recipe's result, a prompt folder), in
    /// import order, with the test score measured here when there is one: Compare lists those
    /// with a score beside the local runs.
    pub imported: Vec<Imported>,
}

impl Session {
    /// Opens the run store, lists the sample tasks, starts loading the model and reads the start
    /// task (before the first frame, so it is there from the start).
    pub fn new(opts: &Options) -> Session {
        let (store, mut notice) = match RunStore::open(&opts.runs_dir) {
            Ok(s) => (s, None),
            Err(e) => {
                // Still usable: runs go to a temporary folder for this session.
                let tmp =
                    std::env::temp_dir().join(format!("gradprompt-runs-{}", std::process::id()));
                let s = RunStore::open(&tmp).expect("a temporary runs folder");
                (
                    s,
                    Some(format!(
                        "{e:#}; runs of this session go to {} and will not be kept",
                        tmp.display()
                    )),
                )
            }
        };
        notice = notice.or_else(|| opening_notice(&store));
        let mut sample_tasks: Vec<PathBuf> = std::fs::read_dir(&opts.sample_tasks)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.join("task.json").is_file())
                    .collect()
            })
            .unwrap_or_default();
        sample_tasks.sort();
        let mut session = Session {
            records: RecordWriter::spawn(store.dir().to_path_buf()),
            store,
            last_write: HashMap::new(),
            model: ModelState::Empty,
            task: None,
            task_job: None,
            task_error: None,
            sample_tasks,
            named_tasks: HashMap::new(),
            queue: VecDeque::new(),
            starting: None,
            active: None,
            run_clock: None,
            focus: None,
            artifact: None,
            notice,
            closing: false,
            store_job: None,
            stopping: None,
            resuming: Default::default(),
            checkpoint_checks: Vec::new(),
            seeds: Ok(Vec::new()),
            imported: Vec::new(),
            import_jobs: Vec::new(),
        };
        session.read_imports();
        session.load_model(&opts.model);
        if let Some(dir) = opts.task.clone().or_else(|| session.default_task()) {
            session.task_loaded(Task::load(&dir).map_err(|e| format!("{e:#}")));
        }
        session
    }

    /// country-continent if it is there (zero-shot is weak on it, so learning shows), else the
    /// first sample task.
    pub fn default_task(&self) -> Option<PathBuf> {
        self.sample_tasks
            .iter()
            .find(|p| p.ends_with("country-continent"))
            .or(self.sample_tasks.first())
            .cloned()
    }

    /// Starts loading a model on a background thread.
    pub fn load_model(&mut self, spec: &str) {
        let spec = spec.trim().to_string();
        if spec.is_empty() {
            self.model = ModelState::Failed {
                spec,
                error: "type a model path, or `builtin`".into(),
            };
            return;
        }
        let s = spec.clone();
        self.model = ModelState::Loading {
            job: Job::spawn(format!("loading {spec}..."), move || {
                Model::load(&s).map(Arc::new)
            }),
            spec,
        };
    }

    pub fn model_spec(&self) -> Option<&str> {
        match &self.model {
            ModelState::Loading { spec, .. } | ModelState::Failed { spec, .. } => Some(spec),
            ModelState::Ready(m) => Some(&m.spec),
            ModelState::Empty => None,
        }
    }

    /// Starts reading a task folder on a background thread; when it is ready it becomes the
    /// current task.
    pub fn select_task(&mut self, dir: &Path) {
        let d = dir.to_path_buf();
        self.task_job = Some(Job::spawn(
            format!("reading {}...", dir.display()),
            move || Task::load(&d),
        ));
    }

    fn task_loaded(&mut self, loaded: Result<Task, String>) {
        match loaded {
            Ok(t) => {
                self.task = Some(Arc::new(t));
                self.task_error = None;
            }
            Err(e) => self.task_error = Some(e),
        }
    }

    /// The seeds a run of `spec` is queued with: [`Session::seeds`], or the spec's own seed
    /// when that is empty or the method draws nothing at random (zero-shot runs once).
    fn seeds_for(&self, spec: &RunSpec) -> Result<Vec<u64>, String> {
        let seeds = self
            .seeds
            .as_ref()
            .map_err(|e| format!("cannot queue: the setup's seeds: {e}"))?;
        if seeds.is_empty() || spec.method == crate::methods::MethodKind::ZeroShot {
            return Ok(vec![spec.config.seed]);
        }
        Ok(seeds.clone())
    }

    /// Records a new run of the current task with the current model and queues it, once per
    /// seed of [`Session::seeds`] (in order); each starts when the model is ready and the run
    /// before it has ended. Returns the first run's id ([`Session::queue_run_seeds`] returns
    /// them all).
    pub fn queue_run(&mut self, spec: RunSpec) -> Option<String> {
        self.queue_run_seeds(spec).into_iter().next()
    }

    /// [`Session::queue_run`], returning every seed's run id, in order.
    pub fn queue_run_seeds(&mut self, spec: RunSpec) -> Vec<String> {
        let seeds = match self.seeds_for(&spec) {
            Ok(s) => s,
            Err(e) => {
                self.notice = Some(e);
                return Vec::new();
            }
        };
        let mut ids = Vec::new();
        for seed in seeds {
            let mut spec = spec.clone();
            spec.config.seed = seed;
            match self.queue_one(spec) {
                Some(id) => ids.push(id),
                None => break,
            }
        }
        ids
    }

    /// Records one run of the current task with the current model and queues it.
    fn queue_one(&mut self, spec: RunSpec) -> Option<String> {
        if let Err(e) = self.store.check_writable() {
            self.notice = Some(format!("cannot train here: {e:#}"));
            return None;
        }
        let Some(task) = self.task.clone() else {
            self.notice = Some("choose a task first".into());
            return None;
        };
        let Some(model) = self.model_spec().map(str::to_string) else {
            self.notice = Some("choose a model first".into());
            return None;
        };
        let id = self.store.new_id(spec.method);
        // Every run keeps what it trained, a fine-tuned model too (a Hugging Face model folder:
        // 538 MB for SmolLM2 in f32, and about 2.2 GB of checkpoint while it trains, removed when
        // it completes), so it can be evaluated, played with and exported like a prompt.
        let out = Some(self.store.prompt_dir(&id));
        let spec = RunSpec { out, ..spec };
        let mut record = RunRecord::new(id.clone(), &model, &task.spec.name, &task.dir, spec);
        record.colour = Some(super::colors::pick(&self.store.runs));
        let i = self.store.push(record);
        self.write(i);
        self.queue.push_back(id.clone());
        Some(id)
    }

    /// Records a multi-task run of the task folders `dirs` (in order) with the current model and
    /// queues it; each task's prompt goes to `prompt/<task>/` in the run's folder. Refused with
    /// a notice when the spec cannot train (fewer than two tasks, a method whose prompts cannot
    /// share a batch, a number out of range). Queued once per seed of [`Session::seeds`], in
    /// order; returns the first run's id.
    pub fn queue_tasks(&mut self, spec: MultiTaskSpec, dirs: &[PathBuf]) -> Option<String> {
        self.queue_tasks_seeds(spec, dirs).into_iter().next()
    }

    /// [`Session::queue_tasks`], returning every seed's run id, in order.
    pub fn queue_tasks_seeds(&mut self, spec: MultiTaskSpec, dirs: &[PathBuf]) -> Vec<String> {
        let seeds = match self.seeds_for(&spec.run) {
            Ok(s) => s,
            Err(e) => {
                self.notice = Some(e);
                return Vec::new();
            }
        };
        let mut ids = Vec::new();
        for seed in seeds {
            let mut spec = spec.clone();
            spec.run.config.seed = seed;
            match self.queue_tasks_one(spec, dirs) {
                Some(id) => ids.push(id),
                None => break,
            }
        }
        ids
    }

    fn queue_tasks_one(&mut self, spec: MultiTaskSpec, dirs: &[PathBuf]) -> Option<String> {
        if let Err(e) = self.store.check_writable() {
            self.notice = Some(format!("cannot train here: {e:#}"));
            return None;
        }
        if dirs.len() < 2 {
            self.notice = Some(
                "tick at least two tasks for a multi-task run (or untick \"several tasks in one \
                 run\" to train the current task alone)"
                    .into(),
            );
            return None;
        }
        if let Err(e) = spec.check(dirs.len()) {
            self.notice = Some(format!("cannot train these tasks together: {e:#}"));
            return None;
        }
        let Some(model) = self.model_spec().map(str::to_string) else {
            self.notice = Some("choose a model first".into());
            return None;
        };
        let tasks = dirs
            .iter()
            .map(|d| TaskRef {
                // The current task is known by its real name; the others are renamed from
                // their task.json when the run starts.
                name: match &self.task {
                    Some(t) if t.dir == *d => t.spec.name.clone(),
                    _ => d
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_else(|| d.display().to_string()),
                },
                dir: d.clone(),
            })
            .collect();
        let id = self.store.new_id(spec.run.method);
        let mut spec = spec;
        spec.run.out = Some(self.store.prompt_dir(&id));
        let mut record = RunRecord::new_multi(id.clone(), &model, tasks, spec);
        record.colour = Some(super::colors::pick(&self.store.runs));
        let i = self.store.push(record);
        self.write(i);
        self.queue.push_back(id.clone());
        Some(id)
    }

    /// Takes every waiting run off the queue: they are cancelled, not failed (a resumed one
    /// goes back to what it was, still resumable).
    pub fn clear_queue(&mut self) {
        // A run whose task is being read is still at the front of the queue.
        self.starting = None;
        for id in std::mem::take(&mut self.queue) {
            self.unqueue(
                &id,
                "removed from the queue before it started".into(),
                RunStatus::Cancelled,
            );
        }
    }

    /// Takes a run off the queue with `why`: a new run gets `status`; a resumed one goes back
    /// to the status it had (interrupted or stopped; its checkpoint is untouched), so it can
    /// still be resumed.
    fn unqueue(&mut self, id: &str, why: String, status: RunStatus) {
        self.queue.retain(|q| q != id);
        let status = self.resuming.remove(id).unwrap_or(status);
        self.set_status(id, status, Some(why));
    }

    /// Whether run `id` offers Resume, and if not, why (see [`ResumeOffer`]). Looks at nothing
    /// but memory: the checkpoints were found when the store was opened or the run stopped.
    pub fn resume_offer(&self, id: &str) -> ResumeOffer {
        let Some(r) = self.store.get(id) else {
            return ResumeOffer::Hidden;
        };
        if self.store.read_only().is_some()
            || !r.status.can_resume()
            || self.queue.iter().any(|q| q == id)
        {
            return ResumeOffer::Hidden;
        }
        if let Some(why) = r.resume_refusal() {
            return ResumeOffer::Unavailable(why.into());
        }
        if self.checkpoint_checks.iter().any(|(c, _)| c == id) {
            return ResumeOffer::Unavailable("looking for its checkpoint...".into());
        }
        if self.store.checkpoints.contains(id) {
            ResumeOffer::Ready
        } else {
            ResumeOffer::Unavailable(
                "no checkpoint was saved: a run writes one at each evaluation (or every \
                 save-every steps) and when stopped, and this one ended before its first"
                    .into(),
            )
        }
    }

    /// Queues an interrupted run to continue from its checkpoint, under the same id, on its
    /// own task and model (the run's model must be the one loaded by the time its turn comes;
    /// the app loads it). Returns whether it was queued; if not, the notice says why.
    pub fn resume_run(&mut self, id: &str) -> bool {
        if let ResumeOffer::Unavailable(why) = self.resume_offer(id) {
            self.notice = Some(format!("cannot resume this run: {why}"));
            return false;
        }
        if self.resume_offer(id) != ResumeOffer::Ready {
            return false;
        }
        let Some(i) = self.store.index_of(id) else {
            return false;
        };
        self.resuming
            .insert(id.to_string(), self.store.runs[i].status);
        self.store.runs[i].status = RunStatus::Queued;
        self.store.runs[i].error = None;
        self.write(i);
        self.queue.push_back(id.to_string());
        true
    }

    /// Renames run `id` (a blank name goes back to its method and id) and sets its note; saved
    /// at once. Returns whether it was; if not, the notice says why.
    pub fn annotate(&mut self, id: &str, name: &str, note: &str) -> bool {
        if let Err(e) = self.store.check_writable() {
            self.notice = Some(format!("{e:#}"));
            return false;
        }
        let Some(i) = self.store.index_of(id) else {
            return false;
        };
        let r = &mut self.store.runs[i];
        let name = name.trim();
        r.name = (!name.is_empty()).then(|| name.to_string());
        r.note = note.to_string();
        self.write(i);
        true
    }

    /// Deletes a stored run and its folder (not the active or a queued one).
    pub fn delete_run(&mut self, id: &str) {
        let live =
            self.active.as_ref().is_some_and(|a| a.id == id) || self.queue.iter().any(|q| q == id);
        if live {
            return;
        }
        if let Err(e) = self.store.check_writable() {
            self.notice = Some(format!("{e:#}"));
            return;
        }
        match self.store.forget(id) {
            Ok(true) => {
                self.last_write.remove(id);
                self.records.delete(id);
            }
            Ok(false) => {}
            Err(e) => self.notice = Some(format!("{e:#}")),
        }
    }

    /// Moves an unreadable run folder out of the list, into the runs folder's `.removed/`
    /// (on the writer thread; a failure comes back as the notice).
    pub fn remove_unreadable(&mut self, folder: &OsStr) {
        if let Err(e) = self.store.check_writable() {
            self.notice = Some(format!("{e:#}"));
            return;
        }
        if self.store.forget_unreadable(folder) {
            self.records.set_aside(folder);
            self.notice = Some(format!(
                "moved {} into {} (move it back to restore it)",
                folder.to_string_lossy(),
                self.store.dir().join(crate::runs::REMOVED_DIR).display()
            ));
        }
    }

    /// Reads the runs folder again on a background thread (a read-only session: the list is a
    /// snapshot, and the other workbench may have gone, freeing the folder).
    pub fn recheck_runs_folder(&mut self) {
        if self.store_job.is_some() || self.active.is_some() || !self.queue.is_empty() {
            return;
        }
        let dir = self.store.dir().to_path_buf();
        self.store_job = Some(Job::spawn(
            format!("reading {}...", dir.display()),
            move || RunStore::open(&dir),
        ));
    }

    /// Whether the runs folder is being read again.
    pub fn rechecking(&self) -> bool {
        self.store_job.is_some()
    }

    /// Whether a run is training (or preparing to): closing the window then asks first.
    pub fn training(&self) -> bool {
        self.active.is_some()
    }

    pub fn send(&mut self, cmd: Command) {
        if let Some(a) = &self.active {
            if cmd == Command::Stop {
                self.stopping = Some(a.id.clone());
            }
            let _ = a.commands.send(cmd);
        }
    }

    pub fn active_record(&self) -> Option<&RunRecord> {
        self.active.as_ref().and_then(|a| self.store.get(&a.id))
    }

    /// The focused prompt: loading (no result yet), loaded, or why it cannot be.
    pub fn artifact(&self) -> Option<&Job<Arc<Artifact>>> {
        let (f, job) = self.artifact.as_ref()?;
        (self.focus.as_ref() == Some(f)).then_some(job)
    }

    /// Focuses a prompt (it starts loading at once, on a background thread).
    pub fn set_focus(&mut self, focus: Focus) {
        self.focus = Some(focus);
        self.load_focused();
    }

    /// Starts reading the prompts listed in the runs folder's `imports.json` (imported in an
    /// earlier window), each on its own thread.
    fn read_imports(&mut self) {
        let list = match self.store.imports() {
            Ok(list) => list,
            Err(e) => {
                self.notice = Some(format!("{e:#}"));
                return;
            }
        };
        for rec in list {
            let dir = rec.dir.clone();
            let job = Job::spawn(format!("reading {}", dir.display()), move || {
                Artifact::load(&dir)
            });
            self.import_jobs.push((rec, job));
        }
    }

    /// Picks up the imports read so far; one that can no longer be read is said, and dropped
    /// from the list.
    fn poll_imports(&mut self) {
        let mut dropped = false;
        for (rec, job) in take_finished(&mut self.import_jobs) {
            match job.into_result().expect("polled") {
                Ok(art) if !self.imported.iter().any(|x| same_folder(&x.dir, &rec.dir)) => {
                    self.imported.push(Imported {
                        dir: rec.dir,
                        artifact: Arc::new(art),
                        test: rec.test,
                    })
                }
                Ok(_) => {}
                Err(e) => {
                    dropped = true;
                    self.notice = Some(format!(
                        "the prompt imported from {} could not be read again ({e}); it is no \
                         longer listed",
                        rec.dir.display()
                    ))
                }
            }
        }
        if dropped {
            self.save_imports();
        }
    }

    /// Records an imported prompt's test score, measured here; kept with the import, so
    /// Compare shows it after a restart too.
    pub fn import_scored(&mut self, dir: &std::path::Path, score: f64) {
        let Some(i) = self.imported.iter_mut().find(|i| i.dir == dir) else {
            return;
        };
        if i.test != Some(score) {
            i.test = Some(score);
            self.save_imports();
        }
    }

    /// Writes the imports (with their test scores) into the runs folder, unless it is
    /// read-only; a failure is said, not fatal.
    fn save_imports(&mut self) {
        if self.store.read_only().is_some() {
            return;
        }
        let mut list: Vec<crate::runs::ImportRecord> = self
            .imported
            .iter()
            .map(|i| crate::runs::ImportRecord {
                // Absolute, so a workbench started from another folder finds it too.
                dir: std::path::absolute(&i.dir).unwrap_or_else(|_| i.dir.clone()),
                test: i.test,
            })
            .collect();
        // Still being read: kept as listed.
        list.extend(self.import_jobs.iter().map(|(rec, _)| rec.clone()));
        if let Err(e) = self.store.save_imports(&list) {
            self.notice = Some(format!("the list of imports was not saved: {e:#}"));
        }
    }

    /// Focuses a prompt read by an import: it is loaded already. A folder imported before
    /// under another spelling (relative, or through `..`) is the same import, not a second one.
    pub fn focus_imported(&mut self, dir: PathBuf, art: Arc<Artifact>) {
        let dir = match self.imported.iter().find(|i| same_folder(&i.dir, &dir)) {
            Some(i) => i.dir.clone(),
            None => std::path::absolute(&dir).unwrap_or(dir),
        };
        match self.imported.iter_mut().find(|i| i.dir == dir) {
            Some(i) => i.artifact = art.clone(),
            None => {
                self.imported.push(Imported {
                    dir: dir.clone(),
                    artifact: art.clone(),
                    test: None,
                });
                self.save_imports();
            }
        }
        let focus = Focus::Imported(dir.clone());
        self.focus = Some(focus.clone());
        self.artifact = Some((
            focus,
            Job::finished(format!("reading {}", dir.display()), Ok(art)),
        ));
    }

    /// The folder of the task a prompt was trained on: the current task if the name matches,
    /// else the sample task of that name.
    pub fn task_source(&self, name: &str) -> Result<TaskSource, String> {
        if let Some(t) = self.task.as_ref().filter(|t| t.spec.name == name) {
            return Ok(TaskSource::Ready(t.clone()));
        }
        let dir = self
            .sample_tasks
            .iter()
            .find(|d| d.file_name().and_then(|n| n.to_str()) == Some(name))
            .ok_or_else(|| {
                format!(
                    "the prompt was trained on task \"{name}\"; choose that task in the setup first"
                )
            })?;
        match self.named_tasks.get(dir).and_then(Job::result) {
            Some(Ok(t)) => Ok(TaskSource::Ready(t.clone())),
            _ => Ok(TaskSource::Folder(dir.clone())),
        }
    }

    /// The task a prompt was trained on (see [`Session::task_source`]); None while it is being
    /// read. Read once, then kept: the views ask every frame.
    pub fn task_named(&mut self, name: &str) -> Option<Result<Arc<Task>, String>> {
        let dir = match self.task_source(name) {
            Ok(TaskSource::Ready(t)) => return Some(Ok(t)),
            Ok(TaskSource::Folder(dir)) => dir,
            Err(e) => return Some(Err(e)),
        };
        let job = self.named_tasks.entry(dir.clone()).or_insert_with(|| {
            let d = dir.clone();
            Job::spawn(format!("reading {}...", dir.display()), move || {
                Task::load(&d).map(Arc::new)
            })
        });
        job.result().cloned()
    }

    /// Everything that moves without the user: background results, worker events, the queue,
    /// the focused prompt, and failures reported by the record writer.
    pub fn pump(&mut self) -> Arrived {
        let mut arrived = Arrived::default();
        if let ModelState::Loading { job, .. } = &mut self.model {
            if job.poll() {
                if let ModelState::Loading { spec, job } =
                    std::mem::replace(&mut self.model, ModelState::Empty)
                {
                    self.model = match job.into_result().expect("polled") {
                        Ok(m) => {
                            arrived.model = true;
                            ModelState::Ready(m)
                        }
                        Err(error) => ModelState::Failed { spec, error },
                    };
                }
            }
        }
        if self.task_job.as_mut().is_some_and(Job::poll) {
            let r = self
                .task_job
                .take()
                .and_then(Job::into_result)
                .expect("polled");
            arrived.task = r.is_ok();
            self.task_loaded(r);
        }
        for job in self.named_tasks.values_mut() {
            job.poll();
        }
        if self.store_job.as_mut().is_some_and(Job::poll) {
            match self.store_job.take().and_then(Job::into_result) {
                // Only a read-only store is ever replaced, so nothing unsaved is dropped.
                Some(Ok(store)) if self.store.read_only().is_some() => {
                    self.notice = opening_notice(&store);
                    self.store = store;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => self.notice = Some(e),
                None => {}
            }
        }
        self.poll_imports();
        self.drain_events();
        self.poll_checkpoint_checks();
        self.start_next();
        self.load_focused();
        while let Some(e) = self.records.error() {
            self.notice = Some(e);
        }
        arrived
    }

    /// Picks up the checkpoint checks of runs just stopped.
    fn poll_checkpoint_checks(&mut self) {
        for (id, job) in take_finished(&mut self.checkpoint_checks) {
            match job.into_result() {
                Some(Ok(true)) => {
                    self.store.checkpoints.insert(id);
                }
                _ => {
                    self.store.checkpoints.remove(&id);
                }
            }
        }
    }

    /// Starts reading the focused prompt when the focus changes.
    fn load_focused(&mut self) {
        let Some(focus) = self.focus.clone() else {
            self.artifact = None;
            return;
        };
        if let Some((f, job)) = &mut self.artifact {
            if *f == focus {
                job.poll();
                return;
            }
        }
        let dir = match &focus {
            Focus::Run(id) => self
                .store
                .get(id)
                .and_then(|r| r.artifact_dir().map(Path::to_path_buf)),
            Focus::Imported(p) => Some(p.clone()),
        };
        let job = match dir {
            Some(d) => Job::spawn(format!("reading {}...", d.display()), move || {
                Artifact::load(&d).map(Arc::new)
            }),
            None => Job::finished(
                "no prompt",
                Err("this run has no saved prompt (it is not finished, or it is a fine-tuning run, whose model copy is not kept)".into()),
            ),
        };
        self.artifact = Some((focus, job));
    }

    /// Whether something is under way that a later frame must pick up.
    pub fn busy(&self) -> bool {
        self.active.is_some()
            || !self.queue.is_empty()
            || matches!(self.model, ModelState::Loading { .. })
            || self.task_job.is_some()
            || self.named_tasks.values().any(Job::is_running)
            || self.artifact.as_ref().is_some_and(|a| a.1.is_running())
            || self.store_job.is_some()
            || !self.checkpoint_checks.is_empty()
    }

    /// Sends record `i` to the writer as it is now.
    fn write(&mut self, i: usize) {
        if self.store.read_only().is_some() {
            return;
        }
        let r = &self.store.runs[i];
        self.records.write(r);
        self.last_write.insert(r.id.clone(), Instant::now());
    }

    fn set_status(&mut self, id: &str, status: RunStatus, error: Option<String>) {
        let Some(i) = self.store.index_of(id) else {
            return;
        };
        self.store.runs[i].status = status;
        if error.is_some() {
            self.store.runs[i].error = error;
        }
        self.write(i);
    }

    fn drain_events(&mut self) {
        let Some(active) = &self.active else { return };
        let Some(i) = self.store.index_of(&active.id) else {
            self.active = None;
            return;
        };
        let mut ended = false;
        let mut received = false;
        let mut due = false;
        loop {
            match active.events.try_recv() {
                Ok(ev) => {
                    received = true;
                    ended |= matches!(
                        ev,
                        Event::Finished(_) | Event::FinishedTasks(_) | Event::Failed(_)
                    );
                    if matches!(ev, Event::Started { .. }) {
                        // A resumed run starts from its checkpoint's step.
                        let r = &self.store.runs[i];
                        self.run_clock =
                            Some(RunClock::new(active.id.clone(), r.step()).after(r.last_secs()));
                    }
                    let mut secs = None;
                    if let Some(c) = self.run_clock.as_mut().filter(|c| c.id == active.id) {
                        c.on_event(&ev);
                        secs = Some(c.run_secs());
                    }
                    due |= !matches!(ev, Event::Step { .. });
                    match secs {
                        Some(t) => self.store.runs[i].apply_at(&ev, t),
                        None => self.store.runs[i].apply(&ev),
                    }
                }
                Err(crossbeam_channel::TryRecvError::Empty) => break,
                Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    if !ended {
                        let r = &mut self.store.runs[i];
                        r.status = RunStatus::Failed;
                        r.error = Some("the training thread ended without a result".into());
                    }
                    ended = true;
                    break;
                }
            }
        }
        let id = &self.store.runs[i].id;
        due |= received
            && self
                .last_write
                .get(id)
                .is_none_or(|t| t.elapsed() >= STEP_WRITE_INTERVAL);
        if ended && self.stopping.take().as_ref() == Some(&self.store.runs[i].id) {
            self.stopped(i);
        }
        if ended || due {
            self.write(i);
        }
        if ended {
            self.run_clock = None;
            if let Some(a) = self.active.take() {
                if let Some(w) = a.worker {
                    // The last event has arrived, so the thread is returning.
                    w.join();
                }
            }
        }
    }

    /// Run `i` ended after a Stop. If it ended before its last step, the engine saved its
    /// whole state as it stopped: the run is stopped, not finished nor early-stopped (its
    /// best checkpoint so far stays its result and saved prompt), and its checkpoint is looked
    /// for, to offer Resume.
    fn stopped(&mut self, i: usize) {
        let r = &mut self.store.runs[i];
        let Some(steps) = r.result_steps() else {
            return;
        };
        if !r.status.is_complete() || steps >= r.total_steps {
            return;
        }
        r.status = RunStatus::Stopped;
        r.error = Some(format!(
            "stopped at step {steps} of {}; the best checkpoint so far was evaluated and saved",
            r.total_steps
        ));
        if r.resume_refusal().is_none() {
            let record = r.clone();
            let id = r.id.clone();
            self.checkpoint_checks.push((
                id,
                Job::spawn("looking for the checkpoint...", move || {
                    Ok(crate::runs::checkpoint_saved(&record))
                }),
            ));
        }
    }

    fn start_next(&mut self) {
        if self.active.is_some() || self.closing {
            return;
        }
        if let Some(s) = &mut self.starting {
            if !s.tasks.poll() {
                return;
            }
            let s = self.starting.take().expect("starting");
            match s.tasks.into_result().expect("polled") {
                Ok(task) => self.start(s.id, s.model, task),
                Err(e) => self.unqueue(&s.id, e, RunStatus::Failed),
            }
            return;
        }
        let Some(id) = self.queue.front().cloned() else {
            return;
        };
        let Some(i) = self.store.index_of(&id) else {
            self.queue.pop_front();
            return;
        };
        let want = self.store.runs[i].model.clone();
        let failed = match &self.model {
            ModelState::Loading { .. } => return,
            ModelState::Ready(m) if m.spec == want => None,
            ModelState::Ready(m) => Some(format!(
                "queued for model {want}, but {} is loaded now; queue it again",
                m.spec
            )),
            ModelState::Failed { error, .. } => {
                Some(format!("the model could not be loaded: {error}"))
            }
            ModelState::Empty => Some("no model was loaded".into()),
        };
        if let Some(msg) = failed {
            self.unqueue(&id, msg, RunStatus::Failed);
            return;
        }
        let model = self.model.ready().expect("ready").clone();
        if self.resuming.contains_key(&id) {
            // The task folders and the checkpoint are read together; the run stays queued.
            let r = &self.store.runs[i];
            let (dir, out) = (r.task_dir.clone(), r.spec.out.clone());
            let multi = r.multi.is_some();
            let current = self.task.clone();
            let m = model.clone();
            self.starting = Some(Starting {
                id,
                model,
                tasks: Job::spawn("reading the checkpoint...", move || {
                    let out = out.context("the run has no output folder, so no checkpoint")?;
                    let mut saved = checkpoint::load(&out)?;
                    saved.check_model(&m)?;
                    // Where the record says, should the runs folder have moved since.
                    saved.state.spec.out = Some(out.clone());
                    let load = |d: &Path| -> anyhow::Result<Arc<Task>> {
                        match current.as_ref().filter(|t| t.dir == d) {
                            Some(t) => Ok(t.clone()),
                            None => Task::load(d)
                                .map(Arc::new)
                                .with_context(|| format!("the run's task folder {}", d.display())),
                        }
                    };
                    match (&saved.state.multi, multi) {
                        (Some(ms), true) => {
                            // The engine pairs the saved prompts with the tasks by position:
                            // the checkpoint's order, not the record's, is the one to keep.
                            let tasks = ms
                                .task_dirs
                                .iter()
                                .map(|d| load(d).map(|t| (*t).clone()))
                                .collect::<anyhow::Result<Vec<Task>>>()?;
                            Ok(RunTasks::ResumeMany(Arc::new(tasks), Box::new(saved)))
                        }
                        (None, false) => Ok(RunTasks::Resume(load(&dir)?, Box::new(saved))),
                        (Some(_), false) | (None, true) => anyhow::bail!(
                            "{}: the checkpoint is a {} run's, the record a {} run's; queue the run again",
                            checkpoint::dir_of(&out).display(),
                            if multi { "single-task" } else { "multi-task" },
                            if multi { "multi-task" } else { "single-task" },
                        ),
                    }
                }),
            });
            return;
        }
        if let Some(m) = &self.store.runs[i].multi {
            // Every task of the run is read first (the run stays queued meanwhile).
            let dirs: Vec<PathBuf> = m.tasks.iter().map(|t| t.dir.clone()).collect();
            self.starting = Some(Starting {
                id,
                model,
                tasks: Job::spawn(
                    format!("reading {} task folders...", dirs.len()),
                    move || {
                        let tasks = dirs
                            .iter()
                            .map(|d| Task::load(d))
                            .collect::<Result<_, _>>()?;
                        Ok(RunTasks::Many(Arc::new(tasks)))
                    },
                ),
            });
            return;
        }
        let dir = self.store.runs[i].task_dir.clone();
        match &self.task {
            Some(t) if t.dir == dir => {
                let task = t.clone();
                self.start(id, model, RunTasks::One(task));
            }
            _ => {
                // Another task than the current one: read it first (the run stays queued).
                let d = dir.clone();
                self.starting = Some(Starting {
                    id,
                    model,
                    tasks: Job::spawn(format!("reading {}...", dir.display()), move || {
                        Task::load(&d).map(|t| RunTasks::One(Arc::new(t)))
                    }),
                });
            }
        }
    }

    fn start(&mut self, id: String, model: Arc<Model>, tasks: RunTasks) {
        self.queue.retain(|q| *q != id);
        let Some(i) = self.store.index_of(&id) else {
            return;
        };
        let r = &mut self.store.runs[i];
        r.test_examples = match &tasks {
            RunTasks::One(t) | RunTasks::Resume(t, _) => vec![(t.spec.name.clone(), t.test.len())],
            RunTasks::Many(ts) | RunTasks::ResumeMany(ts, _) => ts
                .iter()
                .map(|t| (t.spec.name.clone(), t.test.len()))
                .collect(),
        };
        r.metric = match &tasks {
            RunTasks::One(t) | RunTasks::Resume(t, _) => Some(t.spec.metric),
            RunTasks::Many(ts) | RunTasks::ResumeMany(ts, _) => {
                let first = ts.first().map(|t| t.spec.metric);
                first.filter(|m| ts.iter().all(|t| t.spec.metric == *m))
            }
        };
        let worker = match (tasks, r.multi_task_spec()) {
            (RunTasks::Many(tasks), Some(spec)) => {
                // The worker names each task's events and prompt folder by its task.json name.
                let names: Vec<String> = tasks.iter().map(|t| t.spec.name.clone()).collect();
                r.set_task_names(&names);
                Worker::spawn_tasks(model, tasks, spec)
            }
            (RunTasks::One(task), None) => Worker::spawn(model, task, r.spec.clone()),
            (RunTasks::Resume(task, saved), None) => {
                self.resuming.remove(&id);
                self.store.checkpoints.remove(&id);
                // The steps after the checkpoint are trained again: their points go.
                r.rewind_to(saved.state.step, &saved.state.evals);
                Worker::resume(model, task, *saved)
            }
            (RunTasks::ResumeMany(tasks, saved), Some(_)) => {
                self.resuming.remove(&id);
                self.store.checkpoints.remove(&id);
                let names: Vec<String> = tasks.iter().map(|t| t.spec.name.clone()).collect();
                r.set_task_names(&names);
                r.rewind_to(saved.state.step, &saved.state.evals);
                Worker::resume_tasks(model, tasks, *saved)
            }
            _ => {
                self.set_status(
                    &id,
                    RunStatus::Failed,
                    Some("internal error: the run's tasks do not match its record".into()),
                );
                return;
            }
        };
        self.set_status(&id, RunStatus::Running, None);
        self.active = Some(Active {
            id,
            commands: worker.commands.clone(),
            events: worker.events.clone(),
            worker: Some(worker),
        });
    }

    /// Writes the active run's record with every event received so far (step writes are
    /// spaced out, so the last second of the curve may not be on disk yet) and waits for every
    /// pending write. The run cannot finish once the app is gone, so it is saved as
    /// interrupted, and so are the runs still queued. Called on exit, never in a frame.
    pub fn save_on_exit(&mut self) {
        self.closing = true;
        self.starting = None;
        for id in std::mem::take(&mut self.queue) {
            // A run queued to resume keeps what it was (stopped or interrupted).
            let status = self.resuming.remove(&id).unwrap_or(RunStatus::Interrupted);
            self.set_status(
                &id,
                status,
                Some("the workbench was closed before this queued run started".into()),
            );
        }
        if let Some(active) = &self.active {
            if let Some(i) = self.store.index_of(&active.id) {
                while let Ok(ev) = active.events.try_recv() {
                    self.store.runs[i].apply(&ev);
                }
                if self.stopping.take().as_ref() == Some(&self.store.runs[i].id) {
                    self.stopped(i);
                }
                if self.store.runs[i].status.is_live() {
                    self.store.runs[i].status = RunStatus::Interrupted;
                }
                self.write(i);
            }
        }
        self.flush_records();
        while let Some(e) = self.records.error() {
            eprintln!("gradprompt: {e}");
        }
    }

    /// Waits until every record write and delete asked for so far is on disk.
    pub fn flush_records(&self) {
        self.records.flush();
    }
}

/// What the user is told about a runs folder just opened: folders that could not be read
/// (they are listed in the runs view, with Remove) and other problems.
fn opening_notice(store: &RunStore) -> Option<String> {
    let mut parts = Vec::new();
    if !store.unreadable.is_empty() {
        parts.push(format!(
            "{} stored run(s) could not be read; they are listed under \"Could not read\" in the \
             Runs tab",
            store.unreadable.len()
        ));
    }
    parts.extend(store.warnings.iter().cloned());
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// Where a task comes from: already read, or a folder to read (on a background thread).
#[derive(Clone)]
pub enum TaskSource {
    Ready(Arc<Task>),
    Folder(PathBuf),
}

impl TaskSource {
    /// The task, reading its folder if needed (slow: call it on a background thread).
    pub fn load(self) -> anyhow::Result<Arc<Task>> {
        match self {
            TaskSource::Ready(t) => Ok(t),
            TaskSource::Folder(d) => Task::load(&d).map(Arc::new),
        }
    }
}

/// Whether two paths name one folder: equal, or equal once made canonical (symbolic links
/// and `..` resolved), where both exist.
fn same_folder(a: &std::path::Path, b: &std::path::Path) -> bool {
    a == b
        || matches!(
            (std::fs::canonicalize(a), std::fs::canonicalize(b)),
            (Ok(x), Ok(y)) if x == y
        )
}

#[cfg(test)]
mod tests {
    use super::RunClock;
    use std::time::Duration;

    #[test]
    fn a_resumed_runs_eta_counts_only_the_steps_done_since_it_started() {
        let clock = RunClock::new("r".into(), 50);
        assert_eq!(clock.eta_secs(50, 100), None);
        std::thread::sleep(Duration::from_millis(50));
        // 10 steps done here, 40 to go: four times the time so far (not 40/60 of it).
        let ratio = clock.eta_secs(60, 100).unwrap() / clock.elapsed().as_secs_f64();
        assert!((ratio - 4.0).abs() < 0.4, "{ratio}");
    }
}
