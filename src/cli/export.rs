//! `gradprompt export`: a saved prompt written in another format.

use anyhow::Result;
use clap::{Args, ValueEnum};
use gradprompt::artifact::Artifact;
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
}

impl ExportArgs {
    pub fn run(self) -> Result<()> {
        let art = Artifact::load(&self.prompt)?;
        match self.format {
            Format::Peft => gradprompt::peft::export(&art, &self.out)?,
            Format::Native => art.save(&self.out)?,
        }
        eprintln!("wrote {}", self.out.display());
        Ok(())
    }
}
