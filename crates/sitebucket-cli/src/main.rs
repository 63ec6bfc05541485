//! # `sitebucket` — the command
//!
//! `sitebucket listen --follow ID[,ID...]` connects to a Site Streams endpoint and prints
//! its messages, one per line, on stdout; log lines go to stderr. `sitebucket serve` runs
//! the scripted test server on 127.0.0.1. `sitebucket control add|remove|info` changes or
//! inspects a live stream through its control stream. `sitebucket listen --api
//! v2-filtered|v2-sample` reads X API v2's streams instead (with a Bearer token), and
//! `sitebucket rules list|add|delete` manages the filtered stream's rules. `sitebucket follow
//! add|remove|list --nats URL` manages a fleet's follow set; `sitebucket fleet status --nats URL`
//! shows who holds which shards. `sitebucket completions SHELL` prints a completion script. The
//! full reference (options, the request, output, exit statuses,
//! reconnect rules, many users) is this crate's `README.md`; `sitebucket --help`
//! summarises it.
//!
//! Exit status: 0 stopped on request, 1 gave up, 2 usage error.

mod args;
mod control;
mod drivers;
mod fleet;
mod ids;
mod listen;
mod logging;
mod many;
mod rules;
mod serve;
mod sink;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use args::{Cli, Command};

/// jemalloc (the default `jemalloc` feature) instead of the system allocator: on glibc,
/// `malloc`'s per-thread caches grow the RSS of many thread-per-stream streams for hours while
/// the heap in use stays flat; jemalloc's decay returns what it frees (the README's soak).
#[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // Prints the usage error (status 2), or --help / --version (status 0).
        Err(error) => error.exit(),
    };
    logging::init(&cli.log);
    match cli.command {
        Command::Completions(args) => {
            let mut command = Cli::command();
            clap_complete::generate(
                args.shell,
                &mut command,
                "sitebucket",
                &mut std::io::stdout(),
            );
            ExitCode::SUCCESS
        }
        Command::Listen(args) => listen::run(*args),
        Command::Serve(args) => serve::run(args),
        Command::Control(args) => control::run(args),
        Command::Rules(args) => rules::run(args),
        Command::Follow(args) => fleet::follow(args),
        Command::Fleet(args) => fleet::fleet(args),
    }
}
