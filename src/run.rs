//! The description of a run: what to train (`RunSpec`, `TrainConfig`), what the trainer says
//! while it trains (`Event`), what it can be told (`Command`) and what it returns (`RunResult`).
//!
//! These are plain data shared by the trainer (`train`), the stores that keep runs on disk
//! (`artifact`, `runs`) and the front ends. This module must stay at the bottom of that
//! stack: it imports only the method and task vocabularies, never `train`, `artifact`, `runs`
//! or a front end, so the modules above it never import each other through it.

use crate::methods::{MethodKind, MethodSettings};
use crate::task::Metric;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainConfig {
    pub steps: usize,
    /// None: the method's default.
    pub lr: Option<f64>,
    pub batch_size: usize,
    /// Micro-batches per update (the batch is split and gradients accumulated).
    pub grad_accum: usize,
    pub eval_every: usize,
    /// Stop after this many evaluations without a better dev score (0: never).
    pub patience: usize,
    /// Fraction of the steps spent warming the learning rate up linearly; it then decays
    /// linearly to zero.
    pub warmup: f64,
    pub seed: u64,
    /// Steps between checkpoints of a run with an output folder (None: at each evaluation).
    #[serde(default)]
    pub save_every: Option<usize>,
    /// Draw each batch's rows from rows of like length (Hugging Face's `group_by_length`): less
    /// padding, less random batches. Off by default, as in the Trainer.
    #[serde(default)]
    pub group_by_length: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            steps: 100,
            lr: None,
            batch_size: 8,
            grad_accum: 1,
            eval_every: 20,
            patience: 0,
            warmup: 0.1,
            seed: 0,
            save_every: None,
            group_by_length: false,
        }
    }
}

/// The largest rows per micro-batch and micro-batches per update. A batch beyond them cannot
/// fit this machine class's memory with any model we run (`--batch-size 1000000` asked for
/// 13.8 GB at once and aborted); the bound turns that into an error before training.
pub const MAX_BATCH: usize = 4096;
pub const MAX_GRAD_ACCUM: usize = 4096;

impl TrainConfig {
    /// Refuses a configuration that cannot train as asked, naming the setting (by its
    /// command-line flag, which the workbench's fields mirror) and the range.
    pub fn check(&self) -> anyhow::Result<()> {
        use anyhow::bail;
        if !(1..=MAX_BATCH).contains(&self.batch_size) {
            bail!(
                "--batch-size must be between 1 and {MAX_BATCH}, got {}",
                self.batch_size
            );
        }
        if !(1..=MAX_GRAD_ACCUM).contains(&self.grad_accum) {
            bail!(
                "--grad-accum must be between 1 and {MAX_GRAD_ACCUM}, got {}",
                self.grad_accum
            );
        }
        if self.eval_every == 0 {
            bail!("--eval-every must be at least 1");
        }
        if self.save_every == Some(0) {
            bail!("--save-every must be at least 1");
        }
        if let Some(lr) = self.lr {
            if !(lr.is_finite() && lr > 0.0) {
                bail!("--lr must be a positive number, got {lr}");
            }
        }
        if !(0.0..=1.0).contains(&self.warmup) {
            bail!(
                "the warm-up must be a fraction of the steps between 0 and 1, got {}",
                self.warmup
            );
        }
        Ok(())
    }
}

/// Learning rates that work with AdamW on these methods (the papers' values where they carry
/// over; Prompt Tuning's 0.3 was for Adafactor). Prefix Tuning's MLP has a wide last layer, so
/// AdamW's per-element steps add up: on SmolLM2 country -> continent 3e-2 diverged, 5e-3 did
/// not improve dev accuracy in 60 steps, 1e-3 reached 0.91. P-Tuning's encoder was unstable at
/// 3e-3 with some seeds (loss rising over 60 steps).
pub fn default_lr(kind: MethodKind) -> f64 {
    match kind {
        MethodKind::PromptTuning => 3e-2,
        MethodKind::PrefixTuning => 1e-3,
        MethodKind::PTuning => 1e-3,
        MethodKind::FineTuning => 5e-5,
        MethodKind::Autoprompt | MethodKind::ZeroShot => 0.0,
    }
}

/// Everything that defines a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSpec {
    pub method: MethodKind,
    pub settings: MethodSettings,
    /// None: the task's template, with the method's slots added.
    pub template: Option<String>,
    pub config: TrainConfig,
    /// Where to write the artifact (None: nowhere; its size is still measured).
    pub out: Option<PathBuf>,
}

impl RunSpec {
    /// Refuses a run that cannot train as asked: the config's ranges, and at least one step
    /// for every method that trains.
    pub fn check(&self) -> anyhow::Result<()> {
        use anyhow::bail;
        self.config.check()?;
        self.settings_check()?;
        if self.config.steps == 0 && self.method != MethodKind::ZeroShot {
            bail!("--steps must be at least 1 (zero-shot is the method that trains nothing)");
        }
        let s = &self.settings;
        match self.method {
            MethodKind::Autoprompt if !(1..=MAX_BATCH).contains(&s.candidate_rows) => {
                bail!(
                    "--candidate-rows must be between 1 and {MAX_BATCH} (the training rows AutoPrompt judges each step's candidates on), got {}",
                    s.candidate_rows
                )
            }
            MethodKind::Autoprompt if s.top_k == 0 => {
                bail!("--top-k must be at least 1 (the candidates AutoPrompt scores per step)")
            }
            MethodKind::Autoprompt if s.num_triggers == 0 && self.template.is_none() => {
                bail!("--triggers must be at least 1 (the trigger slots added to the task's template)")
            }
            MethodKind::PrefixTuning if s.prefix_len == 0 => {
                bail!("--prefix-len must be at least 1")
            }
            MethodKind::PromptTuning | MethodKind::PTuning
                if s.num_virtual_tokens == 0 && self.template.is_none() =>
            {
                bail!("--num-virtual-tokens must be at least 1 (the soft slots added to the task's template)")
            }
            _ => {}
        }
        Ok(())
    }
}

impl RunSpec {
    /// The optimiser's settings, for every method (AutoPrompt and zero-shot ignore them, but a
    /// nonsense value is still a mistake worth naming).
    fn settings_check(&self) -> anyhow::Result<()> {
        use anyhow::bail;
        let s = &self.settings;
        if !(s.max_grad_norm.is_finite() && s.max_grad_norm >= 0.0) {
            bail!(
                "--max-grad-norm must be a number of at least 0 (0 turns clipping off), got {}",
                s.max_grad_norm
            );
        }
        // Decoupled decay multiplies each weight by 1 - lr * decay per step: beyond 1 it would
        // flip weights' signs at the learning rates that work here (up to 0.3).
        if !(0.0..=1.0).contains(&s.weight_decay) {
            bail!(
                "--weight-decay must be between 0 and 1 (0: none, the default), got {}",
                s.weight_decay
            );
        }
        Ok(())
    }
}

/// How a multi-task run fills its batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Mix {
    /// Each task in proportion to its train split: every example once per epoch of all tasks.
    #[value(name = "proportional")]
    Proportional,
    /// Each row's task drawn uniformly, whatever the split sizes.
    #[value(name = "uniform")]
    Uniform,
}

/// Every task's prompt trained in one run (`train::multi_task`): the run's method, settings,
/// config and output folder (one prompt folder per task inside it), how batches mix the tasks,
/// and the shared part.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MultiTaskSpec {
    pub run: RunSpec,
    pub mix: Mix,
    /// Soft vectors (or prefix positions) every task uses in front of its own (0: none).
    pub shared_tokens: usize,
}

/// The largest shared part: like a prompt's own size, bounded so a typo is an error, not an
/// allocation the machine cannot make.
pub const MAX_SHARED_TOKENS: usize = 1024;

impl MultiTaskSpec {
    pub fn check(&self, tasks: usize) -> anyhow::Result<()> {
        self.run.check()?;
        crate::methods::task_prompts::check_multi_task(self.run.method)?;
        if tasks < 2 {
            anyhow::bail!("a multi-task run needs at least two --task folders, got {tasks}");
        }
        if self.shared_tokens > MAX_SHARED_TOKENS {
            anyhow::bail!(
                "--shared-tokens must be at most {MAX_SHARED_TOKENS}, got {}",
                self.shared_tokens
            );
        }
        Ok(())
    }
}

/// One task's scores in a multi-task run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskScore {
    pub task: String,
    pub metric: Metric,
    /// Dev and test at the run's best checkpoint (the best mean dev score over tasks).
    pub dev_metric: f64,
    pub test_metric: f64,
    /// This task's own best dev score during the run, and the step it came at.
    pub best_dev_metric: f64,
    pub best_dev_step: usize,
    pub template: String,
    pub artifact_bytes: usize,
    /// The task's prompt folder (`<out>/<task>`), when the run has an output folder.
    pub artifact: Option<String>,
}

/// What a multi-task run returns: the aggregate (means over tasks) and each task's scores.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MultiTaskResult {
    pub method: String,
    pub model: String,
    pub mix: Mix,
    pub shared_tokens: usize,
    pub steps: usize,
    pub train_loss_first: Option<f32>,
    pub train_loss_last: Option<f32>,
    /// The mean over tasks of each task's own metric.
    pub dev_metric: f64,
    pub test_metric: f64,
    pub best_step: usize,
    /// All tasks' prompts and the shared part.
    pub trainable_params: usize,
    pub model_params: usize,
    /// Bytes of all tasks' prompts together.
    pub artifact_bytes: usize,
    pub wall_seconds: f64,
    pub stopped_early: bool,
    pub tasks: Vec<TaskScore>,
}

#[derive(Debug, Clone)]
pub enum Event {
    Started {
        total_steps: usize,
        template: String,
        trainable_params: usize,
        model_params: usize,
    },
    Step {
        step: usize,
        loss: f32,
        lr: f64,
        examples_per_s: f64,
    },
    Eval {
        step: usize,
        dev_metric: f64,
        best: bool,
    },
    /// One task's dev score in a multi-task run (sent before the run's `Eval`, which carries
    /// the mean over tasks).
    TaskEval {
        step: usize,
        task: String,
        dev_metric: f64,
    },
    Paused,
    Resumed,
    Finished(Box<RunResult>),
    /// A multi-task run's end (instead of `Finished`).
    FinishedTasks(Box<MultiTaskResult>),
    Failed(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Pause,
    Resume,
    Stop,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    pub method: String,
    pub task: String,
    pub model: String,
    pub template: String,
    pub steps: usize,
    pub train_loss_first: Option<f32>,
    pub train_loss_last: Option<f32>,
    pub metric: Metric,
    /// NaN where unknown (a bare PEFT adapter's import): JSON writes it as `null`, read back.
    #[serde(deserialize_with = "nan_if_null")]
    pub dev_metric: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub test_metric: f64,
    pub best_step: usize,
    pub trainable_params: usize,
    pub model_params: usize,
    pub artifact_bytes: usize,
    pub wall_seconds: f64,
    pub artifact: Option<String>,
    /// The learned prompt as text, where it is text (AutoPrompt).
    pub readable: Option<String>,
    pub stopped_early: bool,
    /// AutoPrompt's found label tokens as text, by label (`--search-labels`); None where the
    /// task's verbalizer was used. Absent from records written before the search existed.
    #[serde(default)]
    pub label_tokens: Option<BTreeMap<String, Vec<String>>>,
}

impl RunResult {
    /// The found label tokens on one line, by label (`Africa: " Kenya", Asia: " Tokyo"`), as
    /// the CLI and the workbench show them; None where the run used the task's verbalizer.
    pub fn label_tokens_line(&self) -> Option<String> {
        let found = self.label_tokens.as_ref()?;
        let cells: Vec<String> = found
            .iter()
            .map(|(label, words)| {
                let words: Vec<String> = words.iter().map(|w| format!("{w:?}")).collect();
                format!("{label}: {}", words.join(" "))
            })
            .collect();
        Some(cells.join(", "))
    }
}

/// A score that JSON holds as `null` (serde_json writes NaN so) is NaN again: a prompt folder
/// saved from an imported bare PEFT adapter, whose scores are unknown, must load back.
fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

#[cfg(test)]
mod tests {
    use super::TrainConfig;

    #[test]
    fn unknown_scores_written_as_null_read_back_as_nan() {
        let r = super::RunResult {
            method: "prompt-tuning".into(),
            task: "t".into(),
            model: "m".into(),
            template: "[P]{x}[ANSWER]".into(),
            steps: 0,
            train_loss_first: None,
            train_loss_last: None,
            metric: crate::task::Metric::Accuracy,
            dev_metric: f64::NAN,
            test_metric: 0.5,
            best_step: 0,
            trainable_params: 0,
            model_params: 0,
            artifact_bytes: 0,
            wall_seconds: 0.0,
            artifact: None,
            readable: None,
            stopped_early: false,
            label_tokens: None,
        };
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains("\"dev_metric\":null"), "{json}");
        let back: super::RunResult = serde_json::from_str(&json).unwrap();
        assert!(back.dev_metric.is_nan());
        assert_eq!(back.test_metric, 0.5);
    }

    fn refused(change: impl FnOnce(&mut TrainConfig)) -> String {
        let mut c = TrainConfig::default();
        change(&mut c);
        format!("{:#}", c.check().unwrap_err())
    }

    #[test]
    fn the_default_config_is_valid() {
        TrainConfig::default().check().unwrap();
    }

    #[test]
    fn counts_out_of_range_are_refused_naming_the_flag() {
        assert!(refused(|c| c.batch_size = 0).contains("--batch-size"));
        assert!(refused(|c| c.batch_size = usize::MAX).contains("--batch-size"));
        assert!(refused(|c| c.grad_accum = 0).contains("--grad-accum"));
        assert!(refused(|c| c.grad_accum = 1 << 63).contains("--grad-accum"));
        assert!(refused(|c| c.eval_every = 0).contains("--eval-every"));
    }

    #[test]
    fn a_learning_rate_must_be_finite_and_positive() {
        for lr in [-1.0, 0.0, f64::NAN, f64::INFINITY] {
            assert!(refused(|c| c.lr = Some(lr)).contains("--lr"), "{lr}");
        }
        let c = TrainConfig {
            lr: Some(1e-3),
            ..TrainConfig::default()
        };
        c.check().unwrap();
    }

    #[test]
    fn the_warmup_is_a_fraction() {
        assert!(refused(|c| c.warmup = 1.5).contains("warm-up"));
        assert!(refused(|c| c.warmup = f64::NAN).contains("warm-up"));
    }
}
