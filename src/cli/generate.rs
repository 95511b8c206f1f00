//! `gradprompt generate`: a greedy continuation of a prompt.

use anyhow::Result;
use clap::Args;
use gradprompt::model::{self, generate, Model};

/// New tokens decoded when `--max-new-tokens` is not given. Only the command line generates
/// free text from a bare prompt, so the default lives here.
const MAX_NEW_TOKENS: usize = 32;

#[derive(Args)]
pub struct GenerateArgs {
    #[arg(long, default_value = model::BUILTIN)]
    model: String,
    #[arg(long)]
    prompt: String,
    #[arg(long, default_value_t = MAX_NEW_TOKENS)]
    max_new_tokens: usize,
}

impl GenerateArgs {
    pub fn run(self) -> Result<()> {
        let m = Model::load(&self.model)?;
        // BOS first exactly when the tokenizer's own settings add it, as training and scoring do.
        let mut ids = gradprompt::task::bos_tokens(&m.tokenizer)?;
        ids.extend(m.encode(&self.prompt)?);
        let out = generate::greedy(&m, &ids, self.max_new_tokens)?;
        println!("{}", m.decode(&out)?);
        Ok(())
    }
}
