//! Retries (backoff, countdown, max_retries), hooks, app state and child tasks, on a real
//! RabbitMQ.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use celeriac::task::{RetryBackoff, TaskOptions};
use celeriac::{
    Producer, ResultError, Signature, Task, TaskContext, TaskError, TaskEventKind, WorkerSystem,
};
use chrono::Utc;
use serde_json::{json, Value};

use common::*;

/// What the hooks saw, shared with the tasks as app data (clones share the log).
#[derive(Clone, Default)]
struct HookLog(Arc<Mutex<Vec<String>>>);

impl HookLog {
    fn record(ctx: &TaskContext, what: &str) {
        if let Ok(log) = ctx.data::<HookLog>() {
            if let Ok(mut entries) = log.0.lock() {
                entries.push(format!("{what}:{}", ctx.id));
            }
        }
    }

    fn entries(&self) -> Vec<String> {
        self.0
            .lock()
            .map(|entries| entries.clone())
            .unwrap_or_default()
    }
}

/// Attempts by task id.
static ATTEMPTS: Mutex<Option<HashMap<String, u32>>> = Mutex::new(None);

/// When each run of a task began, by task id, recorded by the task itself.
static RUN_STARTS: Mutex<Option<HashMap<String, Vec<chrono::DateTime<Utc>>>>> = Mutex::new(None);

fn run_starts(id: &str) -> Vec<chrono::DateTime<Utc>> {
    RUN_STARTS
        .lock()
        .expect("run starts")
        .as_ref()
        .and_then(|starts| starts.get(id).cloned())
        .unwrap_or_default()
}

fn record_start(id: &str) {
    RUN_STARTS
        .lock()
        .expect("run starts")
        .get_or_insert_with(HashMap::new)
        .entry(id.to_string())
        .or_default()
        .push(Utc::now());
}

fn attempt(id: &str) -> u32 {
    record_start(id);
    let mut attempts = ATTEMPTS.lock().expect("attempts");
    let count = attempts
        .get_or_insert_with(HashMap::new)
        .entry(id.to_string())
        .or_insert(0);
    *count += 1;
    *count
}

/// `sem.flaky(failures)`: fails retryably `failures` times, then reports its request.
struct Flaky;

impl Task for Flaky {
    const NAME: &'static str = "sem.flaky";
    type Args = (u32,);
    type Output = Value;
    async fn run(ctx: TaskContext, (failures,): (u32,)) -> Result<Value, TaskError> {
        let attempts = attempt(&ctx.id);
        if attempts <= failures {
            return Err(TaskError::runtime_error(format!("attempt {attempts}")).retryable());
        }
        Ok(json!({"attempts": attempts, "retries": ctx.retries, "parent_id": ctx.parent_id}))
    }
    fn options() -> TaskOptions {
        TaskOptions {
            max_retries: Some(3),
            retry_backoff: RetryBackoff {
                min: Duration::from_millis(200),
                max: Duration::from_millis(400),
                jitter: false,
            },
            ..TaskOptions::default()
        }
    }
    fn on_success(ctx: &TaskContext, _: &Value) {
        HookLog::record(ctx, "success");
    }
    fn on_failure(ctx: &TaskContext, _: &TaskError) {
        HookLog::record(ctx, "failure");
    }
    fn on_retry(ctx: &TaskContext, _: &TaskError) {
        HookLog::record(ctx, "retry");
    }
}

/// `sem.countdown()`: asks to be retried once after 700 ms.
struct Countdown;

impl Task for Countdown {
    const NAME: &'static str = "sem.countdown";
    type Args = ();
    type Output = u32;
    async fn run(ctx: TaskContext, (): ()) -> Result<u32, TaskError> {
        record_start(&ctx.id);
        if ctx.retries == 0 {
            return Err(TaskError::runtime_error("not yet").retry_in(Duration::from_millis(700)));
        }
        Ok(ctx.retries)
    }
}

/// `sem.parent()`: sends `sem.child()` and returns its id.
struct Parent;

impl Task for Parent {
    const NAME: &'static str = "sem.parent";
    type Args = ();
    type Output = String;
    async fn run(ctx: TaskContext, (): ()) -> Result<String, TaskError> {
        let queue = ctx.queue.clone();
        ctx.send(Signature::new("sem.child").with_queue(queue))
            .await
            .map_err(|error| TaskError::runtime_error(error.to_string()))
    }
}

/// `sem.child()`: reports its parent and root ids and the app data it sees.
struct Child;

/// App data the child reads.
struct Greeting(&'static str);

impl Task for Child {
    const NAME: &'static str = "sem.child";
    type Args = ();
    type Output = Value;
    async fn run(ctx: TaskContext, (): ()) -> Result<Value, TaskError> {
        let greeting = ctx.data::<Greeting>()?;
        Ok(json!({"parent_id": ctx.parent_id, "root_id": ctx.root_id, "greeting": greeting.0}))
    }
}

const WAIT: Duration = Duration::from_secs(30);

#[actix_rt::test]
async fn a_retried_task_is_republished_with_the_same_id_and_backoff_and_its_hooks_run() {
    let config = config(2);
    let broker = connect(&config).await;
    let queue = unique_queue("retries");
    let (events, mut received) = task_events();
    let hooks = HookLog::default();
    let worker = WorkerSystem::builder(broker.clone(), &config)
        .queue(&queue)
        .register::<Flaky>()
        .app_data(hooks.clone())
        .on_task_event(events)
        .close_broker_on_stop(false)
        .start()
        .await
        .expect("worker");
    let producer = Producer::new(broker.clone(), &config)
        .with_rpc_results()
        .await
        .expect("results");

    let flaky = Signature::new("sem.flaky")
        .with_args(vec![json!(2)])
        .with_queue(queue.clone());
    let result = producer
        .send_signature_with_result(flaky)
        .await
        .expect("sent");
    let id = result.id().to_string();
    received
        .wait_for(WAIT, "two retries and a success", |event| {
            event.task_id.as_deref() == Some(id.as_str()) && succeeded(event)
        })
        .await;
    // Each retry's eta, with when the test received its Retried event.
    let mut etas = Vec::new();
    for (event, received_at) in received.seen_with_times() {
        assert_eq!(
            event.task_id.as_deref(),
            Some(id.as_str()),
            "one task id throughout"
        );
        assert_eq!(
            event.queue, queue,
            "retries come back to the queue the task came from"
        );
        match &event.kind {
            TaskEventKind::Retried { eta, error } => {
                assert!(error.message.starts_with("attempt"), "{error}");
                etas.push((*eta, received_at));
            }
            TaskEventKind::Failed { error } => panic!("unexpected failure: {error}"),
            _ => {}
        }
    }
    let starts = run_starts(&id);
    assert_eq!(etas.len(), 2);
    assert_eq!(starts.len(), 3, "three runs");
    // Backoff without jitter: 200 ms after the first failure, then 400 ms. The worker sets
    // eta = now + backoff between the run's start and its Retried event, so the eta lies
    // between the run's start + backoff and the event's receipt + backoff, however long
    // the run and the event took on a loaded machine.
    for (index, ((eta, received_at), backoff_ms)) in etas.iter().zip([200, 400]).enumerate() {
        let backoff = chrono::Duration::milliseconds(backoff_ms);
        assert!(
            starts[index] + backoff <= *eta && *eta <= *received_at + backoff,
            "retry {index}: eta {eta} is not between the run's start {} and its Retried \
             event's receipt {received_at}, plus the {backoff_ms} ms backoff",
            starts[index]
        );
        let early = (*eta - starts[index + 1]).num_milliseconds();
        assert!(
            early <= 5,
            "run {} began {early} ms before its eta",
            index + 1
        );
    }
    let value = result.get(WAIT).await.expect("success");
    assert_eq!(value, json!({"attempts": 3, "retries": 2, "parent_id": id}));
    assert_eq!(
        hooks.entries(),
        vec![
            format!("retry:{id}"),
            format!("retry:{id}"),
            format!("success:{id}")
        ],
        "hooks run before the outcome is reported"
    );
    worker.stop().await.expect("stop");
    producer.close_results().await.expect("close");
    delete_queues(&broker, &[&queue]).await;
}

#[actix_rt::test]
async fn past_max_retries_the_task_fails_with_its_last_error() {
    let config = config(2);
    let broker = connect(&config).await;
    let queue = unique_queue("max-retries");
    let hooks = HookLog::default();
    let worker = WorkerSystem::builder(broker.clone(), &config)
        .queue(&queue)
        .register::<Flaky>()
        .app_data(hooks.clone())
        .close_broker_on_stop(false)
        .start()
        .await
        .expect("worker");
    let producer = Producer::new(broker.clone(), &config)
        .with_rpc_results()
        .await
        .expect("results");
    let flaky = Signature::new("sem.flaky")
        .with_args(vec![json!(10)])
        .with_queue(queue.clone());
    let result = producer
        .send_signature_with_result(flaky)
        .await
        .expect("sent");
    let id = result.id().to_string();
    match result.get(WAIT).await {
        Err(ResultError::Failed { exception, .. }) => {
            assert_eq!(exception.exc_type, "RuntimeError");
            // max_retries 3: attempts 1-3 are retried, attempt 4 is the last error.
            assert_eq!(exception.exc_message, vec![json!("attempt 4")]);
        }
        other => panic!("expected the last error as a failure, got {other:?}"),
    }
    assert_eq!(
        hooks.entries(),
        vec![
            format!("retry:{id}"),
            format!("retry:{id}"),
            format!("retry:{id}"),
            format!("failure:{id}")
        ]
    );
    worker.stop().await.expect("stop");
    producer.close_results().await.expect("close");
    delete_queues(&broker, &[&queue]).await;
}

#[actix_rt::test]
async fn a_retry_with_a_countdown_runs_again_after_it() {
    let config = config(2);
    let broker = connect(&config).await;
    let queue = unique_queue("countdown-retry");
    let (builder, mut received) = test_worker(&broker, &config, &queue);
    let worker = builder
        .register::<Countdown>()
        .start()
        .await
        .expect("worker");
    let producer = Producer::new(broker.clone(), &config);
    producer
        .send_signature(Signature::new("sem.countdown").with_queue(queue.clone()))
        .await
        .expect("sent");
    let done = received.wait_for(WAIT, "the second run", succeeded).await;
    let retried = received
        .wait_for(WAIT, "the retry", |event| {
            matches!(event.kind, TaskEventKind::Retried { .. })
        })
        .await;
    let TaskEventKind::Retried { eta, .. } = retried.kind else {
        unreachable!("matched above")
    };
    let retried_at = received
        .received_at(|event| matches!(event.kind, TaskEventKind::Retried { .. }))
        .expect("seen above");
    let starts = run_starts(done.task_id.as_deref().unwrap_or_default());
    assert_eq!(starts.len(), 2, "two runs");
    // eta = now + 700 ms, taken between the first run's start and the Retried event.
    let countdown = chrono::Duration::milliseconds(700);
    assert!(
        starts[0] + countdown <= eta && eta <= retried_at + countdown,
        "the retry's eta {eta} is not 700 ms after a moment between the first run's start \
         {} and the Retried event's receipt {retried_at}",
        starts[0]
    );
    let early = (eta - starts[1]).num_milliseconds();
    assert!(early <= 5, "the second run began {early} ms before its eta");
    assert_eq!(done.kind, TaskEventKind::Succeeded { result: json!(1) });
    worker.stop().await.expect("stop");
    delete_queues(&broker, &[&queue]).await;
}

#[actix_rt::test]
async fn tasks_read_app_state_and_send_child_tasks_with_parent_and_root_ids() {
    let config = config(2);
    let broker = connect(&config).await;
    let queue = unique_queue("children");
    let (events, mut received) = task_events();
    let worker = WorkerSystem::builder(broker.clone(), &config)
        .queue(&queue)
        .register::<Parent>()
        .register::<Child>()
        .app_data(Greeting("hello from the worker"))
        .on_task_event(events)
        .close_broker_on_stop(false)
        .start()
        .await
        .expect("worker");
    let producer = Producer::new(broker.clone(), &config);
    let parent_id = producer
        .send_signature(Signature::new("sem.parent").with_queue(queue.clone()))
        .await
        .expect("sent");
    let success_of = |name: &'static str| {
        move |event: &celeriac::TaskEvent| {
            succeeded(event) && event.task_name.as_deref() == Some(name)
        }
    };
    let parent = received
        .wait_for(WAIT, "the parent to succeed", success_of("sem.parent"))
        .await;
    let child = received
        .wait_for(WAIT, "the child to succeed", success_of("sem.child"))
        .await;
    let result_of = |event: celeriac::TaskEvent| match event.kind {
        TaskEventKind::Succeeded { result } => result,
        other => panic!("matched a success, got {other:?}"),
    };
    let child_id = result_of(parent).as_str().map(str::to_string);
    let (id, result) = (child.task_id.clone(), result_of(child));
    assert_eq!(id, child_id, "the parent returned its child's id");
    assert_eq!(
        result,
        json!({"parent_id": parent_id, "root_id": parent_id, "greeting": "hello from the worker"})
    );
    worker.stop().await.expect("stop");
    delete_queues(&broker, &[&queue]).await;
}
