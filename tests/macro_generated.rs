//! What `#[task]` generates: names, options, argument binding, signatures, the context,
//! blocking tasks; without a warning or an undocumented public item (this test crate is
//! built with `deny(warnings, missing_docs)`). Its compile errors are in `macro_ui.rs`.
#![deny(warnings, missing_docs)]

use std::time::Duration;

use celeriac::protocol::TaskHeaders;
use celeriac::task::args::decode_args;
use celeriac::task::{BlockingTask, RetryBackoff, Task, TaskOptions};
use celeriac::{task, TaskContext, TaskError};
use serde_json::{json, Map, Value};

/// Adds.
#[task(name = "tasks.add", max_retries = 5, time_limit = 30, queue = "math")]
pub async fn add(x: i64, y: i64) -> Result<i64, TaskError> {
    Ok(x + y)
}

/// Every option by Celery's name.
#[task(
    name = "tasks.everything",
    max_retries = None,
    retry_backoff = 2,
    retry_backoff_max = 60,
    retry_jitter = false,
    soft_time_limit = 2.5,
    rate_limit = "10/m",
    ignore_result,
    store_errors_even_if_ignored = true,
    track_started = true,
    acks_late = true,
    acks_on_failure_or_timeout = false
)]
pub async fn everything() -> Result<(), TaskError> {
    Ok(())
}

/// A fixed retry delay.
#[task(name = "tasks.fixed", default_retry_delay = 10)]
pub async fn fixed() -> Result<(), TaskError> {
    Ok(())
}

/// No name: the module path and the function's name.
#[task]
pub async fn unnamed() -> Result<(), TaskError> {
    Ok(())
}

/// Optional parameters and the request context, anywhere in the list.
#[task(name = "tasks.greet")]
pub async fn greet(
    name: String,
    ctx: &TaskContext,
    #[default = "Hello"] greeting: String,
    #[default = 1] times: u8,
    suffix: Option<String>,
) -> Result<String, TaskError> {
    let line = format!("{greeting}, {name}{}", suffix.unwrap_or_default());
    Ok(format!(
        "{} ({})",
        vec![line; times.into()].join(" "),
        ctx.name
    ))
}

/// A blocking function, taking the context by value.
#[task(name = "tasks.count")]
pub fn count(ctx: TaskContext, text: String) -> Result<usize, TaskError> {
    assert_eq!(ctx.name, "tasks.count");
    Ok(text.split_whitespace().count())
}

fn args(value: Value) -> Vec<Value> {
    value.as_array().cloned().unwrap_or_default()
}

fn kwargs(value: Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap_or_default()
}

fn context(task: &str) -> TaskContext {
    TaskContext::from_headers(&TaskHeaders::new(task, "id-1"), "q")
}

#[test]
fn generated_items() {
    // Names.
    assert_eq!(<add as Task>::NAME, "tasks.add");
    assert_eq!(
        <unnamed as Task>::NAME,
        concat!(module_path!(), "::unnamed")
    );
    assert_eq!(<count as Task>::NAME, "tasks.count");

    // Options.
    assert_eq!(
        <add as Task>::options(),
        TaskOptions {
            max_retries: Some(5),
            time_limit: Some(Duration::from_secs(30)),
            queue: Some("math".into()),
            ..TaskOptions::default()
        }
    );
    assert_eq!(
        <everything as Task>::options(),
        TaskOptions {
            max_retries: Some(u32::MAX),
            retry_backoff: RetryBackoff {
                min: Duration::from_secs(2),
                max: Duration::from_secs(60),
                jitter: false,
            },
            time_limit: None,
            soft_time_limit: Some(Duration::from_millis(2500)),
            acks_late: Some(true),
            acks_on_failure_or_timeout: Some(false),
            queue: None,
            ignore_result: Some(true),
            store_errors_even_if_ignored: Some(true),
            track_started: Some(true),
            rate_limit: Some("10/m".into()),
        }
    );
    let fixed = <fixed as Task>::options().retry_backoff;
    assert_eq!(
        (fixed.min, fixed.max, fixed.delay(5)),
        (
            Duration::from_secs(10),
            Duration::from_secs(10),
            Duration::from_secs(10)
        )
    );
    assert_eq!(<unnamed as Task>::options(), TaskOptions::default());

    // Positional, keyword and mixed binding, by the parameter names.
    let expected = (2, 3);
    for (a, k) in [
        (json!([2, 3]), json!({})),
        (json!([]), json!({"y": 3, "x": 2})),
        (json!([2]), json!({"y": 3})),
    ] {
        let bound: AddArgs = decode_args(&args(a), &kwargs(k)).expect("binds");
        assert_eq!((bound.x, bound.y), expected);
    }
    let missing = decode_args::<AddArgs>(&args(json!([2])), &Map::new());
    assert_eq!(
        missing.err().map(|e| e.to_string()),
        Some("missing argument \"y\"".into())
    );
    let unexpected = decode_args::<AddArgs>(&args(json!([2, 3])), &kwargs(json!({"z": 1})));
    assert_eq!(
        unexpected.err().map(|e| e.to_string()),
        Some("unexpected keyword argument \"z\"".into())
    );

    // Defaults and `Option`s.
    let greet_args: GreetArgs = decode_args(&args(json!(["Ada"])), &Map::new()).expect("binds");
    assert_eq!(
        (
            greet_args.greeting.as_str(),
            greet_args.times,
            greet_args.suffix.as_deref()
        ),
        ("Hello", 1, None)
    );
    let greet_args: GreetArgs = decode_args(
        &args(json!(["Ada", "Hi"])),
        &kwargs(json!({"times": 2, "suffix": "!"})),
    )
    .expect("binds");
    let run = <greet as Task>::run(context("tasks.greet"), greet_args);
    assert_eq!(
        futures::executor::block_on(run).expect("runs"),
        "Hi, Ada! Hi, Ada! (tasks.greet)"
    );

    // The function stays callable.
    assert_eq!(futures::executor::block_on(add(2, 3)).expect("adds"), 5);

    // Signatures: positional arguments in parameter order, the task's default queue.
    let signature = add::new(2, 3).with_countdown(Duration::from_secs(5));
    assert_eq!(signature.task, "tasks.add");
    assert_eq!(signature.args, vec![json!(2), json!(3)]);
    assert!(signature.kwargs.is_empty() && signature.eta.is_some());
    assert_eq!(signature.default_queue.as_deref(), Some("math"));
    let greet_call = greet::try_new("Ada".into(), "Hi".into(), 1, None).expect("encodes");
    assert_eq!(
        greet_call.args,
        vec![json!("Ada"), json!("Hi"), json!(1), Value::Null]
    );
    let no_args: EverythingArgs = decode_args(&[], &Map::new()).expect("no arguments");
    futures::executor::block_on(<everything as Task>::run(context("x"), no_args)).expect("runs");
    assert!(decode_args::<EverythingArgs>(&args(json!([1])), &Map::new()).is_err());

    // Blocking tasks.
    const { assert!(<count as Task>::BLOCKING && !<add as Task>::BLOCKING) };
    let counted = <count as BlockingTask>::run(
        context("tasks.count"),
        CountArgs {
            text: "a b c".into(),
        },
    );
    assert_eq!(counted.expect("counts"), 3);
}
