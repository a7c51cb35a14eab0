//! A worker for checking compatibility with Python Celery: it serves the `interop.*` tasks
//! on RabbitMQ, so a Python client can call them and compare results.
//!
//! ```text
//! CELERIAC_BROKER_URL=amqp://guest:guest@127.0.0.1:5672/%2f cargo run --example interop
//! ```
//!
//! ```python
//! from celery import Celery
//! app = Celery(broker="amqp://guest:guest@127.0.0.1:5672//", backend="rpc://")
//! app.send_task("interop.add", args=[2, 3]).get(timeout=10)   # 5
//! ```
//!
//! | task | does |
//! |---|---|
//! | `interop.add(x, y)` | `x + y` (integers stay integers) |
//! | `interop.echo(*args, **kwargs)` | returns `[args, kwargs]` (a `Value`: kombu typed values come back as sent) |
//! | `interop.tsum(numbers)` | the sum of a list of numbers (a chord body: it gets the list of its header's results) |
//! | `interop.typed_echo(when, local, naive, day, at, amount, id, text, raw, plain)` | returns its arguments as a dict, read and written as `Kombu<_>` types (`datetime`, `date`, `time`, `Decimal`, `UUID`, `bytes`); `plain` is a `String`, so a datetime sent there comes back as its ISO string |
//! | `interop.fail(message)` | fails; Python raises `ValueError(message)` |
//! | `interop.sleep(seconds)` | waits without blocking the worker, returns `seconds` |
//! | `interop.wait_for_file(path, seconds)` | waits (polling, without blocking the worker) until the file exists, returns `path`; fails with `TimeoutError` after `seconds` (a gate a test opens once it has seen the task running) |
//! | `interop.touch(path, token)` | appends `token` and a newline to the file, returns `token` |
//! | `interop.request()` | returns what the task knows of its request (id, retries, eta, ...) |
//! | `interop.panic(message)` | panics; Python sees a failure (`TaskPanicked`) |
//! | `interop.flaky(key, failures)` | fails with a retryable error the first `failures` times it runs for `key` (retried with a 0.1-0.5 s backoff, at most 3 times), then returns the number of attempts |
//! | `interop.block(seconds)` | a blocking task: sleeps its thread, returns `seconds` (for time limits) |
//!
//! Queue from `CELERIAC_QUEUE` (default `celery`), broker from `CELERIAC_BROKER_URL`.

use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Duration;

use celeriac::protocol::time::format_datetime;
use celeriac::task::{BlockingTask, RetryBackoff, TaskOptions};
use celeriac::types::{Decimal, Kombu};
use celeriac::{connect_broker, Config, Task, TaskContext, TaskError, WorkerSystem};
use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// A number as Python sends it: an integer or a float.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(untagged)]
enum Number {
    Int(i64),
    Float(f64),
}

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NumberVisitor;
        impl Visitor<'_> for NumberVisitor {
            type Value = Number;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Number, E> {
                Ok(Number::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Number, E> {
                i64::try_from(v)
                    .map(Number::Int)
                    .or(Ok(Number::Float(v as f64)))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Number, E> {
                Ok(Number::Float(v))
            }
        }
        deserializer.deserialize_any(NumberVisitor)
    }
}

/// `interop.add(x, y)`.
struct Add;

#[derive(Serialize, Deserialize)]
struct AddArgs {
    x: Number,
    y: Number,
}

impl Task for Add {
    const NAME: &'static str = "interop.add";
    type Args = AddArgs;
    type Output = Number;
    async fn run(_: TaskContext, AddArgs { x, y }: AddArgs) -> Result<Number, TaskError> {
        Ok(Add::run_sync(x, y))
    }
}

/// `interop.tsum(numbers)`: the sum of a list (a chord body's argument is the list of its
/// header's results).
struct Tsum;

impl Task for Tsum {
    const NAME: &'static str = "interop.tsum";
    type Args = (Vec<Number>,);
    type Output = Number;
    async fn run(_: TaskContext, (numbers,): (Vec<Number>,)) -> Result<Number, TaskError> {
        let mut total = Number::Int(0);
        for number in numbers {
            total = Add::run_sync(total, number);
        }
        Ok(total)
    }
}

impl Add {
    /// `x + y`, in integers while they fit.
    fn run_sync(x: Number, y: Number) -> Number {
        match (x, y) {
            (Number::Int(x), Number::Int(y)) => x
                .checked_add(y)
                .map_or(Number::Float(x as f64 + y as f64), Number::Int),
            (Number::Int(x), Number::Float(y)) => Number::Float(x as f64 + y),
            (Number::Float(x), Number::Int(y)) => Number::Float(x + y as f64),
            (Number::Float(x), Number::Float(y)) => Number::Float(x + y),
        }
    }
}

/// `interop.echo(*args, **kwargs)`: a `Value` receives `[args, kwargs]`.
struct Echo;

impl Task for Echo {
    const NAME: &'static str = "interop.echo";
    type Args = Value;
    type Output = Value;
    async fn run(_: TaskContext, args_and_kwargs: Value) -> Result<Value, TaskError> {
        Ok(args_and_kwargs)
    }
}

/// `interop.typed_echo(...)`: one argument of each kombu type, and a `String`.
struct TypedEcho;

/// The arguments (and the result) of `interop.typed_echo`.
#[derive(Serialize, Deserialize)]
struct TypedValues {
    when: Kombu<DateTime<Utc>>,
    local: Kombu<DateTime<FixedOffset>>,
    naive: Kombu<NaiveDateTime>,
    day: Kombu<NaiveDate>,
    at: Kombu<NaiveTime>,
    amount: Kombu<Decimal>,
    id: Kombu<uuid::Uuid>,
    text: Kombu<Vec<u8>>,
    raw: Kombu<Vec<u8>>,
    plain: String,
}

impl Task for TypedEcho {
    const NAME: &'static str = "interop.typed_echo";
    type Args = TypedValues;
    type Output = TypedValues;
    async fn run(_: TaskContext, values: TypedValues) -> Result<TypedValues, TaskError> {
        Ok(values)
    }
}

/// `interop.fail(message)`.
struct Fail;

impl Task for Fail {
    const NAME: &'static str = "interop.fail";
    type Args = (String,);
    type Output = ();
    async fn run(_: TaskContext, (message,): (String,)) -> Result<(), TaskError> {
        Err(TaskError::value_error(message))
    }
}

/// `interop.sleep(seconds)`.
struct Sleep;

impl Task for Sleep {
    const NAME: &'static str = "interop.sleep";
    type Args = (f64,);
    type Output = f64;
    async fn run(_: TaskContext, (seconds,): (f64,)) -> Result<f64, TaskError> {
        let wait = Duration::try_from_secs_f64(seconds)
            .map_err(|error| TaskError::value_error(format!("seconds: {error}")))?;
        actix_rt::time::sleep(wait).await;
        Ok(seconds)
    }
}

/// `interop.wait_for_file(path, seconds)`: a gate a test opens by creating the file.
struct WaitForFile;

/// How often `interop.wait_for_file` looks for its file.
const FILE_POLL: Duration = Duration::from_millis(20);

impl Task for WaitForFile {
    const NAME: &'static str = "interop.wait_for_file";
    type Args = (String, f64);
    type Output = String;
    async fn run(_: TaskContext, (path, seconds): (String, f64)) -> Result<String, TaskError> {
        let patience = Duration::try_from_secs_f64(seconds)
            .map_err(|error| TaskError::value_error(format!("seconds: {error}")))?;
        let deadline = std::time::Instant::now() + patience;
        while !std::path::Path::new(&path).exists() {
            if std::time::Instant::now() >= deadline {
                return Err(TaskError::new(
                    "TimeoutError",
                    "builtins",
                    format!("{path} did not appear within {seconds} s"),
                ));
            }
            actix_rt::time::sleep(FILE_POLL).await;
        }
        Ok(path)
    }
}

/// `interop.touch(path, token)`.
struct Touch;

#[derive(Serialize, Deserialize)]
struct TouchArgs {
    path: String,
    token: String,
}

impl Task for Touch {
    const NAME: &'static str = "interop.touch";
    type Args = TouchArgs;
    type Output = String;
    async fn run(
        _: TaskContext,
        TouchArgs { path, token }: TouchArgs,
    ) -> Result<String, TaskError> {
        let line = format!("{token}\n");
        let written = actix_rt::task::spawn_blocking(move || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .and_then(|mut file| file.write_all(line.as_bytes()))
                .map_err(|error| format!("{path}: {error}"))
        })
        .await
        .map_err(|error| TaskError::runtime_error(error.to_string()))?;
        written.map_err(|error| TaskError::new("OSError", "builtins", error))?;
        Ok(token)
    }
}

/// `interop.request()`.
struct Request;

impl Task for Request {
    const NAME: &'static str = "interop.request";
    type Args = ();
    type Output = Value;
    async fn run(ctx: TaskContext, (): ()) -> Result<Value, TaskError> {
        Ok(json!({
            "id": ctx.id,
            "name": ctx.name,
            "retries": ctx.retries,
            "eta": ctx.eta.as_ref().map(format_datetime),
            "expires": ctx.expires.as_ref().map(format_datetime),
            "parent_id": ctx.parent_id,
            "root_id": ctx.root_id,
            "queue": ctx.queue,
            "priority": ctx.priority,
            "headers": ctx.headers,
        }))
    }
}

/// `interop.panic(message)`.
struct Panic;

impl Task for Panic {
    const NAME: &'static str = "interop.panic";
    type Args = (String,);
    type Output = ();
    async fn run(_: TaskContext, (message,): (String,)) -> Result<(), TaskError> {
        panic!("{message}")
    }
}

/// `interop.flaky(key, failures)`.
struct Flaky;

/// Attempts so far, by key.
static FLAKY_ATTEMPTS: Mutex<Option<HashMap<String, u32>>> = Mutex::new(None);

#[derive(Serialize, Deserialize)]
struct FlakyArgs {
    key: String,
    failures: u32,
}

impl Task for Flaky {
    const NAME: &'static str = "interop.flaky";
    type Args = FlakyArgs;
    type Output = u32;
    async fn run(_: TaskContext, FlakyArgs { key, failures }: FlakyArgs) -> Result<u32, TaskError> {
        let attempts = {
            let mut attempts = FLAKY_ATTEMPTS
                .lock()
                .map_err(|_| TaskError::runtime_error("attempt counter poisoned"))?;
            let count = attempts
                .get_or_insert_with(HashMap::new)
                .entry(key.clone())
                .or_insert(0);
            *count += 1;
            *count
        };
        if attempts <= failures {
            return Err(TaskError::runtime_error(format!(
                "flaky {key}: attempt {attempts} of {failures} planned failures"
            ))
            .retryable());
        }
        Ok(attempts)
    }

    fn options() -> TaskOptions {
        TaskOptions {
            retry_backoff: RetryBackoff {
                min: Duration::from_millis(100),
                max: Duration::from_millis(500),
                jitter: true,
            },
            ..TaskOptions::default()
        }
    }
}

/// `interop.block(seconds)`: a blocking task.
struct Block;

impl BlockingTask for Block {
    const NAME: &'static str = "interop.block";
    type Args = (f64,);
    type Output = f64;
    fn run(_: TaskContext, (seconds,): (f64,)) -> Result<f64, TaskError> {
        let wait = Duration::try_from_secs_f64(seconds)
            .map_err(|error| TaskError::value_error(format!("seconds: {error}")))?;
        std::thread::sleep(wait);
        Ok(seconds)
    }
}

#[actix::main]
async fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let config = Config::from_env();
    match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            log::error!("interop worker failed: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    let queue = std::env::var("CELERIAC_QUEUE").unwrap_or_else(|_| config.default_queue.clone());
    let broker = connect_broker(&config).await?;
    let worker = WorkerSystem::builder(broker, &config)
        .queue(queue)
        .register::<Add>()
        .register::<Echo>()
        .register::<Tsum>()
        .register::<TypedEcho>()
        .register::<Fail>()
        .register::<Sleep>()
        .register::<WaitForFile>()
        .register::<Touch>()
        .register::<Request>()
        .register::<Panic>()
        .register::<Flaky>()
        .register_blocking::<Block>()
        .start()
        .await?;
    worker.run_until_signal().await?;
    Ok(())
}
