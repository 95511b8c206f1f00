//! `gradprompt play`: one input answered with a saved prompt and without it
//! (`playground::compare`).

use anyhow::{bail, Result};
use clap::Args;
use gradprompt::artifact::Artifact;
use gradprompt::model::{self, Model};
use gradprompt::playground::{self, Answer};
use gradprompt::task::Task;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Args)]
pub struct PlayArgs {
    #[arg(long, default_value = model::BUILTIN)]
    model: String,
    #[arg(long)]
    task: PathBuf,
    #[arg(long)]
    prompt: PathBuf,
    /// Use a prompt trained for another task (name, kind or verbalizer differ).
    #[arg(long)]
    allow_other_task: bool,
    /// `field=value`, once per input field of the task (e.g. `--input country=Peru`).
    #[arg(long = "input", value_name = "FIELD=VALUE")]
    inputs: Vec<String>,
}

impl PlayArgs {
    pub fn run(self) -> Result<()> {
        let m = Model::load(&self.model)?;
        let task = Task::load(&self.task)?;
        let art = Artifact::load(&self.prompt)?;
        art.manifest
            .check_task(&task, &self.prompt, self.allow_other_task)?;
        let mut fields = BTreeMap::new();
        for kv in &self.inputs {
            let Some((k, v)) = kv.split_once('=') else {
                bail!("--input {kv:?}: expected FIELD=VALUE");
            };
            fields.insert(k.to_string(), v.to_string());
        }
        let c = playground::compare(&m, &task, &art, &fields)?;
        for (name, answer) in [
            ("with the prompt", &c.with_prompt),
            ("zero-shot", &c.without),
        ] {
            match answer {
                Answer::Labels(probs) => {
                    let cells: Vec<String> =
                        probs.iter().map(|(l, p)| format!("{l} {p:.3}")).collect();
                    println!("{name:>16}: {}", cells.join("  "));
                }
                Answer::Text(t) => println!("{name:>16}: {t:?}"),
            }
        }
        Ok(())
    }
}
