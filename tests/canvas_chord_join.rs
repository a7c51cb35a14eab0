//! A chain inside a chord header whose first task fails twice (a redelivery): the failed
//! chain step is counted in the chord once, as Celery's `_fail_chain` counts it
//! (`already_failed`), so the chord waits for its other member instead of completing
//! with the same step twice.

mod common;

use std::time::Duration;

use celeriac::backend::redis::chord::group_key;
use celeriac::protocol::{ExceptionInfo, ResultMessage, TaskMessage, TaskPayload, TaskState};
use celeriac::task::{Task, TaskContext, TaskError};
use celeriac::TaskEventKind;
use celeriac::{AsyncResult, Config, RedisBackendConfig, RedisResults, ResultError};
use common::redis_server::redis_url;
use common::{connect, test_worker, unique_queue, Add};
use serde_json::json;

/// Long enough for a task and its workflow on a loaded machine; only a deadline for
/// conditions the mechanism makes true.
const WAIT: Duration = Duration::from_secs(30);

/// `test.fail(message)`: fails with `ValueError(message)`.
struct Fail;

impl Task for Fail {
    const NAME: &'static str = "test.fail";
    type Args = (String,);
    type Output = ();
    async fn run(_ctx: TaskContext, (message,): (String,)) -> Result<(), TaskError> {
        Err(TaskError::value_error(message))
    }
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A plain connection for reading and writing the chord's keys.
async fn raw_redis() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url())
        .expect("a Redis URL")
        .get_multiplexed_async_connection()
        .await
        .expect("a connection to the test Redis")
}

async fn zcard(redis: &mut redis::aio::MultiplexedConnection, key: &str) -> i64 {
    redis::cmd("ZCARD")
        .arg(key)
        .query_async(redis)
        .await
        .expect("ZCARD")
}

async fn exists(redis: &mut redis::aio::MultiplexedConnection, key: &str) -> bool {
    let count: i64 = redis::cmd("EXISTS")
        .arg(key)
        .query_async(redis)
        .await
        .expect("EXISTS");
    count == 1
}

#[actix_rt::test]
async fn a_chain_step_that_already_failed_is_counted_in_its_chord_once() {
    let config = Config {
        result_backend: Some(redis_url()),
        ..common::config(1)
    };
    let broker = connect(&config).await;
    let queue = unique_queue("canvas-chord-join");
    let (builder, mut events) = test_worker(&broker, &config, &queue);
    let worker = builder
        .register::<Add>()
        .register::<Fail>()
        .start()
        .await
        .expect("the worker starts");

    // chord([chain(test.fail('second delivery'), test.add.s(1)), test.add.s(1, 1)],
    //       test.add.s()), shaped as Celery 5.7 sends it
    // (tests/fixtures/canvas/chord_header_chain.json).
    let (group_id, step_id, body_id, first_id, member_id) =
        (new_id(), new_id(), new_id(), new_id(), new_id());
    let body = json!({
        "task": "test.add", "args": [], "kwargs": {},
        "options": {"task_id": body_id, "group_id": group_id},
        "subtask_type": null, "immutable": false,
    });
    let step = json!({
        "task": "test.add", "args": [1], "kwargs": {},
        "options": {"task_id": step_id, "group_id": group_id, "chord": body, "group_index": 0},
        "subtask_type": null, "immutable": false,
    });

    // The state a first delivery of the chain's first task left behind when it failed:
    // the chain step stored as FAILURE and counted in the chord (its entry in `.j`), whose
    // size the producer recorded. The `.d` record of counted ids is left out: with it the
    // join script alone keeps a second count out; what is under test is the check of the
    // step's stored state.
    let backend = RedisResults::connect(RedisBackendConfig::new(redis_url()))
        .await
        .expect("the test Redis");
    let first_failure = ExceptionInfo::new("KeyError", "builtins", "first delivery");
    backend
        .store(ResultMessage::exception(
            &step_id,
            TaskState::Failure,
            &first_failure,
            None,
        ))
        .await
        .expect("the step's FAILURE is stored");
    backend
        .set_chord_size(&group_id, 2)
        .await
        .expect("the chord size is stored");
    let mut redis = raw_redis().await;
    let entry = json!([1, step_id, "FAILURE", first_failure.to_value()]).to_string();
    let _: i64 = redis::cmd("ZADD")
        .arg(group_key(&group_id, ".j"))
        .arg(0)
        .arg(&entry)
        .query_async(&mut redis)
        .await
        .expect("ZADD");

    // The redelivery: the first task fails again and fails the chain step again.
    let mut first = TaskMessage::new_json(
        "test.fail",
        &first_id,
        vec![json!("second delivery")],
        Default::default(),
    );
    first.headers.root_id = Some(first_id.clone());
    if let TaskPayload::Json { embed, .. } = &mut first.payload {
        *embed = json!({"callbacks": null, "errbacks": null, "chain": [step], "chord": null});
    }
    common::publish_task_message(&broker, &queue, &first).await;
    // The event comes after the workflow of the failure was carried out.
    common::wait_for_event(
        &mut events,
        WAIT,
        "the task-failed event of the chain's first task",
        |event| {
            event.task_id.as_deref() == Some(first_id.as_str())
                && matches!(event.kind, TaskEventKind::Failed { .. })
        },
    )
    .await;
    let step_result = AsyncResult::from_id(step_id.clone(), &config).expect("a Redis handle");
    match step_result.get(WAIT).await {
        Err(ResultError::Failed { .. }) => {}
        other => panic!("the chain step should stay FAILURE, got {other:?}"),
    }
    assert_eq!(
        zcard(&mut redis, &group_key(&group_id, ".j")).await,
        1,
        "the chain step that had already failed was counted in its chord again (0: that \
         completed the chord, whose entries were then deleted)"
    );
    assert!(
        !exists(&mut redis, &format!("celery-task-meta-{body_id}")).await,
        "the chord completed before its second member returned"
    );

    // The other member returns: the chord completes with both, once.
    let mut member = TaskMessage::new_json(
        "test.add",
        &member_id,
        vec![json!(1), json!(1)],
        Default::default(),
    );
    member.headers.group = Some(group_id.clone());
    member.headers.group_index = Some(1);
    if let TaskPayload::Json { embed, .. } = &mut member.payload {
        *embed = json!({"callbacks": null, "errbacks": null, "chain": null, "chord": body});
    }
    common::publish_task_message(&broker, &queue, &member).await;
    let body_result = AsyncResult::from_id(body_id.clone(), &config).expect("a Redis handle");
    match body_result.get(WAIT).await {
        Err(ResultError::Failed { exception, .. }) => {
            assert_eq!(exception.exc_type, "ChordError", "{exception:?}");
            let text = exception.exc_message[0].as_str().unwrap_or_default();
            assert!(
                text.contains(&format!("Dependency {step_id} raised"))
                    && text.contains("first delivery"),
                "the body should fail for the step's first failure: {exception:?}"
            );
        }
        other => panic!("the chord body should fail for its failed member, got {other:?}"),
    }
    // The chord is finished by the member that completed it (after its body's result is
    // stored): the done marker keeps late duplicates out, its entries are gone.
    let done_key = group_key(&group_id, ".c");
    common::wait_until_async("the chord's done marker", WAIT, || {
        let mut redis = redis.clone();
        let done_key = done_key.clone();
        async move {
            let done: Option<String> = redis::cmd("GET")
                .arg(&done_key)
                .query_async(&mut redis)
                .await
                .expect("GET");
            done.as_deref() == Some("done")
        }
    })
    .await;
    assert!(!exists(&mut redis, &group_key(&group_id, ".j")).await);
    let member_result = AsyncResult::from_id(member_id, &config).expect("a Redis handle");
    assert_eq!(member_result.get(WAIT).await.ok(), Some(json!(2)));

    worker.stop().await.expect("the worker stops");
    common::delete_queues(&broker, &[&queue]).await;
}
