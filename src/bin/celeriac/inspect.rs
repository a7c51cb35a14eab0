//! `celeriac inspect METHOD`: asks workers (celeriac or Python) what they know, as
//! `celery inspect` does, and prints the replies.

use celeriac::Config;
use clap::{Args, ValueEnum};
use serde_json::{json, Map};

use crate::error::CliError;
use crate::remote::{self, RemoteArgs};

/// `inspect`'s command line.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// What to ask.
    method: InspectMethod,
    /// Task ids, for query_task.
    ids: Vec<String>,
    #[command(flatten)]
    remote: RemoteArgs,
}

/// The questions.
#[derive(Debug, Clone, Copy, PartialEq, ValueEnum)]
#[value(rename_all = "snake_case")]
enum InspectMethod {
    /// Are you there?
    Ping,
    /// Counters, pool, broker, uptime.
    Stats,
    /// The tasks the worker knows.
    Registered,
    /// The tasks running now.
    Active,
    /// The tasks received and waiting to run.
    Reserved,
    /// The tasks with an eta or countdown still ahead.
    Scheduled,
    /// The ids of revoked tasks.
    Revoked,
    /// The queues the worker consumes.
    ActiveQueues,
    /// What the worker knows of some task ids.
    QueryTask,
    /// The worker's logical clock.
    Clock,
    /// The worker's configuration.
    Conf,
}

impl InspectMethod {
    /// The pidbox method name.
    fn method(self) -> &'static str {
        match self {
            InspectMethod::Ping => "ping",
            InspectMethod::Stats => "stats",
            InspectMethod::Registered => "registered",
            InspectMethod::Active => "active",
            InspectMethod::Reserved => "reserved",
            InspectMethod::Scheduled => "scheduled",
            InspectMethod::Revoked => "revoked",
            InspectMethod::ActiveQueues => "active_queues",
            InspectMethod::QueryTask => "query_task",
            InspectMethod::Clock => "clock",
            InspectMethod::Conf => "conf",
        }
    }
}

/// Asks and prints.
pub async fn run(args: InspectArgs, config: &Config) -> Result<(), CliError> {
    let mut arguments = Map::new();
    match (args.method, args.ids.is_empty()) {
        (InspectMethod::QueryTask, true) => {
            return Err(CliError::Usage("query_task needs task ids".into()))
        }
        (InspectMethod::QueryTask, false) => {
            arguments.insert("ids".into(), json!(args.ids));
        }
        (_, false) => {
            return Err(CliError::Usage(format!(
                "inspect {} takes no arguments, got {:?}",
                args.method.method(),
                args.ids
            )))
        }
        (_, true) => {}
    }
    let call = args.remote.call(args.method.method(), arguments)?;
    let replies = remote::ask(config, &call).await?;
    remote::print(&replies, &call, args.remote.json, false)
}
