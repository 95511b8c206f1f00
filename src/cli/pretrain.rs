//! `gradprompt pretrain`: the built-in model rebuilt from nothing (`gradprompt::pretrain`),
//! with a progress bar.

use anyhow::Result;
use clap::Args;
use gradprompt::pretrain::{self, PretrainConfig};
use std::path::PathBuf;

#[derive(Args)]
pub struct PretrainArgs {
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
}

impl PretrainArgs {
    pub fn run(self) -> Result<()> {
        let mut recipe = if self.quick {
            PretrainConfig::quick()
        } else {
            PretrainConfig::builtin()
        };
        if let Some(s) = self.steps {
            recipe.steps = s;
            recipe.warmup_steps = recipe.warmup_steps.min(s / 10);
        }
        let command: Vec<String> = std::env::args().collect();
        let bar = indicatif::ProgressBar::new(recipe.steps as u64);
        bar.set_style(indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} steps  {msg}  ETA {eta}",
        )?);
        let report = pretrain::run(
            &recipe,
            &self.tasks,
            &self.out,
            &command.join(" "),
            &mut |p| {
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
            },
        )?;
        bar.finish_and_clear();
        println!("{}", serde_json::to_string_pretty(&report)?);
        eprintln!("wrote {}", self.out.display());
        Ok(())
    }
}
