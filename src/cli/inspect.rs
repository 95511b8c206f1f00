//! `gradprompt inspect`: what a saved prompt reads as (`playground::inspect`).

use anyhow::{bail, Result};
use clap::Args;
use gradprompt::artifact::{adapter, Artifact};
use gradprompt::model::{self, Model};
use gradprompt::playground::{self, Learned};
use std::path::PathBuf;

#[derive(Args)]
pub struct InspectArgs {
    #[arg(long, default_value = model::BUILTIN)]
    model: String,
    /// A folder written by `train --out` (or exported from the workbench), or a PEFT adapter
    /// folder.
    #[arg(long)]
    prompt: PathBuf,
    /// A PEFT adapter without gradprompt.json: the template it was trained with (only shown;
    /// the vectors read the same without it).
    #[arg(long)]
    template: Option<String>,
    /// Nearest tokens to show per vector.
    #[arg(long, default_value_t = playground::NEAREST_TOKENS)]
    k: usize,
}

impl InspectArgs {
    pub fn run(self) -> Result<()> {
        // Checked before the model loads: `--k 0` printed empty rows with exit 0.
        if self.k == 0 {
            bail!("--k must be at least 1 (the nearest tokens shown per vector)");
        }
        let bare_adapter =
            adapter::is_adapter(&self.prompt) && !self.prompt.join(adapter::META_FILE).is_file();
        // Reading the vectors needs no template; a bare adapter gets a placeholder.
        let template = match (&self.template, bare_adapter) {
            (Some(t), _) => Some(t.as_str()),
            (None, true) => Some("[ANSWER]"),
            (None, false) => None,
        };
        let art = Artifact::load_for(&self.prompt, None, template)?;
        let m = Model::load(&self.model)?;
        match playground::inspect(&m, &art, self.k)? {
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
        // AutoPrompt's label-token search: the tokens each class is scored by.
        if let Some(line) = art.manifest.result.label_tokens_line() {
            println!("label tokens found: {line}");
        }
        Ok(())
    }
}
