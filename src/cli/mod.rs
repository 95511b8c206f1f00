//! The `gradprompt` command line: one file per subcommand, each an argument struct with a
//! `run`. A command parses its flags and calls the library; it re-implements nothing. Every
//! default comes from the engine (`TrainConfig::default()`, `MethodSettings::default()`,
//! `BenchOptions::default()`, `model::BUILTIN`, `playground::NEAREST_TOKENS`), so the command
//! line and the workbench cannot disagree.
//!
//! This sits on top of everything: it may use any library module, and nothing in the library
//! uses it.

mod bench;
mod eval;
mod export;
mod generate;
mod info;
mod inspect;
mod play;
mod predict;
mod pretrain;
mod prompt_on_task;
mod train;
mod workbench;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "gradprompt",
    version,
    about = "Gradient-based prompting of frozen language models"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Where models run: cpu, cuda, cuda:N or metal (a GPU needs a build with
    /// `--features cuda` or `--features metal`; the GPU path is untested, docs/handoff.md).
    #[arg(long, global = true, default_value = "cpu")]
    device: String,
    // Without a subcommand the workbench opens (workbench.rs).
    #[command(flatten)]
    workbench: workbench::WorkbenchArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Print the model's architecture as JSON.
    Info(info::InfoArgs),
    /// Greedy-decode a continuation of a prompt.
    Generate(generate::GenerateArgs),
    /// Train a method on a task (or one prompt per task, in mixed batches) and evaluate it on
    /// the test split.
    Train(train::TrainArgs),
    /// Evaluate a saved prompt on a task's test split.
    Eval(eval::EvalArgs),
    /// Write a saved prompt in another format: `peft` (a Hugging Face PEFT adapter folder).
    Export(export::ExportArgs),
    /// Time the forward and backward on a fixed batch (results as JSON).
    Bench(bench::BenchArgs),
    /// Read a saved prompt: the nearest vocabulary tokens of each soft vector (cosine), or
    /// AutoPrompt's trigger text.
    Inspect(inspect::InspectArgs),
    /// Answer one input with a saved prompt and without it (the task's own template).
    Play(play::PlayArgs),
    /// Answer input rows of many tasks with their saved prompts over one frozen model, rows of
    /// different tasks sharing batches (JSON Lines in, JSON Lines out).
    Predict(predict::PredictArgs),
    /// Build the built-in model from nothing: generated corpus, BPE tokenizer, small Llama.
    Pretrain(pretrain::PretrainArgs),
}

/// Parses the process's arguments and runs what they ask for.
pub fn run() -> Result<()> {
    let cli = Cli::parse();
    gradprompt::runtime::set_device(gradprompt::runtime::parse_device(&cli.device)?);
    let Some(command) = cli.command else {
        return cli.workbench.run();
    };
    match command {
        Command::Info(args) => args.run(),
        Command::Generate(args) => args.run(),
        Command::Train(args) => args.run(),
        Command::Eval(args) => args.run(),
        Command::Export(args) => args.run(),
        Command::Bench(args) => args.run(),
        Command::Inspect(args) => args.run(),
        Command::Play(args) => args.run(),
        Command::Predict(args) => args.run(),
        Command::Pretrain(args) => args.run(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_device_is_a_global_flag_and_a_gpu_this_build_lacks_is_a_clear_error() {
        let cli = Cli::try_parse_from(["gradprompt", "info", "--device", "cuda:1"]).unwrap();
        assert_eq!(cli.device, "cuda:1");
        if !candle_core::utils::cuda_is_available() {
            let err = gradprompt::runtime::parse_device("cuda:1")
                .unwrap_err()
                .to_string();
            assert!(err.contains("--features cuda"), "{err}");
        }
        let err = gradprompt::runtime::parse_device("tpu")
            .unwrap_err()
            .to_string();
        assert!(err.contains("cpu, cuda, cuda:N"), "{err}");
        assert!(gradprompt::runtime::parse_device("CPU").unwrap().is_cpu());
    }

    #[test]
    fn no_subcommand_means_the_workbench() {
        let cli = Cli::try_parse_from(["gradprompt", "--model", "m.gguf"]).unwrap();
        assert!(cli.command.is_none());
    }
}
