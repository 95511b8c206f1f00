//! The flags `eval` and `play` share: a saved prompt, the task to use it on, the model, and
//! the check that the prompt was trained for that task.

use anyhow::Result;
use clap::Args;
use gradprompt::artifact::Artifact;
use gradprompt::model::{self, Model};
use gradprompt::task::Task;
use std::path::PathBuf;

#[derive(Args)]
pub struct PromptOnTask {
    #[arg(long, default_value = model::BUILTIN)]
    model: String,
    #[arg(long)]
    task: PathBuf,
    /// A folder written by `train --out`, or a PEFT adapter folder.
    #[arg(long)]
    prompt: PathBuf,
    /// A PEFT adapter without gradprompt.json: the template it was trained with (default: the
    /// task's own, virtual tokens in front).
    #[arg(long)]
    template: Option<String>,
    /// Use a prompt trained for another task (name, kind or verbalizer differ).
    #[arg(long)]
    allow_other_task: bool,
}

impl PromptOnTask {
    /// Loads the prompt and the task and checks they belong together before the model, the
    /// slow part, is loaded.
    pub fn load(&self) -> Result<(Artifact, Task, Model)> {
        let task = Task::load(&self.task)?;
        let art = Artifact::load_for(&self.prompt, Some(&task), self.template.as_deref())?;
        art.manifest
            .check_task(&task, &self.prompt, self.allow_other_task)?;
        let model = Model::load(&self.model)?;
        Ok((art, task, model))
    }
}
