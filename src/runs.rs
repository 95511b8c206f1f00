//! The on-disk record of every run: one folder per run under the runs folder, holding
//! `run.json` (spec, task, model, status, loss curve, evaluations, result) and, for methods
//! whose prompt is small, the trained prompt in `prompt/`. The record is rewritten as events
//! arrive, so closing or crashing the app loses at most the last second of a curve; a run that
//! was in progress when the app went away loads as interrupted.

use crate::methods::MethodKind;
use crate::run::{Event, RunResult, RunSpec};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

pub const RECORD_FILE: &str = "run.json";
pub const PROMPT_DIR: &str = "prompt";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunStatus {
    /// Waiting for the model or for the run before it.
    Queued,
    Running,
    Paused,
    Finished,
    Failed,
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
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
        }
    }

    pub fn is_live(self) -> bool {
        matches!(
            self,
            RunStatus::Queued | RunStatus::Running | RunStatus::Paused
        )
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
        }
    }

    pub fn method(&self) -> MethodKind {
        self.spec.method
    }

    /// The last step reported.
    pub fn step(&self) -> usize {
        self.losses.last().map(|l| l.0).unwrap_or(0)
    }

    /// Where the trained prompt was written, if it was.
    pub fn artifact_dir(&self) -> Option<&Path> {
        match self.status {
            RunStatus::Finished => self.spec.out.as_deref(),
            _ => None,
        }
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
                self.status = RunStatus::Finished;
                self.result = Some((**r).clone());
            }
            Event::Failed(e) => {
                self.status = RunStatus::Failed;
                self.error = Some(e.clone());
            }
            // The workbench does not start multi-task runs (yet): these never reach a record.
            Event::TaskEval { .. } | Event::FinishedTasks(_) => {}
        }
    }
}

/// The runs folder and the records in it, oldest first.
pub struct RunStore {
    dir: PathBuf,
    pub runs: Vec<RunRecord>,
    /// Records that could not be read, with the reason (shown to the user, never fatal).
    pub unreadable: Vec<String>,
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

/// Writes one record into its folder under the runs folder `dir` (to a temporary file first,
/// so a crash mid-write keeps the old one).
pub fn write_record(dir: &Path, r: &RunRecord) -> Result<()> {
    let folder = dir.join(&r.id);
    std::fs::create_dir_all(&folder)
        .with_context(|| format!("{}: cannot create", folder.display()))?;
    let tmp = folder.join(format!("{RECORD_FILE}.tmp"));
    let path = folder.join(RECORD_FILE);
    std::fs::write(&tmp, serde_json::to_string_pretty(r)?)
        .with_context(|| format!("{}: cannot write", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("{}: cannot write", path.display()))?;
    Ok(())
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

    /// Opens (creating it if needed) a runs folder and loads every record in it. Records left
    /// live by a previous session become interrupted, and are saved so.
    pub fn open(dir: &Path) -> Result<RunStore> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create the runs folder", dir.display()))?;
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
                Err(e) => unreadable.push(format!("{}: {e}", path.display())),
            }
        }
        runs.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
        let mut store = RunStore {
            dir: dir.to_path_buf(),
            runs,
            unreadable,
            taken,
            counter: 0,
        };
        for i in 0..store.runs.len() {
            if store.runs[i].status.is_live() {
                store.runs[i].status = RunStatus::Interrupted;
                // Not fatal: the record stays loaded (as interrupted) and the user is told.
                if let Err(e) = store.save(i) {
                    let path = store.dir.join(&store.runs[i].id).join(RECORD_FILE);
                    store.unreadable.push(format!(
                        "{}: cannot mark as interrupted: {e:#}",
                        path.display()
                    ));
                }
            }
        }
        Ok(store)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
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

    /// Adds a record and writes it; returns its index.
    pub fn add(&mut self, record: RunRecord) -> Result<usize> {
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

    /// Writes one record (to a temporary file first, so a crash mid-write keeps the old one).
    pub fn save(&mut self, i: usize) -> Result<()> {
        write_record(&self.dir, &self.runs[i])?;
        Ok(())
    }

    /// Removes a run and its folder.
    pub fn delete(&mut self, id: &str) -> Result<()> {
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

    /// The latest finished run of `method` on `task` with `model`.
    pub fn latest_finished(
        &self,
        task: &str,
        model: &str,
        method: MethodKind,
    ) -> Option<&RunRecord> {
        self.runs.iter().rev().find(|r| {
            r.task == task
                && r.model == model
                && r.spec.method == method
                && r.status == RunStatus::Finished
        })
    }
}
