//! `gradprompt play`: one input answered with a saved prompt and without it
//! (`playground::compare`).

use super::prompt_on_task::PromptOnTask;
use anyhow::{bail, Result};
use clap::Args;
use gradprompt::playground::{self, Answer};
use std::collections::BTreeMap;

#[derive(Args)]
pub struct PlayArgs {
    #[command(flatten)]
    on: PromptOnTask,
    /// `field=value`, once per input field of the task (e.g. `--input country=Peru`).
    #[arg(long = "input", value_name = "FIELD=VALUE")]
    inputs: Vec<String>,
}

impl PlayArgs {
    pub fn run(self) -> Result<()> {
        let (art, task, m) = self.on.load()?;
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
        // The classes keep their names, but the prompt scored each by the token it found.
        if let Some(line) = art.manifest.result.label_tokens_line() {
            println!(
                "{:>16}  (each class scored by its found label token: {line})",
                ""
            );
        }
        Ok(())
    }
}
