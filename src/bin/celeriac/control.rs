//! `celeriac control COMMAND`: tells workers (celeriac or Python) to do something, as
//! `celery control` does, and prints their replies.

use celeriac::Config;
use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};

use crate::error::CliError;
use crate::remote::{self, RemoteArgs};

/// `control`'s command line.
#[derive(Debug, Args)]
pub struct ControlArgs {
    /// What to do.
    #[command(subcommand)]
    command: ControlCommand,
    #[command(flatten)]
    remote: RemoteArgs,
}

/// The commands.
#[derive(Debug, Clone, PartialEq, Subcommand)]
#[command(rename_all = "snake_case")]
enum ControlCommand {
    /// Revoke tasks: they will not run (workers remember the ids).
    Revoke {
        /// Task ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Revoke tasks and stop them if they run, with SIGNAL (e.g. SIGTERM).
    Terminate {
        /// The signal for a running task, e.g. SIGTERM or SIGKILL.
        signal: String,
        /// Task ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Set a task's rate limit, e.g. `rate_limit tasks.add 10/m` (0 removes it).
    RateLimit {
        /// The task name.
        task: String,
        /// The rate: N, N/s, N/m or N/h.
        rate: String,
    },
    /// Start sending task events.
    EnableEvents,
    /// Stop sending task events.
    DisableEvents,
    /// Stop the workers (a warm shutdown).
    Shutdown,
    /// Start consuming a queue.
    AddConsumer {
        /// The queue.
        queue: String,
        /// Its exchange (default: the queue's name).
        exchange: Option<String>,
        /// The exchange type (default direct).
        exchange_type: Option<String>,
        /// The routing key (default: the queue's name).
        routing_key: Option<String>,
    },
    /// Stop consuming a queue.
    CancelConsumer {
        /// The queue.
        queue: String,
    },
}

/// The pidbox method and arguments of a command, as `celery control` sends them (pure).
fn request(command: &ControlCommand) -> (&'static str, Map<String, Value>) {
    let arguments = |value: Value| match value {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    match command {
        ControlCommand::Revoke { ids } => ("revoke", arguments(json!({"task_id": ids}))),
        ControlCommand::Terminate { signal, ids } => (
            "terminate",
            arguments(json!({"signal": signal, "task_id": ids})),
        ),
        ControlCommand::RateLimit { task, rate } => (
            "rate_limit",
            arguments(json!({"task_name": task, "rate_limit": rate})),
        ),
        ControlCommand::EnableEvents => ("enable_events", Map::new()),
        ControlCommand::DisableEvents => ("disable_events", Map::new()),
        ControlCommand::Shutdown => ("shutdown", Map::new()),
        ControlCommand::AddConsumer {
            queue,
            exchange,
            exchange_type,
            routing_key,
        } => (
            "add_consumer",
            arguments(json!({"queue": queue, "exchange": exchange,
                             "exchange_type": exchange_type, "routing_key": routing_key})),
        ),
        ControlCommand::CancelConsumer { queue } => {
            ("cancel_consumer", arguments(json!({"queue": queue})))
        }
    }
}

/// Sends the command and prints the replies.
pub async fn run(args: ControlArgs, config: &Config) -> Result<(), CliError> {
    let (method, arguments) = request(&args.command);
    let call = args.remote.call(method, arguments)?;
    let replies = remote::ask(config, &call).await?;
    if replies.is_empty() && args.command == ControlCommand::Shutdown {
        // Workers do not answer a shutdown: they stop.
        eprintln!("shutdown sent");
        return Ok(());
    }
    remote::print(&replies, &call, args.remote.json, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_sent_as_celery_control_sends_them() {
        let cases = [
            (
                ControlCommand::Revoke {
                    ids: vec!["a".into(), "b".into()],
                },
                "revoke",
                json!({"task_id": ["a", "b"]}),
            ),
            (
                ControlCommand::Terminate {
                    signal: "SIGKILL".into(),
                    ids: vec!["a".into()],
                },
                "terminate",
                json!({"signal": "SIGKILL", "task_id": ["a"]}),
            ),
            (
                ControlCommand::RateLimit {
                    task: "t.add".into(),
                    rate: "10/m".into(),
                },
                "rate_limit",
                json!({"task_name": "t.add", "rate_limit": "10/m"}),
            ),
            (
                ControlCommand::AddConsumer {
                    queue: "q".into(),
                    exchange: None,
                    exchange_type: None,
                    routing_key: None,
                },
                "add_consumer",
                json!({"queue": "q", "exchange": null, "exchange_type": null, "routing_key": null}),
            ),
            (
                ControlCommand::CancelConsumer { queue: "q".into() },
                "cancel_consumer",
                json!({"queue": "q"}),
            ),
            (ControlCommand::Shutdown, "shutdown", json!({})),
        ];
        for (command, method, arguments) in cases {
            let (sent, sent_arguments) = request(&command);
            assert_eq!(sent, method);
            assert_eq!(Value::Object(sent_arguments), arguments, "{command:?}");
        }
    }
}
