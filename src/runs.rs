//! The on-disk record of every run: one folder per run under the runs folder, holding
//! `run.json` (spec, task, model, status, loss curve, evaluations, result) and, for methods
//! whose prompt is small, the trained prompt in `prompt/`, with the test predictions of its
//! final evaluation beside it (`prompt/predictions.jsonl`, [`crate::predictions`]; records from
//! before predictions were kept have none and load as before). A multi-task run (one prompt per task
//! over one frozen model, [`MultiTaskRecord`]) keeps one prompt folder per task in
//! `prompt/<task>/` and the run's result in `prompt/multi-task.json`, as `train --out` lays them
//! out; its record adds the tasks, each task's dev curve and the per-task scores, all optional in
//! `run.json` so records written before multi-task runs existed still load. The record is rewritten as events
//! arrive, so closing or crashing the app loses at most the last second of a curve; a run that
//! was in progress when the app went away loads as interrupted. Records are written through
//! [`crate::atomic::write_file`] (flushed, then renamed into place). An interrupted run whose
//! output folder holds the engine's checkpoint is listed in [`RunStore::checkpoints`]: the
//! workbench offers to resume it.
//!
//! One process at a time owns a runs folder: the store takes an OS lock on [`LOCK_FILE`] in it
//! (through [`crate::atomic::try_lock`]; the OS frees it when the process ends, however it
//! ends) and writes its process id there. A store that finds the lock held opens read-only
//! ([`ReadOnly`]): it lists the runs but never marks, writes, deletes or moves anything, so a
//! second workbench cannot mark the first one's live runs interrupted. A run folder whose
//! `run.json` cannot be read is listed as [`Unreadable`] and can be set aside into
//! [`REMOVED_DIR`] (a move, so it can be recovered by hand).

use crate::atomic::OutputLock;
use crate::methods::MethodKind;
use crate::run::{Event, Mix, MultiTaskResult, MultiTaskSpec, RunResult, RunSpec};
use crate::task::Metric;
use crate::train::checkpoint;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

pub const RECORD_FILE: &str = "run.json";
pub const PROMPT_DIR: &str = "prompt";
/// The lock file in the runs folder; it holds the owner's process id.
pub const LOCK_FILE: &str = ".workbench.lock";
/// Where unreadable run folders are moved to by [`set_aside`], inside the runs folder.
pub const REMOVED_DIR: &str = ".removed";
/// The prompts imported into the workbench beside this folder's runs (folders elsewhere: a
/// PEFT adapter, a recipe's result, a prompt folder), with their test score once measured, so
/// an import and its place in Compare outlive the window that made them.
pub const IMPORTS_FILE: &str = "imports.json";

/// One imported prompt in [`IMPORTS_FILE`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportRecord {
    pub dir: PathBuf,
    /// Its test score, measured in the workbench (the Export tab's evaluation); None until then.
    pub test: Option<f64>,
}

/// Where a run stands. Records written before `stopped`, `early-stopped` and `cancelled`
/// existed still load: those runs were saved as `interrupted`, `finished` and `failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunStatus {
    /// Waiting for the model or for the run before it.
    Queued,
    Running,
    Paused,
    /// Trained every step it was asked for.
    Finished,
    /// Ended before its last step on its own: the dev score stopped improving for `patience`
    /// evaluations. Complete as a finished run is; there is nothing to resume.
    EarlyStopped,
    /// Stopped by the user before its last step: its best checkpoint so far was evaluated and
    /// saved as its result, and its checkpoint lets it be resumed.
    Stopped,
    Failed,
    /// Taken off the queue by the user before it started.
    Cancelled,
    /// Was running or queued when the app closed; its curve so far is kept.
    Interrupted,
}

impl RunStatus {
    pub fn label(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Paused => "paused",
            RunStatus::Finished => "finished",
            RunStatus::EarlyStopped => "early-stopped",
            RunStatus::Stopped => "stopped",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Interrupted => "interrupted",
        }
    }

    /// What the status means, for a hover.
    pub fn meaning(self) -> &'static str {
        match self {
            RunStatus::Queued => "waiting for the model or for the run before it",
            RunStatus::Running => "training now",
            RunStatus::Paused => "paused; Resume in the training controls continues it",
            RunStatus::Finished => "trained every step it was asked for",
            RunStatus::EarlyStopped => {
                "ended before its last step because the dev score stopped improving (patience)"
            }
            RunStatus::Stopped => {
                "stopped by you before its last step; its best checkpoint so far is its result"
            }
            RunStatus::Failed => "ended with an error",
            RunStatus::Cancelled => "taken off the queue before it started",
            RunStatus::Interrupted => {
                "the workbench closed or crashed while it was running or queued"
            }
        }
    }

    pub fn is_live(self) -> bool {
        matches!(
            self,
            RunStatus::Queued | RunStatus::Running | RunStatus::Paused
        )
    }

    /// Ran to its own end (every step, or patience): what baselines and the comparison's
    /// defaults are taken from.
    pub fn is_complete(self) -> bool {
        matches!(self, RunStatus::Finished | RunStatus::EarlyStopped)
    }

    /// Ended part-way with its state saved, so Resume may continue it (when its checkpoint is
    /// on disk).
    pub fn can_resume(self) -> bool {
        matches!(self, RunStatus::Interrupted | RunStatus::Stopped)
    }
}

/// Everything known about one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: String,
    /// Unix time in milliseconds when the run was created.
    pub created_ms: u64,
    pub model: String,
    pub task: String,
    pub task_dir: PathBuf,
    pub spec: RunSpec,
    pub status: RunStatus,
    #[serde(default)]
    pub error: Option<String>,
    /// The template as the engine resolved it (known once the run has started).
    #[serde(default)]
    pub template: Option<String>,
    #[serde(default)]
    pub total_steps: usize,
    #[serde(default)]
    pub trainable_params: Option<usize>,
    #[serde(default)]
    pub model_params: Option<usize>,
    /// Train loss per step; `None` where the loss was not a finite number (JSON has no NaN).
    #[serde(default)]
    pub losses: Vec<(usize, Option<f32>)>,
    /// Dev metric per evaluation (step 0 is before training).
    #[serde(default)]
    pub evals: Vec<(usize, f64)>,
    #[serde(default)]
    pub examples_per_s: Option<f64>,
    #[serde(default)]
    pub result: Option<RunResult>,
    /// Set for a run that trains several tasks' prompts at once; then `task` names them all
    /// (joined with " + "), `task_dir` is the first one's folder, `evals` holds the mean dev
    /// metric over tasks and `result` stays empty (the scores are in here).
    #[serde(default)]
    pub multi: Option<MultiTaskRecord>,
    /// The colour the workbench chose for the run when it was created (an index into its
    /// palette), so the run keeps it after a relaunch; records without it get one derived
    /// from their id.
    #[serde(default)]
    pub colour: Option<u8>,
    /// When each loss point and each evaluation came, as (step, seconds of training so far,
    /// pauses left out), for the plots against wall-clock time. Records written before this
    /// have none: those runs plot against steps only.
    #[serde(default)]
    pub loss_secs: Vec<(usize, f64)>,
    #[serde(default)]
    pub eval_secs: Vec<(usize, f64)>,
    /// The dev metric's name, known when the run starts (a multi-task run's, when every task
    /// has the same).
    #[serde(default)]
    pub metric: Option<Metric>,
    /// A name the user gave the run (shown instead of its method and id), and a free-text
    /// note; both absent from records written before they existed.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub note: String,
    /// How many test examples each task had when the run started, by task name: the n of the
    /// test score's confidence interval. Empty in records written before it existed.
    #[serde(default)]
    pub test_examples: Vec<(String, usize)>,
}

/// One task of a multi-task run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRef {
    /// The task's name (its folder's name until the task is read, then the name in its
    /// task.json, which is what its prompt folder and the worker's events are named after).
    pub name: String,
    pub dir: PathBuf,
}

/// What a multi-task run adds to its record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MultiTaskRecord {
    pub tasks: Vec<TaskRef>,
    pub mix: Mix,
    pub shared_tokens: usize,
    /// Each task's dev metric per evaluation, in task order (step 0 is before training).
    #[serde(default)]
    pub task_evals: Vec<Vec<(usize, f64)>>,
    #[serde(default)]
    pub result: Option<MultiTaskResult>,
}

impl MultiTaskRecord {
    pub fn new(tasks: Vec<TaskRef>, mix: Mix, shared_tokens: usize) -> MultiTaskRecord {
        MultiTaskRecord {
            task_evals: vec![Vec::new(); tasks.len()],
            tasks,
            mix,
            shared_tokens,
            result: None,
        }
    }

    /// The tasks' names joined as a record's `task` shows them.
    pub fn joined_names(&self) -> String {
        self.tasks
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>()
            .join(" + ")
    }
}

impl RunRecord {
    pub fn new(id: String, model: &str, task: &str, task_dir: &Path, spec: RunSpec) -> Self {
        RunRecord {
            id,
            created_ms: now_ms(),
            model: model.to_string(),
            task: task.to_string(),
            task_dir: task_dir.to_path_buf(),
            spec,
            status: RunStatus::Queued,
            error: None,
            template: None,
            total_steps: 0,
            trainable_params: None,
            model_params: None,
            losses: Vec::new(),
            evals: Vec::new(),
            examples_per_s: None,
            result: None,
            multi: None,
            colour: None,
            loss_secs: Vec::new(),
            eval_secs: Vec::new(),
            metric: None,
            name: None,
            note: String::new(),
            test_examples: Vec::new(),
        }
    }

    /// A multi-task run's record: `spec.out` is the folder that gets one prompt folder per task.
    pub fn new_multi(id: String, model: &str, tasks: Vec<TaskRef>, spec: MultiTaskSpec) -> Self {
        let multi = MultiTaskRecord::new(tasks, spec.mix, spec.shared_tokens);
        let first = multi
            .tasks
            .first()
            .map(|t| t.dir.clone())
            .unwrap_or_default();
        let mut r = RunRecord::new(id, model, &multi.joined_names(), &first, spec.run);
        r.multi = Some(multi);
        r
    }

    /// The multi-task description the worker runs, for a multi-task record.
    pub fn multi_task_spec(&self) -> Option<MultiTaskSpec> {
        self.multi.as_ref().map(|m| MultiTaskSpec {
            run: self.spec.clone(),
            mix: m.mix,
            shared_tokens: m.shared_tokens,
        })
    }

    /// Whether the run trained `task` (alone, or as one of a multi-task run's tasks).
    pub fn covers_task(&self, task: &str) -> bool {
        match &self.multi {
            Some(m) => m.tasks.iter().any(|t| t.name == task),
            None => self.task == task,
        }
    }

    /// Renames a multi-task run's tasks to the names in their task.json (known once they are
    /// read), in task order.
    pub fn set_task_names(&mut self, names: &[String]) {
        if let Some(m) = &mut self.multi {
            for (t, n) in m.tasks.iter_mut().zip(names) {
                t.name = n.clone();
            }
            self.task = m.joined_names();
        }
    }

    /// The user's name for the run, if it has one that is not blank.
    pub fn given_name(&self) -> Option<&str> {
        self.name
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
    }

    pub fn method(&self) -> MethodKind {
        self.spec.method
    }

    /// The last step reported.
    pub fn step(&self) -> usize {
        self.losses.last().map(|l| l.0).unwrap_or(0)
    }

    /// Where the trained prompt was written, if it was: a finished run's, or the best
    /// checkpoint of a run stopped mid-way (interrupted, with a result). A multi-task run has
    /// no single prompt: see [`RunRecord::task_artifact_dir`].
    pub fn artifact_dir(&self) -> Option<&Path> {
        if self.multi.is_some() || !self.prompt_saved(self.result.is_some()) {
            return None;
        }
        self.spec.out.as_deref()
    }

    /// Whether the run's end wrote its prompt: a complete run's, or the best checkpoint of a
    /// run that was stopped (`has_result`: its result arrived).
    fn prompt_saved(&self, has_result: bool) -> bool {
        self.status.is_complete() || (self.status.can_resume() && has_result)
    }

    /// Sets the status the engine's `Finished` / `FinishedTasks` event implies: early-stopped
    /// when the engine says it stopped early before the last step (patience; a Stop by the
    /// user looks the same to the engine, and the session, which sent it, marks that run
    /// stopped afterwards), else finished.
    fn finished(&mut self, steps: usize, stopped_early: bool) {
        self.status = if stopped_early && steps < self.total_steps {
            RunStatus::EarlyStopped
        } else {
            RunStatus::Finished
        };
    }

    /// The steps of the result, a single-task or a multi-task run's.
    pub fn result_steps(&self) -> Option<usize> {
        let multi = self.multi.as_ref().and_then(|m| m.result.as_ref());
        self.result
            .as_ref()
            .map(|r| r.steps)
            .or(multi.map(|m| m.steps))
    }

    /// Why this run could never be resumed, whatever is on disk; `None` when it can be once
    /// its checkpoint is there.
    pub fn resume_refusal(&self) -> Option<&'static str> {
        if self.spec.out.is_none() {
            Some(
                "this run wrote no output folder (the workbench keeps no fine-tuned model copy), \
                 so it has no checkpoint: queue it again",
            )
        } else {
            None
        }
    }

    /// Goes back to a checkpoint taken after `step` steps, before its run continues: loss
    /// points after it are dropped (those steps are trained again) and the evaluations become
    /// the checkpoint's own (`evals`), which the engine kept even where the record lagged. A
    /// multi-task run's per-task dev curves drop their points after `step` too (the checkpoint
    /// keeps only the mean's history, so a per-task point the record never got stays missing).
    pub fn rewind_to(&mut self, step: usize, evals: &[(usize, f64)]) {
        self.losses.retain(|l| l.0 <= step);
        self.loss_secs.retain(|l| l.0 <= step);
        self.eval_secs.retain(|e| e.0 <= step);
        self.evals = evals.to_vec();
        self.result = None;
        self.error = None;
        if let Some(m) = &mut self.multi {
            for e in &mut m.task_evals {
                e.retain(|p| p.0 <= step);
            }
            m.result = None;
        }
    }

    /// Where a finished multi-task run wrote `task`'s prompt folder.
    pub fn task_artifact_dir(&self, task: &str) -> Option<PathBuf> {
        let m = self.multi.as_ref()?;
        let out = self.spec.out.as_ref()?;
        // A stopped run saved each task's best prompt so far, as a single-task run does.
        (self.prompt_saved(m.result.is_some()) && m.tasks.iter().any(|t| t.name == task))
            .then(|| out.join(task))
    }

    /// [`RunRecord::apply`], noting when a step or an evaluation came: `secs` of training so
    /// far.
    pub fn apply_at(&mut self, event: &Event, secs: f64) {
        self.apply(event);
        match event {
            Event::Step { step, .. } => self.loss_secs.push((*step, secs)),
            Event::Eval { step, .. } => self.eval_secs.push((*step, secs)),
            _ => {}
        }
    }

    /// The training time of the last point recorded (where a resumed run's clock goes on from).
    pub fn last_secs(&self) -> f64 {
        let l = self.loss_secs.last().map_or(0.0, |x| x.1);
        let e = self.eval_secs.last().map_or(0.0, |x| x.1);
        l.max(e)
    }

    /// The dev metric's name: the result's, else the one noted when the run started.
    pub fn metric_name(&self) -> Option<Metric> {
        self.result.as_ref().map(|r| r.metric).or(self.metric)
    }

    /// Folds one worker event into the record.
    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::Started {
                total_steps,
                template,
                trainable_params,
                model_params,
            } => {
                self.status = RunStatus::Running;
                self.total_steps = *total_steps;
                self.template = Some(template.clone());
                self.trainable_params = Some(*trainable_params);
                self.model_params = Some(*model_params);
            }
            Event::Step {
                step,
                loss,
                examples_per_s,
                ..
            } => {
                self.losses.push((*step, loss.is_finite().then_some(*loss)));
                self.examples_per_s = Some(*examples_per_s);
            }
            Event::Eval {
                step, dev_metric, ..
            } => self.evals.push((*step, *dev_metric)),
            Event::Paused => self.status = RunStatus::Paused,
            Event::Resumed => self.status = RunStatus::Running,
            Event::Finished(r) => {
                self.finished(r.steps, r.stopped_early);
                self.result = Some((**r).clone());
            }
            Event::Failed(e) => {
                self.status = RunStatus::Failed;
                self.error = Some(e.clone());
            }
            Event::TaskEval {
                step,
                task,
                dev_metric,
            } => {
                if let Some(m) = &mut self.multi {
                    if let Some(k) = m.tasks.iter().position(|t| &t.name == task) {
                        m.task_evals.resize(m.tasks.len(), Vec::new());
                        m.task_evals[k].push((*step, *dev_metric));
                    }
                }
            }
            Event::FinishedTasks(r) => {
                self.finished(r.steps, r.stopped_early);
                if let Some(m) = &mut self.multi {
                    m.result = Some((**r).clone());
                }
            }
        }
    }
}

/// A run folder whose record could not be read (bad JSON, or an id that is not its folder's
/// name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    /// The folder's name under the runs folder.
    pub folder: OsString,
    /// Why, naming the file.
    pub error: String,
}

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.error)
    }
}

/// Why a store only reads its folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadOnly {
    /// Another process holds the folder's lock (its process id, when it could be read).
    HeldElsewhere { pid: Option<u32> },
    /// The lock file cannot be created or locked (a read-only folder, say).
    CannotLock(String),
}

impl ReadOnly {
    /// What the user is told, with what to do about it.
    pub fn message(&self, dir: &Path) -> String {
        match self {
            ReadOnly::HeldElsewhere { pid } => format!(
                "another workbench{} is using the runs folder {}: this one only shows its runs \
                 (no training, deleting or removing here). Close the other one, or start this one \
                 with --runs and another folder.",
                pid.map(|p| format!(" (process {p})")).unwrap_or_default(),
                dir.display()
            ),
            ReadOnly::CannotLock(e) => format!(
                "the runs folder {} cannot be locked ({e}): its runs are shown read-only. Start \
                 with --runs and a folder you can write.",
                dir.display()
            ),
        }
    }
}

/// The runs folder and the records in it, oldest first.
pub struct RunStore {
    dir: PathBuf,
    pub runs: Vec<RunRecord>,
    /// Run folders whose record could not be read (listed for the user, never fatal).
    pub unreadable: Vec<Unreadable>,
    /// Other problems met while opening (a live record that could not be re-saved as
    /// interrupted), for the user.
    pub warnings: Vec<String>,
    /// The interrupted runs that have a checkpoint to resume from ([`checkpoint_saved`]), as
    /// found when the store was opened; the workbench keeps it up to date after that.
    pub checkpoints: std::collections::HashSet<String>,
    /// Held while this store owns the folder; dropping the store frees it.
    _lock: Option<OutputLock>,
    /// Set when another process owns the folder (or it cannot be locked): nothing is written.
    read_only: Option<ReadOnly>,
    /// Every folder name seen when the store was opened, and every id made since: a new id
    /// avoids them without looking at the disk (the workbench makes ids inside a frame).
    taken: std::collections::HashSet<String>,
    counter: u32,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Writes one record into its folder under the runs folder `dir` through
/// [`crate::atomic::write_file`]: flushed to disk before it replaces the old one, so neither a
/// crash nor a power cut mid-write leaves a torn `run.json`.
pub fn write_record(dir: &Path, r: &RunRecord) -> Result<()> {
    let path = dir.join(&r.id).join(RECORD_FILE);
    crate::atomic::write_file(&path, serde_json::to_string_pretty(r)?.as_bytes())
}

/// Whether run `r` left a checkpoint to resume from (`train::checkpoint`). Reads the disk: not
/// for a frame.
pub fn checkpoint_saved(r: &RunRecord) -> bool {
    r.spec.out.as_deref().is_some_and(checkpoint::exists)
}

/// Removes run `id`'s folder under the runs folder `dir`, if it is there.
pub fn remove_record(dir: &Path, id: &str) -> Result<()> {
    anyhow::ensure!(is_plain_id(id), "{id:?} is not a run id");
    let folder = dir.join(id);
    if folder.exists() {
        std::fs::remove_dir_all(&folder)
            .with_context(|| format!("{}: cannot delete", folder.display()))?;
    }
    Ok(())
}

/// Moves the folder `name` under the runs folder `dir` into `dir/.removed/` (as `name.2`,
/// `name.3`, ... when that name is taken) and returns where it went. A move rather than a
/// delete: what the user removes from the list can still be recovered by hand.
pub fn set_aside(dir: &Path, name: &OsStr) -> Result<PathBuf> {
    let plain = {
        let mut parts = Path::new(name).components();
        matches!(parts.next(), Some(std::path::Component::Normal(c)) if c == name)
            && parts.next().is_none()
    };
    anyhow::ensure!(
        plain && name != REMOVED_DIR,
        "{name:?} is not a run folder's name"
    );
    let from = dir.join(name);
    anyhow::ensure!(from.is_dir(), "{}: no such run folder", from.display());
    let removed = dir.join(REMOVED_DIR);
    std::fs::create_dir_all(&removed)
        .with_context(|| format!("{}: cannot create", removed.display()))?;
    let mut to = removed.join(name);
    let mut n = 1;
    while to.exists() {
        n += 1;
        let mut numbered = name.to_os_string();
        numbered.push(format!(".{n}"));
        to = removed.join(numbered);
    }
    std::fs::rename(&from, &to)
        .with_context(|| format!("{}: cannot move to {}", from.display(), to.display()))?;
    Ok(to)
}

/// Whether `id` can name a folder directly under the runs folder (one plain path component).
fn is_plain_id(id: &str) -> bool {
    let mut parts = Path::new(id).components();
    matches!(parts.next(), Some(std::path::Component::Normal(c)) if c == id)
        && parts.next().is_none()
        && !id.contains(['/', '\\'])
}

impl RunStore {
    /// `$GRADPROMPT_RUNS`, else `runs` in the cache folder.
    pub fn default_dir() -> PathBuf {
        match std::env::var_os("GRADPROMPT_RUNS") {
            Some(d) => PathBuf::from(d),
            None => crate::model::wheel::cache_dir().join("runs"),
        }
    }

    /// Opens (creating it if needed) a runs folder and loads every record in it. The store
    /// owns the folder if it can take its lock: then records left live by a previous session
    /// become interrupted, and are saved so. If another process holds the lock, the store
    /// opens read-only and leaves every record as it is on disk.
    pub fn open(dir: &Path) -> Result<RunStore> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create the runs folder", dir.display()))?;
        let lock_path = dir.join(LOCK_FILE);
        let (lock, read_only) = match crate::atomic::try_lock(&lock_path) {
            Ok(Some(lock)) => {
                // Best effort: the pid only makes the other instance's message clearer.
                let _ = std::fs::write(&lock_path, format!("{}\n", std::process::id()));
                (Some(lock), None)
            }
            Ok(None) => {
                let pid = std::fs::read_to_string(&lock_path)
                    .ok()
                    .and_then(|t| t.trim().parse().ok());
                (None, Some(ReadOnly::HeldElsewhere { pid }))
            }
            Err(e) => (None, Some(ReadOnly::CannotLock(format!("{e:#}")))),
        };
        let mut runs = Vec::new();
        let mut unreadable = Vec::new();
        let mut taken = std::collections::HashSet::new();
        let entries =
            std::fs::read_dir(dir).with_context(|| format!("{}: cannot read", dir.display()))?;
        for entry in entries.flatten() {
            taken.insert(entry.file_name().to_string_lossy().into_owned());
            let path = entry.path().join(RECORD_FILE);
            if !path.is_file() {
                continue;
            }
            let folder = entry.file_name();
            let parsed = std::fs::read_to_string(&path)
                .map_err(anyhow::Error::from)
                .and_then(|t| Ok(serde_json::from_str::<RunRecord>(&t)?))
                .and_then(|r| {
                    // The id names the folder that saving and deleting touch: a record whose
                    // id is not its own folder's name (say `../x`) would reach outside it.
                    if folder.to_str() == Some(r.id.as_str()) && is_plain_id(&r.id) {
                        Ok(r)
                    } else {
                        Err(anyhow::anyhow!(
                            "the record's id {:?} is not its folder's name",
                            r.id
                        ))
                    }
                });
            match parsed {
                Ok(r) => runs.push(r),
                Err(e) => unreadable.push(Unreadable {
                    folder,
                    error: format!("{}: {e}", path.display()),
                }),
            }
        }
        runs.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
        unreadable.sort_by(|a, b| a.folder.cmp(&b.folder));
        let mut store = RunStore {
            dir: dir.to_path_buf(),
            runs,
            unreadable,
            warnings: Vec::new(),
            checkpoints: Default::default(),
            _lock: lock,
            read_only,
            taken,
            counter: 0,
        };
        if store.read_only.is_some() {
            // Live records may be another workbench's runs in progress: leave them be (and
            // nothing is resumed from a read-only store, so their checkpoints do not matter).
            return Ok(store);
        }
        for i in 0..store.runs.len() {
            if store.runs[i].status.is_live() {
                store.runs[i].status = RunStatus::Interrupted;
                // Not fatal: the record stays loaded (as interrupted) and the user is told.
                if let Err(e) = store.save(i) {
                    let path = store.dir.join(&store.runs[i].id).join(RECORD_FILE);
                    store.warnings.push(format!(
                        "{}: cannot mark as interrupted: {e:#}",
                        path.display()
                    ));
                }
            }
        }
        store.checkpoints = store
            .runs
            .iter()
            .filter(|r| r.status.can_resume() && r.resume_refusal().is_none())
            .filter(|r| checkpoint_saved(r))
            .map(|r| r.id.clone())
            .collect();
        Ok(store)
    }

    /// Why this store only reads its folder; `None` when it owns it.
    pub fn read_only(&self) -> Option<&ReadOnly> {
        self.read_only.as_ref()
    }

    /// An error saying why nothing may be written, when the store is read-only.
    pub fn check_writable(&self) -> Result<()> {
        match &self.read_only {
            None => Ok(()),
            Some(r) => Err(anyhow::anyhow!("{}", r.message(&self.dir))),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The imports listed beside the runs (none when the file is absent); a list that cannot
    /// be read is an error naming the file.
    pub fn imports(&self) -> Result<Vec<ImportRecord>> {
        let path = self.dir.join(IMPORTS_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).with_context(|| {
                format!(
                    "{}: not a list of imports ({{\"dir\", \"test\"}} each); move it aside to start an empty one",
                    path.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(anyhow::anyhow!("{}: cannot read: {e}", path.display())),
        }
    }

    /// Replaces the list of imports (one atomic write); refused when the store is read-only.
    pub fn save_imports(&self, list: &[ImportRecord]) -> Result<()> {
        self.check_writable()?;
        crate::atomic::write_file(
            &self.dir.join(IMPORTS_FILE),
            serde_json::to_string_pretty(list)?.as_bytes(),
        )
    }

    /// A fresh id, sortable by time and unique within this folder.
    pub fn new_id(&mut self, method: MethodKind) -> String {
        loop {
            self.counter += 1;
            let id = format!("{}-{:03}-{}", now_ms(), self.counter % 1000, method.id());
            if !self.taken.contains(&id) && !self.runs.iter().any(|r| r.id == id) {
                self.taken.insert(id.clone());
                return id;
            }
        }
    }

    /// Where a run's trained prompt goes.
    pub fn prompt_dir(&self, id: &str) -> PathBuf {
        self.dir.join(id).join(PROMPT_DIR)
    }

    /// Adds a record and writes it; returns its index. Refused when read-only.
    pub fn add(&mut self, record: RunRecord) -> Result<usize> {
        self.check_writable()?;
        let i = self.push(record);
        self.save(i)?;
        Ok(i)
    }

    /// Adds a record in memory only; returns its index. The caller writes it with
    /// [`write_record`] (the workbench does so on its writer thread).
    pub fn push(&mut self, record: RunRecord) -> usize {
        self.taken.insert(record.id.clone());
        self.runs.push(record);
        self.runs.len() - 1
    }

    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.runs.iter().position(|r| r.id == id)
    }

    pub fn get(&self, id: &str) -> Option<&RunRecord> {
        self.runs.iter().find(|r| r.id == id)
    }

    /// Writes one record ([`write_record`]: a crash mid-write keeps the old one).
    pub fn save(&mut self, i: usize) -> Result<()> {
        self.check_writable()?;
        write_record(&self.dir, &self.runs[i])?;
        Ok(())
    }

    /// Removes a run and its folder. Refused when read-only.
    pub fn delete(&mut self, id: &str) -> Result<()> {
        self.check_writable()?;
        if self.forget(id)? {
            remove_record(&self.dir, id)?;
        }
        Ok(())
    }

    /// Removes a run in memory only; returns whether it was there. The caller removes its
    /// folder with [`remove_record`].
    pub fn forget(&mut self, id: &str) -> Result<bool> {
        anyhow::ensure!(is_plain_id(id), "{id:?} is not a run id");
        let Some(i) = self.index_of(id) else {
            return Ok(false);
        };
        self.runs.remove(i);
        Ok(true)
    }

    /// Moves an unreadable run folder into [`REMOVED_DIR`] and drops it from the list; returns
    /// where it went. Refused when read-only.
    pub fn set_aside_unreadable(&mut self, folder: &OsStr) -> Result<PathBuf> {
        self.check_writable()?;
        let to = set_aside(&self.dir, folder)?;
        self.forget_unreadable(folder);
        Ok(to)
    }

    /// Drops an unreadable folder from the list in memory only; returns whether it was there.
    /// The caller moves it with [`set_aside`] (the workbench does so on its writer thread).
    pub fn forget_unreadable(&mut self, folder: &OsStr) -> bool {
        let before = self.unreadable.len();
        self.unreadable.retain(|u| u.folder != folder);
        self.unreadable.len() != before
    }

    /// The latest finished single-task run of `method` on `task` with `model`.
    pub fn latest_finished(
        &self,
        task: &str,
        model: &str,
        method: MethodKind,
    ) -> Option<&RunRecord> {
        self.runs.iter().rev().find(|r| {
            r.multi.is_none()
                && r.task == task
                && r.model == model
                && r.spec.method == method
                && r.status.is_complete()
        })
    }

    /// The latest finished multi-task run with `model` that trained `task` among others.
    pub fn latest_finished_multi(&self, task: &str, model: &str) -> Option<&RunRecord> {
        self.runs.iter().rev().find(|r| {
            r.multi.is_some() && r.covers_task(task) && r.model == model && r.status.is_complete()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live_record(id: &str) -> RunRecord {
        let spec = RunSpec {
            method: MethodKind::PromptTuning,
            settings: Default::default(),
            template: None,
            config: Default::default(),
            out: None,
        };
        let mut r = RunRecord::new(id.into(), "m", "t", Path::new("t"), spec);
        r.status = RunStatus::Running;
        r
    }

    #[test]
    fn a_record_is_replaced_whole_and_leaves_no_temporary_file_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = live_record("1-001-prompt-tuning");
        write_record(dir.path(), &r).unwrap();
        r.status = RunStatus::Finished;
        write_record(dir.path(), &r).unwrap();
        let folder = dir.path().join(&r.id);
        let names: Vec<_> = std::fs::read_dir(&folder)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [RECORD_FILE]);
        let back: RunRecord =
            serde_json::from_str(&std::fs::read_to_string(folder.join(RECORD_FILE)).unwrap())
                .unwrap();
        assert_eq!(back.status, RunStatus::Finished);
    }

    /// Linux refuses paths of 4096 bytes or more: a record folder whose `run.json` is just
    /// short enough to read, but whose temporary file beside it (`.run.json.writing-XXXXXX`,
    /// 24 bytes) is not, can be read but never written, even by root.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_live_record_that_cannot_be_saved_again_loads_as_interrupted_with_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let mut runs = dir.path().to_path_buf();
        let id = "1-001-prompt-tuning";
        // The runs folder's depth that puts run.json at 4090 bytes.
        let want = 4090 - (id.len() + 1 + RECORD_FILE.len() + 1);
        while runs.as_os_str().len() < want {
            let room = want - runs.as_os_str().len() - 1;
            runs.push("d".repeat(room.min(200)));
        }
        assert_eq!(runs.as_os_str().len(), want);
        let r = live_record(id);
        std::fs::create_dir_all(runs.join(id)).unwrap();
        let path = runs.join(id).join(RECORD_FILE);
        std::fs::write(&path, serde_json::to_string(&r).unwrap()).unwrap();
        assert!(write_record(&runs, &r).is_err());

        let store = RunStore::open(&runs).unwrap();
        assert_eq!(
            store.get(id).map(|r| r.status),
            Some(RunStatus::Interrupted)
        );
        assert!(
            store.warnings.iter().any(|w| w.contains("interrupted")),
            "{:?}",
            store.warnings
        );
        // On disk it is still the live record it was.
        let on_disk: RunRecord =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(on_disk.status, RunStatus::Running);
    }

    #[test]
    fn only_an_interrupted_run_with_a_checkpoint_is_resumable() {
        let dir = tempfile::tempdir().unwrap();
        let runs = dir.path().join("runs");
        let mut store = RunStore::open(&runs).unwrap();
        let mut ids = Vec::new();
        for (n, (status, out, saved)) in [
            (RunStatus::Running, true, true),
            (RunStatus::Finished, true, true),
            (RunStatus::Interrupted, true, false),
            (RunStatus::Interrupted, false, false),
        ]
        .into_iter()
        .enumerate()
        {
            let id = format!("{n}-001-prompt-tuning");
            let mut r = live_record(&id);
            r.status = status;
            if out {
                let out = store.prompt_dir(&id);
                if saved {
                    let cp = checkpoint::dir_of(&out);
                    std::fs::create_dir_all(&cp).unwrap();
                    std::fs::write(cp.join("state.json"), "{}").unwrap();
                }
                r.spec.out = Some(out);
            }
            store.add(r).unwrap();
            ids.push(id);
        }
        assert!(store.get(&ids[3]).unwrap().resume_refusal().is_some());
        assert!(store.get(&ids[2]).unwrap().resume_refusal().is_none());
        drop(store);
        // The running one was interrupted by the app going away, and has its checkpoint.
        let store = RunStore::open(&runs).unwrap();
        assert_eq!(store.checkpoints, [ids[0].clone()].into_iter().collect());
    }

    #[test]
    fn rewinding_to_a_checkpoint_drops_the_steps_after_it_and_takes_its_evaluations() {
        let mut r = live_record("1-001-prompt-tuning");
        for step in 1..=7 {
            r.apply(&Event::Step {
                step,
                loss: 1.0,
                lr: 0.1,
                examples_per_s: 1.0,
            });
        }
        r.evals = vec![(0, 0.1), (4, 0.2)];
        r.error = Some("the workbench was closed".into());
        r.rewind_to(5, &[(0, 0.1), (4, 0.2), (5, 0.3)]);
        assert_eq!(
            r.losses.iter().map(|l| l.0).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
        assert_eq!(r.evals, [(0, 0.1), (4, 0.2), (5, 0.3)]);
        assert_eq!(r.error, None);
    }

    fn result(steps: usize, stopped_early: bool) -> RunResult {
        RunResult {
            method: "prompt-tuning".into(),
            task: "t".into(),
            model: "m".into(),
            template: "[P] {x} [ANSWER]".into(),
            steps,
            train_loss_first: None,
            train_loss_last: None,
            metric: crate::task::Metric::Accuracy,
            dev_metric: 0.5,
            test_metric: 0.5,
            best_step: 0,
            trainable_params: 1,
            model_params: 10,
            artifact_bytes: 4,
            wall_seconds: 1.0,
            artifact: None,
            readable: None,
            stopped_early,
            label_tokens: None,
        }
    }

    #[test]
    fn a_run_that_ends_early_on_patience_is_early_stopped_and_a_whole_one_finished() {
        let started = Event::Started {
            total_steps: 400,
            template: "[P] {x} [ANSWER]".into(),
            trainable_params: 1,
            model_params: 10,
        };
        for (steps, early, want) in [
            (126, true, RunStatus::EarlyStopped),
            (400, true, RunStatus::Finished),
            (400, false, RunStatus::Finished),
        ] {
            let mut r = live_record("1-001-prompt-tuning");
            r.apply(&started);
            r.apply(&Event::Finished(Box::new(result(steps, early))));
            assert_eq!(r.status, want, "{steps} steps, stopped early {early}");
            assert!(r.status.is_complete());
            assert_eq!(r.result_steps(), Some(steps));
        }
        let labels: std::collections::HashSet<&str> = [
            RunStatus::Finished,
            RunStatus::EarlyStopped,
            RunStatus::Stopped,
            RunStatus::Interrupted,
            RunStatus::Failed,
            RunStatus::Cancelled,
        ]
        .map(RunStatus::label)
        .into();
        assert_eq!(labels.len(), 6);
        // The status is stored under the label it shows.
        let json = serde_json::to_string(&RunStatus::EarlyStopped).unwrap();
        assert_eq!(json, "\"early-stopped\"");
    }

    #[test]
    fn rewinding_a_multi_task_run_drops_each_tasks_dev_points_after_the_checkpoint() {
        let spec = MultiTaskSpec {
            run: live_record("x").spec,
            mix: Mix::Proportional,
            shared_tokens: 0,
        };
        let tasks = ["a", "b"].map(|n| TaskRef {
            name: n.into(),
            dir: PathBuf::from(n),
        });
        let mut r = RunRecord::new_multi("3-001-prompt-tuning".into(), "m", tasks.to_vec(), spec);
        r.spec.out = Some(PathBuf::from("runs/3-001-prompt-tuning/prompt"));
        assert_eq!(r.resume_refusal(), None);
        for step in [0, 3, 6] {
            for (task, d) in [("a", 0.1), ("b", 0.2)] {
                r.apply(&Event::TaskEval {
                    step,
                    task: task.into(),
                    dev_metric: d,
                });
            }
        }
        r.rewind_to(4, &[(0, 0.15), (3, 0.15)]);
        let m = r.multi.as_ref().unwrap();
        assert_eq!(
            m.task_evals,
            vec![vec![(0, 0.1), (3, 0.1)], vec![(0, 0.2), (3, 0.2)]]
        );
        assert!(m.result.is_none());
    }

    #[test]
    fn a_record_written_before_multi_task_runs_still_loads_as_a_single_task_run() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = live_record("1-001-prompt-tuning");
        r.status = RunStatus::Finished;
        let mut json = serde_json::to_value(&r).unwrap();
        json.as_object_mut().unwrap().remove("multi").unwrap();
        let folder = dir.path().join(&r.id);
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join(RECORD_FILE), json.to_string()).unwrap();
        // Nor did it have a name, a note, a colour, point times or a metric.
        for field in ["name", "note", "colour", "loss_secs", "eval_secs", "metric"] {
            json.as_object_mut().unwrap().remove(field).unwrap();
        }
        std::fs::write(folder.join(RECORD_FILE), json.to_string()).unwrap();
        let store = RunStore::open(dir.path()).unwrap();
        assert!(store.unreadable.is_empty(), "{:?}", store.unreadable);
        assert!(store.runs[0].multi.is_none());
        assert!(store.runs[0].covers_task("t"));
        assert_eq!(store.runs[0].given_name(), None);
        assert_eq!(store.runs[0].note, "");
    }

    #[test]
    fn a_multi_task_record_keeps_each_tasks_dev_curve_and_its_scores() {
        let spec = MultiTaskSpec {
            run: live_record("x").spec,
            mix: Mix::Uniform,
            shared_tokens: 2,
        };
        let tasks = ["a", "b"].map(|n| TaskRef {
            name: n.into(),
            dir: PathBuf::from(format!("tasks/{n}-folder")),
        });
        let mut r = RunRecord::new_multi("2-001-prompt-tuning".into(), "m", tasks.to_vec(), spec);
        assert_eq!(r.task, "a + b");
        r.set_task_names(&["alpha".into(), "b".into()]);
        assert_eq!(r.task, "alpha + b");
        assert!(r.covers_task("alpha") && r.covers_task("b") && !r.covers_task("a"));
        for (task, d) in [("alpha", 0.25), ("b", 0.5), ("nobody", 1.0)] {
            r.apply(&Event::TaskEval {
                step: 4,
                task: task.into(),
                dev_metric: d,
            });
        }
        let m = r.multi.as_ref().unwrap();
        assert_eq!(m.task_evals, vec![vec![(4, 0.25)], vec![(4, 0.5)]]);
        assert_eq!(r.multi_task_spec().unwrap().shared_tokens, 2);
        // A multi-task run has no single prompt folder, only one per task.
        r.spec.out = Some(PathBuf::from("runs/2-001-prompt-tuning/prompt"));
        r.status = RunStatus::Finished;
        assert_eq!(r.artifact_dir(), None);
        assert_eq!(
            r.task_artifact_dir("b"),
            Some(PathBuf::from("runs/2-001-prompt-tuning/prompt/b"))
        );
        assert_eq!(r.task_artifact_dir("nobody"), None);
        let back: RunRecord = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back.multi.unwrap().task_evals[1], vec![(4, 0.5)]);
    }

    #[test]
    fn imports_are_kept_beside_the_runs_and_a_bad_list_names_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = RunStore::open(dir.path()).unwrap();
        assert_eq!(store.imports().unwrap(), vec![]);
        let list = vec![
            ImportRecord {
                dir: PathBuf::from("/somewhere/adapter"),
                test: Some(0.75),
            },
            ImportRecord {
                dir: PathBuf::from("/elsewhere/prompt"),
                test: None,
            },
        ];
        store.save_imports(&list).unwrap();
        drop(store);
        // Not a run folder: the store does not list it as one it could not read.
        let again = RunStore::open(dir.path()).unwrap();
        assert!(again.unreadable.is_empty() && again.runs.is_empty());
        assert_eq!(again.imports().unwrap(), list);
        // A second workbench on the folder does not write the list.
        let second = RunStore::open(dir.path()).unwrap();
        assert!(second.save_imports(&[]).is_err());
        assert_eq!(again.imports().unwrap(), list);
        std::fs::write(dir.path().join(IMPORTS_FILE), "{not json").unwrap();
        let e = format!("{:#}", again.imports().unwrap_err());
        assert!(
            e.contains(IMPORTS_FILE) && e.contains("move it aside"),
            "{e}"
        );
    }

    #[test]
    fn a_second_store_on_a_held_folder_reads_but_never_writes_or_marks() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = RunStore::open(dir.path()).unwrap();
        assert_eq!(first.read_only(), None);
        first.add(live_record("1-001-prompt-tuning")).unwrap();

        let mut second = RunStore::open(dir.path()).unwrap();
        assert_eq!(
            second.read_only(),
            Some(&ReadOnly::HeldElsewhere {
                pid: Some(std::process::id())
            })
        );
        // The first one's live run is left as it is, in memory and on disk.
        assert_eq!(second.runs[0].status, RunStatus::Running);
        let e = format!("{:#}", second.add(live_record("2-001-x")).unwrap_err());
        assert!(
            e.contains("another workbench") && e.contains("--runs"),
            "{e}"
        );
        assert!(second.delete("1-001-prompt-tuning").is_err());
        assert!(second.save(0).is_err());
        drop(second);
        let on_disk = RunStore::open(dir.path()).unwrap();
        assert_eq!(on_disk.runs.len(), 1);
        assert_eq!(on_disk.runs[0].status, RunStatus::Running);
        drop(on_disk);

        // The lock goes with its owner: the next store owns the folder and marks the run.
        drop(first);
        let next = RunStore::open(dir.path()).unwrap();
        assert_eq!(next.read_only(), None);
        assert_eq!(next.runs[0].status, RunStatus::Interrupted);
    }

    #[test]
    fn an_unreadable_folder_is_listed_and_set_aside_under_a_free_name() {
        let dir = tempfile::tempdir().unwrap();
        for _ in 0..2 {
            let broken = dir.path().join("5-001-prompt-tuning");
            std::fs::create_dir_all(&broken).unwrap();
            std::fs::write(broken.join(RECORD_FILE), "{ not json").unwrap();
            let mut store = RunStore::open(dir.path()).unwrap();
            assert_eq!(store.unreadable.len(), 1, "{:?}", store.unreadable);
            let u = store.unreadable[0].clone();
            assert_eq!(u.folder, "5-001-prompt-tuning");
            assert!(u.error.contains(RECORD_FILE), "{}", u.error);
            store.set_aside_unreadable(&u.folder).unwrap();
            assert!(store.unreadable.is_empty());
            assert!(!broken.exists());
        }
        let removed = dir.path().join(REMOVED_DIR);
        assert_eq!(
            std::fs::read_to_string(removed.join("5-001-prompt-tuning").join(RECORD_FILE)).unwrap(),
            "{ not json"
        );
        assert!(removed
            .join("5-001-prompt-tuning.2")
            .join(RECORD_FILE)
            .is_file());
        // The removed folder is no run folder, and nothing outside the runs folder is reached.
        let store = RunStore::open(dir.path()).unwrap();
        assert!(store.unreadable.is_empty() && store.runs.is_empty());
        for bad in ["..", ".removed", "a/b", ""] {
            assert!(set_aside(dir.path(), OsStr::new(bad)).is_err(), "{bad}");
        }
    }
}
