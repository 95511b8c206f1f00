//! The training loop, evaluation, and the worker thread that runs them. The same engine drives
//! the command line and the GUI: commands come in and events go out over channels.
//!
//! `train` reads as its parts, one file each: `prepare` (validation, template, method, encoded
//! splits), `sampler` (batches by epoch), `commands` (pause, resume, stop between steps),
//! `schedule` (the learning rate), `best` (best checkpoint and patience), `loss_log`,
//! `checkpoint` (the whole state, saved as it goes, to resume a killed run), and the
//! final evaluation below, which keeps the best checkpoint as an artifact. `multi_task` is the
//! loop of a run that trains several tasks' prompts in mixed batches (`mix`), from the same parts.
//!
//! Depends on the run description (`run`), methods, model, task and the artifact format it
//! writes; never on `runs` or a front end.

pub mod best;
pub mod checkpoint;
pub mod commands;
pub mod eval;
pub mod loss_log;
pub mod mix;
pub mod multi_task;
pub mod prepare;
pub mod sampler;
pub mod schedule;
pub mod worker;

pub use prepare::{encode_split, prepare, resolve_template, Prepared};

use crate::artifact::Artifact;
use crate::methods::RunRng;
use crate::methods::{Batch, Method, Row, StepContext};
use crate::model::Model;
use crate::run::{Command, Event, RunResult, RunSpec, TrainConfig};
use crate::task::{Encoded, Task, Template};
use anyhow::{Context, Result};
use best::BestCheckpoint;
use checkpoint::Progress;
use commands::Flow;
use crossbeam_channel::{Receiver, Sender};
use loss_log::LossLog;
use sampler::EpochSampler;
use std::time::Instant;

/// Trains one method on one task and evaluates it; emits events as it goes. Returns the result
/// of the best dev checkpoint (also when stopped by command or early stopping).
pub fn train(
    model: &Model,
    task: &Task,
    spec: &RunSpec,
    events: &Sender<Event>,
    commands: &Receiver<Command>,
) -> Result<RunResult> {
    run(model, task, spec, None, events, commands)
}

/// Continues a run from its checkpoint (`checkpoint::load`): the same steps, batches and
/// updates an uninterrupted run would have taken from there.
pub fn resume(
    model: &Model,
    task: &Task,
    saved: &checkpoint::Saved,
    events: &Sender<Event>,
    commands: &Receiver<Command>,
) -> Result<RunResult> {
    saved.check_model(model)?;
    run(
        model,
        task,
        &saved.state.spec,
        Some(saved),
        events,
        commands,
    )
}

fn run(
    model: &Model,
    task: &Task,
    spec: &RunSpec,
    saved: Option<&checkpoint::Saved>,
    events: &Sender<Event>,
    commands: &Receiver<Command>,
) -> Result<RunResult> {
    let started = Instant::now();
    let cfg = &spec.config;
    let Prepared {
        template,
        mut method,
        train_set,
        dev_set,
        test_set,
        label_tokens,
        steps,
        peak_lr,
        rng,
    } = prepare(model, task, spec)?;
    let trainable = method.trainable_params();
    let _ = events.send(Event::Started {
        total_steps: steps,
        template: template.to_string(),
        trainable_params: trainable,
        model_params: model.llm.parameter_count(),
    });
    let dev_score = |m: &dyn Method| evaluate(model, task, m, &dev_set);

    let mut p = match saved {
        Some(saved) => saved.restore(&mut [method.as_mut()])?,
        None => {
            let score = dev_score(method.as_ref())?;
            let _ = events.send(Event::Eval {
                step: 0,
                dev_metric: score,
                best: true,
            });
            Progress {
                steps_done: 0,
                rng,
                sampler: EpochSampler::new(train_set.len()),
                losses: LossLog::default(),
                best: BestCheckpoint::new(score, vec![method.snapshot()?], cfg.patience),
                evals: vec![(0, score)],
            }
        }
    };
    let save_every = cfg.save_every.unwrap_or(cfg.eval_every).max(1);
    let save = |p: &Progress<EpochSampler>, method: &mut dyn Method| -> Result<()> {
        let Some(out) = &spec.out else {
            return Ok(());
        };
        let run = checkpoint::Run {
            spec,
            task_dir: &task.dir,
            model,
            multi: None,
        };
        checkpoint::save(out, run, p, &mut [method]).context("saving the checkpoint")
    };
    let mut end = LoopEnd::default();
    for step in p.steps_done..steps {
        if commands::poll(commands, events) == Flow::Stop {
            end.stopped_early = true;
            end.interrupted = true;
            // The state right now, so a resumed run repeats no step.
            end.failure = save(&p, method.as_mut()).err();
            break;
        }
        let t0 = Instant::now();
        let batch = draw_batch(&mut p.sampler, &train_set, cfg, &mut p.rng);
        let lr = schedule::lr_at(step, steps, peak_lr, cfg.warmup);
        let mut ctx = StepContext {
            llm: &model.llm,
            lr,
            rng: &mut p.rng,
        };
        let loss = match method.train_step(&mut ctx, &batch) {
            Ok(l) => l,
            Err(e) => {
                end.failure = Some(e.context(format!("training step {}", step + 1)));
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
            let score = dev_score(method.as_ref())?;
            p.evals.push((p.steps_done, score));
            let verdict = p.best.record(p.steps_done, score, || {
                Ok::<_, anyhow::Error>(vec![method.snapshot()?])
            })?;
            let _ = events.send(Event::Eval {
                step: p.steps_done,
                dev_metric: score,
                best: verdict.improved,
            });
            if verdict.stop {
                end.stopped_early = true;
                break;
            }
        }
        // A completed run has nothing to resume: no checkpoint after the last step.
        if p.steps_done.is_multiple_of(save_every) && p.steps_done < steps {
            if let Err(e) = save(&p, method.as_mut()) {
                end.failure = Some(e);
                break;
            }
        }
    }
    // Whatever ended the loop, the best dev checkpoint is what is evaluated and kept.
    method.restore(&p.best.snapshot[0])?;
    finish(
        model,
        task,
        spec,
        &template,
        method.as_ref(),
        &test_set,
        label_tokens.as_deref(),
        &p,
        end,
        started,
    )
}

/// How the step loop ended.
#[derive(Default)]
struct LoopEnd {
    stopped_early: bool,
    /// Stopped by a command (Ctrl-C, the workbench's Stop): the checkpoint stays, to resume.
    interrupted: bool,
    /// A failed step: the best checkpoint is still evaluated and saved, then this is returned.
    failure: Option<anyhow::Error>,
}

/// One update's examples: `batch_size` rows per micro-batch, `grad_accum` micro-batches.
fn draw_batch(
    sampler: &mut EpochSampler,
    train_set: &[Encoded],
    cfg: &TrainConfig,
    rng: &mut RunRng,
) -> Batch {
    Batch {
        rows: draw_indices(sampler, train_set, cfg, rng)
            .into_iter()
            .map(|i| Row::gold(&train_set[i]))
            .collect(),
        micro_batch: cfg.batch_size,
    }
}

/// The training-split indices of one update, as a run draws them (the PEFT recipe replays a
/// run's batch order with this).
pub fn draw_indices(
    sampler: &mut EpochSampler,
    train_set: &[Encoded],
    cfg: &TrainConfig,
    rng: &mut RunRng,
) -> Vec<usize> {
    let n = cfg.batch_size * cfg.grad_accum.max(1);
    let lengths: Option<Vec<usize>> = cfg.group_by_length.then(|| {
        train_set
            .iter()
            .map(|e| e.prompt.len() + e.candidates[e.gold].len())
            .collect()
    });
    sampler.next(n, rng, lengths.as_deref())
}

/// Dev is evaluated every `eval_every` steps and after the last step.
fn is_eval_step(done: usize, total: usize, eval_every: usize) -> bool {
    done.is_multiple_of(eval_every.max(1)) || done == total
}

/// The task's metric for a method's current state on one encoded split.
fn evaluate(model: &Model, task: &Task, method: &dyn Method, set: &[Encoded]) -> Result<f64> {
    let llm = method.model(&model.llm);
    let prompt = method.prompt(llm)?;
    Ok(eval::evaluate(llm, &prompt, task.spec.kind, set, &model.tokenizer)?.metric)
}

/// The final evaluation: the (restored) best checkpoint on test, the run's result, and the
/// artifact, written to `spec.out` when given (its size is measured either way).
#[allow(clippy::too_many_arguments)]
fn finish(
    model: &Model,
    task: &Task,
    spec: &RunSpec,
    template: &Template,
    method: &dyn Method,
    test_set: &[Encoded],
    label_tokens: Option<&[Vec<u32>]>,
    p: &Progress<EpochSampler>,
    end: LoopEnd,
    started: Instant,
) -> Result<RunResult> {
    // Scored once: the metric is the predictions' accuracy, and they are kept with the run
    // (`predictions.jsonl` beside the prompt) for error analysis.
    let llm = method.model(&model.llm);
    let test = eval::predict(
        llm,
        &method.prompt(llm)?,
        task.spec.kind,
        test_set,
        &model.tokenizer,
    )?;
    let test_metric = test.accuracy();
    let mut result = RunResult {
        method: spec.method.id().to_string(),
        task: task.spec.name.clone(),
        model: model.spec.clone(),
        template: template.to_string(),
        steps: p.steps_done,
        train_loss_first: p.losses.first(),
        train_loss_last: p.losses.last_mean(),
        metric: task.spec.metric,
        dev_metric: p.best.score,
        test_metric,
        best_step: p.best.step,
        trainable_params: method.trainable_params(),
        model_params: model.llm.parameter_count(),
        artifact_bytes: 0,
        wall_seconds: 0.0,
        artifact: None,
        readable: method.readable(&model.tokenizer),
        stopped_early: end.stopped_early,
        label_tokens: label_tokens
            .map(|found| {
                crate::methods::label_search::as_text(&model.tokenizer, &task.labels(), found)
            })
            .transpose()?,
    };
    let tensors = method.export(&model.llm)?;
    result.wall_seconds = started.elapsed().as_secs_f64();
    let mut art = Artifact::new(model, task, template, spec, &result, tensors);
    art.manifest.label_token_ids = label_tokens.map(<[_]>::to_vec);
    result.artifact_bytes = art.stored_bytes()?;
    result.artifact = spec.out.as_ref().map(|d| d.display().to_string());
    art.manifest.result = result.clone();
    if let Some(dir) = &spec.out {
        art.save(dir)?;
        test.save(dir)?;
        if end.failure.is_none() && !end.interrupted {
            checkpoint::remove(dir)?;
        }
    }
    if let Some(e) = end.failure {
        let saved = match &spec.out {
            Some(d) => format!(
                "; the best checkpoint (step {}) was saved to {}",
                p.best.step,
                d.display()
            ),
            None => String::new(),
        };
        return Err(e.context(format!("training stopped{saved}")));
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::is_eval_step;

    #[test]
    fn dev_is_evaluated_every_eval_every_steps_and_after_the_last() {
        let evals: Vec<usize> = (1..=45).filter(|&d| is_eval_step(d, 45, 20)).collect();
        assert_eq!(evals, vec![20, 40, 45]);
    }

    #[test]
    fn an_eval_every_of_zero_evaluates_every_step() {
        assert!((1..=5).all(|d| is_eval_step(d, 5, 0)));
    }
}
