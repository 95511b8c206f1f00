//! `gradprompt export`: a saved prompt written in another format.
//!
//! Like `train`, it never replaces a folder that already holds files unless `--overwrite` is
//! given, and with `--task` it refuses a prompt trained for another task as `eval` does.
//!
//! `--format peft-recipe` writes a transformers + PEFT training folder for the run
//! (`gradprompt::peft::recipe`); `--run` takes a prompt folder or a workbench run's folder
//! (its `prompt/` inside, and the task folder its `run.json` names).

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use gradprompt::artifact::Artifact;
use gradprompt::model::Model;
use gradprompt::peft::recipe;
use gradprompt::task::Task;
use std::path::{Path, PathBuf};

/// What `export` can write.
#[derive(Clone, Copy, ValueEnum)]
enum Format {
    /// A Hugging Face PEFT adapter folder (`gradprompt::peft`).
    #[value(name = "peft")]
    Peft,
    /// gradprompt's own prompt folder, written anew.
    #[value(name = "native")]
    Native,
    /// A self-contained transformers + PEFT recipe (train.py, recipe.json, the task's splits,
    /// requirements.txt, README) that repeats the run with `accelerate launch`.
    #[value(name = "peft-recipe")]
    PeftRecipe,
}

#[derive(Args)]
pub struct ExportArgs {
    /// A folder written by `train --out`, or a workbench run's folder (`--run`).
    #[arg(long, visible_alias = "run", value_name = "RUN_OR_PROMPT_DIR")]
    prompt: PathBuf,
    /// The model the prompt was trained on (peft-recipe: it draws the run's initial state and
    /// batch order). Default: the one its manifest names.
    #[arg(long)]
    model: Option<String>,
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
    #[arg(long)]
    allow_other_task: bool,
    /// `base_model_name_or_path` in adapter_config.json: the model PEFT loads the adapter on
    /// (default: the Hub name of a known model file, else the model's path).
    #[arg(long, value_name = "NAME_OR_PATH")]
    base_model: Option<String>,
}

impl ExportArgs {
    pub fn run(self) -> Result<()> {
        let (prompt, run_task) = prompt_of_run(&self.prompt)?;
        let art = Artifact::load(&prompt)?;
        if let Format::PeftRecipe = self.format {
            return self.recipe(&art, run_task);
        }
        if let Some(dir) = &self.task {
            let task = Task::load(dir)?;
            art.manifest
                .check_task(&task, &self.prompt, self.allow_other_task)?;
        }
        // Held until the write is done: another process cannot write the same folder meanwhile.
        let _lock = gradprompt::atomic::claim_output(&self.out, self.overwrite)?;
        if self.base_model.is_some() && !matches!(self.format, Format::Peft) {
            bail!("--base-model is for --format peft and peft-recipe");
        }
        match self.format {
            Format::Peft => {
                gradprompt::peft::export_for(&art, &self.out, self.base_model.as_deref())?
            }
            Format::Native => art.save(&self.out)?,
            Format::PeftRecipe => unreachable!("handled above"),
        }
        eprintln!("wrote {}", self.out.display());
        Ok(())
    }
}

/// The prompt folder of `dir` and, for a workbench run's folder, the task folder it trained on.
fn prompt_of_run(dir: &Path) -> Result<(PathBuf, Option<PathBuf>)> {
    let inner = dir.join("prompt");
    let record = dir.join("run.json");
    if !dir.join("manifest.json").is_file() && inner.join("manifest.json").is_file() {
        let task = std::fs::read_to_string(&record)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["task_dir"].as_str().map(PathBuf::from));
        return Ok((inner, task));
    }
    Ok((dir.to_path_buf(), None))
}

impl ExportArgs {
    fn recipe(&self, art: &Artifact, run_task: Option<PathBuf>) -> Result<()> {
        if let Some(why) = recipe::unsupported(art) {
            bail!("cannot export a PEFT recipe: {why}");
        }
        let Some(task_dir) = self.task.clone().or(run_task) else {
            bail!("--format peft-recipe needs --task DIR: the recipe carries the task's splits");
        };
        let task = Task::load(&task_dir)?;
        art.manifest
            .check_task(&task, &self.prompt, self.allow_other_task)?;
        let _lock = gradprompt::atomic::claim_output(&self.out, self.overwrite)?;
        let spec = self
            .model
            .clone()
            .unwrap_or_else(|| art.manifest.model.spec.clone());
        let model = Model::load(&spec)?;
        let base = self
            .base_model
            .clone()
            .unwrap_or_else(|| gradprompt::peft::default_base_model(&spec));
        recipe::write(&model, &task, art, &base, &self.out)?;
        eprintln!(
            "wrote {}: run it with `accelerate launch train.py --model {base}` inside it",
            self.out.display()
        );
        Ok(())
    }
}
