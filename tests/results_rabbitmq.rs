//! `rpc://` results on a real RabbitMQ: the reply queue as Celery declares it, result
//! documents published to it (as a worker does), `AsyncResult::get`/`state` (`celeriac
//! call` is tested in tests/cli.rs).

mod common;

use std::time::Duration;

use celeriac::actors::amqp::{AMQPValue, BasicProperties, FieldTable};
use celeriac::actors::broker::OpenConsumer;
use celeriac::actors::OutboundMessage;
use celeriac::protocol::{ExceptionInfo, ResultMessage, TaskState};
use celeriac::result::reply_queue_spec;
use celeriac::{AsyncResult, BrokerClient, Config, Producer, ResultError, SendError, Signature};
use common::*;
use futures::StreamExt;
use serde_json::json;

/// A producer with rpc results on the test broker, and the broker.
async fn rpc_producer() -> (BrokerClient, Producer) {
    let config = config(1);
    let broker = connect(&config).await;
    let producer = Producer::new(broker.clone(), &config)
        .with_rpc_results()
        .await
        .expect("rpc results start");
    (broker, producer)
}

/// Stops consuming the reply queue and deletes it (it is auto-delete; this is belt and braces).
async fn close(broker: &BrokerClient, producer: &Producer) {
    let queue = producer
        .reply_queue()
        .expect("the producer has a reply queue")
        .to_string();
    producer.close_results().await.expect("results close");
    delete_queues(broker, &[&queue]).await;
}

/// Publishes a result body to the reply queue as a worker does.
async fn publish_result(
    broker: &BrokerClient,
    reply_queue: &str,
    correlation_id: &str,
    body: Vec<u8>,
) {
    let properties = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_content_encoding("utf-8".into())
        .with_correlation_id(correlation_id.into())
        .with_delivery_mode(1);
    broker
        .publish(OutboundMessage {
            exchange: String::new(),
            routing_key: reply_queue.to_string(),
            properties,
            body,
        })
        .await
        .unwrap_or_else(|error| panic!("publishing a result to {reply_queue}: {error}"));
}

/// Publishes a result document.
async fn publish_document(broker: &BrokerClient, reply_queue: &str, message: &ResultMessage) {
    let body = message.to_json().expect("the result encodes");
    publish_result(broker, reply_queue, &message.task_id, body).await;
}

/// A handle on a new task id.
fn new_result(producer: &Producer) -> AsyncResult {
    producer
        .async_result(uuid::Uuid::new_v4().to_string())
        .expect("rpc results are enabled")
}

/// Waits until the task's state is `state`, failing after `timeout`.
async fn wait_for_state(result: &AsyncResult, state: TaskState, timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let current = result.state().await;
        if current == state {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "task {} did not reach {state} within {timeout:?} (still {current})",
            result.id()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const WAIT: Duration = Duration::from_secs(10);

#[actix_rt::test]
async fn a_success_answers_the_return_value() {
    let (broker, producer) = rpc_producer().await;
    let reply_queue = producer.reply_queue().expect("reply queue").to_string();
    let result = new_result(&producer);
    assert_eq!(result.state().await, TaskState::Pending);
    assert!(!result.ready().await);

    let value = json!({"sum": 5, "parts": [2, 3]});
    publish_document(
        &broker,
        &reply_queue,
        &ResultMessage::success(result.id(), value.clone()),
    )
    .await;
    assert_eq!(result.get(WAIT).await.expect("a success"), value);
    assert_eq!(result.state().await, TaskState::Success);
    assert!(result.ready().await);
    // A clone shares what `get` received; asking again answers the same value.
    assert_eq!(result.clone().get(WAIT).await.expect("again"), value);
    close(&broker, &producer).await;
}

#[actix_rt::test]
async fn a_failure_answers_the_exception_type_module_and_message() {
    let (broker, producer) = rpc_producer().await;
    let reply_queue = producer.reply_queue().expect("reply queue").to_string();
    let result = new_result(&producer);
    let mut failure = ResultMessage::exception(
        result.id(),
        TaskState::Failure,
        &ExceptionInfo::new("ValueError", "builtins", "boom"),
        Some("Traceback (most recent call last):\n  ...".into()),
    );
    failure.result =
        json!({"exc_type": "ValueError", "exc_message": ["boom"], "exc_module": "builtins"});
    publish_document(&broker, &reply_queue, &failure).await;

    let error = result.get(WAIT).await.expect_err("the task failed");
    match &error {
        ResultError::Failed {
            task_id,
            exception,
            traceback,
        } => {
            assert_eq!(task_id, result.id());
            assert_eq!(exception.exc_type, "ValueError");
            assert_eq!(exception.exc_module, "builtins");
            assert_eq!(exception.exc_message, vec![json!("boom")]);
            assert!(traceback
                .as_deref()
                .is_some_and(|t| t.starts_with("Traceback")));
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    assert_eq!(
        error.to_string(),
        format!("task {} failed: ValueError: boom (builtins)", result.id())
    );
    assert_eq!(result.state().await, TaskState::Failure);
    close(&broker, &producer).await;
}

#[actix_rt::test]
async fn a_revoked_task_answers_revoked() {
    let (broker, producer) = rpc_producer().await;
    let reply_queue = producer.reply_queue().expect("reply queue").to_string();
    let result = new_result(&producer);
    publish_document(
        &broker,
        &reply_queue,
        &ResultMessage::exception(
            result.id(),
            TaskState::Revoked,
            &ExceptionInfo::revoked_expired(),
            None,
        ),
    )
    .await;
    let error = result.get(WAIT).await.expect_err("the task was revoked");
    assert!(
        matches!(&error, ResultError::Revoked { exception, .. } if exception.exc_type == "TaskRevokedError"),
        "expected Revoked, got {error:?}"
    );
    assert!(
        error
            .to_string()
            .contains("was revoked: TaskRevokedError: expired"),
        "{error}"
    );
    close(&broker, &producer).await;
}

#[actix_rt::test]
async fn state_follows_started_then_success() {
    let (broker, producer) = rpc_producer().await;
    let reply_queue = producer.reply_queue().expect("reply queue").to_string();
    let result = new_result(&producer);
    publish_document(
        &broker,
        &reply_queue,
        &ResultMessage::started(result.id(), 4242, "celery@node"),
    )
    .await;
    wait_for_state(&result, TaskState::Started, WAIT).await;
    assert!(!result.ready().await, "STARTED is not ready");
    let started = result.latest().await.expect("the STARTED document");
    assert_eq!(started.result["pid"], json!(4242));

    publish_document(
        &broker,
        &reply_queue,
        &ResultMessage::success(result.id(), json!(42)),
    )
    .await;
    wait_for_state(&result, TaskState::Success, WAIT).await;
    assert_eq!(result.get(WAIT).await.expect("a success"), json!(42));
    close(&broker, &producer).await;
}

#[actix_rt::test]
async fn a_result_that_arrives_before_get_is_kept() {
    let (broker, producer) = rpc_producer().await;
    let reply_queue = producer.reply_queue().expect("reply queue").to_string();
    let id = uuid::Uuid::new_v4().to_string();
    publish_document(
        &broker,
        &reply_queue,
        &ResultMessage::success(&id, json!("early")),
    )
    .await;
    // Nobody asked yet: wait until the collector has it, then ask.
    let result = producer.async_result(&id).expect("rpc results are enabled");
    wait_for_state(&result, TaskState::Success, WAIT).await;
    assert_eq!(
        result
            .get(Duration::from_millis(500))
            .await
            .expect("the kept result"),
        json!("early")
    );
    close(&broker, &producer).await;
}

#[actix_rt::test]
async fn a_malformed_result_is_dropped_and_the_next_one_arrives() {
    let (broker, producer) = rpc_producer().await;
    let reply_queue = producer.reply_queue().expect("reply queue").to_string();
    let result = new_result(&producer);
    publish_result(
        &broker,
        &reply_queue,
        result.id(),
        b"{not json at all".to_vec(),
    )
    .await;
    publish_result(
        &broker,
        &reply_queue,
        result.id(),
        br#"{"status": "NO_SUCH_STATE", "result": 1}"#.to_vec(),
    )
    .await;
    publish_document(
        &broker,
        &reply_queue,
        &ResultMessage::success(result.id(), json!("still here")),
    )
    .await;
    assert_eq!(
        result.get(WAIT).await.expect("the good result"),
        json!("still here")
    );
    // Every message was consumed and acked, the malformed ones included.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let ready = broker.count_messages(&reply_queue).await.expect("count");
        if ready == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{ready} messages still in the reply queue after {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    close(&broker, &producer).await;
}

#[actix_rt::test]
async fn get_times_out_with_the_task_id_in_the_message() {
    let (broker, producer) = rpc_producer().await;
    let result = new_result(&producer);
    // Bounded by the test's own 30 s, which only catches a hang: `waited` below says the
    // 300 ms were what `get` waited for.
    let error = tokio::time::timeout(WAIT * 3, result.get(Duration::from_millis(300)))
        .await
        .expect("get returns after its timeout instead of hanging")
        .expect_err("nothing was published");
    assert!(
        matches!(&error, ResultError::Timeout { task_id, waited }
            if task_id == result.id() && *waited == Duration::from_millis(300)),
        "expected Timeout, got {error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains(result.id()) && message.contains("300ms"),
        "the message names the task and the wait: {message}"
    );
    assert_eq!(result.state().await, TaskState::Pending);
    close(&broker, &producer).await;
}

#[actix_rt::test]
async fn the_reply_queue_is_declared_as_celery_declares_it() {
    let (broker, producer) = rpc_producer().await;
    let reply_queue = producer.reply_queue().expect("reply queue").to_string();
    assert!(
        uuid::Uuid::parse_str(&reply_queue).is_ok(),
        "the reply queue is named by a UUID: {reply_queue}"
    );
    // The same declaration as Celery's client (durable, auto-delete, x-expires as an
    // int) is accepted...
    broker
        .declare_queue(reply_queue_spec(&reply_queue))
        .await
        .expect("an equivalent declaration is accepted");
    // ...a different one is refused with 406 PRECONDITION_FAILED.
    let mut different = reply_queue_spec(&reply_queue);
    let mut arguments = FieldTable::default();
    arguments.insert("x-expires".into(), AMQPValue::LongInt(60_000));
    different.arguments = arguments;
    let refused = broker
        .declare_queue(different)
        .await
        .expect_err("a different x-expires is refused");
    assert!(
        refused.to_string().contains("PRECONDITION_FAILED") || refused.to_string().contains("406"),
        "the broker answered 406: {refused}"
    );
    let mut not_auto_delete = reply_queue_spec(&reply_queue);
    not_auto_delete.auto_delete = false;
    broker
        .declare_queue(not_auto_delete)
        .await
        .expect_err("the queue is auto-delete: a declaration without it is refused");
    close(&broker, &producer).await;
}

#[actix_rt::test]
async fn sent_tasks_carry_the_reply_queue_and_their_result_comes_back() {
    let (broker, producer) = rpc_producer().await;
    let reply_queue = producer.reply_queue().expect("reply queue").to_string();
    let task_queue = unique_queue("results-send");
    let result = producer
        .send_signature_with_result(
            Signature::new("test.add")
                .with_args(vec![json!(2), json!(3)])
                .with_queue(&task_queue),
        )
        .await
        .expect("sent");
    assert_eq!(result.state().await, TaskState::Pending);

    // Play the worker: take the task message and answer to its reply_to.
    let tag = format!("celeriac-test.{}", uuid::Uuid::new_v4().simple());
    let mut deliveries = broker
        .open_consumer
        .send(OpenConsumer {
            queue: task_queue.clone(),
            prefetch: 1,
            consumer_tag: tag.clone(),
            global_qos: false,
        })
        .await
        .expect("the broker actor answers")
        .expect("consuming the task queue");
    let delivery = match tokio::time::timeout(WAIT, deliveries.next()).await {
        Ok(Some(Ok(delivery))) => delivery,
        Ok(other) => panic!("no task message in {task_queue}: {other:?}"),
        Err(_) => panic!("the task message did not arrive in {task_queue} within {WAIT:?}"),
    };
    let reply_to = delivery
        .properties
        .reply_to()
        .as_ref()
        .map(|queue| queue.to_string());
    let correlation_id = delivery
        .properties
        .correlation_id()
        .as_ref()
        .map(|id| id.to_string());
    assert_eq!(reply_to.as_deref(), Some(reply_queue.as_str()));
    assert_eq!(correlation_id.as_deref(), Some(result.id()));
    delivery
        .acker
        .settle(celeriac::actors::Settlement::Ack)
        .await
        .expect("acked");
    drop(deliveries);
    broker
        .cancel_consumer
        .send(celeriac::actors::broker::CancelConsumer { consumer_tag: tag })
        .await
        .expect("the broker actor answers")
        .expect("cancelled");

    publish_document(
        &broker,
        &reply_queue,
        &ResultMessage::success(result.id(), json!(5)),
    )
    .await;
    assert_eq!(result.get(WAIT).await.expect("the result"), json!(5));
    close(&broker, &producer).await;
    delete_queues(&broker, &[&task_queue]).await;
}

#[actix_rt::test]
async fn without_a_result_backend_no_result_is_promised() {
    let config = config(1);
    let broker = connect(&config).await;
    let producer = Producer::new(broker.clone(), &config);
    assert!(producer.reply_queue().is_none());
    assert!(producer.async_result("any").is_none());
    let error = producer
        .send_signature_with_result(Signature::new("test.add"))
        .await
        .expect_err("no result backend");
    assert!(
        matches!(error, SendError::NoResultBackend { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("with_rpc_results"), "{error}");

    let unsupported = Config {
        result_backend: Some("memcache://localhost".into()),
        ..config.clone()
    };
    let error = Producer::from_config(broker.clone(), &unsupported)
        .await
        .expect_err("memcache is not supported");
    assert!(
        error.to_string().contains("memcache://localhost") && error.to_string().contains("rpc://"),
        "{error}"
    );

    let rpc = Config {
        result_backend: Some("rpc://".into()),
        ..config
    };
    let producer = Producer::from_config(broker.clone(), &rpc)
        .await
        .expect("rpc:// is supported");
    assert!(producer.reply_queue().is_some());
    close(&broker, &producer).await;
}

#[actix_rt::test]
async fn a_worker_answers_success_and_failure_through_the_reply_queue() {
    let config = config(2);
    let broker = connect(&config).await;
    let queue = unique_queue("results-worker");
    let worker = celeriac::WorkerSystem::builder(broker.clone(), &config)
        .queue(&queue)
        .register::<Add>()
        .register::<Panic>()
        .close_broker_on_stop(false)
        .start()
        .await
        .expect("worker starts");
    let producer = Producer::new(broker.clone(), &config)
        .with_rpc_results()
        .await
        .expect("rpc results start");

    let sum = producer
        .send_signature_with_result(
            Signature::of::<Add>(&AddArgs { x: 20, y: 22 })
                .expect("encodes")
                .with_queue(&queue),
        )
        .await
        .expect("sent");
    let panics = producer
        .send_signature_with_result(
            Signature::of::<Panic>(&("kaboom".to_string(),))
                .expect("encodes")
                .with_queue(&queue),
        )
        .await
        .expect("sent");
    assert_eq!(sum.get(WAIT).await.expect("the worker's result"), json!(42));
    assert_eq!(sum.state().await, TaskState::Success);
    let error = panics.get(WAIT).await.expect_err("the task panicked");
    assert!(
        matches!(error, ResultError::Failed { .. }),
        "expected Failed, got {error:?}"
    );
    assert!(
        error
            .to_string()
            .starts_with(&format!("task {} failed: ", panics.id())),
        "{error}"
    );
    assert!(error.to_string().contains("kaboom"), "{error}");

    worker.stop().await.expect("worker stops");
    close(&broker, &producer).await;
    delete_queues(&broker, &[&queue]).await;
}
