//! `gradprompt export`: a saved prompt written in another format.
//!
//! Like `train`, it never replaces a folder that already holds files unless `--overwrite` is
//! given, and with `--task` it refuses a prompt trained for another task as `eval` does.

use anyhow::Result;
use clap::{Args, ValueEnum};
use gradprompt::artifact::Artifact;
use gradprompt::task::Task;
use std::path::PathBuf;

/// What `export` can write.
#[derive(Clone, Copy, ValueEnum)]
enum Format {
    /// A Hugging Face PEFT adapter folder (`gradprompt::peft`).
    #[value(name = "peft")]
    Peft,
    /// gradprompt's own prompt folder, written anew.
    #[value(name = "native")]
    Native,
}

#[derive(Args)]
pub struct ExportArgs {
    /// A folder written by `train --out`.
    #[arg(long)]
    prompt: PathBuf,
    #[arg(long, value_enum, hide_possible_values = true, default_value_t = Format::Peft)]
    format: Format,
    #[arg(long)]
    out: PathBuf,
    /// Replace what is already in --out (refused otherwise).
    #[arg(long)]
    overwrite: bool,
    /// The task the prompt is exported for: its name, kind and verbalizer must be the ones the
    /// prompt was trained with.
    #[arg(long)]
    task: Option<PathBuf>,
    /// Export a prompt trained for another task than --task.
    #[arg(long, requires = "task")]
    allow_other_task: bool,
    /// `base_model_name_or_path` in adapter_config.json: the model PEFT loads the adapter on
    /// (default: the Hub name of a known model file, else the model's path).
    #[arg(long, value_name = "NAME_OR_PATH")]
    base_model: Option<String>,
}

impl ExportArgs {
    pub fn run(self) -> Result<()> {
        let art = Artifact::load(&self.prompt)?;
        if let Some(dir) = &self.task {
            let task = Task::load(dir)?;
            art.manifest
                .check_task(&task, &self.prompt, self.allow_other_task)?;
        }
        // Held until the write is done: another process cannot write the same folder meanwhile.
        let _lock = gradprompt::atomic::claim_output(&self.out, self.overwrite)?;
        if self.base_model.is_some() && !matches!(self.format, Format::Peft) {
            anyhow::bail!("--base-model is for --format peft");
        }
        match self.format {
            Format::Peft => {
                gradprompt::peft::export_for(&art, &self.out, self.base_model.as_deref())?
            }
            Format::Native => art.save(&self.out)?,
        }
        eprintln!("wrote {}", self.out.display());
        Ok(())
    }
}
