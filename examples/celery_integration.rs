//! The worker that Celery 5.7's own integration suite (`t/integration/` of the `celery`
//! sdist) runs against, in place of its Python session worker (`scripts/celery-suite`).
//!
//! It serves, under their Python names (`t.integration.tasks.<name>`), the tasks of the
//! suite's `tasks.py` that can be written without Python internals, with the same
//! signatures, defaults, retry settings and side effects:
//!
//! | task | does |
//! |---|---|
//! | `identity(x)` | returns `x` |
//! | `add(x, y, z=None)`, `add_not_typed(x, y)`, `add_ignore_result(x, y)` (no result stored), `add_with_result(x, y)` | Python's `+` on numbers, strings and lists (`z` added when truthy) |
//! | `mul(x, y)` | Python's `*` on numbers |
//! | `tsum(nums)`, `xsum(nums)` | Python's `sum`; `xsum` sums nested lists first |
//! | `delayed_sum(numbers, pause_time=1)` | sleeps, then sums |
//! | `delayed_sum_with_soft_guard(numbers, pause_time=1)` | as `delayed_sum`; answers 0 when the soft time limit comes first |
//! | `sum_and_record(values, redis_key)` | sums and `RPUSH`es its own id to `redis_key` |
//! | `write_to_file_and_return_int(file_name, i)` | appends `i` and a newline to the file, returns `i` |
//! | `raise_error(*args)` | fails with `ValueError("deliberate error")` |
//! | `fail(*args)` | fails with `t.integration.tasks.ExpectedException("Task expected to fail")` |
//! | `print_unicode(log_message=..., print_message=...)` | logs one, prints the other |
//! | `return_exception(e)` | returns `[e, true]` |
//! | `sleeping(i, **_)` | sleeps `i` seconds, returns `None` |
//! | `ids(i)`, `collect_ids(res, i)` | `[root_id, parent_id, i]`, `[res, [root_id, parent_id, i]]` |
//! | `retry(return_value=None)` | retried every 5 s (3 times at most); then returns `return_value`, or fails with `ExpectedException` |
//! | `retry_once(*args, expires=None, max_retries=1, countdown=0.1)` | retried once, then returns its retry count |
//! | `retry_once_ignore_result()`, `retry_once_with_result()` | retried once at once, then return the retry count |
//! | `retry_once_priority(*args, ...)` | retried once, then returns the message priority |
//! | `redis_echo(message, redis_key="redis-echo")` | `RPUSH redis_key message` |
//! | `redis_count(redis_key="redis-count")` | `INCR redis_key` |
//! | `errback_old_style(request_id)` | `INCR request_id`, returns `request_id` |
//! | `errback_old_style_with_args(request_id, label)` | `RPUSH request_id label` |
//! | `return_priority(*_args)` | `"Priority: <priority>"` |
//! | `return_request_eta()` | the request's ETA (ISO 8601), or `None` |
//! | `replaced_with_me()` | `True` |
//! | `add_pydantic(data)`, `add_pydantic_string_annotations(data)` | `{"result": data.x + data.y}` (the models are dicts on the wire) |
//! | `reject_then_succeed()` | rejected with requeue the first time it is seen, then `"second-pass"` |
//! | `reject_without_requeue()` | `Reject("rejected", requeue=False)`: a FAILURE result |
//! | `soft_time_limit_must_exceed_time_limit()` | declares `soft_time_limit=2, time_limit=1`; returns `None` |
//! | `auto_retry_class_task()` | `ClassBasedAutoRetryTask`: fails with `ValueError` and is retried once (after 10 ms to 1 s), then returns 1 |
//!
//! Not served, and why (the suite's tests that call them fail with `NotRegistered` or
//! time out):
//!
//! - canvas built inside a task, which needs Celery's client API in the task:
//!   `build_chain_inside_task` (returns the `AsyncResult` of a chain it sends),
//!   `add_to_all_to_chord` (`self.add_to_chord`), `add_chord_to_chord`; `chain_add` and
//!   `chord_add` are only run eagerly, in the test process, so no worker sees them;
//! - every task that calls `self.replace(...)`: `add_to_all`, `add_replaced`,
//!   `add_replaced_with_chain`, `replace_with_chain`, `replace_with_chain_which_raises`,
//!   `replace_with_empty_chain`, `replace_with_chain_which_contains_a_group`,
//!   `record_replaced_task_nesting`, `second_order_replace1/2`, `fail_replaced`,
//!   `replace_with_stamped_task` (stamping visitors too);
//! - Python objects as results or arguments: `return_nested_signature_*` (return canvas
//!   objects), `rebuild_signature` (`Signature.from_dict`);
//! - new-style errbacks, which receive the Python request, exception and traceback:
//!   `errback_new_style`, `errback_new_style_with_args`;
//! - exceptions that only exist as pickled Python objects: `fail_unpickleable`,
//!   `retry_unpickleable` (`UnpickleableException` takes two arguments; celeriac sends one
//!   message);
//! - what the task context does not carry: `return_properties` (the AMQP properties), `retry_once_headers` (Python's
//!   `request.headers`), `return_request_time_limits` and
//!   `task_with_declared_time_limits` (the request's time limits);
//! - a retry with other arguments (celeriac retries the same message):
//!   `retry_with_args_after_kwargs`, `retry_with_kwargs_after_args`;
//! - the worker's result backend from inside a task: `store_success_then_reject`.
//!
//! `pidbox_reset_error`, `schedule_add_then_cancel_consumer` and `pending_operations_count`
//! in `tasks.py` are not tasks but remote-control commands it adds to a Python worker, for
//! `test_worker.py`'s own Python workers.
//!
//! Differences that remain in what is served: `fail(*args)` sends only its first exception
//! argument (a `TaskError` carries one message), so Python sees
//! `ExpectedException("Task expected to fail")` whatever the extra arguments;
//! `retry_once(expires=...)` cannot change the expiry of its retry (the retry is the same
//! message); `reject_without_requeue` acks late, which
//! celeriac's `Reject` needs.
//!
//! Environment: `CELERIAC_BROKER_URL`, `CELERIAC_RESULT_BACKEND` and the rest of
//! `Config::from_env`; `CELERIAC_QUEUE` (default `celery`); `CELERIAC_HOSTNAME` (the node
//! name Celery's tests expect, `celery@<host>`, which `test_inspect.py` reads in the
//! replies); `REDIS_HOST` (default `localhost`) and
//! `REDIS_PORT` (default 6379) for the tasks that write to Redis, as the suite's
//! `tasks.py` reads them.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use celeriac::protocol::time::format_datetime;
use celeriac::task::{RetryBackoff, TaskOptions};
use celeriac::{connect_broker, Config, Task, TaskContext, TaskError, WorkerSystem};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// The module of the suite's tasks: task names and exception classes live there.
const MODULE: &str = "t.integration.tasks";

// ---------------------------------------------------------------------------------------
// Python's arithmetic on JSON values.

/// `TypeError` as Python words it for an operator.
fn unsupported(op: &str, a: &Value, b: &Value) -> TaskError {
    TaskError::type_error(format!(
        "unsupported operand type(s) for {op}: '{}' and '{}'",
        py_type(a),
        py_type(b)
    ))
}

/// The Python type name of a JSON value.
fn py_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

/// An integer (bools count, as in Python), if the value is one.
fn as_int(value: &Value) -> Option<i64> {
    match value {
        Value::Bool(b) => Some(i64::from(*b)),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

/// A float, if the value is a number (or a bool).
fn as_float(value: &Value) -> Option<f64> {
    match value {
        Value::Bool(b) => Some(f64::from(u8::from(*b))),
        Value::Number(n) => n.as_f64(),
        _ => None,
    }
}

/// A float result as JSON (`NaN` and infinities have no JSON form).
fn float_value(x: f64) -> Result<Value, TaskError> {
    serde_json::Number::from_f64(x)
        .map(Value::Number)
        .ok_or_else(|| TaskError::value_error(format!("{x} has no JSON form")))
}

/// Python's `a + b` on numbers, strings and lists.
fn py_add(a: &Value, b: &Value) -> Result<Value, TaskError> {
    match (a, b) {
        (Value::String(a), Value::String(b)) => Ok(Value::String(format!("{a}{b}"))),
        (Value::Array(a), Value::Array(b)) => Ok(Value::Array([&a[..], &b[..]].concat())),
        _ => match (as_int(a), as_int(b)) {
            (Some(x), Some(y)) => match x.checked_add(y) {
                Some(sum) => Ok(json!(sum)),
                None => float_value(x as f64 + y as f64),
            },
            _ => match (as_float(a), as_float(b)) {
                (Some(x), Some(y)) => float_value(x + y),
                _ => Err(unsupported("+", a, b)),
            },
        },
    }
}

/// Python's `a * b` on numbers.
fn py_mul(a: &Value, b: &Value) -> Result<Value, TaskError> {
    match (as_int(a), as_int(b)) {
        (Some(x), Some(y)) => match x.checked_mul(y) {
            Some(product) => Ok(json!(product)),
            None => float_value(x as f64 * y as f64),
        },
        _ => match (as_float(a), as_float(b)) {
            (Some(x), Some(y)) => float_value(x * y),
            _ => Err(unsupported("*", a, b)),
        },
    }
}

/// Python's `sum(items)` (starting from 0).
fn py_sum<'a>(items: impl IntoIterator<Item = &'a Value>) -> Result<Value, TaskError> {
    items
        .into_iter()
        .try_fold(json!(0), |total, item| py_add(&total, item))
}

/// The items of a JSON list, or Python's `TypeError` for anything else.
fn iterable(value: &Value) -> Result<&[Value], TaskError> {
    value.as_array().map(Vec::as_slice).ok_or_else(|| {
        TaskError::type_error(format!("'{}' object is not iterable", py_type(value)))
    })
}

/// Python's truth value of a JSON value.
fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|x| x != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(items) => !items.is_empty(),
        Value::Object(fields) => !fields.is_empty(),
    }
}

/// Seconds given by Python (an int or a float) as a duration.
fn seconds(value: &Value) -> Result<Duration, TaskError> {
    as_float(value)
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| TaskError::value_error(format!("not a number of seconds: {value}")))
}

/// A call of a `*args, **kwargs` task: what a `Value` argument receives, `[args, kwargs]`.
struct Call {
    args: Vec<Value>,
    kwargs: Map<String, Value>,
}

impl Call {
    /// Splits `[args, kwargs]`.
    fn from_value(value: Value) -> Result<Self, TaskError> {
        match value {
            Value::Array(mut parts) if parts.len() == 2 => {
                let kwargs = match parts.pop() {
                    Some(Value::Object(kwargs)) => kwargs,
                    _ => Map::new(),
                };
                let args = match parts.pop() {
                    Some(Value::Array(args)) => args,
                    _ => Vec::new(),
                };
                Ok(Call { args, kwargs })
            }
            other => Err(TaskError::type_error(format!(
                "expected [args, kwargs], got {other}"
            ))),
        }
    }

    /// A keyword-only argument, or its default.
    fn keyword(&self, name: &str, default: Value) -> Value {
        self.kwargs.get(name).cloned().unwrap_or(default)
    }

    /// `TypeError` for keywords the task does not take.
    fn only_keywords(&self, task: &str, allowed: &[&str]) -> Result<(), TaskError> {
        match self.kwargs.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(unexpected) => Err(TaskError::type_error(format!(
                "{task}() got an unexpected keyword argument '{unexpected}'"
            ))),
            None => Ok(()),
        }
    }
}

/// Python's `self.retry(countdown=..., max_retries=...)` past its limit: Celery raises
/// `MaxRetriesExceededError`.
fn max_retries_exceeded(ctx: &TaskContext) -> TaskError {
    TaskError::new(
        "MaxRetriesExceededError",
        "celery.exceptions",
        format!("Can't retry {}[{}]", ctx.name, ctx.id),
    )
}

/// Retries the task after `countdown`, or fails as Celery does once `max_retries` (given
/// by the call, not the task's options) are used up.
fn retry_or_give_up(ctx: &TaskContext, countdown: &Value, max_retries: &Value) -> TaskError {
    let limit = as_int(max_retries);
    if limit.is_some_and(|limit| i64::from(ctx.retries) >= limit) {
        return max_retries_exceeded(ctx);
    }
    let delay = if countdown.is_null() {
        Ok(Duration::from_secs(3 * 60))
    } else {
        seconds(countdown)
    };
    match delay {
        Ok(delay) => TaskError::new("Retry", "celery.exceptions", "retry").retry_in(delay),
        Err(error) => error,
    }
}

/// Options for tasks whose retry limit the task checks itself (from its call's
/// `max_retries`): the worker's own limit must never come first.
fn self_limited_retries() -> TaskOptions {
    TaskOptions {
        max_retries: Some(u32::MAX),
        ..TaskOptions::default()
    }
}

// ---------------------------------------------------------------------------------------
// Redis, as the suite's `get_redis_connection()` reaches it.

/// The Redis of `REDIS_HOST` / `REDIS_PORT`, shared with the tasks as app data.
struct SuiteRedis(redis::Client);

/// A connection to the suite's Redis, for the task in `ctx`.
async fn redis_connection(
    ctx: &TaskContext,
) -> Result<redis::aio::MultiplexedConnection, TaskError> {
    let client = ctx.data::<SuiteRedis>()?;
    client
        .0
        .get_multiplexed_async_connection()
        .await
        .map_err(redis_error)
}

/// A Redis failure as the Python `redis.exceptions.ConnectionError` family would show it.
fn redis_error(error: redis::RedisError) -> TaskError {
    TaskError::new("RedisError", "redis.exceptions", error.to_string())
}

/// `RPUSH key value`.
async fn rpush(ctx: &TaskContext, key: &str, value: &Value) -> Result<(), TaskError> {
    let mut connection = redis_connection(ctx).await?;
    let _: i64 = connection
        .rpush(key, redis_bytes(value))
        .await
        .map_err(redis_error)?;
    Ok(())
}

/// What Python's redis client writes for `value`: a string's text, Python `bytes` (kombu's
/// `bytes` / `base64` envelope, as `str(uuid4()).encode()` arrives) as the bytes
/// themselves, anything else as its JSON.
fn redis_bytes(value: &Value) -> Vec<u8> {
    match value {
        Value::String(text) => text.clone().into_bytes(),
        Value::Object(fields) if fields.contains_key("__type__") => {
            serde_json::from_value::<celeriac::types::Kombu<Vec<u8>>>(value.clone())
                .map(celeriac::types::Kombu::into_inner)
                .unwrap_or_else(|_| value.to_string().into_bytes())
        }
        other => other.to_string().into_bytes(),
    }
}

/// `INCR key`.
async fn incr(ctx: &TaskContext, key: &str) -> Result<(), TaskError> {
    let mut connection = redis_connection(ctx).await?;
    let _: i64 = connection.incr(key, 1).await.map_err(redis_error)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The tasks.

/// Defines a task named `t.integration.tasks.<name>` taking `[args, kwargs]` (a `Value`).
macro_rules! value_task {
    ($type:ident, $name:literal, |$ctx:ident, $call:ident| $body:expr) => {
        value_task!($type, $name, TaskOptions::default(), |$ctx, $call| $body);
    };
    ($type:ident, $name:literal, $options:expr, |$ctx:ident, $call:ident| $body:expr) => {
        #[doc = concat!("`", $name, "` of the suite's `tasks.py`.")]
        struct $type;

        impl Task for $type {
            const NAME: &'static str = concat!("t.integration.tasks.", $name);
            type Args = Value;
            type Output = Value;
            async fn run($ctx: TaskContext, args: Value) -> Result<Value, TaskError> {
                #[allow(unused_variables)]
                let $call = Call::from_value(args)?;
                $body
            }
            fn options() -> TaskOptions {
                $options
            }
        }
    };
}

value_task!(Identity, "identity", |_ctx, call| {
    call.only_keywords("identity", &["x"])?;
    match (call.args.as_slice(), call.kwargs.get("x")) {
        ([x], None) | ([], Some(x)) => Ok(x.clone()),
        _ => Err(TaskError::type_error("identity() takes 1 argument")),
    }
});

/// Binds `add(x, y, z=None)`-like parameters by position, then by keyword.
fn bind(call: &Call, names: &[&str], required: usize) -> Result<Vec<Value>, TaskError> {
    if call.args.len() > names.len() {
        return Err(TaskError::type_error(format!(
            "takes {} positional arguments but {} were given",
            names.len(),
            call.args.len()
        )));
    }
    call.only_keywords("task", names)?;
    names
        .iter()
        .enumerate()
        .map(
            |(index, name)| match (call.args.get(index), call.kwargs.get(*name)) {
                (Some(_), Some(_)) => Err(TaskError::type_error(format!(
                    "got multiple values for argument '{name}'"
                ))),
                (Some(value), None) | (None, Some(value)) => Ok(value.clone()),
                (None, None) if index < required => Err(TaskError::type_error(format!(
                    "missing required argument: '{name}'"
                ))),
                (None, None) => Ok(Value::Null),
            },
        )
        .collect()
}

value_task!(Add, "add", |_ctx, call| {
    let [x, y, z]: [Value; 3] = bind(&call, &["x", "y", "z"], 2)?
        .try_into()
        .map_err(|_| TaskError::type_error("add(x, y, z=None)"))?;
    let sum = py_add(&x, &y)?;
    if truthy(&z) {
        py_add(&sum, &z)
    } else {
        Ok(sum)
    }
});

/// `add(x, y)` for the variants with two parameters.
fn add_two(call: &Call) -> Result<Value, TaskError> {
    let [x, y]: [Value; 2] = bind(call, &["x", "y"], 2)?
        .try_into()
        .map_err(|_| TaskError::type_error("add(x, y)"))?;
    py_add(&x, &y)
}

value_task!(AddNotTyped, "add_not_typed", |_ctx, call| add_two(&call));
value_task!(
    AddIgnoreResult,
    "add_ignore_result",
    TaskOptions {
        ignore_result: Some(true),
        ..TaskOptions::default()
    },
    |_ctx, call| add_two(&call)
);
value_task!(
    AddWithResult,
    "add_with_result",
    TaskOptions {
        ignore_result: Some(false),
        ..TaskOptions::default()
    },
    |_ctx, call| add_two(&call)
);

value_task!(Mul, "mul", |_ctx, call| {
    let [x, y]: [Value; 2] = bind(&call, &["x", "y"], 2)?
        .try_into()
        .map_err(|_| TaskError::type_error("mul(x, y)"))?;
    py_mul(&x, &y)
});

value_task!(Tsum, "tsum", |_ctx, call| {
    let [nums]: [Value; 1] = bind(&call, &["nums"], 1)?
        .try_into()
        .map_err(|_| TaskError::type_error("tsum(nums)"))?;
    py_sum(iterable(&nums)?)
});

value_task!(Xsum, "xsum", |_ctx, call| {
    let [nums]: [Value; 1] = bind(&call, &["nums"], 1)?
        .try_into()
        .map_err(|_| TaskError::type_error("xsum(nums)"))?;
    let parts = iterable(&nums)?
        .iter()
        .map(|num| match num {
            Value::Array(items) => py_sum(items),
            other => Ok(other.clone()),
        })
        .collect::<Result<Vec<_>, _>>()?;
    py_sum(&parts)
});

/// The arguments of `delayed_sum` and `delayed_sum_with_soft_guard`.
fn numbers_and_pause(call: &Call) -> Result<(Value, Duration), TaskError> {
    let [numbers, pause]: [Value; 2] = bind(call, &["numbers", "pause_time"], 1)?
        .try_into()
        .map_err(|_| TaskError::type_error("delayed_sum(numbers, pause_time=1)"))?;
    let pause = if pause.is_null() {
        Duration::from_secs(1)
    } else {
        seconds(&pause)?
    };
    Ok((numbers, pause))
}

value_task!(DelayedSum, "delayed_sum", |_ctx, call| {
    let (numbers, pause) = numbers_and_pause(&call)?;
    actix_rt::time::sleep(pause).await;
    py_sum(iterable(&numbers)?)
});

value_task!(
    DelayedSumWithSoftGuard,
    "delayed_sum_with_soft_guard",
    |ctx, call| {
        let (numbers, pause) = numbers_and_pause(&call)?;
        tokio::select! {
            () = actix_rt::time::sleep(pause) => py_sum(iterable(&numbers)?),
            () = ctx.soft_limit_reached() => Ok(json!(0)),
        }
    }
);

value_task!(SumAndRecord, "sum_and_record", |ctx, call| {
    let [values, key]: [Value; 2] = bind(&call, &["values", "redis_key"], 2)?
        .try_into()
        .map_err(|_| TaskError::type_error("sum_and_record(values, redis_key)"))?;
    let sum = py_sum(iterable(&values)?)?;
    let key = key
        .as_str()
        .ok_or_else(|| TaskError::type_error("redis_key must be a string"))?;
    rpush(&ctx, key, &json!(ctx.id)).await?;
    Ok(sum)
});

value_task!(
    WriteToFileAndReturnInt,
    "write_to_file_and_return_int",
    |_ctx, call| {
        let [file_name, i]: [Value; 2] = bind(&call, &["file_name", "i"], 2)?
            .try_into()
            .map_err(|_| TaskError::type_error("write_to_file_and_return_int(file_name, i)"))?;
        let path = file_name
            .as_str()
            .ok_or_else(|| TaskError::type_error("file_name must be a string"))?
            .to_string();
        let line = match &i {
            Value::String(s) => format!("{s}\n"),
            other => format!("{other}\n"),
        };
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
        Ok(i)
    }
);

value_task!(RaiseError, "raise_error", |_ctx, call| {
    call.only_keywords("raise_error", &[])?;
    Err(TaskError::value_error("deliberate error"))
});

value_task!(Fail, "fail", |_ctx, call| {
    call.only_keywords("fail", &[])?;
    Err(TaskError::new(
        "ExpectedException",
        MODULE,
        "Task expected to fail",
    ))
});

value_task!(PrintUnicode, "print_unicode", |_ctx, call| {
    let [log_message, print_message]: [Value; 2] =
        bind(&call, &["log_message", "print_message"], 0)?
            .try_into()
            .map_err(|_| TaskError::type_error("print_unicode(log_message, print_message)"))?;
    let text = |value: Value, default: &str| match value {
        Value::Null => default.to_string(),
        Value::String(s) => s,
        other => other.to_string(),
    };
    log::warn!("{}", text(log_message, "håå®ƒ valmuefrø"));
    println!("{}", text(print_message, "hiöäüß"));
    Ok(Value::Null)
});

value_task!(ReturnException, "return_exception", |_ctx, call| {
    let [e]: [Value; 1] = bind(&call, &["e"], 1)?
        .try_into()
        .map_err(|_| TaskError::type_error("return_exception(e)"))?;
    Ok(json!([e, true]))
});

value_task!(Sleeping, "sleeping", |_ctx, call| {
    let i = match (call.args.as_slice(), call.kwargs.get("i")) {
        ([i], None) | ([], Some(i)) => i.clone(),
        _ => return Err(TaskError::type_error("sleeping(i, **_)")),
    };
    actix_rt::time::sleep(seconds(&i)?).await;
    Ok(Value::Null)
});

value_task!(Ids, "ids", |ctx, call| {
    let [i]: [Value; 1] = bind(&call, &["i"], 1)?
        .try_into()
        .map_err(|_| TaskError::type_error("ids(i)"))?;
    Ok(json!([ctx.root_id, ctx.parent_id, i]))
});

value_task!(CollectIds, "collect_ids", |ctx, call| {
    let [res, i]: [Value; 2] = bind(&call, &["res", "i"], 2)?
        .try_into()
        .map_err(|_| TaskError::type_error("collect_ids(res, i)"))?;
    Ok(json!([res, [ctx.root_id, ctx.parent_id, i]]))
});

value_task!(
    Retry,
    "retry",
    TaskOptions {
        max_retries: Some(3),
        ..TaskOptions::default()
    },
    |ctx, call| {
        let [return_value]: [Value; 1] = bind(&call, &["return_value"], 0)?
            .try_into()
            .map_err(|_| TaskError::type_error("retry(return_value=None)"))?;
        if truthy(&return_value) && ctx.retries >= 3 {
            return Ok(return_value);
        }
        Err(TaskError::new("ExpectedException", MODULE, "").retry_in(Duration::from_secs(5)))
    }
);

value_task!(
    RetryOnce,
    "retry_once",
    self_limited_retries(),
    |ctx, call| {
        call.only_keywords("retry_once", &["expires", "max_retries", "countdown"])?;
        if ctx.retries > 0 {
            return Ok(json!(ctx.retries));
        }
        Err(retry_or_give_up(
            &ctx,
            &call.keyword("countdown", json!(0.1)),
            &call.keyword("max_retries", json!(1)),
        ))
    }
);

/// `retry_once_ignore_result` and `retry_once_with_result`: retried once, at once.
fn retry_once_now(ctx: &TaskContext) -> Result<Value, TaskError> {
    if ctx.retries > 0 {
        return Ok(json!(ctx.retries));
    }
    Err(TaskError::new("Retry", "celery.exceptions", "retry").retry_in(Duration::ZERO))
}

value_task!(
    RetryOnceIgnoreResult,
    "retry_once_ignore_result",
    TaskOptions {
        ignore_result: Some(true),
        ..TaskOptions::default()
    },
    |ctx, call| retry_once_now(&ctx)
);

value_task!(
    RetryOnceWithResult,
    "retry_once_with_result",
    TaskOptions {
        ignore_result: Some(false),
        ..TaskOptions::default()
    },
    |ctx, call| retry_once_now(&ctx)
);

value_task!(
    RetryOncePriority,
    "retry_once_priority",
    self_limited_retries(),
    |ctx, call| {
        call.only_keywords(
            "retry_once_priority",
            &["expires", "max_retries", "countdown"],
        )?;
        if ctx.retries > 0 {
            return Ok(json!(ctx.priority));
        }
        Err(retry_or_give_up(
            &ctx,
            &call.keyword("countdown", json!(0.1)),
            &call.keyword("max_retries", json!(1)),
        ))
    }
);

value_task!(RedisEcho, "redis_echo", |ctx, call| {
    let [message, key]: [Value; 2] = bind(&call, &["message", "redis_key"], 1)?
        .try_into()
        .map_err(|_| TaskError::type_error("redis_echo(message, redis_key)"))?;
    let key = key.as_str().unwrap_or("redis-echo").to_string();
    rpush(&ctx, &key, &message).await?;
    Ok(Value::Null)
});

value_task!(RedisEchoGroupId, "redis_echo_group_id", |ctx, call| {
    let [_, key]: [Value; 2] = bind(&call, &["_", "redis_key"], 1)?
        .try_into()
        .map_err(|_| TaskError::type_error("redis_echo_group_id(_, redis_key)"))?;
    let key = key.as_str().unwrap_or("redis-group-ids").to_string();
    let group = ctx.group_id.clone().map_or(Value::Null, Value::String);
    rpush(&ctx, &key, &group).await?;
    Ok(Value::Null)
});

value_task!(RedisCount, "redis_count", |ctx, call| {
    let [key]: [Value; 1] = bind(&call, &["redis_key"], 0)?
        .try_into()
        .map_err(|_| TaskError::type_error("redis_count(redis_key)"))?;
    let key = key.as_str().unwrap_or("redis-count").to_string();
    incr(&ctx, &key).await?;
    Ok(Value::Null)
});

value_task!(ErrbackOldStyle, "errback_old_style", |ctx, call| {
    let [request_id]: [Value; 1] = bind(&call, &["request_id"], 1)?
        .try_into()
        .map_err(|_| TaskError::type_error("errback_old_style(request_id)"))?;
    let key = request_id
        .as_str()
        .ok_or_else(|| TaskError::type_error("request_id must be a string"))?;
    incr(&ctx, key).await?;
    Ok(request_id)
});

value_task!(
    ErrbackOldStyleWithArgs,
    "errback_old_style_with_args",
    |ctx, call| {
        let [request_id, label]: [Value; 2] = bind(&call, &["request_id", "label"], 2)?
            .try_into()
            .map_err(|_| TaskError::type_error("errback_old_style_with_args(request_id, label)"))?;
        let key = request_id
            .as_str()
            .ok_or_else(|| TaskError::type_error("request_id must be a string"))?;
        rpush(&ctx, key, &label).await?;
        Ok(Value::Null)
    }
);

value_task!(ReturnPriority, "return_priority", |ctx, call| {
    call.only_keywords("return_priority", &[])?;
    Ok(json!(match ctx.priority {
        Some(priority) => format!("Priority: {priority}"),
        None => "Priority: None".to_string(),
    }))
});

value_task!(ReturnRequestEta, "return_request_eta", |ctx, call| {
    bind(&call, &[], 0)?;
    Ok(json!(ctx.eta.as_ref().map(format_datetime)))
});

value_task!(ReplacedWithMe, "replaced_with_me", |_ctx, call| {
    bind(&call, &[], 0)?;
    Ok(json!(true))
});

/// `AddParameterModel` of the suite: a dict on the wire.
#[derive(Serialize, Deserialize)]
struct AddParameterModel {
    x: i64,
    y: i64,
}

/// `add_pydantic(data)`: the models are validated dicts.
fn add_pydantic(call: Call) -> Result<Value, TaskError> {
    let [data]: [Value; 1] = bind(&call, &["data"], 1)?
        .try_into()
        .map_err(|_| TaskError::type_error("add_pydantic(data)"))?;
    let AddParameterModel { x, y } = serde_json::from_value(data).map_err(|error| {
        TaskError::new(
            "ValidationError",
            "pydantic_core._pydantic_core",
            error.to_string(),
        )
    })?;
    let result = x
        .checked_add(y)
        .ok_or_else(|| TaskError::value_error("x + y overflows"))?;
    Ok(json!({ "result": result }))
}

value_task!(AddPydantic, "add_pydantic", |_ctx, call| add_pydantic(call));
value_task!(
    AddPydanticStringAnnotations,
    "add_pydantic_string_annotations",
    |_ctx, call| add_pydantic(call)
);

value_task!(
    RejectThenSucceed,
    "reject_then_succeed",
    TaskOptions {
        acks_late: Some(true),
        ..TaskOptions::default()
    },
    |ctx, call| {
        bind(&call, &[], 0)?;
        if !ctx.redelivered {
            return Err(TaskError::reject("first delivery", true));
        }
        Ok(json!("second-pass"))
    }
);

value_task!(
    RejectWithoutRequeue,
    "reject_without_requeue",
    TaskOptions {
        acks_late: Some(true),
        ..TaskOptions::default()
    },
    |_ctx, call| {
        bind(&call, &[], 0)?;
        Err(TaskError::reject("rejected", false))
    }
);

value_task!(
    SoftTimeLimitMustExceedTimeLimit,
    "soft_time_limit_must_exceed_time_limit",
    TaskOptions {
        soft_time_limit: Some(Duration::from_secs(2)),
        time_limit: Some(Duration::from_secs(1)),
        ..TaskOptions::default()
    },
    |_ctx, call| {
        bind(&call, &[], 0)?;
        Ok(Value::Null)
    }
);

/// `ClassBasedAutoRetryTask` (`auto_retry_class_task`): `autoretry_for=(ValueError,)`,
/// `max_retries=1`, `retry_backoff=True` (Celery waits up to 1 s before the first retry).
struct AutoRetryClassTask;

impl Task for AutoRetryClassTask {
    const NAME: &'static str = "auto_retry_class_task";
    type Args = ();
    type Output = u32;
    async fn run(ctx: TaskContext, (): ()) -> Result<u32, TaskError> {
        if ctx.retries > 0 {
            return Ok(ctx.retries);
        }
        Err(TaskError::value_error("").retryable())
    }
    fn options() -> TaskOptions {
        TaskOptions {
            max_retries: Some(1),
            retry_backoff: RetryBackoff {
                min: Duration::from_millis(10),
                max: Duration::from_secs(1),
                jitter: true,
            },
            ..TaskOptions::default()
        }
    }
}

// ---------------------------------------------------------------------------------------

#[actix::main]
async fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let config = Config::from_env();
    match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            log::error!("celery_integration worker failed: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The suite's Redis from `REDIS_HOST` / `REDIS_PORT`, as `tasks.py` reads them.
fn suite_redis() -> Result<SuiteRedis, redis::RedisError> {
    let host = std::env::var("REDIS_HOST").unwrap_or_else(|_| "localhost".into());
    let port = std::env::var("REDIS_PORT").unwrap_or_else(|_| "6379".into());
    redis::Client::open(format!("redis://{host}:{port}/")).map(SuiteRedis)
}

async fn run(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    let queue = std::env::var("CELERIAC_QUEUE").unwrap_or_else(|_| config.default_queue.clone());
    if let Ok(hostname) = std::env::var("CELERIAC_HOSTNAME") {
        log::info!("node name {hostname}");
    }
    let broker = connect_broker(&config).await?;
    let worker = WorkerSystem::builder(broker, &config)
        .queue(queue)
        .app_data(suite_redis()?)
        .register::<Identity>()
        .register::<Add>()
        .register::<AddNotTyped>()
        .register::<AddIgnoreResult>()
        .register::<AddWithResult>()
        .register::<Mul>()
        .register::<Tsum>()
        .register::<Xsum>()
        .register::<DelayedSum>()
        .register::<DelayedSumWithSoftGuard>()
        .register::<SumAndRecord>()
        .register::<WriteToFileAndReturnInt>()
        .register::<RaiseError>()
        .register::<Fail>()
        .register::<PrintUnicode>()
        .register::<ReturnException>()
        .register::<Sleeping>()
        .register::<Ids>()
        .register::<CollectIds>()
        .register::<Retry>()
        .register::<RetryOnce>()
        .register::<RetryOnceIgnoreResult>()
        .register::<RetryOnceWithResult>()
        .register::<RetryOncePriority>()
        .register::<RedisEcho>()
        .register::<RedisEchoGroupId>()
        .register::<RedisCount>()
        .register::<ErrbackOldStyle>()
        .register::<ErrbackOldStyleWithArgs>()
        .register::<ReturnPriority>()
        .register::<ReturnRequestEta>()
        .register::<ReplacedWithMe>()
        .register::<AddPydantic>()
        .register::<AddPydanticStringAnnotations>()
        .register::<RejectThenSucceed>()
        .register::<RejectWithoutRequeue>()
        .register::<SoftTimeLimitMustExceedTimeLimit>()
        .register::<AutoRetryClassTask>()
        .start()
        .await?;
    worker.run_until_signal().await?;
    Ok(())
}
