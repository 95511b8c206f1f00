//! `gradprompt eval`: a saved prompt scored on a task's test split.

use anyhow::Result;
use clap::Args;
use gradprompt::artifact::Artifact;
use gradprompt::model::{self, Model};
use gradprompt::playground;
use gradprompt::task::Task;
use std::path::PathBuf;

#[derive(Args)]
pub struct EvalArgs {
    #[arg(long, default_value = model::BUILTIN)]
    model: String,
    #[arg(long)]
    task: PathBuf,
    /// A folder written by `train --out`.
    #[arg(long)]
    prompt: PathBuf,
    /// Use a prompt trained for another task (name, kind or verbalizer differ).
    #[arg(long)]
    allow_other_task: bool,
    #[arg(long)]
    json: bool,
}

impl EvalArgs {
    pub fn run(self) -> Result<()> {
        let art = Artifact::load(&self.prompt)?;
        let task = Task::load(&self.task)?;
        art.manifest
            .check_task(&task, &self.prompt, self.allow_other_task)?;
        let model = Model::load(&self.model)?;
        let score = playground::score_on_test(&model, &task, &art)?;
        let m = &art.manifest;
        if self.json {
            println!(
                "{}",
                serde_json::json!({
                    "method": m.method.id(),
                    "task": task.spec.name,
                    "model": model.spec,
                    "metric": m.result.metric,
                    "test_metric": score.metric,
                    "trained_test_metric": m.result.test_metric,
                    "examples": score.examples,
                })
            );
        } else {
            println!(
                "{} on {}: test {} {:.4}",
                m.method.id(),
                task.spec.name,
                m.result.metric,
                score.metric
            );
        }
        Ok(())
    }
}
