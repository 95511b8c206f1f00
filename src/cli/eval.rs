//! `gradprompt eval`: a saved prompt scored on a task's test split; with `--predictions FILE`,
//! every test example's prediction written as JSON Lines and, for classification, the confusion
//! matrix printed.

use super::prompt_on_task::PromptOnTask;
use anyhow::{Context, Result};
use clap::Args;
use gradprompt::artifact::Artifact;
use gradprompt::model::Model;
use gradprompt::predictions::{self, Predictions};
use gradprompt::task::{Split, Task, Template};
use std::path::PathBuf;

#[derive(Args)]
pub struct EvalArgs {
    #[command(flatten)]
    on: PromptOnTask,
    #[arg(long)]
    json: bool,
    /// Write each test example's input, gold answer, prediction, probability and correctness
    /// to this file (JSON Lines), and print the confusion matrix of a classification task.
    #[arg(long, value_name = "FILE")]
    predictions: Option<PathBuf>,
}

impl EvalArgs {
    pub fn run(self) -> Result<()> {
        // Before the model loads and the split is scored: a typo should not cost the wait.
        if let Some(path) = &self.predictions {
            predictions::check_writable(path)?;
        }
        let (art, task, model) = self.on.load()?;
        let preds = predict_test(&model, &task, &art)?;
        let score = preds.accuracy();
        if let Some(path) = &self.predictions {
            preds.write(path)?;
        }
        let confusion = self.predictions.as_ref().and_then(|_| preds.confusion());
        let m = &art.manifest;
        if self.json {
            let mut out = serde_json::json!({
                "method": m.method.id(),
                "task": task.spec.name,
                "model": model.spec,
                "metric": m.result.metric,
                "test_metric": score,
                "trained_test_metric": m.result.test_metric,
                "examples": preds.rows.len(),
            });
            if let Some(path) = &self.predictions {
                out["predictions"] = path.display().to_string().into();
            }
            if let Some(c) = &confusion {
                out["confusion"] = serde_json::json!({
                    "labels": c.labels,
                    "counts": c.counts,
                });
            }
            println!("{out}");
        } else {
            println!(
                "{} on {}: test {} {:.4}",
                m.method.id(),
                task.spec.name,
                m.result.metric,
                score
            );
            if let Some(path) = &self.predictions {
                println!(
                    "{} predictions ({} wrong) written to {}",
                    preds.rows.len(),
                    preds.rows.len() - preds.correct(),
                    path.display()
                );
            }
            if let Some(c) = &confusion {
                print!("confusion matrix (rows: gold, columns: predicted)\n{c}");
            }
        }
        Ok(())
    }
}

/// The saved prompt on the task's test split, example by example (the metric is their
/// accuracy, as `playground::score_on_test` computes it).
fn predict_test(model: &Model, task: &Task, art: &Artifact) -> Result<Predictions> {
    let (own, prompt) = art.prompt_for(model)?;
    let template = Template::parse(&art.manifest.template)
        .map_err(|e| anyhow::anyhow!("the prompt's template: {e}"))?;
    let mut test = gradprompt::train::encode_split(task, &template, Split::Test, model)?;
    art.manifest.use_label_tokens(&mut [&mut test])?;
    let llm = own.as_ref().unwrap_or(&model.llm);
    gradprompt::train::eval::predict(llm, &prompt, task.spec.kind, &test, &model.tokenizer)
        .context("scoring the test split")
}
