//! No subcommand: the desktop workbench, when this build has it (cargo feature `gui`, on by
//! default). Without the feature the flags are still accepted, so a script gets a clear
//! message rather than a parse error.

use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct WorkbenchArgs {
    /// Without a subcommand the desktop window opens on this model (default: the one used last,
    /// else builtin).
    #[arg(long)]
    model: Option<String>,
    /// ... and this task folder (default: the one used last, else a sample task).
    #[arg(long)]
    task: Option<PathBuf>,
    /// Where the window keeps its runs (default: $GRADPROMPT_RUNS, else runs/ in the cache folder).
    #[arg(long)]
    runs: Option<PathBuf>,
    /// Start training the default setup as soon as the model is loaded (demos, screenshots).
    #[arg(long, hide = true)]
    autostart: bool,
}

impl WorkbenchArgs {
    #[cfg(feature = "gui")]
    pub fn run(self) -> Result<()> {
        let mut opts = gradprompt::gui::Options::new(
            self.runs
                .unwrap_or_else(gradprompt::runs::RunStore::default_dir),
        );
        // Named flags win over the setup saved at the last exit; without them the window
        // reopens on that setup's model and task.
        if let Some(m) = self.model {
            opts.model = m;
            opts.model_named = true;
        }
        opts.task = self.task;
        opts.autostart = self.autostart;
        gradprompt::gui::run(opts)
    }

    #[cfg(not(feature = "gui"))]
    pub fn run(self) -> Result<()> {
        anyhow::bail!(
            "this gradprompt was built without the workbench (cargo feature `gui`); rebuild with \
             the default features (`cargo run --release`) to open it, or give a subcommand \
             (`gradprompt --help` lists them)"
        )
    }
}
