//! Many tasks, one frozen model: the training loop of a multi-task run. Every batch mixes rows
//! of the chosen tasks (`mix.rs`), each row with its own task's prompt, and one backward pass
//! updates all prompts (`methods::task_prompts`). Each task keeps its own template, fields,
//! verbalizer and kind, and is evaluated on its own metric; the mean over tasks picks the best
//! checkpoint, and each task's own best is recorded too. The output folder gets one prompt
//! folder per task (`<out>/<task>/`), each usable alone exactly like a single-task prompt, and
//! `multi-task.json` with the whole run's result.
//!
//! Reuses the single-task loop's parts (commands, schedule, best, loss log, checkpoint: a killed
//! multi-task run resumes exactly, as a single-task one does); depends on the same modules as
//! `train` and never on `runs` or a front end.

use super::best::BestCheckpoint;
use super::checkpoint::{self, MultiState, Progress};
use super::commands::{self, Flow};
use super::eval;
use super::is_eval_step;
use super::loss_log::LossLog;
use super::mix::MixSampler;
use super::prepare::{prepare_task, PreparedTask};
use super::schedule;
use crate::artifact::Artifact;
use crate::methods::task_prompts::TaskPrompts;
use crate::methods::RunRng;
use crate::methods::{self, Batch, MethodKind, Row, StepContext};
use crate::model::Model;
use crate::run::{
    default_lr, Command, Event, MultiTaskResult, MultiTaskSpec, RunResult, RunSpec, TaskScore,
};
use crate::task::{Segment, Task, Template};
use anyhow::{bail, Context, Result};
use crossbeam_channel::{Receiver, Sender};
use rand::SeedableRng;
use std::path::PathBuf;
use std::time::Instant;

/// The file beside the per-task prompt folders that holds the whole run's result.
pub const RESULT_FILE: &str = "multi-task.json";

/// Trains one prompt per task in mixed batches and evaluates each task; emits events as it
/// goes. Returns the result at the best mean dev score (also when stopped).
pub fn train_tasks(
    model: &Model,
    tasks: &[Task],
    spec: &MultiTaskSpec,
    events: &Sender<Event>,
    commands: &Receiver<Command>,
) -> Result<MultiTaskResult> {
    run_tasks(model, tasks, spec, None, events, commands)
}

/// Continues a multi-task run from its checkpoint (`checkpoint::load`), on the same tasks in
/// the same order.
pub fn resume_tasks(
    model: &Model,
    tasks: &[Task],
    saved: &checkpoint::Saved,
    events: &Sender<Event>,
    commands: &Receiver<Command>,
) -> Result<MultiTaskResult> {
    saved.check_model(model)?;
    let multi = saved
        .state
        .multi
        .as_ref()
        .context("the checkpoint is a single-task run's: resume it as one")?;
    let mut spec = multi.spec.clone();
    spec.run.out = saved.state.spec.out.clone();
    run_tasks(model, tasks, &spec, Some(saved), events, commands)
}

fn run_tasks(
    model: &Model,
    tasks: &[Task],
    spec: &MultiTaskSpec,
    saved: Option<&checkpoint::Saved>,
    events: &Sender<Event>,
    commands: &Receiver<Command>,
) -> Result<MultiTaskResult> {
    let started = Instant::now();
    spec.check(tasks.len())?;
    check_names(tasks)?;
    let run = &spec.run;
    let cfg = &run.config;
    let mut rng = RunRng::seed_from_u64(cfg.seed);
    let mut prepared = Vec::with_capacity(tasks.len());
    for task in tasks {
        let p = prepare_task(model, task, run, spec.shared_tokens, &mut rng)
            .with_context(|| format!("task {:?}", task.spec.name))?;
        prepared.push(p);
    }
    let shared = build_shared(model, spec, &mut rng)?;
    let (sets, methods): (Vec<Sets>, Vec<_>) = prepared
        .into_iter()
        .map(|p: PreparedTask| {
            (
                Sets {
                    template: p.template,
                    train: p.train_set,
                    dev: p.dev_set,
                    test: p.test_set,
                },
                p.method,
            )
        })
        .unzip();
    let mut prompts = TaskPrompts {
        tasks: methods,
        shared,
    };
    let steps = cfg.steps;
    let peak_lr = cfg.lr.unwrap_or_else(|| default_lr(run.method));
    let templates: Vec<String> = tasks
        .iter()
        .zip(&sets)
        .map(|(t, s)| format!("{}: {}", t.spec.name, s.template))
        .collect();
    let _ = events.send(Event::Started {
        total_steps: steps,
        template: templates.join("  |  "),
        trainable_params: prompts.trainable_params(),
        model_params: model.llm.parameter_count(),
    });

    let sizes: Vec<usize> = sets.iter().map(|s| s.train.len()).collect();
    let (mut p, mut best_dev, mut task_best) = match saved {
        Some(saved) => {
            let multi = saved
                .state
                .multi
                .as_ref()
                .context("the checkpoint is a single-task run's")?;
            let p = saved.restore::<MixSampler>(&mut prompts.methods_mut())?;
            (p, multi.best_dev.clone(), multi.task_best.clone())
        }
        None => {
            let dev = evaluate_all(model, tasks, &prompts, &sets, |s| &s.dev)?;
            send_evals(events, tasks, 0, &dev);
            let score = mean(&dev);
            let _ = events.send(Event::Eval {
                step: 0,
                dev_metric: score,
                best: true,
            });
            let p = Progress {
                steps_done: 0,
                rng,
                sampler: MixSampler::new(spec.mix, &sizes),
                losses: LossLog::default(),
                best: BestCheckpoint::new(score, prompts.snapshot()?, cfg.patience),
                evals: vec![(0, score)],
            };
            let task_best = dev.iter().map(|&d| (d, 0)).collect();
            (p, dev, task_best)
        }
    };
    let task_dirs: Vec<PathBuf> = tasks.iter().map(|t| t.dir.clone()).collect();
    let save = |p: &Progress<MixSampler>,
                prompts: &mut TaskPrompts,
                best_dev: &[f64],
                task_best: &[(f64, usize)]|
     -> Result<()> {
        let Some(out) = &run.out else {
            return Ok(());
        };
        let state = checkpoint::Run {
            spec: run,
            task_dir: &task_dirs[0],
            model,
            multi: Some(MultiState {
                spec: spec.clone(),
                task_dirs: task_dirs.clone(),
                best_dev: best_dev.to_vec(),
                task_best: task_best.to_vec(),
            }),
        };
        checkpoint::save(out, state, p, &mut prompts.methods_mut()).context("saving the checkpoint")
    };
    let save_every = cfg.save_every.unwrap_or(cfg.eval_every).max(1);
    let mut stopped_early = false;
    let mut interrupted = false;
    let mut failure = None;
    for step in p.steps_done..steps {
        if commands::poll(commands, events) == Flow::Stop {
            stopped_early = true;
            interrupted = true;
            // The state right now, so a resumed run repeats no step.
            failure = save(&p, &mut prompts, &best_dev, &task_best).err();
            break;
        }
        let t0 = Instant::now();
        let rows: Vec<Row> = p
            .sampler
            .next(cfg.batch_size * cfg.grad_accum, &mut p.rng)
            .into_iter()
            .map(|(k, i)| Row::gold(&sets[k].train[i]).with_prompt(k))
            .collect();
        let batch = Batch {
            rows,
            micro_batch: cfg.batch_size,
        };
        let lr = schedule::lr_at(step, steps, peak_lr, cfg.warmup);
        let mut ctx = StepContext {
            llm: &model.llm,
            lr,
            rng: &mut p.rng,
        };
        let loss = match prompts.train_step(&mut ctx, &batch) {
            Ok(l) => l,
            Err(e) => {
                failure = Some(e.context(format!("training step {}", step + 1)));
                break;
            }
        };
        p.steps_done = step + 1;
        p.losses.push(loss);
        let _ = events.send(Event::Step {
            step: p.steps_done,
            loss,
            lr,
            examples_per_s: batch.rows.len() as f64 / t0.elapsed().as_secs_f64(),
        });
        if is_eval_step(p.steps_done, steps, cfg.eval_every) {
            let dev = evaluate_all(model, tasks, &prompts, &sets, |s| &s.dev)?;
            for (b, &d) in task_best.iter_mut().zip(&dev) {
                if d > b.0 {
                    *b = (d, p.steps_done);
                }
            }
            send_evals(events, tasks, p.steps_done, &dev);
            let score = mean(&dev);
            p.evals.push((p.steps_done, score));
            let verdict = p.best.record(p.steps_done, score, || prompts.snapshot())?;
            if verdict.improved {
                best_dev = dev;
            }
            let _ = events.send(Event::Eval {
                step: p.steps_done,
                dev_metric: score,
                best: verdict.improved,
            });
            if verdict.stop {
                stopped_early = true;
                break;
            }
        }
        // A completed run has nothing to resume: no checkpoint after the last step.
        if p.steps_done.is_multiple_of(save_every) && p.steps_done < steps {
            if let Err(e) = save(&p, &mut prompts, &best_dev, &task_best) {
                failure = Some(e);
                break;
            }
        }
    }
    let steps_done = p.steps_done;
    let best = &p.best;
    let losses = &p.losses;
    prompts.restore(&best.snapshot)?;
    let dev = best_dev;
    // Scored once per task: the metric is the predictions' accuracy, and they are kept beside
    // each task's prompt (`predictions.jsonl`) for error analysis.
    let all = prompts.prompts(&model.llm)?;
    let test_predictions = tasks
        .iter()
        .zip(&sets)
        .zip(&all)
        .map(|((task, s), p)| {
            eval::predict(&model.llm, p, task.spec.kind, &s.test, &model.tokenizer)
        })
        .collect::<Result<Vec<_>>>()?;
    let test: Vec<f64> = test_predictions.iter().map(|p| p.accuracy()).collect();
    let mut result = MultiTaskResult {
        method: run.method.id().to_string(),
        model: model.spec.clone(),
        mix: spec.mix,
        shared_tokens: spec.shared_tokens,
        steps: steps_done,
        train_loss_first: losses.first(),
        train_loss_last: losses.last_mean(),
        dev_metric: mean(&dev),
        test_metric: mean(&test),
        best_step: best.step,
        trainable_params: prompts.trainable_params(),
        model_params: model.llm.parameter_count(),
        artifact_bytes: 0,
        wall_seconds: 0.0,
        stopped_early,
        tasks: Vec::with_capacity(tasks.len()),
    };
    let mut artifacts = Vec::with_capacity(tasks.len());
    for (k, task) in tasks.iter().enumerate() {
        let dir = run.out.as_ref().map(|d| d.join(&task.spec.name));
        let task_spec = task_run_spec(run, spec.shared_tokens, &sets[k].template, dir.clone());
        let own = RunResult {
            method: result.method.clone(),
            task: task.spec.name.clone(),
            model: result.model.clone(),
            template: sets[k].template.to_string(),
            steps: steps_done,
            train_loss_first: result.train_loss_first,
            train_loss_last: result.train_loss_last,
            metric: task.spec.metric,
            dev_metric: dev[k],
            test_metric: test[k],
            best_step: best.step,
            trainable_params: prompts.tasks[k].trainable_params()
                + prompts.shared.as_ref().map_or(0, |s| s.trainable_params()),
            model_params: result.model_params,
            artifact_bytes: 0,
            wall_seconds: started.elapsed().as_secs_f64(),
            artifact: dir.as_ref().map(|d| d.display().to_string()),
            readable: None,
            stopped_early,
            label_tokens: None,
        };
        let tensors = prompts.export(&model.llm, k)?;
        let mut art = Artifact::new(model, task, &sets[k].template, &task_spec, &own, tensors);
        let bytes = art.stored_bytes()?;
        art.manifest.result.artifact_bytes = bytes;
        result.artifact_bytes += bytes;
        result.tasks.push(TaskScore {
            task: task.spec.name.clone(),
            metric: task.spec.metric,
            dev_metric: dev[k],
            test_metric: test[k],
            best_dev_metric: task_best[k].0,
            best_dev_step: task_best[k].1,
            template: sets[k].template.to_string(),
            artifact_bytes: bytes,
            artifact: own.artifact.clone(),
        });
        artifacts.push((dir, art));
    }
    result.wall_seconds = started.elapsed().as_secs_f64();
    if let Some(out) = &run.out {
        for ((dir, art), predictions) in artifacts.iter().zip(&test_predictions) {
            if let Some(dir) = dir {
                art.save(dir)?;
                predictions.save(dir)?;
            }
        }
        let json = serde_json::to_vec_pretty(&result)?;
        crate::atomic::write_file(&out.join(RESULT_FILE), &json)?;
        if failure.is_none() && !interrupted {
            checkpoint::remove(out)?;
        }
    }
    if let Some(e) = failure {
        let saved = match &run.out {
            Some(d) => format!(
                "; the best checkpoint (step {}) was saved to {}",
                best.step,
                d.display()
            ),
            None => String::new(),
        };
        return Err(e.context(format!("training stopped{saved}")));
    }
    Ok(result)
}

/// A task's template and encoded splits.
struct Sets {
    template: Template,
    train: Vec<crate::task::Encoded>,
    dev: Vec<crate::task::Encoded>,
    test: Vec<crate::task::Encoded>,
}

/// Task names become folder names under `--out` and name each row's task in `predict`: they
/// must be distinct and usable as one path component.
fn check_names(tasks: &[Task]) -> Result<()> {
    for (i, t) in tasks.iter().enumerate() {
        let name = &t.spec.name;
        let plain = !name.is_empty()
            && name != "."
            && name != ".."
            && !name.contains(['/', '\\', '\0'])
            && !name.starts_with('.');
        if !plain {
            bail!(
                "{}: the task name {name:?} cannot name a folder; give it a plain name in task.json",
                t.dir.join("task.json").display()
            );
        }
        if let Some(other) = tasks[..i].iter().find(|o| &o.spec.name == name) {
            bail!(
                "two tasks are named {name:?} ({} and {}); each task of a run needs its own name",
                other.dir.display(),
                t.dir.display()
            );
        }
    }
    Ok(())
}

/// The shared part: a method of the run's kind with `shared_tokens` vectors or prefix
/// positions, initialised like a task's own from no particular task's labels.
fn build_shared(
    model: &Model,
    spec: &MultiTaskSpec,
    rng: &mut RunRng,
) -> Result<Option<Box<dyn methods::Method>>> {
    let n = spec.shared_tokens;
    if n == 0 {
        return Ok(None);
    }
    let mut settings = spec.run.settings.clone();
    settings.prefix_len = n;
    let template = Template {
        segments: vec![Segment::Soft(n)],
    };
    Ok(Some(methods::build(
        spec.run.method,
        &settings,
        &model.llm,
        &template,
        &[],
        &model.tokenizer,
        rng,
    )?))
}

/// The run description a task's own prompt folder records: its encoded template (with the
/// shared slots), its output folder, and for prefix tuning the folded prefix length, so the
/// folder loads and checks like a single-task prompt.
fn task_run_spec(
    run: &RunSpec,
    shared: usize,
    template: &Template,
    out: Option<PathBuf>,
) -> RunSpec {
    let mut spec = run.clone();
    spec.template = Some(template.to_string());
    spec.out = out;
    if run.method == MethodKind::PrefixTuning {
        spec.settings.prefix_len += shared;
    }
    spec
}

/// Each task's metric on one of its splits, with its own prompt.
fn evaluate_all(
    model: &Model,
    tasks: &[Task],
    prompts: &TaskPrompts,
    sets: &[Sets],
    split: impl Fn(&Sets) -> &Vec<crate::task::Encoded>,
) -> Result<Vec<f64>> {
    let all = prompts.prompts(&model.llm)?;
    tasks
        .iter()
        .zip(sets)
        .zip(&all)
        .map(|((task, s), p)| {
            Ok(eval::evaluate(&model.llm, p, task.spec.kind, split(s), &model.tokenizer)?.metric)
        })
        .collect()
}

fn send_evals(events: &Sender<Event>, tasks: &[Task], step: usize, dev: &[f64]) {
    for (t, &d) in tasks.iter().zip(dev) {
        let _ = events.send(Event::TaskEval {
            step,
            task: t.spec.name.clone(),
            dev_metric: d,
        });
    }
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len().max(1) as f64
}
