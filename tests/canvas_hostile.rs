//! Workflow parts a worker cannot use (an embed that is not an object, a chain step
//! without a task name, a callback nested past the depth limit, a chord with no Redis to
//! join it, a next step that cannot be sent): the task's own result is stored, the bad part
//! is dropped (and, where a task waits on it, failed), and the worker goes on serving.

mod common;

use std::time::Duration;

use celeriac::protocol::{TaskMessage, TaskPayload};
use celeriac::{AsyncResult, Config, ResultError};
use common::redis_server::redis_url;
use common::{connect, test_worker, unique_queue, Add};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);

/// Publishes `test.add(x, y)` with `embed` as the body's third element; answers its id.
async fn publish_with_embed(broker: &celeriac::BrokerClient, queue: &str, embed: Value) -> String {
    let id = uuid::Uuid::new_v4().to_string();
    let mut message = TaskMessage::new_json(
        "test.add",
        &id,
        vec![json!(2), json!(3)],
        Default::default(),
    );
    if let TaskPayload::Json { embed: slot, .. } = &mut message.payload {
        *slot = embed;
    }
    common::publish_task_message(broker, queue, &message).await;
    id
}

fn nested_callback(depth: usize) -> Value {
    let mut value = json!({"task": "test.add", "args": [1], "kwargs": {}, "options": {}});
    for _ in 0..depth {
        value = json!({"task": "celery.group", "args": [], "kwargs": {"tasks": [value]}, "options": {}, "subtask_type": "group"});
    }
    value
}

#[actix_rt::test]
async fn bad_workflow_parts_are_dropped_and_the_task_result_is_kept() {
    let config = Config {
        result_backend: Some(redis_url()),
        ..common::config(2)
    };
    let broker = connect(&config).await;
    let queue = unique_queue("canvas-hostile");
    let (builder, _events) = test_worker(&broker, &config, &queue);
    let worker = builder
        .register::<Add>()
        .start()
        .await
        .expect("the worker starts");

    let waiting_id = uuid::Uuid::new_v4().to_string();
    let unsent_id = uuid::Uuid::new_v4().to_string();
    let after_unsent_id = uuid::Uuid::new_v4().to_string();
    let embeds = [
        json!([1, 2, 3]),
        json!({"chain": [{"args": [1]}]}),
        json!({"callbacks": [nested_callback(40)]}),
        json!({"callbacks": "not a list", "errbacks": 7}),
        // A chain step that cannot run (a chord without a body): the step's own id gets a
        // FAILURE instead of never being answered.
        json!({"chain": [{"task": "celery.chord", "kwargs": {"header": []}, "options": {"task_id": waiting_id}, "subtask_type": "chord"}]}),
        // A next chain step that cannot be sent (its eta is not a time): it and the step
        // after it get a FAILURE instead of never being answered.
        json!({"chain": [
            {"task": "test.add", "args": [1], "kwargs": {}, "options": {"task_id": after_unsent_id}},
            {"task": "test.add", "args": [1], "kwargs": {}, "options": {"task_id": unsent_id, "eta": "not a time"}},
        ]}),
    ];
    let mut ids = Vec::new();
    for embed in embeds {
        ids.push(publish_with_embed(&broker, &queue, embed).await);
    }
    for id in &ids {
        let result = AsyncResult::from_id(id.clone(), &config).expect("a Redis handle");
        assert_eq!(
            result.get(WAIT).await.ok(),
            Some(json!(5)),
            "task {id} kept its result"
        );
    }
    let waiting = AsyncResult::from_id(waiting_id.clone(), &config).expect("a Redis handle");
    match waiting.get(WAIT).await {
        Err(ResultError::Failed { exception, .. }) => {
            assert_eq!(exception.exc_type, "CanvasError");
            assert!(
                exception.exc_message[0]
                    .as_str()
                    .is_some_and(|text| text.contains("without a body")),
                "{exception:?}"
            );
        }
        other => panic!("the chain step that cannot run should fail, got {other:?}"),
    }
    for id in [&unsent_id, &after_unsent_id] {
        let result = AsyncResult::from_id(id.clone(), &config).expect("a Redis handle");
        match result.get(WAIT).await {
            Err(ResultError::Failed { exception, .. }) => {
                assert_eq!(exception.exc_type, "CanvasError");
                assert!(
                    exception.exc_message[0].as_str().is_some_and(|text| {
                        text.contains(&format!("could not send test.add[{unsent_id}]"))
                            && text.contains("not a time")
                    }),
                    "{exception:?}"
                );
            }
            other => panic!("the chain step {id} that was not sent should fail, got {other:?}"),
        }
    }

    // A chord whose header runs on a worker without Redis results: its body fails with
    // ChordError instead of never being called.
    let rpc_config = common::config(1);
    let rpc_queue = unique_queue("canvas-hostile-rpc");
    let (builder, _events) = test_worker(&broker, &rpc_config, &rpc_queue);
    let rpc_worker = builder
        .register::<Add>()
        .start()
        .await
        .expect("the worker starts");
    let producer = celeriac::Producer::new(broker.clone(), &rpc_config)
        .with_rpc_results()
        .await
        .expect("rpc results");
    let reply_to = producer.reply_queue().expect("a reply queue").to_string();
    let body_id = uuid::Uuid::new_v4().to_string();
    let id = uuid::Uuid::new_v4().to_string();
    let mut message = TaskMessage::new_json(
        "test.add",
        &id,
        vec![json!(1), json!(1)],
        Default::default(),
    );
    message.headers.group = Some(uuid::Uuid::new_v4().to_string());
    message.headers.group_index = Some(0);
    if let TaskPayload::Json { embed, .. } = &mut message.payload {
        *embed = json!({"chord": {"task": "test.add", "args": [], "kwargs": {},
                                  "options": {"task_id": body_id, "reply_to": reply_to}}});
    }
    common::publish_task_message(&broker, &rpc_queue, &message).await;
    let body_result = producer.async_result(body_id).expect("rpc results");
    match body_result.get(WAIT).await {
        Err(ResultError::Failed { exception, .. }) => {
            assert_eq!(exception.exc_type, "ChordError");
            assert!(
                exception.exc_message[0]
                    .as_str()
                    .is_some_and(|text| text.contains("Redis")),
                "{exception:?}"
            );
        }
        other => panic!("the chord body should fail for want of Redis, got {other:?}"),
    }
    producer.close_results().await.ok();

    rpc_worker.stop().await.expect("the worker stops");
    worker.stop().await.expect("the worker stops");
    common::delete_queues(&broker, &[&queue, &rpc_queue]).await;
}
