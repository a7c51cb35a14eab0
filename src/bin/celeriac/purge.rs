//! `celeriac purge [-Q QUEUE]`: deletes the ready messages of queues, as `celery purge`
//! does; without `-Q`, of the default queue (`CELERIAC_DEFAULT_QUEUE`, `celery`), as
//! Celery purges its app's queues. It asks first on a terminal unless `-f`; without a
//! terminal it refuses unless `-f`.

use std::io::{BufRead, IsTerminal, Write};

use celeriac::Config;
use clap::Args;

use crate::error::CliError;
use crate::{progress, session};

/// `purge`'s command line.
#[derive(Debug, Args)]
pub struct PurgeArgs {
    /// The queues to purge (comma-separated, or repeated); default: the default queue
    /// (`CELERIAC_DEFAULT_QUEUE`, `celery`).
    #[arg(long, short = 'Q', value_name = "QUEUE", value_delimiter = ',')]
    queues: Vec<String>,
    /// Do not ask.
    #[arg(long, short = 'f')]
    force: bool,
}

/// What to do before purging (pure).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Consent {
    /// Purge.
    Given,
    /// Ask on the terminal.
    Ask,
    /// Refuse: no `-f` and nobody to ask.
    Refused,
}

/// `-f` purges; otherwise ask on a terminal, refuse elsewhere.
fn consent(force: bool, stdin_is_terminal: bool) -> Consent {
    match (force, stdin_is_terminal) {
        (true, _) => Consent::Given,
        (false, true) => Consent::Ask,
        (false, false) => Consent::Refused,
    }
}

/// Whether an answer to the question is yes.
fn is_yes(answer: &str) -> bool {
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

/// Asks on stderr, reads the answer from stdin.
fn ask(queues: &[String]) -> Result<bool, CliError> {
    eprint!(
        "Purge every ready message of {}? They cannot be recovered. [y/N] ",
        queues.join(", ")
    );
    std::io::stderr().flush().map_err(CliError::failed)?;
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(CliError::failed)?;
    Ok(is_yes(&answer))
}

/// Asks (or not), purges, prints how many messages went.
pub async fn run(mut args: PurgeArgs, config: &Config) -> Result<(), CliError> {
    if args.queues.is_empty() {
        args.queues.push(config.default_queue.clone());
    }
    match consent(args.force, std::io::stdin().is_terminal()) {
        Consent::Given => {}
        Consent::Ask => {
            if !ask(&args.queues)? {
                return Err(CliError::Failed("not purged".into()));
            }
        }
        Consent::Refused => {
            return Err(CliError::Usage(
                "purge deletes messages for good: give -f to purge without a terminal to ask on"
                    .into(),
            ))
        }
    }
    let (broker, _producer) = session::connect(config).await?;
    let mut total = 0u64;
    let mut outcome = Ok(());
    for queue in &args.queues {
        let purging = format!("purging {queue}...");
        match progress::announce_if_slow(&purging, broker.purge_queue(queue)).await {
            Ok(count) => total += u64::from(count),
            Err(error) => {
                outcome = Err(CliError::Failed(format!("purging {queue}: {error}")));
                break;
            }
        }
    }
    session::close(&broker).await;
    outcome?;
    let plural = if total == 1 { "" } else { "s" };
    let queues = args.queues.len();
    let queue_plural = if queues == 1 { "" } else { "s" };
    println!("Purged {total} message{plural} from {queues} known task queue{queue_plural}.");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purge_asks_unless_forced_and_refuses_without_a_terminal() {
        assert_eq!(consent(true, false), Consent::Given);
        assert_eq!(consent(true, true), Consent::Given);
        assert_eq!(consent(false, true), Consent::Ask);
        assert_eq!(consent(false, false), Consent::Refused);
        for (answer, yes) in [
            ("y\n", true),
            ("YES", true),
            ("n", false),
            ("", false),
            ("yep", false),
        ] {
            assert_eq!(is_yes(answer), yes, "{answer:?}");
        }
    }
}
