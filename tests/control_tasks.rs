//! Remote control of tasks, with Python Celery 5.7's CLI against a celeriac worker storing
//! to Redis: `inspect active/reserved/scheduled/query_task/revoked`, `control revoke`
//! (a countdown task, a task revoked before it arrives, `--terminate` on a running async
//! task) and rate limits.

mod common;
#[path = "common/control.rs"]
mod control;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use celeriac::protocol::TaskState;
use celeriac::task::TaskOptions;
use celeriac::{
    AsyncResult, Config, Producer, Signature, Task, TaskContext, TaskError, TaskEventKind,
};
use common::redis_server::redis_url;
use common::{connect, open_gate, unique_queue, Add, AddArgs, Held};
use serde_json::json;

fn node_config(node: &str, concurrency: usize) -> Config {
    Config {
        hostname: node.to_string(),
        result_backend: Some(redis_url()),
        ..common::config(concurrency)
    }
}

async fn wait_for_state(id: &str, config: &Config, wanted: TaskState) {
    let result = AsyncResult::from_id(id, config).expect("a Redis result");
    common::wait_until_async(
        &format!("task {id} to be {wanted:?} in Redis"),
        Duration::from_secs(60),
        || {
            let result = result.clone();
            async move { result.state().await == wanted }
        },
    )
    .await;
}

#[actix_rt::test]
async fn inspect_requests_then_revoke_them() {
    let node = control::unique_node("tasks");
    let queue = unique_queue("control-tasks");
    let config = Config {
        default_queue: queue.clone(),
        ..node_config(&node, 1)
    };
    let broker = connect(&config).await;
    let (builder, mut events) = common::test_worker(&broker, &config, &queue);
    let worker = builder
        .register::<Add>()
        .register::<Held>()
        .start()
        .await
        .expect("starts");
    let producer = Producer::from_config(broker.clone(), &config)
        .await
        .expect("producer");
    let send = |signature: Signature| {
        let producer = &producer;
        async move { producer.send_signature(signature).await.expect("sent") }
    };
    // One slot: the first held task runs, the second waits for the slot (reserved), the
    // countdown task is held for its ETA (scheduled).
    let gate = queue.clone();
    let running = send(Signature::of::<Held>(&(gate.clone(),)).expect("sig")).await;
    let waiting = send(Signature::of::<Held>(&(gate.clone(),)).expect("sig")).await;
    let later = send(
        Signature::of::<Add>(&AddArgs { x: 1, y: 2 })
            .expect("sig")
            .with_countdown(Duration::from_secs(300)),
    )
    .await;
    common::wait_until_async(
        "the three tasks to be held",
        Duration::from_secs(30),
        || {
            let node = node.clone();
            async move {
                let scheduled = control::inspect(&node, "scheduled", &[]).await;
                let reserved = control::inspect(&node, "reserved", &[]).await;
                scheduled.as_array().is_some_and(|s| s.len() == 1)
                    && reserved.as_array().is_some_and(|r| r.len() == 1)
            }
        },
    )
    .await;
    let active = control::inspect(&node, "active", &[]).await;
    assert_eq!(active[0]["id"], json!(running), "{active}");
    assert_eq!(active[0]["name"], json!("test.held"));
    assert_eq!(active[0]["args"], json!([gate]));
    assert_eq!(active[0]["hostname"], json!(node));
    assert_eq!(active[0]["acknowledged"], json!(true));
    assert_eq!(active[0]["worker_pid"], json!(std::process::id()));
    assert!(active[0]["time_start"].as_f64().is_some(), "{active}");
    let reserved = control::inspect(&node, "reserved", &[]).await;
    assert_eq!(reserved[0]["id"], json!(waiting));
    assert_eq!(reserved[0]["time_start"], json!(null));
    let scheduled = control::inspect(&node, "scheduled", &[]).await;
    assert_eq!(scheduled[0]["request"]["id"], json!(later));
    assert!(scheduled[0]["eta"].as_str().is_some(), "{scheduled}");
    let query = control::inspect(&node, "query_task", &[&running, &later]).await;
    assert_eq!(query[&running][0], json!("active"));
    assert_eq!(query[&later][0], json!("scheduled"));

    // Revoke the reserved task: checked when it would get its slot.
    let reply = control::control(&node, "revoke", &[&waiting]).await;
    assert_eq!(
        reply,
        json!({"ok": format!("tasks {{'{waiting}'}} flagged as revoked")})
    );
    // Revokes are broadcast to every worker: the other tests of this file, running in
    // parallel, add their own ids to this worker's set too.
    let revoked = control::inspect(&node, "revoked", &[]).await;
    let revoked = revoked.as_array().cloned().unwrap_or_default();
    assert!(
        revoked.contains(&json!(waiting)),
        "{waiting} not in {revoked:?}"
    );
    for id in [&running, &later] {
        assert!(
            !revoked.contains(&json!(id)),
            "{id} revoked too early: {revoked:?}"
        );
    }
    // `celery control terminate` (revoke with terminate=True) on the running async task: cancelled, REVOKED "terminated".
    let reply = control::control(&node, "terminate", &["SIGTERM", &running]).await;
    assert_eq!(reply, json!({"ok": format!("terminate: {running}")}));
    wait_for_state(&running, &config, TaskState::Revoked).await;
    wait_for_state(&waiting, &config, TaskState::Revoked).await;
    events
        .wait_until(Duration::from_secs(30), "two revoked events", |seen| {
            seen.iter()
                .filter(|e| matches!(e.kind, TaskEventKind::Revoked { .. }))
                .count()
                >= 2
        })
        .await;
    let reason = |id: &str| {
        events.seen().iter().find_map(|event| match &event.kind {
            TaskEventKind::Revoked { reason, signum } if event.task_id.as_deref() == Some(id) => {
                Some((reason.clone(), *signum))
            }
            _ => None,
        })
    };
    // Celery's task-revoked says terminated by SIGTERM (15) only for the stopped run.
    assert_eq!(reason(&running), Some(("terminated".to_string(), Some(15))));
    assert_eq!(reason(&waiting), Some(("revoked".to_string(), None)));
    assert!(
        !events
            .seen()
            .iter()
            .any(|e| e.task_id.as_deref() == Some(waiting.as_str())
                && e.kind == TaskEventKind::Started),
        "the revoked task never started"
    );

    // Revoked before it is even sent: REVOKED when it arrives, never run.
    let early = uuid::Uuid::new_v4().to_string();
    control::control(&node, "revoke", &[&early]).await;
    send(
        Signature::of::<Add>(&AddArgs { x: 2, y: 2 })
            .expect("sig")
            .with_id(early.clone()),
    )
    .await;
    wait_for_state(&early, &config, TaskState::Revoked).await;
    // REVOKED is what the revoke command stored itself: the worker's own task-revoked
    // event for it says the worker received it and turned it away.
    events
        .wait_until(
            Duration::from_secs(30),
            "the worker's task-revoked event for the task revoked before it was sent",
            |seen| {
                seen.iter().any(|e| {
                    e.task_id.as_deref() == Some(early.as_str())
                        && matches!(&e.kind, TaskEventKind::Revoked { reason, signum: None } if reason == "revoked")
                })
            },
        )
        .await;
    assert!(
        !events
            .seen()
            .iter()
            .any(|e| e.task_id.as_deref() == Some(early.as_str())
                && matches!(
                    e.kind,
                    TaskEventKind::Started | TaskEventKind::Succeeded { .. }
                )),
        "the task revoked before it was sent never started"
    );
    // The countdown task too: revoked now, it is REVOKED when it comes due (an hour away),
    // so only its listing as revoked is checked here.
    control::control(&node, "revoke", &[&later]).await;
    let revoked = control::inspect(&node, "revoked", &[]).await;
    assert!(
        revoked
            .as_array()
            .is_some_and(|ids| ids.contains(&json!(later))),
        "{revoked}"
    );
    open_gate(&gate);
    worker.stop().await.expect("stops");
    common::delete_queues(&broker, &[&queue]).await;
}

#[actix_rt::test]
async fn a_countdown_task_revoked_never_runs() {
    let node = control::unique_node("countdown");
    let queue = unique_queue("control-countdown");
    let config = Config {
        default_queue: queue.clone(),
        ..node_config(&node, 2)
    };
    let broker = connect(&config).await;
    let (builder, mut events) = common::test_worker(&broker, &config, &queue);
    let worker = builder.register::<Add>().start().await.expect("starts");
    let producer = Producer::from_config(broker.clone(), &config)
        .await
        .expect("producer");
    // Held by the worker for up to 5 minutes (under the ETA horizon, so it stays in the
    // worker); a revoke wakes it: REVOKED at once, never run.
    let id = producer
        .send_signature(
            Signature::of::<Add>(&AddArgs { x: 1, y: 2 })
                .expect("sig")
                .with_countdown(Duration::from_secs(300)),
        )
        .await
        .expect("sent");
    common::wait_until_async(
        "the countdown task to be scheduled",
        Duration::from_secs(30),
        || {
            let node = node.clone();
            async move {
                control::inspect(&node, "scheduled", &[])
                    .await
                    .as_array()
                    .is_some_and(|s| s.len() == 1)
            }
        },
    )
    .await;
    let reply = control::control(&node, "revoke", &[&id]).await;
    assert_eq!(
        reply,
        json!({"ok": format!("tasks {{'{id}'}} flagged as revoked")})
    );
    wait_for_state(&id, &config, TaskState::Revoked).await;
    events
        .wait_until(Duration::from_secs(30), "the revoked event", |seen| {
            seen.iter()
                .any(|e| matches!(e.kind, TaskEventKind::Revoked { .. }))
        })
        .await;
    assert!(
        !events
            .seen()
            .iter()
            .any(|e| e.kind == TaskEventKind::Started),
        "it never started"
    );
    worker.stop().await.expect("stops");
    common::delete_queues(&broker, &[&queue]).await;
}

/// Start times of `rl.limited`.
static STARTS: Mutex<Vec<Instant>> = Mutex::new(Vec::new());

/// `rl.limited()`: records when it started; at most 10 a second.
struct Limited;

impl Task for Limited {
    const NAME: &'static str = "rl.limited";
    type Args = ();
    type Output = ();
    async fn run(_: TaskContext, (): ()) -> Result<(), TaskError> {
        STARTS.lock().expect("starts").push(Instant::now());
        Ok(())
    }
    fn options() -> TaskOptions {
        TaskOptions {
            rate_limit: Some("10/s".into()),
            ..TaskOptions::default()
        }
    }
}

#[actix_rt::test]
async fn rate_limited_tasks_start_at_most_at_their_rate_and_hold_back_no_others() {
    let node = control::unique_node("ratelimit");
    let queue = unique_queue("control-ratelimit");
    let config = Config {
        default_queue: queue.clone(),
        ..node_config(&node, 4)
    };
    let broker = connect(&config).await;
    let (builder, mut events) = common::test_worker(&broker, &config, &queue);
    let worker = builder
        .register::<Add>()
        .register::<Limited>()
        .start()
        .await
        .expect("starts");
    let producer = Producer::from_config(broker.clone(), &config)
        .await
        .expect("producer");
    // No limited task can take its token before they are sent.
    let sent = Instant::now();
    let mut limited = Vec::new();
    for _ in 0..20 {
        limited.push(
            producer
                .send_signature(Signature::of::<Limited>(&()).expect("sig"))
                .await
                .expect("sent"),
        );
    }
    let mut others = Vec::new();
    for n in 0..5 {
        others.push(
            producer
                .send_signature(Signature::of::<Add>(&AddArgs { x: n, y: 1 }).expect("sig"))
                .await
                .expect("sent"),
        );
    }
    let done = |seen: &[celeriac::TaskEvent], ids: &[String]| {
        ids.iter().all(|id| {
            seen.iter().any(|e| {
                e.task_id.as_deref() == Some(id)
                    && matches!(e.kind, TaskEventKind::Succeeded { .. })
            })
        })
    };
    events
        .wait_until(
            Duration::from_secs(60),
            "the other tasks to succeed",
            |seen| done(seen, &others),
        )
        .await;
    events
        .wait_until(
            Duration::from_secs(60),
            "the limited tasks to succeed",
            |seen| done(seen, &limited),
        )
        .await;
    let mut starts = STARTS.lock().expect("starts").clone();
    starts.sort();
    assert_eq!(starts.len(), 20);
    // At 10/s with a bucket of capacity one, the i-th token is handed out at least
    // i x 100 ms after the first, which is after `sent`; a task starts at its token or
    // later. So the i-th start (in time order) is at least i x 100 ms after `sent`: at most
    // 1 + 10 t starts in the first t seconds. (A window count such as "at most 11 in any one
    // second" is not guaranteed: tasks woken late by a busy machine start together.) The
    // millisecond allows for the token's wait being slept on the wall clock.
    let interval = Duration::from_millis(100);
    for (i, start) in starts.iter().enumerate() {
        let at_least = interval * i as u32;
        assert!(
            start.duration_since(sent) + Duration::from_millis(1) >= at_least,
            "start {i} came {:?} after the tasks were sent, before its token (>= {at_least:?})",
            start.duration_since(sent)
        );
    }
    // Other names are not held back: at "1/m" (set by the command, a fresh bucket of
    // capacity one) the limited tasks start at 0, 60, 120... seconds, so when the other
    // tasks sent after them have all finished, at most 1 + whole minutes elapsed of them
    // can have started; were the others queued behind them, they would wait minutes.
    let phase = Instant::now();
    let reply = control::control(&node, "rate_limit", &["rl.limited", "1/m"]).await;
    assert_eq!(reply, json!({"ok": "new rate limit set successfully"}));
    for _ in 0..5 {
        producer
            .send_signature(Signature::of::<Limited>(&()).expect("sig"))
            .await
            .expect("sent");
    }
    let mut others = Vec::new();
    for n in 0..5 {
        others.push(
            producer
                .send_signature(Signature::of::<Add>(&AddArgs { x: n, y: 2 }).expect("sig"))
                .await
                .expect("sent"),
        );
    }
    events
        .wait_until(
            Duration::from_secs(60),
            "the other tasks to succeed while rl.limited waits at 1/m",
            |seen| done(seen, &others),
        )
        .await;
    let elapsed_minutes = phase.elapsed().as_secs() / 60;
    let started = STARTS.lock().expect("starts").len() - 20;
    assert!(
        started as u64 <= 1 + elapsed_minutes,
        "{started} rl.limited tasks started at 1/m within {elapsed_minutes} whole minutes"
    );
    // The command: shown by `registered`, refused for an unknown task.
    let reply = control::control(&node, "rate_limit", &["test.add", "5/m"]).await;
    assert_eq!(reply, json!({"ok": "new rate limit set successfully"}));
    assert_eq!(
        control::inspect(&node, "registered", &[]).await,
        json!(["rl.limited [rate_limit=1/m]", "test.add [rate_limit=5/m]"])
    );
    let reply = control::control(&node, "rate_limit", &["no.such", "1/s"]).await;
    assert_eq!(reply, json!({"error": "unknown task"}));
    worker.stop().await.expect("stops");
    common::delete_queues(&broker, &[&queue]).await;
}

/// `Producer::revoke` / `AsyncResult::revoke` from Rust: a countdown task held by a
/// celeriac worker, and one held by a Python Celery worker, are revoked: REVOKED, never run.
#[actix_rt::test]
async fn revoke_from_rust_reaches_celeriac_and_python_workers() {
    let node = control::unique_node("rust-revoke");
    let queue = unique_queue("control-rust-revoke");
    let py_queue = unique_queue("control-rust-revoke-py");
    let py_node = control::unique_node("py-revoke");
    let config = Config {
        default_queue: queue.clone(),
        ..node_config(&node, 2)
    };
    let broker = connect(&config).await;
    let (builder, mut events) = common::test_worker(&broker, &config, &queue);
    let worker = builder.register::<Add>().start().await.expect("starts");
    let _python = common::python_worker(&py_queue, &py_node, &redis_url());
    let producer = Producer::from_config(broker.clone(), &config)
        .await
        .expect("producer");
    let held = producer
        .send_signature_with_result(
            Signature::of::<Add>(&AddArgs { x: 1, y: 2 })
                .expect("sig")
                .with_countdown(Duration::from_secs(300)),
        )
        .await
        .expect("sent");
    common::wait_until_async("the task to be scheduled", Duration::from_secs(30), || {
        let node = node.clone();
        async move {
            control::inspect(&node, "scheduled", &[])
                .await
                .as_array()
                .is_some_and(|s| s.len() == 1)
        }
    })
    .await;
    held.revoke(&producer, false).await.expect("revoke sent");
    wait_for_state(held.id(), &config, TaskState::Revoked).await;
    events
        .wait_until(Duration::from_secs(30), "the revoked event", |seen| {
            seen.iter()
                .any(|e| matches!(e.kind, TaskEventKind::Revoked { .. }))
        })
        .await;
    assert!(
        !events
            .seen()
            .iter()
            .any(|e| e.kind == TaskEventKind::Started),
        "it never started"
    );

    // The Python worker holds its countdown task too (5 s); once it answers ping (its
    // pidbox is up), the revoke broadcast reaches it, so the task never runs: REVOKED.
    common::wait_until_async(
        "the Python worker to answer ping",
        Duration::from_secs(60),
        || {
            let py_node = py_node.clone();
            async move {
                let run =
                    control::celery(&["inspect", "ping", "-d", &py_node, "--timeout", "2"]).await;
                run.code == Some(0) && run.stdout.contains("pong")
            }
        },
    )
    .await;
    let python_held = producer
        .send_signature_with_result(
            Signature::new("pyinterop.add")
                .with_args(vec![json!(1), json!(2)])
                .with_queue(py_queue.clone())
                .with_countdown(Duration::from_secs(5)),
        )
        .await
        .expect("sent");
    python_held
        .revoke(&producer, false)
        .await
        .expect("revoke sent");
    wait_for_state(python_held.id(), &config, TaskState::Revoked).await;

    worker.stop().await.expect("stops");
    common::delete_queues(&broker, &[&queue, &py_queue]).await;
}

/// `CELERIAC_STATE_DB`: ids revoked before a restart are still revoked after it: a task
/// whose message arrives only after the restart is not run (REVOKED).
#[actix_rt::test]
async fn revoked_ids_survive_a_restart_with_a_state_db() {
    let node = control::unique_node("statedb");
    let queue = unique_queue("control-statedb");
    let dir = std::env::temp_dir().join(format!("celeriac-statedb-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let config = Config {
        default_queue: queue.clone(),
        state_db: Some(dir.join("state")),
        ..node_config(&node, 1)
    };
    let broker = connect(&config).await;
    let producer = Producer::from_config(broker.clone(), &config)
        .await
        .expect("producer");
    let id = uuid::Uuid::new_v4().to_string();

    let (builder, _events) = common::test_worker(&broker, &config, &queue);
    let first = builder.register::<Add>().start().await.expect("starts");
    common::wait_until_async("the worker to answer ping", Duration::from_secs(30), || {
        let node = node.clone();
        async move {
            control::inspect(&node, "ping", &[])
                .await
                .get("ok")
                .is_some()
        }
    })
    .await;
    producer.revoke(&[&id], false).await.expect("revoke sent");
    common::wait_until_async("the id to be revoked", Duration::from_secs(30), || {
        let (node, id) = (node.clone(), id.clone());
        async move {
            control::inspect(&node, "revoked", &[])
                .await
                .as_array()
                .is_some_and(|ids| ids.contains(&json!(id)))
        }
    })
    .await;
    first.stop().await.expect("stops");
    assert!(
        dir.join("state").exists(),
        "the state db was written at the stop"
    );

    let (builder, mut events) = common::test_worker(&broker, &config, &queue);
    let second = builder
        .register::<Add>()
        .start()
        .await
        .expect("starts again");
    producer
        .send_signature(
            Signature::of::<Add>(&AddArgs { x: 1, y: 2 })
                .expect("sig")
                .with_id(id.clone()),
        )
        .await
        .expect("sent");
    wait_for_state(&id, &config, TaskState::Revoked).await;
    events
        .wait_until(Duration::from_secs(30), "the revoked event", |seen| {
            seen.iter()
                .any(|e| matches!(e.kind, TaskEventKind::Revoked { .. }))
        })
        .await;
    assert!(
        !events
            .seen()
            .iter()
            .any(|e| e.kind == TaskEventKind::Started),
        "the task revoked before the restart did not run after it"
    );
    second.stop().await.expect("stops");
    std::fs::remove_dir_all(&dir).ok();
    common::delete_queues(&broker, &[&queue]).await;
}
