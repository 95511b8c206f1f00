//! `gradprompt predict`: many tasks' saved prompts serve input rows over one frozen model, rows
//! of different tasks sharing batches (`gradprompt::serve`).

use anyhow::{Context, Result};
use clap::Args;
use gradprompt::model::{self, Model};
use gradprompt::serve;
use std::io::Write;
use std::path::PathBuf;

#[derive(Args)]
pub struct PredictArgs {
    #[arg(long, default_value = model::BUILTIN)]
    model: String,
    /// A folder written by `train --out` (for a multi-task run, one of its task folders). Give
    /// one per task served.
    #[arg(long, required = true)]
    prompt: Vec<PathBuf>,
    /// JSON Lines: each row `{"task": "<name>", <that task's fields>...}`.
    #[arg(long)]
    input: PathBuf,
    /// Rows per forward, whatever their tasks.
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    /// Write the predictions here (JSON Lines, one per input row, in input order) instead of
    /// to stdout.
    #[arg(long)]
    out: Option<PathBuf>,
    /// The task a PEFT adapter folder without gradprompt.json serves (its name, fields and
    /// verbalizer); prompt folders and adapters with gradprompt.json say their own.
    #[arg(long, value_name = "TASK_DIR")]
    adapter_task: Option<PathBuf>,
    /// The template such an adapter was trained with (default: --adapter-task's own, with the
    /// virtual tokens in front).
    #[arg(long, requires = "adapter_task")]
    template: Option<String>,
}

impl PredictArgs {
    pub fn run(self) -> Result<()> {
        if self.batch_size == 0 {
            anyhow::bail!("--batch-size must be at least 1");
        }
        let adapter_task = match &self.adapter_task {
            Some(dir) => Some(gradprompt::task::Task::load(dir)?),
            None => None,
        };
        let model = Model::load(&self.model)?;
        let served = serve::load_prompts_for(
            &model,
            &self.prompt,
            adapter_task.as_ref(),
            self.template.as_deref(),
        )?;
        let inputs = serve::read_inputs(&self.input, &served)?;
        let predictions = serve::predict(&model, &served, &inputs, self.batch_size)?;
        let mut text = String::new();
        for p in &predictions {
            text.push_str(&serde_json::to_string(p)?);
            text.push('\n');
        }
        match &self.out {
            Some(path) => {
                gradprompt::atomic::write_file(path, text.as_bytes())?;
                eprintln!(
                    "wrote {} predictions to {}",
                    predictions.len(),
                    path.display()
                );
            }
            None => std::io::stdout()
                .write_all(text.as_bytes())
                .context("cannot write to stdout")?,
        }
        Ok(())
    }
}
