//! Checkpoints: a run's whole state (a single-task run's or a multi-task run's), written into
//! `<out>/checkpoint/` every `save_every` steps
//! (by default at each evaluation) and when the run is stopped, so a run killed at any moment
//! continues with `train --resume <out>` and ends exactly as an uninterrupted run with the same
//! seed: the method's variables (P-Tuning's encoder and Prefix Tuning's MLP included), the
//! optimiser's moments and step, the random stream's position, the epoch order, the loss log,
//! the best checkpoint so far with its patience count, and the evaluation history.
//!
//! The folder is replaced atomically (`atomic::write_folder`): a kill during a save leaves the
//! previous checkpoint. It is removed when the run completes; a stopped or failed run keeps it.
//! Depends on the run description, methods and the loop's parts; never on a front end.

use super::best::BestCheckpoint;
use super::loss_log::LossLog;
use crate::methods::{Method, RunRng, Snapshot};
use crate::model::Model;
use crate::run::{MultiTaskSpec, RunSpec};
use anyhow::{bail, Context, Result};
use candle_core::Tensor;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The checkpoint's folder inside the run's output folder.
pub const DIR: &str = "checkpoint";
const STATE_FILE: &str = "state.json";
const TENSORS_FILE: &str = "state.safetensors";
const FORMAT: &str = "gradprompt-checkpoint/1";

/// Everything but the tensors, as `state.json` holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    format: String,
    /// The run being continued: its spec (out included), task folder and model. For a
    /// multi-task run, `multi` holds its spec and task folders (`spec` is its run part, and
    /// `task_dir` the first task's).
    pub spec: RunSpec,
    pub task_dir: PathBuf,
    pub model: String,
    pub fingerprint: String,
    /// Steps done.
    pub step: usize,
    /// The random stream: its seed and position (in 32-bit words; a string because JSON
    /// numbers cannot hold a u128).
    rng_seed: [u8; 32],
    rng_word_pos: String,
    /// The batch sampler (an epoch order, or a multi-task mix's), as its own serde form.
    sampler: serde_json::Value,
    losses: LossLog,
    best_score: f64,
    best_step: usize,
    evals_without_gain: usize,
    /// Every evaluation so far as (step, dev metric).
    pub evals: Vec<(usize, f64)>,
    /// Each method's non-tensor state, in order (one; or each task's then the shared part's).
    methods: Vec<MethodState>,
    #[serde(default)]
    pub multi: Option<MultiState>,
}

/// A method's state beside its tensors (`{k}.var.{i}`, `{k}.best.{i}`, `{k}.adam.m.{i}`,
/// `{k}.adam.v.{i}` for method `k`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct MethodState {
    /// AutoPrompt's state is its trigger ids, now and at the best checkpoint.
    triggers: Option<Vec<u32>>,
    best_triggers: Option<Vec<u32>>,
    /// AdamW's step count.
    adam_step: Option<usize>,
}

/// What a multi-task run keeps besides the single-task loop's state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MultiState {
    pub spec: MultiTaskSpec,
    pub task_dirs: Vec<PathBuf>,
    /// Each task's dev score at the best checkpoint, and each task's own best (score, step).
    pub best_dev: Vec<f64>,
    pub task_best: Vec<(f64, usize)>,
}

/// The loop's state after a step: what a checkpoint saves besides the methods. `S` is the
/// batch sampler (`EpochSampler`, or a multi-task run's `MixSampler`).
pub struct Progress<S> {
    pub steps_done: usize,
    pub rng: RunRng,
    pub sampler: S,
    pub losses: LossLog,
    /// The best dev score so far, its step, every method's state then, and the patience count.
    pub best: BestCheckpoint<Vec<Snapshot>>,
    /// Every evaluation so far as (step, dev metric).
    pub evals: Vec<(usize, f64)>,
}

/// What a checkpoint records about the run itself.
pub struct Run<'a> {
    pub spec: &'a RunSpec,
    pub task_dir: &'a Path,
    pub model: &'a Model,
    pub multi: Option<MultiState>,
}

/// Where a checkpoint lives for a run writing to `out`.
pub fn dir_of(out: &Path) -> PathBuf {
    out.join(DIR)
}

/// Whether the run writing to `out` left a checkpoint to resume from.
pub fn exists(out: &Path) -> bool {
    dir_of(out).join(STATE_FILE).is_file()
}

/// Writes the checkpoint of a run writing to `out` (replacing the previous one atomically).
pub fn save<S: Serialize>(
    out: &Path,
    run: Run,
    p: &Progress<S>,
    methods: &mut [&mut dyn Method],
) -> Result<()> {
    if p.best.snapshot.len() != methods.len() {
        bail!("internal error: the best checkpoint does not match the run's methods");
    }
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    let mut states = Vec::with_capacity(methods.len());
    for (k, method) in methods.iter_mut().enumerate() {
        let triggers = put(&method.snapshot()?, &format!("{k}.var"), &mut tensors);
        let best_triggers = put(&p.best.snapshot[k], &format!("{k}.best"), &mut tensors);
        let mut adam_step = None;
        if let Some(opt) = method.optimizer() {
            let (step, moments) = opt.state();
            adam_step = Some(step);
            for (i, (m, v)) in moments.into_iter().enumerate() {
                let n = m.len();
                let dev = &candle_core::Device::Cpu;
                tensors.push((format!("{k}.adam.m.{i}"), Tensor::from_vec(m, n, dev)?));
                tensors.push((format!("{k}.adam.v.{i}"), Tensor::from_vec(v, n, dev)?));
            }
        }
        states.push(MethodState {
            triggers,
            best_triggers,
            adam_step,
        });
    }
    let state = State {
        format: FORMAT.into(),
        spec: run.spec.clone(),
        task_dir: run.task_dir.to_path_buf(),
        model: run.model.spec.clone(),
        fingerprint: run.model.fingerprint.clone(),
        step: p.steps_done,
        rng_seed: p.rng.get_seed(),
        rng_word_pos: p.rng.get_word_pos().to_string(),
        sampler: serde_json::to_value(&p.sampler)?,
        losses: p.losses.clone(),
        best_score: p.best.score,
        best_step: p.best.step,
        evals_without_gain: p.best.evals_without_gain(),
        evals: p.evals.clone(),
        methods: states,
        multi: run.multi,
    };
    let json = serde_json::to_vec_pretty(&state)?;
    let bin = safetensors::serialize(tensors.iter().map(|(n, t)| (n.as_str(), t)), None)?;
    crate::atomic::write_folder(
        &dir_of(out),
        &[
            (STATE_FILE, json.as_slice()),
            (TENSORS_FILE, bin.as_slice()),
        ],
    )
}

/// Adds a snapshot's tensors as `{prefix}.{i}`; returns its trigger ids when it is those.
fn put(s: &Snapshot, prefix: &str, out: &mut Vec<(String, Tensor)>) -> Option<Vec<u32>> {
    match s {
        Snapshot::Vars(ts) => {
            for (i, t) in ts.iter().enumerate() {
                out.push((format!("{prefix}.{i}"), t.clone()));
            }
            None
        }
        Snapshot::Triggers(ids) => Some(ids.clone()),
    }
}

/// A checkpoint read back, ready to put into a freshly prepared run.
pub struct Saved {
    pub state: State,
    tensors: HashMap<String, Tensor>,
}

/// Reads the checkpoint of the run that writes to `out`; errors name the file and the fix.
pub fn load(out: &Path) -> Result<Saved> {
    let dir = dir_of(out);
    let state_path = dir.join(STATE_FILE);
    if !state_path.exists() {
        bail!(
            "{}: no checkpoint to resume from (a run writes one into <out>/{DIR}/ at each evaluation, or every --save-every steps)",
            out.display()
        );
    }
    let text = std::fs::read_to_string(&state_path)
        .with_context(|| format!("cannot read {}", state_path.display()))?;
    let state: State = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a gradprompt checkpoint", state_path.display()))?;
    if state.format != FORMAT {
        bail!(
            "{}: checkpoint format {:?}, this gradprompt reads {FORMAT:?}",
            state_path.display(),
            state.format
        );
    }
    let tensors_path = dir.join(TENSORS_FILE);
    let tensors = candle_core::safetensors::load(&tensors_path, &candle_core::Device::Cpu)
        .with_context(|| format!("cannot read {}", tensors_path.display()))?;
    Ok(Saved { state, tensors })
}

impl Saved {
    /// Checks the checkpoint belongs to this model (the prompt only works with it).
    pub fn check_model(&self, model: &Model) -> Result<()> {
        if self.state.fingerprint != model.fingerprint {
            bail!(
                "the checkpoint was written with model {} (fingerprint {}); {} has fingerprint {}: resume with the same model",
                self.state.model,
                self.state.fingerprint,
                model.spec,
                model.fingerprint
            );
        }
        Ok(())
    }

    fn tensor(&self, name: &str) -> Result<&Tensor> {
        self.tensors
            .get(name)
            .with_context(|| format!("the checkpoint has no tensor {name}"))
    }

    fn snapshot(&self, prefix: &str, triggers: &Option<Vec<u32>>, n: usize) -> Result<Snapshot> {
        if let Some(t) = triggers {
            return Ok(Snapshot::Triggers(t.clone()));
        }
        (0..n)
            .map(|i| Ok(self.tensor(&format!("{prefix}.{i}"))?.clone()))
            .collect::<Result<_>>()
            .map(Snapshot::Vars)
    }

    /// Puts the saved state into methods built afresh for the same run (in the order they
    /// were saved), and returns the loop state to continue from.
    pub fn restore<S: serde::de::DeserializeOwned>(
        &self,
        methods: &mut [&mut dyn Method],
    ) -> Result<Progress<S>> {
        let s = &self.state;
        if s.methods.len() != methods.len() {
            bail!(
                "the checkpoint holds {} methods' states, the run has {}",
                s.methods.len(),
                methods.len()
            );
        }
        let mut best = Vec::with_capacity(methods.len());
        for (k, (method, ms)) in methods.iter_mut().zip(&s.methods).enumerate() {
            let n = method.vars().len();
            method.restore(&self.snapshot(&format!("{k}.var"), &ms.triggers, n)?)?;
            best.push(self.snapshot(&format!("{k}.best"), &ms.best_triggers, n)?);
            if let (Some(opt), Some(step)) = (method.optimizer(), ms.adam_step) {
                let moments = (0..n)
                    .map(|i| {
                        let m = self.tensor(&format!("{k}.adam.m.{i}"))?.to_vec1()?;
                        let v = self.tensor(&format!("{k}.adam.v.{i}"))?.to_vec1()?;
                        Ok((m, v))
                    })
                    .collect::<Result<Vec<_>>>()?;
                opt.set_state(step, moments)?;
            }
        }
        let mut rng = RunRng::from_seed(s.rng_seed);
        let pos: u128 = s
            .rng_word_pos
            .parse()
            .context("the checkpoint's random stream position is not a number")?;
        rng.set_word_pos(pos);
        Ok(Progress {
            steps_done: s.step,
            rng,
            sampler: serde_json::from_value(s.sampler.clone())
                .context("the checkpoint's batch order does not fit this run")?,
            losses: s.losses.clone(),
            best: BestCheckpoint::resumed(
                s.best_score,
                s.best_step,
                best,
                s.spec.config.patience,
                s.evals_without_gain,
            ),
            evals: s.evals.clone(),
        })
    }
}

/// Removes a finished run's checkpoint (a completed run has nothing to resume).
pub fn remove(out: &Path) -> Result<()> {
    let dir = dir_of(out);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    Ok(())
}
