//! `celeriac status`: the nodes that answer a ping, as `celery status` lists them.

use celeriac::Config;
use clap::Args;
use serde_json::Map;

use crate::error::CliError;
use crate::remote::{self, RemoteArgs};

/// `status`'s command line.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    remote: RemoteArgs,
}

/// Pings every node and lists those that answer.
pub async fn run(args: StatusArgs, config: &Config) -> Result<(), CliError> {
    let call = args.remote.call("ping", Map::new())?;
    let replies = remote::ask(config, &call).await?;
    remote::print(&replies, &call, args.remote.json, false)
}
