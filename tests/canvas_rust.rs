//! Workflows built in Rust (`chain!`, `Group`, `Chord`, `with_link`, `with_link_error`),
//! run by celeriac workers and by Python Celery 5.7 workers: chains across both, groups,
//! chords both ways, callbacks and errbacks, a failing step; and a chord refused before
//! anything is sent when results are not in Redis.
//!
//! Needs RabbitMQ, Redis and the Python virtualenv (scripts/test provides them).

mod common;

use std::process::Stdio;
use std::time::Duration;

use celeriac::{chain, task, Chord, Group, Producer, ResultError, SendError, Signature, TaskError};
use common::redis_server::redis_url;
use serde_json::json;

/// `interop.add(x, y)` as a typed signature (`add::new(x, y)`); the `interop` worker runs
/// it (this binary only builds calls of it).
#[task(name = "interop.add")]
async fn add(x: i64, y: i64) -> Result<i64, TaskError> {
    Ok(x + y)
}

/// `pyinterop.add(x, y)`, run by the Python worker.
#[task(name = "pyinterop.add")]
async fn py_add(x: i64, y: i64) -> Result<i64, TaskError> {
    Ok(x + y)
}

/// Generous: the Python worker boots first.
const WAIT: Duration = Duration::from_secs(90);

/// The two workers of these tests: celeriac's `interop` on one queue, Python's
/// `py_worker_app` on another, both storing to `backend`.
struct Workers {
    rust_queue: String,
    py_queue: String,
    rust: common::KillOnDrop,
    _python: common::KillOnDrop,
}

fn start_workers(test: &str, backend: &str) -> Workers {
    let rust_queue = common::unique_queue(&format!("{test}-rust"));
    let py_queue = common::unique_queue(&format!("{test}-py"));
    let rust = common::KillOnDrop(
        common::example_command("interop")
            .env("CELERIAC_BROKER_URL", common::amqp_url())
            .env("CELERIAC_RESULT_BACKEND", backend)
            .env("CELERIAC_QUEUE", &rust_queue)
            .env("CELERIAC_CONCURRENCY", "4")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the interop worker starts"),
    );
    let python = common::python_worker(
        &py_queue,
        &format!("pyworker-{}@localhost", uuid::Uuid::new_v4().simple()),
        backend,
    );
    Workers {
        rust_queue,
        py_queue,
        rust,
        _python: python,
    }
}

impl Workers {
    fn rust(&self, task: &str, args: serde_json::Value) -> Signature {
        Signature::new(format!("interop.{task}"))
            .with_args(args.as_array().cloned().unwrap_or_default())
            .with_queue(self.rust_queue.clone())
    }

    fn py(&self, task: &str, args: serde_json::Value) -> Signature {
        Signature::new(format!("pyinterop.{task}"))
            .with_args(args.as_array().cloned().unwrap_or_default())
            .with_queue(self.py_queue.clone())
    }
}

async fn producer(backend: &str) -> (celeriac::BrokerClient, Producer) {
    let mut config = common::config(1);
    config.result_backend = Some(backend.to_string());
    let broker = common::connect(&config).await;
    let producer = Producer::from_config(broker.clone(), &config)
        .await
        .expect("a producer with results");
    (broker, producer)
}

#[actix_rt::test]
async fn rust_workflows_run_on_python_and_celeriac_workers() {
    let workers = start_workers("canvas", &redis_url());
    let (broker, producer) = producer(&redis_url()).await;
    let w = &workers;

    let across = chain![
        w.rust("add", json!([1, 1])),
        w.py("add", json!([10])),
        w.rust("add", json!([100])),
        w.py("add", json!([1000])),
    ];
    let result = producer.send_chain(across).await.expect("sent");
    assert_eq!(
        result.get(WAIT).await.ok(),
        Some(json!(1112)),
        "chain across workers"
    );

    let group = Group::of((0..100).map(|i| w.rust("add", json!([i, i]))));
    let results = producer.send_group(group).await.expect("sent");
    let values = results.get(WAIT).await.expect("the group's results");
    assert_eq!(values, (0..100).map(|i| json!(2 * i)).collect::<Vec<_>>());
    assert_eq!(results.completed_count().await, 100);
    assert!(results.ready().await);

    let python_group = Group::of((0..10).map(|i| w.py("add", json!([i, 1]))));
    let values = producer
        .send_group(python_group)
        .await
        .expect("sent")
        .get(WAIT)
        .await
        .expect("the Python group's results");
    assert_eq!(values, (0..10).map(|i| json!(i + 1)).collect::<Vec<_>>());

    for (header_on, body) in [
        ("celeriac", w.py("tsum", json!([]))),
        ("python", w.rust("tsum", json!([]))),
    ] {
        let header = Group::of((0..10).map(|i| {
            if header_on == "celeriac" {
                w.rust("add", json!([i, i]))
            } else {
                w.py("add", json!([i, i]))
            }
        }));
        let result = producer
            .send_chord(Chord::new(header, body))
            .await
            .expect("sent");
        assert_eq!(
            result.get(WAIT).await.ok(),
            Some(json!(90)),
            "chord with its header on {header_on}"
        );
    }

    // Typed signatures of `#[task]` functions as a chain's first step and in a group.
    let typed = chain![
        add::new(1, 2).with_queue(w.rust_queue.clone()),
        w.py("add", json!([10])),
        w.rust("add", json!([100])),
    ];
    let result = producer.send_chain(typed).await.expect("sent");
    assert_eq!(
        result.get(WAIT).await.ok(),
        Some(json!(113)),
        "chain starting with a typed signature"
    );
    let typed = Group::of([
        add::new(1, 1).with_queue(w.rust_queue.clone()),
        py_add::new(2, 2).with_queue(w.py_queue.clone()),
    ]);
    let values = producer
        .send_group(typed)
        .await
        .expect("sent")
        .get(WAIT)
        .await
        .expect("the typed group's results");
    assert_eq!(
        values,
        vec![json!(2), json!(4)],
        "group of typed signatures"
    );

    // A group then a step in a chain: a chord, on both kinds of worker.
    let upgraded = chain![
        w.py("add", json!([1, 1])),
        Group::of([w.rust("add", json!([1])), w.py("add", json!([2]))]),
        w.rust("tsum", json!([])),
    ];
    let result = producer.send_chain(upgraded).await.expect("sent");
    assert_eq!(
        result.get(WAIT).await.ok(),
        Some(json!(7)),
        "chain(a, group, b)"
    );

    // A callback and an errback, run by the Python worker after celeriac's task and the
    // other way round.
    let callback_id = uuid::Uuid::new_v4().to_string();
    let linked = w
        .rust("add", json!([1, 2]))
        .with_link(w.py("add", json!([10])).with_id(callback_id.clone()));
    producer.send_signature(linked).await.expect("sent");
    let callback = producer.async_result(callback_id).expect("results");
    assert_eq!(callback.get(WAIT).await.ok(), Some(json!(13)), "link");

    // A Rust-built callback on a Python worker's task, run by celeriac.
    let callback_id = uuid::Uuid::new_v4().to_string();
    let linked = w
        .py("add", json!([2, 3]))
        .with_link(w.rust("add", json!([100])).with_id(callback_id.clone()));
    let linked_id = producer.send_signature(linked).await.expect("sent");
    let callback = producer.async_result(callback_id).expect("results");
    assert_eq!(
        callback.get(WAIT).await.ok(),
        Some(json!(105)),
        "link on a Python worker calls celeriac's callback with the result"
    );
    let linked = producer.async_result(linked_id).expect("results");
    assert_eq!(
        linked.get(WAIT).await.ok(),
        Some(json!(5)),
        "the linked task"
    );

    let errback_id = uuid::Uuid::new_v4().to_string();
    let failing = w
        .py("fail", json!(["from python"]))
        .with_link_error(w.rust("echo", json!([])).with_id(errback_id.clone()));
    let failed_id = producer.send_signature(failing).await.expect("sent");
    let errback = producer.async_result(errback_id).expect("results");
    assert_eq!(
        errback.get(WAIT).await.ok(),
        Some(json!([[failed_id], {}])),
        "link_error on a Python worker calls celeriac's errback with the failed id"
    );

    // A failing middle step: the last step's result is the failure.
    let failing = chain![
        w.rust("add", json!([1, 1])),
        w.rust("fail", json!(["middle"])).immutable(),
        w.py("add", json!([3])),
    ];
    let result = producer.send_chain(failing).await.expect("sent");
    match result.get(WAIT).await {
        Err(ResultError::Failed { exception, .. }) => {
            assert_eq!(exception.exc_type, "ValueError");
            assert_eq!(exception.exc_message, vec![json!("middle")]);
        }
        other => panic!("expected the middle step's failure, got {other:?}"),
    }

    let mut workers = workers;
    let exit = workers.rust.terminate(Duration::from_secs(30)).await;
    assert!(exit.success(), "the worker exited with {exit}");
    common::delete_queues(&broker, &[&workers.rust_queue, &workers.py_queue]).await;
}

/// With rpc:// results a chain works (every step replies to the producer's queue), and a
/// chord is refused before anything is sent.
#[actix_rt::test]
async fn rpc_results_run_chains_and_refuse_chords() {
    let workers = start_workers("canvas-rpc", "rpc://");
    let (broker, producer) = producer("rpc://").await;
    let w = &workers;
    let result = producer
        .send_chain(chain![
            w.rust("add", json!([1, 1])),
            w.py("add", json!([2])),
            w.rust("add", json!([3])),
        ])
        .await
        .expect("sent");
    assert_eq!(result.get(WAIT).await.ok(), Some(json!(7)));

    let chord = Chord::new(
        Group::of([w.rust("add", json!([1, 1]))]),
        w.rust("tsum", json!([])),
    );
    let before = common::queue_counts_async(&workers.rust_queue).await;
    match producer.send_chord(chord).await {
        Err(SendError::Canvas(error)) => {
            assert!(error.to_string().contains("Redis"), "{error}")
        }
        other => panic!("expected a chord to be refused with rpc://, got {other:?}"),
    }
    let after = common::queue_counts_async(&workers.rust_queue).await;
    assert_eq!(before.0, after.0, "nothing was sent");
    producer.close_results().await.ok();
    let mut workers = workers;
    let exit = workers.rust.terminate(Duration::from_secs(30)).await;
    assert!(exit.success(), "the worker exited with {exit}");
    common::delete_queues(&broker, &[&workers.rust_queue, &workers.py_queue]).await;
}
