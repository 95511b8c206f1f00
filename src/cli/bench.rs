//! `gradprompt bench`: the speed rows of `gradprompt::bench`, as JSON.

use anyhow::Result;
use clap::Args;
use gradprompt::bench::BenchOptions;
use gradprompt::model::{self, Model};
use std::path::PathBuf;

#[derive(Args)]
pub struct BenchArgs {
    #[arg(long, default_value = model::BUILTIN)]
    model: String,
    #[arg(long, default_value_t = BenchOptions::default().batch)]
    batch_size: usize,
    /// Text tokens per row for the forward and fine-tuning; the prompt methods' rows hold
    /// 20 virtual tokens and seq-len - 20 text tokens.
    #[arg(long, default_value_t = BenchOptions::default().seq_len)]
    seq_len: usize,
    /// Timed runs per row (the median is reported), after one warm-up.
    #[arg(long, default_value_t = BenchOptions::default().repeats)]
    repeats: usize,
    /// The classification task scored by `eval_s` and trained by `run_s`.
    #[arg(long, default_value_os_t = BenchOptions::default().task.to_path_buf())]
    task: PathBuf,
    /// Only these rows (comma-separated): matmul, forward, prompt-tuning, prefix-tuning,
    /// p-tuning, autoprompt, eval, run, fine-tuning, adamw.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Differentiate through candle's composed ops instead of the block op (the "before" of
    /// docs/benchmarks.md).
    #[arg(long)]
    composed_backward: bool,
}

impl BenchArgs {
    pub fn run(self) -> Result<()> {
        let mut m = Model::load(&self.model)?;
        if self.composed_backward {
            m.llm = m.llm.with_composed_backward();
        }
        let opts = BenchOptions {
            batch: self.batch_size,
            seq_len: self.seq_len,
            repeats: self.repeats,
            task: &self.task,
            only: self.only,
        };
        let r = gradprompt::bench::run(&m, &opts)?;
        println!("{}", serde_json::to_string_pretty(&r)?);
        Ok(())
    }
}
