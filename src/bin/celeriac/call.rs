//! `celeriac call TASK`: sends one task by name, like `celery call`, or a chain with
//! `--then`; with `--wait S` waits for the result (CELERIAC_RESULT_BACKEND, else `rpc://`)
//! and prints it as JSON.
//!
//! `--then TASK` adds a chain step: the options after it (`--args`, `--queue`, ...) are
//! that step's, and it gets the previous step's result as its first argument. The id
//! printed (and the result waited for) is the last step's.

use std::time::Duration;

use celeriac::{Canvas, Chain, Config, Producer, ResultError, SendError, Signature};
use clap::{ArgMatches, Args};
use serde_json::{Map, Value};

use crate::error::CliError;
use crate::{progress, session};

/// `call`'s command line.
#[derive(Debug, Args)]
#[command(
    after_help = "exit codes: 0 sent (and, with --wait, succeeded); 1 the task failed, \
was revoked, or no result came in time, or the broker failed; 2 usage error"
)]
pub struct CallArgs {
    /// The task name, e.g. tasks.add.
    task: String,
    /// Positional arguments, a JSON array (default []).
    #[arg(long, value_name = "JSON")]
    args: Vec<String>,
    /// Keyword arguments, a JSON object (default {}).
    #[arg(long, value_name = "JSON")]
    kwargs: Vec<String>,
    /// The queue (default CELERIAC_DEFAULT_QUEUE, else "celery").
    #[arg(long, short = 'Q', value_name = "QUEUE")]
    queue: Vec<String>,
    /// Run no earlier than S seconds from now.
    #[arg(long, value_name = "S")]
    countdown: Vec<String>,
    /// Run no earlier than TIME (RFC 3339, e.g. 2030-01-01T09:00:00Z).
    #[arg(long, value_name = "TIME")]
    eta: Vec<String>,
    /// Do not run later than S seconds from now.
    #[arg(long, value_name = "S")]
    expires: Vec<String>,
    /// AMQP priority, 0-255.
    #[arg(long, value_name = "N")]
    priority: Vec<String>,
    /// Then TASK, with the previous result as its first argument (a chain); the options
    /// after it are its own; the last step's id is printed.
    #[arg(long, value_name = "TASK")]
    then: Vec<String>,
    /// Wait up to S seconds for the result and print it as JSON.
    #[arg(long, value_name = "S")]
    wait: Option<String>,
}

/// The options of a step, in the order `StepOption::ALL` lists them.
#[derive(Debug, Clone, Copy, PartialEq)]
enum StepOption {
    Args,
    Kwargs,
    Queue,
    Countdown,
    Eta,
    Expires,
    Priority,
}

impl StepOption {
    const ALL: [StepOption; 7] = [
        StepOption::Args,
        StepOption::Kwargs,
        StepOption::Queue,
        StepOption::Countdown,
        StepOption::Eta,
        StepOption::Expires,
        StepOption::Priority,
    ];

    /// Its clap id (the field name).
    fn id(self) -> &'static str {
        match self {
            StepOption::Args => "args",
            StepOption::Kwargs => "kwargs",
            StepOption::Queue => "queue",
            StepOption::Countdown => "countdown",
            StepOption::Eta => "eta",
            StepOption::Expires => "expires",
            StepOption::Priority => "priority",
        }
    }
}

/// An option or `--then` with where it stood on the command line.
type Placed<T> = (usize, T);

/// The steps of the call: the task, then each `--then`, each with the options that
/// follow it up to the next `--then` (pure).
fn arrange(
    task: &str,
    then: &[Placed<String>],
    options: &[Placed<(StepOption, String)>],
) -> Result<Vec<Signature>, CliError> {
    let mut steps: Vec<(usize, Signature)> = vec![(0, Signature::new(task))];
    steps.extend(
        then.iter()
            .map(|(index, name)| (*index, Signature::new(name.clone()))),
    );
    steps.sort_by_key(|(index, _)| *index);
    let mut options = options.to_vec();
    options.sort_by_key(|(index, _)| *index);
    for (index, (option, value)) in options {
        // The step an option belongs to: the last one that starts before it.
        let step = steps
            .iter()
            .rposition(|(start, _)| *start < index)
            .unwrap_or(0);
        let (start, signature) = steps.remove(step);
        steps.insert(step, (start, apply_option(signature, option, &value)?));
    }
    Ok(steps.into_iter().map(|(_, signature)| signature).collect())
}

/// The occurrences of option `id` with their positions.
fn placed(matches: &ArgMatches, id: &str) -> Vec<Placed<String>> {
    match (matches.indices_of(id), matches.get_many::<String>(id)) {
        (Some(indices), Some(values)) => indices.zip(values.cloned()).collect(),
        _ => Vec::new(),
    }
}

/// The steps the command line describes.
fn steps(args: &CallArgs, matches: &ArgMatches) -> Result<Vec<Signature>, CliError> {
    let then = placed(matches, "then");
    let options: Vec<Placed<(StepOption, String)>> = StepOption::ALL
        .iter()
        .flat_map(|option| {
            placed(matches, option.id())
                .into_iter()
                .map(move |(index, value)| (index, (*option, value)))
        })
        .collect();
    arrange(&args.task, &then, &options)
}

/// Sends the call; prints the id, and with `--wait` the result.
pub async fn run(args: CallArgs, matches: &ArgMatches, config: &Config) -> Result<(), CliError> {
    let steps = steps(&args, matches)?;
    let wait = args
        .wait
        .as_deref()
        .map(|value| seconds("--wait", value))
        .transpose()?;
    let (broker, producer) = session::connect(config).await?;
    let outcome = match wait {
        None => send(&producer, steps).await.map(|id| println!("{id}")),
        Some(wait) => send_and_wait(producer, config, steps, wait).await,
    };
    session::close(&broker).await;
    outcome
}

/// Sends the task, or the chain of steps; answers the (last) task id.
async fn send(producer: &Producer, mut steps: Vec<Signature>) -> Result<String, CliError> {
    if steps.len() == 1 {
        return producer
            .send_signature(steps.remove(0))
            .await
            .map_err(CliError::failed);
    }
    let chain = Chain::of(steps.into_iter().map(Canvas::from).collect());
    let frozen = producer
        .send_canvas(Canvas::Chain(chain))
        .await
        .map_err(CliError::failed)?;
    Ok(celeriac::canvas::build::result_id(&frozen).unwrap_or_default())
}

/// Sends with a result handle, prints the id, waits up to `wait` and prints the result.
async fn send_and_wait(
    producer: Producer,
    config: &Config,
    mut steps: Vec<Signature>,
    wait: Duration,
) -> Result<(), CliError> {
    // Results from the configured backend (CELERIAC_RESULT_BACKEND=redis://...), else rpc://.
    let with_results: Result<Producer, SendError> =
        match config.result_backend.as_deref().map(str::trim) {
            None | Some("") => producer.with_rpc_results().await,
            Some(_) => Producer::from_config(producer.broker().clone(), config).await,
        };
    let producer = with_results.map_err(CliError::failed)?;
    let sent = if steps.len() == 1 {
        producer.send_signature_with_result(steps.remove(0)).await
    } else {
        let chain = Chain::of(steps.into_iter().map(Canvas::from).collect());
        producer.send_chain(chain).await
    };
    let result = sent.map_err(CliError::failed)?;
    println!("{}", result.id());
    let message = format!(
        "waiting up to {} for the result of task {}...",
        crate::output::duration(wait),
        result.id()
    );
    let outcome = progress::announce_if_slow(&message, result.get(wait)).await;
    if let Err(error) = producer.close_results().await {
        log::warn!("closing the reply queue: {error}");
    }
    match outcome {
        Ok(value) => {
            println!("{value}");
            Ok(())
        }
        Err(error) => {
            if let ResultError::Failed {
                traceback: Some(traceback),
                ..
            } = &error
            {
                eprintln!("{traceback}");
            }
            Err(CliError::failed(error))
        }
    }
}

/// One option of a step.
fn apply_option(
    signature: Signature,
    option: StepOption,
    value: &str,
) -> Result<Signature, CliError> {
    Ok(match option {
        StepOption::Args => signature.with_args(parse_args(value)?),
        StepOption::Kwargs => signature.with_kwargs(parse_kwargs(value)?),
        StepOption::Queue => signature.with_queue(value),
        StepOption::Countdown => signature.with_countdown(seconds("--countdown", value)?),
        StepOption::Eta => {
            let eta = chrono::DateTime::parse_from_rfc3339(value).map_err(|error| {
                CliError::Usage(format!(
                    "--eta {value:?} is not an RFC 3339 time such as 2030-01-01T09:00:00Z: {error}"
                ))
            })?;
            signature.with_eta(eta.with_timezone(&chrono::Utc))
        }
        StepOption::Expires => signature.with_expires_in(seconds("--expires", value)?),
        StepOption::Priority => {
            let priority = value.parse::<u8>().map_err(|_| {
                CliError::Usage(format!(
                    "--priority {value:?} is not a whole number from 0 to 255"
                ))
            })?;
            signature.with_priority(priority)
        }
    })
}

/// `--args`: a JSON array.
fn parse_args(value: &str) -> Result<Vec<Value>, CliError> {
    match serde_json::from_str(value) {
        Ok(Value::Array(args)) => Ok(args),
        Ok(other) => Err(CliError::Usage(format!(
            "--args must be a JSON array such as '[2, 3]', not {other}"
        ))),
        Err(error) => Err(CliError::Usage(format!(
            "--args is not valid JSON ({error}); give a JSON array such as '[2, 3]'"
        ))),
    }
}

/// `--kwargs`: a JSON object.
fn parse_kwargs(value: &str) -> Result<Map<String, Value>, CliError> {
    match serde_json::from_str(value) {
        Ok(Value::Object(kwargs)) => Ok(kwargs),
        Ok(other) => Err(CliError::Usage(format!(
            "--kwargs must be a JSON object such as '{{\"x\": 2}}', not {other}"
        ))),
        Err(error) => Err(CliError::Usage(format!(
            "--kwargs is not valid JSON ({error}); give a JSON object such as '{{\"x\": 2}}'"
        ))),
    }
}

/// A number of seconds, fractions allowed, at most ten years.
pub fn seconds(flag: &str, value: &str) -> Result<Duration, CliError> {
    const TEN_YEARS: f64 = 10.0 * 365.0 * 86_400.0;
    match value.parse::<f64>() {
        Ok(seconds) if seconds.is_finite() && (0.0..=TEN_YEARS).contains(&seconds) => {
            Ok(Duration::from_secs_f64(seconds))
        }
        _ => Err(CliError::Usage(format!(
            "{flag} {value:?} is not a number of seconds (0 or more, e.g. 10 or 2.5)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, FromArgMatches, Parser};

    /// `call`'s arguments alone, for parsing in tests.
    #[derive(Debug, Parser)]
    struct Only {
        #[command(flatten)]
        call: CallArgs,
    }

    fn steps_of(line: &[&str]) -> Result<Vec<Signature>, CliError> {
        let matches = Only::command()
            .try_get_matches_from(std::iter::once("call").chain(line.iter().copied()))
            .map_err(|error| CliError::Usage(error.to_string()))?;
        let only = Only::from_arg_matches(&matches).map_err(|e| CliError::Usage(e.to_string()))?;
        steps(&only.call, &matches)
    }

    #[test]
    fn options_after_then_belong_to_that_step() {
        let steps = steps_of(&[
            "a", "--queue", "q1", "--then", "b", "--args", "[10]", "--then", "c", "--queue", "q3",
            "--args", "[100]",
        ])
        .expect("parses");
        let names: Vec<_> = steps.iter().map(|step| step.task.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        let args: Vec<_> = steps
            .iter()
            .map(|step| Value::from(step.args.clone()))
            .collect();
        assert_eq!(
            args,
            [
                serde_json::json!([]),
                serde_json::json!([10]),
                serde_json::json!([100])
            ]
        );
        let queues: Vec<_> = steps.iter().map(|step| step.queue.as_deref()).collect();
        assert_eq!(queues, [Some("q1"), None, Some("q3")]);
    }

    #[test]
    fn usage_errors() {
        for (line, says) in [
            (
                vec!["a", "--args", r#"{"x": 1}"#],
                "--args must be a JSON array",
            ),
            (vec!["a", "--args", "[1"], "--args is not valid JSON"),
            (
                vec!["a", "--kwargs", "[1]"],
                "--kwargs must be a JSON object",
            ),
            (
                vec!["a", "--countdown", "soon"],
                "--countdown \"soon\" is not a number",
            ),
            (vec!["a", "--priority", "256"], "--priority \"256\""),
            (
                vec!["a", "--eta", "tomorrow"],
                "--eta \"tomorrow\" is not an RFC 3339",
            ),
        ] {
            match steps_of(&line) {
                Err(CliError::Usage(message)) => assert!(message.contains(says), "{message}"),
                other => panic!("{line:?}: {other:?}"),
            }
        }
    }
}
