//! `slowfast`: the command line of the slowfast cloud side (docs/architecture.md §8): one
//! subcommand per file under `commands/`, process set-up in [`setup`], errors printed as one
//! line ([`error::CliError`]).

mod commands;
mod error;
mod input;
mod setup;

use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "slowfast",
    version,
    about = "MC²-SF slow-fast recommendation: data, training, evaluation"
)]
struct Cli {
    #[command(subcommand)]
    command: commands::Command,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    setup::process(cli.command.serves(), cli.command.default_log());
    match cli.command.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
