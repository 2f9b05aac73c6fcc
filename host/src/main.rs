//! `lh-host`: the Lambda-Hat command line. Parses, runs the command, and
//! turns its outcome into the exit code (README: "Exit codes").

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    match cli::dispatch(cli::Cli::parse()) {
        Ok(exit) => ExitCode::from(exit.code()),
        Err(e) => {
            eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::from(cli::ERROR_EXIT)
        }
    }
}
