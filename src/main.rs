//! The `gradprompt` binary: the process-wide runtime settings, then the command line
//! (`src/cli/`, one file per subcommand). Every subcommand drives the same engine as the GUI.

mod cli;

fn main() {
    gradprompt::runtime::single_threaded_elementwise_ops();
    gradprompt::runtime::keep_freed_memory();
    if let Err(e) = cli::run() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
