//! `celeriac`: Celery's command line for celeriac and Python Celery workers alike: send a
//! task, inspect and control workers, list them, purge a queue, read a result, watch
//! events. The broker comes from `--broker` or `CELERIAC_BROKER_URL`, results from
//! `CELERIAC_RESULT_BACKEND`. Errors are one line on stderr; the exit code is 2 for a
//! usage error and 1 for a failure.

mod beat;
mod call;
mod control;
mod error;
mod events;
mod inspect;
mod output;
mod progress;
mod purge;
mod remote;
mod result;
mod session;
mod status;

use std::process::ExitCode;

use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::error::CliError;

/// Command line for celeriac: Celery's `celery` commands against the same broker.
#[derive(Debug, Parser)]
#[command(name = "celeriac", version)]
struct Cli {
    /// The broker URL (default: CELERIAC_BROKER_URL, else amqp://guest:guest@localhost:5672//).
    #[arg(long, short = 'b', global = true, value_name = "URL")]
    broker: Option<String>,
    /// What to do.
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Send a task by name (optionally a chain with --then) and print its id.
    Call(call::CallArgs),
    /// Ask workers what they know (ping, stats, registered, active, ...).
    Inspect(inspect::InspectArgs),
    /// Tell workers to do something (revoke, rate_limit, shutdown, ...).
    Control(control::ControlArgs),
    /// List the workers that answer a ping.
    Status(status::StatusArgs),
    /// Delete the ready messages of a queue.
    Purge(purge::PurgeArgs),
    /// Print a task's result from CELERIAC_RESULT_BACKEND.
    Result(result::ResultArgs),
    /// Print every event workers send, one line each, until interrupted.
    Events(events::EventsArgs),
    /// Send periodic tasks from a TOML schedule (one leader among many instances).
    Beat(beat::BeatArgs),
}

/// Parses the command line, runs the subcommand in an actix system, maps the outcome to
/// the exit code. lapin's own log lines stay off: the errors they tell of come back as
/// our one line.
fn main() -> ExitCode {
    // The matches are kept: `call` reads the order of its options from them (`--then`).
    let parsed = Cli::command()
        .try_get_matches()
        .and_then(|matches| Ok((Cli::from_arg_matches(&matches)?, matches)));
    let (cli, matches) = match parsed {
        Ok(parsed) => parsed,
        Err(error) => return usage_error(error),
    };
    if let Command::Beat(args) = cli.command {
        // A long-running service: it logs what it does (leader or not, each run sent).
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
        return beat::run(args, session::config(cli.broker.as_deref()));
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("error,lapin=off"))
        .init();
    let outcome = actix::System::new().block_on(run(cli, matches));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("celeriac: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

/// Help and version as clap prints them; any other parse error as one line,
/// `celeriac: <what clap says first> (try --help)`, exit code 2.
fn usage_error(error: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match error.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => error.exit(),
        _ => {
            eprintln!("celeriac: {} (try --help)", first_line(&error.to_string()));
            ExitCode::from(2)
        }
    }
}

/// clap's message in one line: its first line without the `error: ` prefix; when that
/// line introduces a list (`...not provided:`), the list's items after it.
fn first_line(message: &str) -> String {
    let mut lines = message
        .lines()
        .map(str::trim)
        .skip_while(|line| line.is_empty());
    let first = lines.next().unwrap_or("invalid command line");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    if let Some(head) = first.strip_suffix(':') {
        let items: Vec<&str> = lines.take_while(|line| !line.is_empty()).collect();
        if !items.is_empty() {
            return format!("{head}: {}", items.join(", "));
        }
    }
    first.to_string()
}

/// Runs one subcommand.
async fn run(cli: Cli, matches: ArgMatches) -> Result<(), CliError> {
    let config = session::config(cli.broker.as_deref());
    match cli.command {
        Command::Call(args) => {
            let order = matches
                .subcommand_matches("call")
                .cloned()
                .unwrap_or_default();
            call::run(args, &order, &config).await
        }
        Command::Inspect(args) => inspect::run(args, &config).await,
        Command::Control(command) => control::run(command, &config).await,
        Command::Status(args) => status::run(args, &config).await,
        Command::Purge(args) => purge::run(args, &config).await,
        Command::Result(args) => result::run(args, &config).await,
        Command::Events(args) => events::run(args, &config).await,
        // main() runs beat before this (in an actix system of its own, logging at info).
        Command::Beat(_) => Err(CliError::Usage("beat cannot run here".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::first_line;

    #[test]
    fn clap_messages_become_one_line() {
        let cases = [
            (
                "error: unexpected argument '--x' found\n\nUsage: celeriac call <TASK>\n",
                "unexpected argument '--x' found",
            ),
            (
                "error: the following required arguments were not provided:\n  <TASK>\n  \
                 <RATE>\n\nUsage: celeriac call <TASK>\n",
                "the following required arguments were not provided: <TASK>, <RATE>",
            ),
            ("", "invalid command line"),
        ];
        for (message, line) in cases {
            assert_eq!(first_line(message), line, "{message:?}");
        }
    }
}
