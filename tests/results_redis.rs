//! The Redis result backend against a real Redis (scripts/test starts a private one:
//! `CELERIAC_TEST_REDIS_URL`), and against Python Celery 5.7 (`CELERIAC_TEST_PYTHON`).

mod common;

use std::time::Duration;

use celeriac::backend::redis::RedisBackendError;
use celeriac::protocol::{ExceptionInfo, ResultMessage, TaskState};
use celeriac::{RedisBackendConfig, RedisResults, ResultError};
use common::redis_server::{redis_url, PrivateRedis};
use serde_json::{json, Value};

/// A generous bound for waits (loaded machines).
const PATIENCE: Duration = Duration::from_secs(30);

fn task_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn key(task_id: &str) -> String {
    format!("celery-task-meta-{task_id}")
}

async fn backend(expires: Duration) -> RedisResults {
    common::init_logging();
    let mut config = RedisBackendConfig::new(redis_url());
    config.result_expires = expires;
    match RedisResults::connect(config).await {
        Ok(backend) => backend,
        Err(error) => panic!("cannot reach the test Redis: {error}"),
    }
}

/// A plain connection for checking what is stored.
async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .expect("a Redis URL")
        .get_multiplexed_async_connection()
        .await
        .expect("a connection to the test Redis")
}

fn value_error(message: &str) -> ExceptionInfo {
    ExceptionInfo {
        exc_type: "ValueError".into(),
        exc_message: vec![json!(message)],
        exc_module: "builtins".into(),
    }
}

#[actix_rt::test]
async fn stored_results_are_read_back_by_another_handle_with_their_ttl() {
    let writer = backend(Duration::from_secs(600)).await;
    // The reader shares nothing with the writer (its own connection, nothing sent).
    let reader = backend(Duration::from_secs(600)).await;
    let (ok, failed, revoked) = (task_id(), task_id(), task_id());
    writer
        .store(ResultMessage::success(&ok, json!({"sum": 5})))
        .await
        .expect("stored");
    writer
        .store(ResultMessage::exception(
            &failed,
            TaskState::Failure,
            &value_error("boom"),
            Some("Traceback: boom".into()),
        ))
        .await
        .expect("stored");
    let revoked_exception = ExceptionInfo {
        exc_type: "TaskRevokedError".into(),
        exc_message: vec![json!("expired")],
        exc_module: "celery.exceptions".into(),
    };
    writer
        .store(ResultMessage::exception(
            &revoked,
            TaskState::Revoked,
            &revoked_exception,
            None,
        ))
        .await
        .expect("stored");

    let value = reader
        .async_result(&ok)
        .get(PATIENCE)
        .await
        .expect("SUCCESS");
    assert_eq!(value, json!({"sum": 5}));
    assert_eq!(reader.async_result(&ok).state().await, TaskState::Success);
    assert!(reader.async_result(&ok).ready().await);
    match reader.async_result(&failed).get(PATIENCE).await {
        Err(ResultError::Failed {
            exception,
            traceback,
            task_id,
        }) => {
            assert_eq!(task_id, failed);
            assert_eq!(exception, value_error("boom"));
            assert_eq!(traceback.as_deref(), Some("Traceback: boom"));
        }
        other => panic!("expected ResultError::Failed, got {other:?}"),
    }
    match reader.async_result(&revoked).get(PATIENCE).await {
        Err(ResultError::Revoked { exception, .. }) => assert_eq!(exception, revoked_exception),
        other => panic!("expected ResultError::Revoked, got {other:?}"),
    }
    // Reading does not consume: read again.
    assert_eq!(
        reader.async_result(&ok).get(PATIENCE).await.ok(),
        Some(json!({"sum": 5}))
    );

    let mut connection = raw(&redis_url()).await;
    for id in [&ok, &failed, &revoked] {
        let ttl: i64 = redis::cmd("TTL")
            .arg(key(id))
            .query_async(&mut connection)
            .await
            .expect("TTL");
        assert!(ttl > 0 && ttl <= 600, "TTL of {id}: {ttl}");
    }
    let stored: String = redis::cmd("GET")
        .arg(key(&ok))
        .query_async(&mut connection)
        .await
        .expect("GET");
    assert!(
        stored.starts_with(r#"{"status": "SUCCESS", "result": {"sum": 5}, "traceback": null, "children": [], "date_done": ""#)
            && stored.ends_with(&format!(r#", "task_id": "{ok}"}}"#)),
        "stored as Celery stores it: {stored}"
    );
}

#[actix_rt::test]
async fn the_default_ttl_is_one_day_and_forget_deletes() {
    let backend = backend(celeriac::Config::default().result_expires).await;
    let id = task_id();
    backend
        .store(ResultMessage::success(&id, json!(1)))
        .await
        .expect("stored");
    let mut connection = raw(&redis_url()).await;
    let ttl: i64 = redis::cmd("TTL")
        .arg(key(&id))
        .query_async(&mut connection)
        .await
        .expect("TTL");
    assert!(ttl > 86_000 && ttl <= 86_400, "TTL {ttl}");
    let result = backend.async_result(&id);
    result.forget().await.expect("forgotten");
    let exists: i64 = redis::cmd("EXISTS")
        .arg(key(&id))
        .query_async(&mut connection)
        .await
        .expect("EXISTS");
    assert_eq!(exists, 0, "the key is gone");
    assert_eq!(result.state().await, TaskState::Pending);
    assert!(matches!(
        result.get(Duration::from_millis(300)).await,
        Err(ResultError::Timeout { .. })
    ));
}

#[actix_rt::test]
async fn get_with_no_time_to_wait_reads_a_stored_result_and_times_out_on_a_missing_one() {
    let backend = backend(Duration::from_secs(600)).await;
    let done = task_id();
    backend
        .store(ResultMessage::success(&done, json!("already")))
        .await
        .expect("stored");
    let result = backend.async_result(&done).get(Duration::ZERO).await;
    assert_eq!(result.ok(), Some(json!("already")));
    let pending = task_id();
    backend
        .store(ResultMessage::started(&pending, 1, "worker@test"))
        .await
        .expect("stored");
    for id in [pending, task_id()] {
        assert!(
            matches!(
                backend.async_result(&id).get(Duration::ZERO).await,
                Err(ResultError::Timeout { .. })
            ),
            "a task that is not ready times out at once"
        );
    }
}

#[actix_rt::test]
async fn get_wakes_up_when_the_result_is_published_later() {
    let backend = backend(Duration::from_secs(600)).await;
    let id = task_id();
    let waiting = {
        let result = backend.async_result(&id);
        actix_rt::spawn(async move { result.get(PATIENCE).await })
    };
    // Stored only once the waiter subscribed, so that it must be woken by PUBLISH.
    let mut connection = raw(&redis_url()).await;
    let channel = key(&id);
    let mut subscribed = false;
    let deadline = std::time::Instant::now() + PATIENCE;
    while !subscribed {
        assert!(
            std::time::Instant::now() < deadline,
            "get never subscribed to {channel}"
        );
        let counts: (String, i64) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(&channel)
            .query_async(&mut connection)
            .await
            .expect("PUBSUB NUMSUB");
        subscribed = counts.1 > 0;
        if !subscribed {
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // A STARTED document first: get keeps waiting for a ready one.
    backend
        .store(ResultMessage::started(&id, 1, "worker@test"))
        .await
        .expect("stored");
    backend
        .store(ResultMessage::success(&id, json!("late")))
        .await
        .expect("stored");
    let value = waiting.await.expect("the waiter ran");
    assert_eq!(value.ok(), Some(json!("late")));
}

#[actix_rt::test]
async fn a_malformed_document_is_a_clear_error() {
    let backend = backend(Duration::from_secs(600)).await;
    let id = task_id();
    let mut connection = raw(&redis_url()).await;
    let _: () = redis::cmd("SET")
        .arg(key(&id))
        .arg("{\"status\": \"SUCCESS\", \"result\": ")
        .query_async(&mut connection)
        .await
        .expect("SET");
    let error = backend
        .async_result(&id)
        .get(PATIENCE)
        .await
        .expect_err("malformed");
    let text = error.to_string();
    assert!(
        matches!(&error, ResultError::Backend { task_id, .. } if *task_id == id)
            && text.contains("malformed")
            && text.contains(&id),
        "{text}"
    );
    // The Redis-only handle answers the error where AsyncResult::state logs it.
    let state = backend.redis_async_result(&id).state().await;
    assert!(
        matches!(&state, Err(ResultError::Backend { reason, .. }) if reason.contains("malformed")),
        "{state:?}"
    );
    assert_eq!(backend.async_result(&id).state().await, TaskState::Pending);
}

#[actix_rt::test]
async fn a_wrong_password_is_a_clear_error_naming_the_server() {
    common::init_logging();
    let redis = PrivateRedis::start(Some("right-secret"));
    let good = RedisResults::connect(RedisBackendConfig::new(&redis.url))
        .await
        .expect("the right password logs in");
    good.store(ResultMessage::success(task_id(), json!(1)))
        .await
        .expect("stored with the right password");
    for url in [
        format!("redis://:wrong-secret@127.0.0.1:{}/0", redis.port),
        format!("redis://127.0.0.1:{}/0", redis.port),
    ] {
        let error = RedisResults::connect(RedisBackendConfig::new(&url))
            .await
            .expect_err("refused");
        let text = error.to_string();
        assert!(matches!(error, RedisBackendError::Auth { .. }), "{error:?}");
        assert!(
            text.contains(&format!("127.0.0.1:{}", redis.port)),
            "names the server: {text}"
        );
        assert!(
            !text.contains("wrong-secret") && !text.contains("right-secret"),
            "{text}"
        );
        assert!(!format!("{error:?}").contains("wrong-secret"));
    }
}

#[actix_rt::test]
async fn stores_made_while_redis_is_down_are_stored_once_it_is_back() {
    common::init_logging();
    let redis = actix_rt::task::spawn_blocking(|| PrivateRedis::start(None))
        .await
        .expect("started");
    let mut config = RedisBackendConfig::new(&redis.url);
    config.connect_timeout = Duration::from_secs(2);
    config.response_timeout = Duration::from_secs(2);
    config.store_retry.max_attempts = Some(200);
    let backend = RedisResults::connect(config).await.expect("connected");
    backend
        .store(ResultMessage::success(task_id(), json!(0)))
        .await
        .expect("stored before the restart");

    let redis = actix_rt::task::spawn_blocking(move || {
        redis.stop();
        redis
    })
    .await
    .expect("stopped");
    assert!(backend.document("probe").await.is_err(), "Redis is down");
    let ids: Vec<String> = (0..5).map(|_| task_id()).collect();
    let stores: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(index, id)| {
            let backend = backend.clone();
            let document = ResultMessage::success(id, json!(index));
            actix_rt::spawn(async move { backend.store(document).await })
        })
        .collect();
    let mut redis = redis;
    let redis = actix_rt::task::spawn_blocking(move || {
        redis.restart();
        redis
    })
    .await
    .expect("restarted");
    for store in stores {
        store
            .await
            .expect("the store ran")
            .expect("stored once Redis is back");
    }
    let reader = RedisResults::connect(RedisBackendConfig::new(&redis.url))
        .await
        .expect("connected");
    for (index, id) in ids.iter().enumerate() {
        assert_eq!(
            reader.async_result(id).get(PATIENCE).await.ok(),
            Some(json!(index))
        );
    }
    drop(redis);
}

/// Runs tests/python/redis_results.py; answers its stdout lines.
fn python(args: &[&str]) -> Vec<String> {
    let output = std::process::Command::new(common::python())
        .arg(common::python_dir().join("redis_results.py"))
        .arg(redis_url())
        .args(args)
        .output()
        .expect("Python runs");
    assert!(
        output.status.success(),
        "redis_results.py {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[actix_rt::test]
async fn python_celery_reads_what_celeriac_stores() {
    let backend = backend(Duration::from_secs(600)).await;
    let (ok, failed) = (task_id(), task_id());
    backend
        .store(ResultMessage::success(
            &ok,
            json!([1, "two", {"three": 3.5}]),
        ))
        .await
        .expect("stored");
    backend
        .store(ResultMessage::exception(
            &failed,
            TaskState::Failure,
            &value_error("boom"),
            None,
        ))
        .await
        .expect("stored");
    let lines = python(&["read", &ok, &failed]);
    let parsed: Vec<Value> = lines
        .iter()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    assert_eq!(
        parsed,
        vec![
            json!({"value": [1, "two", {"three": 3.5}]}),
            json!({"exc_type": "ValueError", "exc_module": "builtins", "exc_args": ["boom"]}),
        ]
    );
}

#[actix_rt::test]
async fn celeriac_reads_what_python_celery_stores() {
    let backend = backend(Duration::from_secs(600)).await;
    let (ok, failed) = (task_id(), task_id());
    assert_eq!(python(&["store", &ok, &failed]), vec!["stored".to_string()]);
    // Python's store_result without a request writes "children": null.
    match backend.async_result(&ok).get(PATIENCE).await {
        Ok(value) => assert_eq!(value, json!(42)),
        Err(error) => panic!("expected 42 from Python: {error}"),
    }
    match backend.async_result(&failed).get(PATIENCE).await {
        Err(ResultError::Failed { exception, .. }) => {
            assert_eq!(exception, value_error("boom from python"));
        }
        other => panic!("expected ResultError::Failed, got {other:?}"),
    }
    let mut connection = raw(&redis_url()).await;
    let ttl: i64 = redis::cmd("TTL")
        .arg(key(&ok))
        .query_async(&mut connection)
        .await
        .expect("TTL");
    assert!(ttl > 0 && ttl <= 86_400, "Python's TTL {ttl}");
}

/// A producer configured with `result_backend = redis://...` sends to a Python Celery worker
/// storing its results in Redis; `send_signature_with_result` answers handles reading them.
#[actix_rt::test]
async fn a_redis_producer_gets_what_a_python_worker_stores() {
    use std::process::{Command, Stdio};

    let mut config = common::config(1);
    config.result_backend = Some(redis_url());
    let broker = common::connect(&config).await;
    let queue = common::unique_queue("redis-results");
    let producer = match celeriac::Producer::from_config(broker.clone(), &config).await {
        Ok(producer) => producer,
        Err(error) => panic!("a producer with Redis results: {error}"),
    };
    assert!(
        producer.reply_queue().is_none(),
        "no reply queue with Redis"
    );
    let _worker = common::KillOnDrop(
        Command::new(common::python())
            .args([
                "-m",
                "celery",
                "-A",
                "py_worker_app",
                "worker",
                "-Q",
                &queue,
            ])
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
            .current_dir(common::python_dir())
            .env("CELERIAC_TEST_AMQP_URL", common::amqp_url())
            .env("CELERIAC_QUEUE", &queue)
            .env("CELERIAC_PY_RESULT_BACKEND", redis_url())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the Python worker starts"),
    );
    let send = |signature: celeriac::Signature| {
        let producer = producer.clone();
        let signature = signature.with_queue(queue.clone());
        async move {
            producer
                .send_signature_with_result(signature)
                .await
                .expect("sent")
        }
    };
    let sum =
        send(celeriac::Signature::new("pyinterop.add").with_args(vec![json!(2), json!(3)])).await;
    let failed =
        send(celeriac::Signature::new("pyinterop.fail").with_args(vec![json!("py boom")])).await;
    // Generous: the Python worker boots first.
    let wait = Duration::from_secs(90);
    match sum.get(wait).await {
        Ok(value) => assert_eq!(value, json!(5)),
        Err(error) => panic!("expected 5 from the Python worker: {error}"),
    }
    match failed.get(wait).await {
        Err(ResultError::Failed {
            exception,
            traceback,
            ..
        }) => {
            assert_eq!(exception, value_error("py boom"));
            assert!(traceback.is_some_and(|text| text.contains("ValueError")));
        }
        other => panic!("expected ResultError::Failed, got {other:?}"),
    }
    // Readable again, from a handle made by id alone.
    let again = producer
        .async_result(sum.id())
        .expect("results are enabled");
    assert_eq!(again.get(wait).await.ok(), Some(json!(5)));
    broker.close().await.ok();
}

#[actix_rt::test]
async fn a_store_that_keeps_failing_gives_up_after_its_attempts_naming_the_task() {
    common::init_logging();
    // A port nothing listens on.
    let port = common::free_port();
    let mut config = RedisBackendConfig::new(format!("redis://:not-shown@127.0.0.1:{port}/0"));
    config.store_retry.initial_delay = Duration::from_millis(10);
    config.store_retry.max_attempts = Some(3);
    let backend = RedisResults::start(config).expect("a valid URL");
    let id = task_id();
    let error = backend
        .store(ResultMessage::success(&id, json!(1)))
        .await
        .expect_err("nothing listens");
    let text = error.to_string();
    assert!(
        matches!(error, RedisBackendError::Command { .. })
            && text.contains(&id)
            && text.contains(&format!("127.0.0.1:{port}"))
            && !text.contains("not-shown"),
        "{text}"
    );
}

/// A Python producer with the Redis backend sends to a celeriac worker (the `interop`
/// example) whose result backend is the same Redis: values, exceptions, REVOKED for an
/// expired task and STARTED with track_started reach Python's `AsyncResult`.
#[actix_rt::test]
async fn a_celeriac_worker_stores_in_redis_what_a_python_producer_reads() {
    let config = common::config(1);
    let broker = common::connect(&config).await;
    let queue = common::unique_queue("redis-worker");
    let mut worker = common::KillOnDrop(
        common::example_command("interop")
            .env("CELERIAC_BROKER_URL", common::amqp_url())
            .env("CELERIAC_RESULT_BACKEND", redis_url())
            .env("CELERIAC_TRACK_STARTED", "true")
            .env("CELERIAC_QUEUE", &queue)
            .env("CELERIAC_CONCURRENCY", "2")
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("the interop worker starts"),
    );
    let lines = python(&["send", &common::amqp_url(), &queue]);
    assert!(
        lines.iter().any(|line| line == "all checks passed"),
        "{lines:?}"
    );
    let exit = worker.terminate(Duration::from_secs(30)).await;
    assert!(exit.success(), "the worker exited with {exit}");
    common::delete_queues(&broker, &[&queue]).await;
}

/// With `result_extended`, a celeriac worker's documents carry the request: a Python
/// producer reads `AsyncResult.name`, `.args`, `.kwargs`, `.worker`, `.retries` and
/// `.queue` of a success and a failure, and the name and arguments of the STARTED document.
#[actix_rt::test]
async fn a_python_producer_reads_the_request_of_a_celeriac_workers_extended_results() {
    let config = common::config(1);
    let broker = common::connect(&config).await;
    let queue = common::unique_queue("redis-extended");
    let mut worker = common::KillOnDrop(
        common::example_command("interop")
            .env("CELERIAC_BROKER_URL", common::amqp_url())
            .env("CELERIAC_RESULT_BACKEND", redis_url())
            .env("CELERIAC_RESULT_EXTENDED", "true")
            .env("CELERIAC_TRACK_STARTED", "true")
            .env("CELERIAC_QUEUE", &queue)
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("the interop worker starts"),
    );
    let lines = python(&["extended", &common::amqp_url(), &queue]);
    assert!(
        lines.iter().any(|line| line == "all checks passed"),
        "{lines:?}"
    );
    let exit = worker.terminate(Duration::from_secs(30)).await;
    assert!(exit.success(), "the worker exited with {exit}");
    common::delete_queues(&broker, &[&queue]).await;
}

/// A worker storing to Redis while Redis is stopped and started again: every result is
/// stored once it is back, none lost. The tasks sent after the stop run, and so store,
/// after it: their stores are the ones retried.
#[actix_rt::test]
async fn a_worker_stores_every_result_across_a_redis_restart() {
    let redis = actix_rt::task::spawn_blocking(|| PrivateRedis::start(None))
        .await
        .expect("started");
    let config = celeriac::Config {
        result_backend: Some(redis.url.clone()),
        ..common::config(2)
    };
    let broker = common::connect(&config).await;
    let queue = common::unique_queue("redis-restart");
    let (builder, mut events) = common::test_worker(&broker, &config, &queue);
    let worker = builder
        .register::<common::Add>()
        .start()
        .await
        .expect("the worker starts");
    let producer = celeriac::Producer::new(broker.clone(), &config);
    let send = |n: i64| {
        let producer = producer.clone();
        let queue = queue.clone();
        async move {
            let signature = celeriac::Signature::new("test.add")
                .with_args(vec![n.into(), 0.into()])
                .with_queue(queue);
            producer.send_signature(signature).await.expect("sent")
        }
    };
    let mut ids = Vec::new();
    for n in 0..50 {
        ids.push(send(n).await);
    }
    events
        .wait_count(
            PATIENCE,
            "the first 50 tasks to succeed",
            50,
            common::succeeded,
        )
        .await;
    let redis = actix_rt::task::spawn_blocking(move || {
        redis.stop();
        redis
    })
    .await
    .expect("stopped");
    for n in 50..100 {
        ids.push(send(n).await);
    }
    let started =
        |event: &celeriac::TaskEvent| matches!(event.kind, celeriac::TaskEventKind::Started);
    events
        .wait_count(
            PATIENCE,
            "tasks sent after the stop to start while Redis is down",
            55,
            started,
        )
        .await;
    let mut redis = redis;
    let redis = actix_rt::task::spawn_blocking(move || {
        redis.restart();
        redis
    })
    .await
    .expect("restarted");
    events
        .wait_count(
            Duration::from_secs(120),
            "every task to succeed after Redis came back",
            ids.len(),
            common::succeeded,
        )
        .await;
    let reader = RedisResults::connect(RedisBackendConfig::new(&redis.url))
        .await
        .expect("connected");
    // The private Redis keeps nothing across a restart (no persistence): the results stored
    // before the stop are gone with it; those of the tasks sent after it must all be there.
    for (n, id) in ids.iter().enumerate().skip(50) {
        let document = reader
            .document(id)
            .await
            .expect("readable")
            .unwrap_or_else(|| panic!("no result stored for task {n} ({id})"));
        assert_eq!(document.status, TaskState::Success);
        assert_eq!(document.result, json!(n));
    }
    worker.stop().await.expect("the worker stops");
    common::delete_queues(&broker, &[&queue]).await;
    drop(redis);
}

/// `CELERIAC_RESULT_EXPIRES_S=0` (Celery's `result_expires = None` or `0`): a worker stores
/// its results with a plain `SET`, so the key has no TTL (`TTL` answers -1), where the
/// default gives one.
#[actix_rt::test]
async fn a_worker_with_result_expires_zero_stores_results_that_never_expire() {
    common::init_logging();
    let config = celeriac::Config {
        result_backend: Some(redis_url()),
        ..common::config(1)
    };
    let broker = common::connect(&config).await;
    let queue = common::unique_queue("redis-no-expiry");
    let mut worker = common::KillOnDrop(
        common::example_command("interop")
            .env("CELERIAC_BROKER_URL", common::amqp_url())
            .env("CELERIAC_RESULT_BACKEND", redis_url())
            .env("CELERIAC_RESULT_EXPIRES_S", "0")
            .env("CELERIAC_QUEUE", &queue)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("the interop worker starts"),
    );
    let producer = match celeriac::Producer::from_config(broker.clone(), &config).await {
        Ok(producer) => producer,
        Err(error) => panic!("a producer with Redis results: {error}"),
    };
    let sum = producer
        .send_signature_with_result(
            celeriac::Signature::new("interop.add")
                .with_args(vec![json!(2), json!(3)])
                .with_queue(queue.clone()),
        )
        .await
        .expect("sent");
    // Generous: the worker boots first.
    match sum.get(Duration::from_secs(90)).await {
        Ok(value) => assert_eq!(value, json!(5)),
        Err(error) => panic!("expected 5 from the interop worker: {error}"),
    }
    let mut connection = raw(&redis_url()).await;
    let ttl: i64 = redis::cmd("TTL")
        .arg(key(sum.id()))
        .query_async(&mut connection)
        .await
        .expect("TTL");
    assert_eq!(
        ttl, -1,
        "a result stored with result_expires = 0 has no TTL"
    );
    let exit = worker.terminate(Duration::from_secs(30)).await;
    assert!(exit.success(), "the worker exited with {exit}");
    common::delete_queues(&broker, &[&queue]).await;
    broker.close().await.ok();
}

/// The longest a worker's store may retry before it gives up: every backoff delay at its
/// ceiling, and every attempt spending the whole connect timeout.
fn store_retry_budget(config: &RedisBackendConfig) -> Duration {
    let attempts = config.store_retry.max_attempts.unwrap_or(1).max(1);
    let backoff = config.store_retry.backoff();
    (0..attempts)
        .map(|attempt| backoff.delay_at(attempt, 1.0) + config.connect_timeout)
        .sum()
}

/// A worker whose Redis goes away and stays away longer than its stores retry: the result
/// is lost, and the worker's log says so in an ERROR line naming the task (the only trace
/// of a lost result), without Redis's password. The worker is the `interop` example, its
/// log captured from its stderr.
#[actix_rt::test]
async fn a_worker_logs_a_result_it_could_not_store_naming_the_task() {
    let password = "lost-result-secret";
    let redis = actix_rt::task::spawn_blocking(move || PrivateRedis::start(Some(password)))
        .await
        .expect("started");
    let config = common::config(1);
    let broker = common::connect(&config).await;
    let queue = common::unique_queue("redis-lost");
    let dir = std::env::temp_dir().join(format!("celeriac-lost-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    let log_path = dir.join("worker.log");
    let mut worker = common::KillOnDrop(
        common::example_command("interop")
            .env("CELERIAC_BROKER_URL", common::amqp_url())
            .env("CELERIAC_RESULT_BACKEND", &redis.url)
            .env("CELERIAC_QUEUE", &queue)
            .env("RUST_LOG", "warn,celeriac::worker::system=info")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log_path).expect("the log file"))
            .spawn()
            .expect("the interop worker starts"),
    );
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    // The worker PINGs Redis as it starts: it must be up until then.
    common::wait_until("the worker to start", Duration::from_secs(60), || {
        log().contains("worker started")
    })
    .await;
    let redis = actix_rt::task::spawn_blocking(move || {
        redis.stop();
        redis
    })
    .await
    .expect("stopped");

    let producer = celeriac::Producer::new(broker.clone(), &config);
    let id = producer
        .send_signature(
            celeriac::Signature::new("interop.add")
                .with_args(vec![json!(2), json!(3)])
                .with_queue(queue.clone()),
        )
        .await
        .expect("sent");
    let lost = |line: &&str| line.contains("ERROR") && line.contains(&id);
    let budget = store_retry_budget(
        &RedisBackendConfig::from_config(&celeriac::Config {
            result_backend: Some(redis.url.clone()),
            ..celeriac::Config::default()
        })
        .expect("a Redis URL"),
    );
    common::wait_until(
        &format!("an ERROR line naming task {id} once its store gave up (budget {budget:?})"),
        budget + PATIENCE,
        || log().lines().any(|line| lost(&line)),
    )
    .await;
    let text = log();
    let line = text.lines().find(lost).unwrap_or_default();
    assert!(
        line.contains("SUCCESS") && line.contains("NOT stored") && !line.contains(password),
        "{line}"
    );
    assert!(
        !text.contains(password),
        "the password is in the worker's log"
    );
    let exit = worker.terminate(Duration::from_secs(30)).await;
    assert!(exit.success(), "the worker exited with {exit}");
    common::delete_queues(&broker, &[&queue]).await;
    broker.close().await.ok();
    let _ = std::fs::remove_dir_all(&dir);
    drop(redis);
}
