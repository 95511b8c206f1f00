//! `gradprompt eval`: a saved prompt scored on a task's test split.

use super::prompt_on_task::PromptOnTask;
use anyhow::Result;
use clap::Args;
use gradprompt::playground;

#[derive(Args)]
pub struct EvalArgs {
    #[command(flatten)]
    on: PromptOnTask,
    #[arg(long)]
    json: bool,
}

impl EvalArgs {
    pub fn run(self) -> Result<()> {
        let (art, task, model) = self.on.load()?;
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
