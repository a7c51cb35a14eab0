//! `celeriac`: the command line. This file holds the arguments and the dispatch; each
//! subcommand lives in a module of its own.

mod beat;

use std::process::ExitCode;

use celeriac::Config;
use clap::{Parser, Subcommand};

/// A Celery-compatible command line for celeriac.
#[derive(Debug, Parser)]
#[command(name = "celeriac", version, about)]
struct Cli {
    /// The broker URL (default: CELERIAC_BROKER_URL, else amqp://localhost).
    #[arg(long, global = true)]
    broker: Option<String>,
    /// What to do.
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Sends periodic tasks from a TOML schedule (one leader among many instances).
    Beat(beat::BeatArgs),
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    let mut config = Config::from_env();
    if let Some(broker) = cli.broker {
        config.broker_url = broker;
    }
    match cli.command {
        Command::Beat(args) => beat::run(args, config),
    }
}
