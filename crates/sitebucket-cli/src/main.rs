//! # `sitebucket` — the command
//!
//! `sitebucket listen --follow ID[,ID...]` connects to a Site Streams endpoint and prints
//! its messages, one per line, on stdout; log lines go to stderr. `sitebucket serve` runs
//! the scripted test server on 127.0.0.1. `sitebucket control add|remove|info` changes or
//! inspects a live stream through its control stream. The contract (options, the request, output, exit
//! statuses, reconnect rules) is `CLI.md`; `sitebucket --help` summarises it.
//!
//! Exit status: 0 stopped on request, 1 gave up, 2 usage error.

mod args;
mod control;
mod listen;
mod serve;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // Prints the usage error (status 2), or --help / --version (status 0).
        Err(error) => error.exit(),
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .with_max_level(tracing::Level::INFO)
        .init();
    match cli.command {
        Command::Listen(args) => listen::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Control(args) => control::run(args),
    }
}
