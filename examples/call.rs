//! `call`: sends one task by name, like `celery call`, and optionally waits for its result
//! from `CELERIAC_RESULT_BACKEND` (`redis://...`), or over `rpc://` when it is unset.
//!
//! ```text
//! export CELERIAC_BROKER_URL=amqp://guest:guest@127.0.0.1:5672/%2f
//! cargo run --example call -- tasks.add --args '[2, 3]'
//! cargo run --example call -- tasks.add --kwargs '{"x": 2, "y": 3}' --wait 10
//! cargo run --example call -- probe.add --args '[1, 2]' --queue probe --countdown 5 --wait 30
//! cargo run --example call -- tasks.report --eta 2030-01-01T09:00:00+01:00 --expires 3600
//! cargo run --example call -- tasks.add --args '[1, 2]' --then tasks.add --args '[10]' --wait 10
//! ```
//!
//! `--then TASK` adds a chain step: the options after it (`--args`, `--queue`, ...) are that
//! step's, and it gets the previous step's result as its first argument. The id printed
//! (and the result waited for) is the last step's.
//!
//! It prints the task id on stdout. With `--wait SECONDS` it then prints the result as JSON
//! on stdout and exits 0; a failed or revoked task, or no result within SECONDS, is
//! reported on stderr with exit code 1. Usage errors and a missing `CELERIAC_BROKER_URL`
//! exit with code 2.

use std::process::ExitCode;
use std::time::Duration;

use celeriac::{
    connect_broker, Canvas, Chain, Config, Producer, ResultError, SendError, Signature,
};
use serde_json::{Map, Value};

const USAGE: &str = "\
usage: call TASK [options] [--then TASK [options]]...

Sends the task named TASK to the broker of CELERIAC_BROKER_URL and prints its id.

options:
  --args JSON        positional arguments, a JSON array (default [])
  --kwargs JSON      keyword arguments, a JSON object (default {})
  --queue Q          the queue (default CELERIAC_DEFAULT_QUEUE, else \"celery\")
  --countdown S      run no earlier than S seconds from now
  --eta TIME         run no earlier than TIME (RFC 3339, e.g. 2030-01-01T09:00:00Z)
  --expires S        do not run later than S seconds from now
  --priority N       AMQP priority, 0-255
  --then TASK        then TASK, with the previous result as its first argument (a
                     chain); the options after it are its own; the last step's id is printed
  --wait S           wait up to S seconds for the result (CELERIAC_RESULT_BACKEND, else
                     rpc://) and print it as JSON
  -h, --help         print this help

exit codes: 0 sent (and, with --wait, succeeded); 1 the task failed, was revoked, or no
result came in time, or the broker failed; 2 usage error";

/// What the command line asks for.
#[derive(Debug)]
struct Call {
    /// The task, or the steps of a chain, first to last.
    steps: Vec<Signature>,
    /// How long to wait for the result; `None`: do not wait.
    wait: Option<Duration>,
}

/// How the command line ends the program before anything is sent.
enum Exit {
    /// `--help`.
    Help,
    /// A usage error, with its message.
    Usage(String),
}

#[actix::main]
async fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let call = match parse(std::env::args().skip(1)) {
        Ok(call) => call,
        Err(Exit::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(Exit::Usage(message)) => {
            eprintln!("call: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let config = Config::from_env();
    run(call, &config).await
}

async fn run(call: Call, config: &Config) -> ExitCode {
    let broker = match connect_broker(config).await {
        Ok(broker) => broker,
        Err(error) => {
            eprintln!("call: {error}");
            return ExitCode::FAILURE;
        }
    };
    let producer = Producer::new(broker.clone(), config);
    let code = match call.wait {
        None => match send(&producer, call.steps).await {
            Ok(id) => {
                println!("{id}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("call: {error}");
                ExitCode::FAILURE
            }
        },
        Some(wait) => send_and_wait(producer, config, call.steps, wait).await,
    };
    if let Err(error) = broker.close().await {
        log::warn!("closing the broker connection: {error}");
    }
    code
}

/// Sends the task, or the chain of steps; answers the (last) task id.
async fn send(producer: &Producer, mut steps: Vec<Signature>) -> Result<String, SendError> {
    if steps.len() == 1 {
        return producer.send_signature(steps.remove(0)).await;
    }
    let chain = Chain::of(steps.into_iter().map(Canvas::from).collect());
    let frozen = producer.send_canvas(Canvas::Chain(chain)).await?;
    Ok(celeriac::canvas::build::result_id(&frozen).unwrap_or_default())
}

async fn send_and_wait(
    producer: Producer,
    config: &Config,
    mut steps: Vec<Signature>,
    wait: Duration,
) -> ExitCode {
    // Results from the configured backend (CELERIAC_RESULT_BACKEND=redis://...), else rpc://.
    let with_results = match config.result_backend.as_deref().map(str::trim) {
        None | Some("") => producer.with_rpc_results().await,
        Some(_) => Producer::from_config(producer.broker().clone(), config).await,
    };
    let producer = match with_results {
        Ok(producer) => producer,
        Err(error) => {
            eprintln!("call: {error}");
            return ExitCode::FAILURE;
        }
    };
    let sent = if steps.len() == 1 {
        producer.send_signature_with_result(steps.remove(0)).await
    } else {
        let chain = Chain::of(steps.into_iter().map(Canvas::from).collect());
        producer.send_chain(chain).await
    };
    let result = match sent {
        Ok(result) => result,
        Err(error) => {
            eprintln!("call: {error}");
            return ExitCode::FAILURE;
        }
    };
    println!("{}", result.id());
    let code = match result.get(wait).await {
        Ok(value) => {
            println!("{value}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("call: {error}");
            if let ResultError::Failed {
                traceback: Some(traceback),
                ..
            } = &error
            {
                eprintln!("{traceback}");
            }
            ExitCode::FAILURE
        }
    };
    if let Err(error) = producer.close_results().await {
        log::warn!("closing the reply queue: {error}");
    }
    code
}

/// Reads the command line (without the program name).
fn parse(mut arguments: impl Iterator<Item = String>) -> Result<Call, Exit> {
    let mut task = None;
    let mut options: Vec<(String, String)> = Vec::new();
    while let Some(argument) = arguments.next() {
        match argument.as_str() {
            "-h" | "--help" => return Err(Exit::Help),
            flag if flag.starts_with("--") => {
                let (name, value) = match flag.split_once('=') {
                    Some((name, value)) => (name.to_string(), value.to_string()),
                    None => {
                        let value = arguments
                            .next()
                            .ok_or_else(|| Exit::Usage(format!("{flag} needs a value")))?;
                        (flag.to_string(), value)
                    }
                };
                options.push((name, value));
            }
            name if task.is_none() => task = Some(name.to_string()),
            extra => {
                return Err(Exit::Usage(format!(
                "unexpected argument {extra:?}: the task name is given once, options start with --"
            )))
            }
        }
    }
    let task = task.ok_or_else(|| Exit::Usage("the task name is missing".into()))?;
    let mut steps = vec![Signature::new(task)];
    let mut wait = None;
    for (name, value) in options {
        if name == "--then" {
            steps.push(Signature::new(value));
            continue;
        }
        if name == "--wait" {
            wait = Some(seconds(&name, &value)?);
            continue;
        }
        // The options of the step being described: the last one so far.
        let Some(step) = steps.pop() else {
            return Err(Exit::Usage("the task name is missing".into()));
        };
        steps.push(apply_option(step, &name, &value)?);
    }
    Ok(Call { steps, wait })
}

/// One option of a step.
fn apply_option(signature: Signature, name: &str, value: &str) -> Result<Signature, Exit> {
    Ok(match name {
        "--args" => signature.with_args(parse_args(value)?),
        "--kwargs" => signature.with_kwargs(parse_kwargs(value)?),
        "--queue" => signature.with_queue(value),
        "--countdown" => signature.with_countdown(seconds(name, value)?),
        "--eta" => {
            let eta = chrono::DateTime::parse_from_rfc3339(value).map_err(|error| {
                Exit::Usage(format!(
                    "--eta {value:?} is not an RFC 3339 time such as 2030-01-01T09:00:00Z: {error}"
                ))
            })?;
            signature.with_eta(eta.with_timezone(&chrono::Utc))
        }
        "--expires" => signature.with_expires_in(seconds(name, value)?),
        "--priority" => {
            let priority = value.parse::<u8>().map_err(|_| {
                Exit::Usage(format!(
                    "--priority {value:?} is not a whole number from 0 to 255"
                ))
            })?;
            signature.with_priority(priority)
        }
        other => return Err(Exit::Usage(format!("unknown option {other}"))),
    })
}

/// `--args`: a JSON array.
fn parse_args(value: &str) -> Result<Vec<Value>, Exit> {
    match serde_json::from_str(value) {
        Ok(Value::Array(args)) => Ok(args),
        Ok(other) => Err(Exit::Usage(format!(
            "--args must be a JSON array such as '[2, 3]', not {other}"
        ))),
        Err(error) => Err(Exit::Usage(format!(
            "--args is not valid JSON ({error}); give a JSON array such as '[2, 3]'"
        ))),
    }
}

/// `--kwargs`: a JSON object.
fn parse_kwargs(value: &str) -> Result<Map<String, Value>, Exit> {
    match serde_json::from_str(value) {
        Ok(Value::Object(kwargs)) => Ok(kwargs),
        Ok(other) => Err(Exit::Usage(format!(
            "--kwargs must be a JSON object such as '{{\"x\": 2}}', not {other}"
        ))),
        Err(error) => Err(Exit::Usage(format!(
            "--kwargs is not valid JSON ({error}); give a JSON object such as '{{\"x\": 2}}'"
        ))),
    }
}

/// A number of seconds, fractions allowed, at most ten years.
fn seconds(flag: &str, value: &str) -> Result<Duration, Exit> {
    const TEN_YEARS: f64 = 10.0 * 365.0 * 86_400.0;
    match value.parse::<f64>() {
        Ok(seconds) if seconds.is_finite() && (0.0..=TEN_YEARS).contains(&seconds) => {
            Ok(Duration::from_secs_f64(seconds))
        }
        _ => Err(Exit::Usage(format!(
            "{flag} {value:?} is not a number of seconds (0 or more, e.g. 10 or 2.5)"
        ))),
    }
}
