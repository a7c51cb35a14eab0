//! celeriac sends, a real Python Celery 5.7 worker runs (tests/python/py_worker_app.py):
//! positional and typed arguments, the v2 header set with the AMQP types Python expects,
//! countdown/eta/expires/priority, rpc:// results (values and exceptions) back in Rust, and
//! `Kombu<_>` values that Python receives as `datetime`, `date`, `time`, `Decimal`, `UUID`
//! and `bytes`.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use celeriac::protocol::time::parse_datetime;
use celeriac::types::{Decimal, Kombu};
use celeriac::{Producer, ResultError, Signature};
use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use serde_json::{json, Value};

use common::*;

/// Starts a Python Celery worker consuming `queue`.
fn python_worker(queue: &str) -> KillOnDrop {
    KillOnDrop(
        Command::new(python())
            .args(["-m", "celery", "-A", "py_worker_app", "worker", "-Q", queue])
            .args([
                "--pool=solo",
                "-c",
                "1",
                "--without-gossip",
                "--without-mingle",
            ])
            .args(["--without-heartbeat", "--loglevel=WARNING"])
            .arg(format!(
                "--hostname=pyworker-{}@localhost",
                uuid::Uuid::new_v4().simple()
            ))
            .current_dir(python_dir())
            .env("CELERIAC_TEST_AMQP_URL", amqp_url())
            .env("CELERIAC_QUEUE", queue)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the Python worker starts"),
    )
}

const WAIT: Duration = Duration::from_secs(60);

#[actix_rt::test]
async fn a_python_worker_runs_what_celeriac_sends_and_celeriac_gets_the_results() {
    let config = config(2);
    let broker = connect(&config).await;
    let queue = unique_queue("rust-producer");
    let producer = Producer::new(broker.clone(), &config)
        .with_rpc_results()
        .await
        .expect("rpc results");
    let mut worker = python_worker(&queue);
    let send = |signature: Signature| {
        let producer = producer.clone();
        let signature = signature.with_queue(queue.clone());
        async move {
            producer
                .send_signature_with_result(signature)
                .await
                .expect("sent")
        }
    };

    // Positional arguments; this also waits for the Python worker to be up.
    let sum = send(Signature::new("pyinterop.add").with_args(vec![json!(2), json!(3)])).await;
    assert_eq!(sum.get(WAIT).await.expect("the sum"), json!(5));
    let typed = Signature::of::<Add>(&AddArgs { x: 40, y: 2 })
        .expect("encodes")
        .with_id(uuid::Uuid::new_v4().to_string());
    let typed = Signature {
        task: "pyinterop.add".into(),
        ..typed
    };
    assert_eq!(
        send(typed).await.get(WAIT).await.expect("typed args"),
        json!(42)
    );

    // A Python exception comes back as a failure naming its class and module.
    let failed = send(Signature::new("pyinterop.fail").with_args(vec![json!("boom")])).await;
    match failed.get(WAIT).await {
        Err(ResultError::Failed { exception, .. }) => {
            assert_eq!(
                (exception.exc_type.as_str(), exception.exc_module.as_str()),
                ("ValueError", "builtins")
            );
            assert_eq!(exception.exc_message, vec![json!("boom")]);
        }
        other => panic!("expected a ValueError failure, got {other:?}"),
    }

    // The header set and its types, as the Python worker sees them.
    let eta = Utc::now() + chrono::Duration::seconds(1);
    let expires = Utc::now() + chrono::Duration::seconds(120);
    let request = send(
        Signature::new("pyinterop.request")
            .with_args(vec![json!(1), json!("two")])
            .with_eta(eta)
            .with_expires(expires)
            .with_priority(5),
    )
    .await;
    let id = request.id().to_string();
    let seen: Value = request.get(WAIT).await.expect("the request");
    assert_eq!(seen["id"], json!(id));
    assert_eq!(seen["task"], json!("pyinterop.request"));
    assert_eq!(seen["lang"], json!("rust"));
    assert_eq!(seen["retries"], json!(0));
    assert_eq!(
        seen["root_id"],
        json!(id),
        "root_id defaults to the task id"
    );
    assert_eq!(seen["parent_id"], Value::Null);
    assert_eq!(seen["correlation_id"], json!(id));
    assert_eq!(
        seen["reply_to"],
        json!(producer.reply_queue().expect("a reply queue"))
    );
    assert_eq!(seen["priority"], json!(5));
    assert_eq!(seen["timelimit"], json!([null, null]));
    assert_eq!(seen["args"], json!([1, "two"]));
    assert_eq!(seen["argsrepr"], json!("(1, 'two')"));
    assert_eq!(seen["ignore_result"], json!(false));
    let origin = seen["origin"].as_str().expect("an origin");
    assert!(
        origin.starts_with(&format!("gen{}@", std::process::id())),
        "origin {origin}"
    );
    assert_eq!(seen["kwargs"], json!({}));
    let seen_eta = parse_datetime(seen["eta"].as_str().expect("an eta")).expect("ISO 8601");
    assert!(
        (seen_eta - eta).num_milliseconds().abs() < 1,
        "eta {seen_eta} != {eta}"
    );
    let seen_expires =
        parse_datetime(seen["expires"].as_str().expect("expires")).expect("ISO 8601");
    assert!((seen_expires - expires).num_milliseconds().abs() < 1);
    assert_eq!(
        seen["types"],
        json!({
            "id": "str", "task": "str", "lang": "str", "retries": "int", "eta": "str",
            "expires": "str", "timelimit": "list", "root_id": "str", "parent_id": "NoneType",
            "origin": "str", "argsrepr": "str", "ignore_result": "bool",
            "correlation_id": "str", "reply_to": "str", "priority": "int", "args": "list",
            "kwargs": "dict"
        }),
        "header values decode to the Python types Celery expects"
    );

    // Countdown: the Python worker holds it, then runs it.
    let started = std::time::Instant::now();
    let later = send(
        Signature::new("pyinterop.add")
            .with_args(vec![json!(1), json!(1)])
            .with_countdown(Duration::from_secs(2)),
    )
    .await;
    assert_eq!(later.get(WAIT).await.expect("countdown sum"), json!(2));
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "countdown=2 s ran early"
    );

    // Expired before its ETA: the Python worker revokes it.
    let expiring = send(
        Signature::new("pyinterop.add")
            .with_args(vec![json!(1), json!(1)])
            .with_countdown(Duration::from_secs(3))
            .with_expires(Utc::now() + chrono::Duration::seconds(1)),
    )
    .await;
    match expiring.get(WAIT).await {
        Err(ResultError::Revoked { exception, .. }) => {
            assert_eq!(exception.exc_type, "TaskRevokedError");
        }
        other => panic!("expected a revoked task, got {other:?}"),
    }

    let exit = worker.terminate(Duration::from_secs(30)).await;
    assert!(exit.success(), "the Python worker exited with {exit}");
    producer.close_results().await.expect("results closed");
    delete_queues(&broker, &[&queue]).await;
}

/// The typed values celeriac sends to `pyinterop.typed`, and reads back from it.
type TypedArgs = (
    Kombu<DateTime<Utc>>,
    Kombu<DateTime<FixedOffset>>,
    Kombu<NaiveDateTime>,
    Kombu<NaiveDate>,
    Kombu<NaiveTime>,
    Kombu<Decimal>,
    Kombu<uuid::Uuid>,
    Kombu<Vec<u8>>,
    Kombu<Vec<u8>>,
    String,
);

#[actix_rt::test]
async fn a_python_worker_receives_kombu_typed_values_as_python_types_and_sends_them_back() {
    let config = config(2);
    let broker = connect(&config).await;
    let queue = unique_queue("rust-producer-typed");
    let producer = Producer::new(broker.clone(), &config)
        .with_rpc_results()
        .await
        .expect("rpc results");
    let mut worker = python_worker(&queue);

    let when = Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).unwrap()
        + chrono::Duration::microseconds(123_456);
    let sent: TypedArgs = (
        Kombu(when),
        Kombu(when.with_timezone(&FixedOffset::west_opt(5 * 3600 + 30 * 60).unwrap())),
        Kombu(when.naive_utc()),
        Kombu(when.date_naive()),
        Kombu(when.time()),
        Kombu("-1.2345678901234567890123456789E+40".parse().unwrap()),
        Kombu(uuid::Uuid::new_v4()),
        Kombu("héllo".as_bytes().to_vec()),
        Kombu(vec![0, 255, 16, 128]),
        "2024-01-02T03:04:05+00:00".to_owned(),
    );
    let (args, kwargs) = celeriac::task::args::encode_args(&sent).expect("encodes");
    let result = producer
        .send_signature_with_result(
            Signature::new("pyinterop.typed")
                .with_args(args)
                .with_kwargs(kwargs)
                .with_queue(queue.clone()),
        )
        .await
        .expect("sent");
    let seen = result.get(WAIT).await.expect("the typed values");

    let names: Vec<&str> = seen
        .as_array()
        .expect("a list")
        .iter()
        .map(|pair| pair[0].as_str().expect("a type name"))
        .collect();
    assert_eq!(
        names,
        [
            "datetime", "datetime", "datetime", "date", "time", "Decimal", "UUID", "bytes",
            "bytes", "str"
        ],
        "the Python types of what celeriac sent (in {seen})"
    );
    let values: Vec<Value> = seen
        .as_array()
        .expect("a list")
        .iter()
        .map(|pair| pair[1].clone())
        .collect();
    let back: TypedArgs =
        celeriac::task::args::decode_args(&values, &serde_json::Map::new()).expect("typed back");
    assert_eq!(back, sent, "the values Python sent back");
    assert_eq!(
        back.1.offset(),
        sent.1.offset(),
        "the offset of a DateTime<FixedOffset> survives"
    );

    let exit = worker.terminate(Duration::from_secs(30)).await;
    assert!(exit.success(), "the Python worker exited with {exit}");
    producer.close_results().await.expect("results closed");
    delete_queues(&broker, &[&queue]).await;
}
