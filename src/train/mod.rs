//! The training loop, evaluation, and the worker thread that runs them. The same engine drives
//! the command line and the GUI: commands come in and events go out over channels.

pub mod eval;
pub mod worker;

use crate::artifact;
use crate::methods::{self, Batch, MethodKind, MethodSettings, Row, StepContext};
use crate::model::Model;
use crate::task::{encode, Encoded, Split, Task, Template};
use anyhow::{bail, Context, Result};
use crossbeam_channel::{Receiver, Sender};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Instant;

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
        }
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
    Paused,
    Resumed,
    Finished(Box<RunResult>),
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
    pub metric: String,
    pub dev_metric: f64,
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
}

/// Encodes a split, naming the split and example on failure.
pub fn encode_split(
    task: &Task,
    template: &Template,
    split: Split,
    model: &Model,
) -> Result<Vec<Encoded>> {
    task.examples(split)
        .iter()
        .enumerate()
        .map(|(i, e)| {
            encode(template, e, task, &model.tokenizer)
                .with_context(|| format!("{} {} example {}", task.spec.name, split.name(), i + 1))
        })
        .collect()
}

/// The template a run uses, checked against the method's rules.
pub fn resolve_template(task: &Task, spec: &RunSpec) -> Result<Template> {
    let given = match &spec.template {
        Some(t) => Template::parse(t).map_err(|e| anyhow::anyhow!("--template: {e}"))?,
        None => task.template()?,
    };
    Ok(methods::template_for(spec.method, &spec.settings, &given))
}

fn lr_at(step: usize, total: usize, peak: f64, warmup: f64) -> f64 {
    let warm = ((total as f64) * warmup).round().max(1.0);
    let s = step as f64 + 1.0;
    if s <= warm {
        peak * s / warm
    } else {
        peak * ((total as f64 - s + 1.0) / (total as f64 - warm + 1.0)).max(0.0)
    }
}

/// Trains one method on one task and evaluates it; emits events as it goes. Returns the result
/// of the best dev checkpoint (also when stopped by command or early stopping).
pub fn train(
    model: &Model,
    task: &Task,
    spec: &RunSpec,
    events: &Sender<Event>,
    commands: &Receiver<Command>,
) -> Result<RunResult> {
    let started = Instant::now();
    let cfg = &spec.config;
    if cfg.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let template = resolve_template(task, spec)?;
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let labels: Vec<String> = task
        .labels()
        .iter()
        .map(|l| format!(" {}", task.answer_text(l)))
        .collect();
    template
        .check(&spec.method.slot_rules(), &task.spec.fields)
        .map_err(|e| anyhow::anyhow!("template {template}: {e}"))?;
    let frozen = &model.llm;
    let mut method = methods::build(
        spec.method,
        &spec.settings,
        frozen,
        &template,
        &labels,
        &model.tokenizer,
        &mut rng,
    )?;
    let train_set = encode_split(task, &template, Split::Train, model)?;
    let dev_set = encode_split(task, &template, Split::Dev, model)?;
    let test_set = encode_split(task, &template, Split::Test, model)?;
    let trainable = method.trainable_params();
    let model_params = frozen.parameter_count();
    let steps = if spec.method == MethodKind::ZeroShot {
        0
    } else {
        cfg.steps
    };
    let _ = events.send(Event::Started {
        total_steps: steps,
        template: template.to_string(),
        trainable_params: trainable,
        model_params,
    });
    let peak = cfg.lr.unwrap_or_else(|| default_lr(spec.method));
    let kind = task.spec.kind;
    let dev_score = |m: &dyn methods::Method| -> Result<f64> {
        let llm = m.model(frozen);
        Ok(eval::evaluate(llm, &m.prompt(llm)?, kind, &dev_set, &model.tokenizer)?.metric)
    };

    let mut best = dev_score(method.as_ref())?;
    let mut best_step = 0;
    let mut best_snapshot = method.snapshot()?;
    let _ = events.send(Event::Eval {
        step: 0,
        dev_metric: best,
        best: true,
    });
    let mut order: Vec<usize> = Vec::new();
    let mut first_loss = None;
    let mut recent: Vec<f32> = Vec::new();
    let mut evals_without_gain = 0;
    let mut stopped_early = false;
    let mut done = 0;
    let mut failure: Option<anyhow::Error> = None;
    'training: for step in 0..steps {
        // Commands are polled between steps; a pause blocks here until resumed or stopped.
        while let Ok(cmd) = commands.try_recv() {
            match cmd {
                Command::Stop => {
                    stopped_early = true;
                    break 'training;
                }
                Command::Pause => {
                    let _ = events.send(Event::Paused);
                    loop {
                        match commands.recv() {
                            Ok(Command::Resume) => break,
                            Ok(Command::Stop) | Err(_) => {
                                stopped_early = true;
                                break 'training;
                            }
                            Ok(Command::Pause) => {}
                        }
                    }
                    let _ = events.send(Event::Resumed);
                }
                Command::Resume => {}
            }
        }
        let t0 = Instant::now();
        let n = cfg.batch_size * cfg.grad_accum.max(1);
        let mut rows = Vec::with_capacity(n);
        while rows.len() < n {
            if order.is_empty() {
                order = (0..train_set.len()).collect();
                order.shuffle(&mut rng);
            }
            rows.push(Row::gold(&train_set[order.pop().unwrap()]));
        }
        let batch = Batch {
            rows,
            micro_batch: cfg.batch_size,
        };
        let lr = lr_at(step, steps, peak, cfg.warmup);
        let mut ctx = StepContext {
            llm: frozen,
            lr,
            rng: &mut rng,
        };
        let loss = match method.train_step(&mut ctx, &batch) {
            Ok(l) => l,
            Err(e) => {
                failure = Some(e.context(format!("training step {}", step + 1)));
                break;
            }
        };
        done = step + 1;
        first_loss.get_or_insert(loss);
        recent.push(loss);
        let _ = events.send(Event::Step {
            step: done,
            loss,
            lr,
            examples_per_s: n as f64 / t0.elapsed().as_secs_f64(),
        });
        if done % cfg.eval_every.max(1) == 0 || done == steps {
            let score = dev_score(method.as_ref())?;
            let improved = score > best;
            if improved {
                best = score;
                best_step = done;
                best_snapshot = method.snapshot()?;
                evals_without_gain = 0;
            } else {
                evals_without_gain += 1;
            }
            let _ = events.send(Event::Eval {
                step: done,
                dev_metric: score,
                best: improved,
            });
            if cfg.patience > 0 && evals_without_gain >= cfg.patience {
                stopped_early = true;
                break;
            }
        }
    }
    // Whatever ended the loop, the best dev checkpoint is what is evaluated and kept.
    method.restore(&best_snapshot)?;
    let llm = method.model(frozen);
    let prompt = method.prompt(llm)?;
    let test = eval::evaluate(llm, &prompt, kind, &test_set, &model.tokenizer)?;
    let readable = method.readable(&model.tokenizer);
    let last_n = recent.len().min(10);
    let last =
        (last_n > 0).then(|| recent[recent.len() - last_n..].iter().sum::<f32>() / last_n as f32);
    let mut result = RunResult {
        method: spec.method.id().to_string(),
        task: task.spec.name.clone(),
        model: model.spec.clone(),
        template: template.to_string(),
        steps: done,
        train_loss_first: first_loss,
        train_loss_last: last,
        metric: match kind {
            crate::task::TaskKind::Classification => "accuracy".into(),
            crate::task::TaskKind::Generation => "exact_match".into(),
        },
        dev_metric: best,
        test_metric: test.metric,
        best_step,
        trainable_params: trainable,
        model_params,
        artifact_bytes: 0,
        wall_seconds: 0.0,
        artifact: None,
        readable,
        stopped_early,
    };
    let tensors = method.export(frozen)?;
    result.wall_seconds = started.elapsed().as_secs_f64();
    let mut art = artifact::Artifact::new(model, task, &template, spec, &result, tensors);
    result.artifact_bytes = art.stored_bytes()?;
    result.artifact = spec.out.as_ref().map(|d| d.display().to_string());
    art.manifest.result = result.clone();
    if let Some(dir) = &spec.out {
        art.save(dir)?;
    }
    if let Some(e) = failure {
        let saved = match &spec.out {
            Some(d) => format!(
                "; the best checkpoint (step {best_step}) was saved to {}",
                d.display()
            ),
            None => String::new(),
        };
        return Err(e.context(format!("training stopped{saved}")));
    }
    Ok(result)
}
