//! What `inspect`, `control` and `status` share: whom to ask, how long to wait, how to
//! print the replies.

use celeriac::{Config, ControlCall, ControlReply};
use clap::Args;
use serde_json::{Map, Value};

use crate::error::CliError;
use crate::{output, session};

/// The options of every remote-control subcommand.
#[derive(Debug, Clone, Args)]
pub struct RemoteArgs {
    /// Only these nodes (comma-separated, or repeated), e.g. -d w1@host.
    #[arg(
        long,
        short = 'd',
        value_name = "NODE",
        value_delimiter = ',',
        global = true
    )]
    pub destination: Vec<String>,
    /// Seconds to wait for replies (stops early once every destination answered).
    #[arg(
        long,
        short = 't',
        value_name = "S",
        default_value = "1.0",
        global = true
    )]
    pub timeout: String,
    /// Print the replies as JSON.
    #[arg(long, short = 'j', global = true)]
    pub json: bool,
}

impl RemoteArgs {
    /// The call of `method` with `arguments` these options describe.
    pub fn call(
        &self,
        method: &str,
        arguments: Map<String, Value>,
    ) -> Result<ControlCall, CliError> {
        let mut call = ControlCall::new(method);
        call.arguments = arguments;
        call.timeout = crate::call::seconds("--timeout", &self.timeout)?;
        call.destination = (!self.destination.is_empty()).then(|| self.destination.clone());
        Ok(call)
    }
}

/// Sends `call` and collects the replies.
pub async fn ask(config: &Config, call: &ControlCall) -> Result<Vec<ControlReply>, CliError> {
    let (broker, producer) = session::connect(config).await?;
    let replies = producer.control(call).await.map_err(CliError::failed);
    session::close(&broker).await;
    replies
}

/// Prints replies as `celery inspect` does (`as_list`: `celery control`'s JSON list);
/// no reply at all is a failure, as in Celery.
pub fn print(
    replies: &[ControlReply],
    call: &ControlCall,
    json: bool,
    as_list: bool,
) -> Result<(), CliError> {
    if replies.is_empty() {
        return Err(CliError::Failed(format!(
            "no nodes replied to {} within {}",
            call.method,
            output::duration(call.timeout)
        )));
    }
    if json {
        let value = if as_list {
            output::json_list(replies)
        } else {
            output::json_object(replies)
        };
        println!("{value}");
    } else {
        println!("{}", output::human_replies(replies));
    }
    Ok(())
}
