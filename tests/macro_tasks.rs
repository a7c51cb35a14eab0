//! `#[task]` functions on a real worker: they run, bind positional and keyword arguments
//! (sent from Rust and from Python Celery 5.7), take defaults, get the request context,
//! run blocking ones on the blocking pool, and their options reach the worker.

mod common;

use std::process::Command;
use std::time::Duration;

use celeriac::{task, Producer, ResultError, Signature, TaskContext, TaskError};
use common::*;
use serde_json::json;

/// How long a result may take: a few tasks on an idle worker.
const WAIT: Duration = Duration::from_secs(30);

/// `macro.add(x, y)`.
#[task(name = "macro.add")]
async fn add(x: i64, y: i64) -> Result<i64, TaskError> {
    Ok(x + y)
}

/// `macro.greet(name, greeting="Hello", punctuation=None)`, with the request context.
#[task(name = "macro.greet")]
async fn greet(
    ctx: &TaskContext,
    name: String,
    #[default = "Hello"] greeting: String,
    punctuation: Option<String>,
) -> Result<String, TaskError> {
    let punctuation = punctuation.unwrap_or_default();
    Ok(format!("{greeting}, {name}{punctuation} ({})", ctx.name))
}

/// `macro.count(text)`: blocking.
#[task(name = "macro.count")]
fn count(text: String) -> Result<usize, TaskError> {
    Ok(text.split_whitespace().count())
}

/// `macro.stuck()`: never ends, so its 1 s hard limit (the attribute's) fails it.
#[task(name = "macro.stuck", time_limit = 1)]
async fn stuck() -> Result<(), TaskError> {
    std::future::pending::<()>().await;
    Ok(())
}

#[actix_rt::test]
async fn task_functions_run_and_bind_arguments_from_rust_and_python() {
    let mut config = config(4);
    let queue = unique_queue("macro");
    config.default_queue = queue.clone();
    let broker = connect(&config).await;
    let (builder, _events) = test_worker(&broker, &config, &queue);
    let worker = builder
        .register::<add>()
        .register::<greet>()
        .register::<count>()
        .register::<stuck>()
        .start()
        .await
        .expect("the worker starts");
    let producer = Producer::new(broker.clone(), &config)
        .with_rpc_results()
        .await
        .expect("rpc results start");
    let get = |signature: Signature| {
        let producer = &producer;
        async move {
            let name = signature.task.clone();
            let result = producer
                .send_signature_with_result(signature)
                .await
                .unwrap_or_else(|error| panic!("sending {name}: {error}"));
            result.get(WAIT).await
        }
    };

    // The typed builders: positional, in parameter order.
    assert_eq!(get(add::new(2, 3)).await.expect("add"), json!(5));
    assert_eq!(
        get(greet::new("Ada".into(), "Hi".into(), Some("!".into())))
            .await
            .expect("greet"),
        json!("Hi, Ada! (macro.greet)")
    );
    assert_eq!(
        get(count::new("one two three".into()))
            .await
            .expect("count"),
        json!(3)
    );

    // By name: keywords, defaults, and what does not fit.
    let kwargs = |value: serde_json::Value| value.as_object().cloned().unwrap_or_default();
    let by_name = Signature::new("macro.add")
        .with_args(vec![json!(40)])
        .with_kwargs(kwargs(json!({"y": 2})));
    assert_eq!(get(by_name).await.expect("add by keyword"), json!(42));
    let defaults = Signature::new("macro.greet").with_args(vec![json!("Ada")]);
    assert_eq!(
        get(defaults).await.expect("greet with defaults"),
        json!("Hello, Ada (macro.greet)")
    );
    match get(Signature::new("macro.add").with_args(vec![json!(2)])).await {
        Err(ResultError::Failed { exception, .. }) => {
            assert_eq!(exception.exc_type, "TypeError", "{exception:?}");
            assert!(
                format!("{:?}", exception.exc_message).contains("missing argument"),
                "{exception:?}"
            );
        }
        other => panic!("a missing argument should fail with TypeError, got {other:?}"),
    }

    // The attribute's time limit reaches the worker.
    match get(stuck::new()).await {
        Err(ResultError::Failed { exception, .. }) => {
            assert_eq!(exception.exc_type, "TimeLimitExceeded", "{exception:?}")
        }
        other => panic!("macro.stuck should pass its 1 s time limit, got {other:?}"),
    }

    // Python Celery as the producer (on a blocking thread: the worker runs on this one).
    let mut python_checks = Command::new("timeout");
    python_checks
        .arg("180")
        .arg(python())
        .arg(python_dir().join("macro_task_checks.py"))
        .env("CELERIAC_TEST_AMQP_URL", amqp_url())
        .env("CELERIAC_QUEUE", &queue);
    let output = actix_rt::task::spawn_blocking(move || python_checks.output())
        .await
        .expect("the Python checks' thread")
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("all checks passed"),
        "the Python checks failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );

    worker.stop().await.expect("the worker stops");
    producer.close_results().await.expect("results close");
    delete_queues(&broker, &[&queue]).await;
}
