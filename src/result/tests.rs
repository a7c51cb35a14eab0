//! The result collector and `AsyncResult` on the in-process broker.

use std::time::Duration;

use actix::Actor;
use serde_json::json;

use super::collector::ResultCollector;
use super::{ResultError, RpcResults};
use crate::actors::amqp::BasicProperties;
use crate::actors::{BrokerClient, MemoryBrokerActor, OutboundMessage};
use crate::protocol::{ExceptionInfo, ResultMessage, TaskState};

async fn start() -> (BrokerClient, RpcResults) {
    let broker = BrokerClient::new(&MemoryBrokerActor::new().start());
    let results = RpcResults::start(&broker).await.expect("results start");
    (broker, results)
}

async fn publish(broker: &BrokerClient, queue: &str, correlation_id: Option<&str>, body: Vec<u8>) {
    let mut properties = BasicProperties::default().with_content_type("application/json".into());
    if let Some(id) = correlation_id {
        properties = properties.with_correlation_id(id.into());
    }
    broker
        .publish(OutboundMessage {
            exchange: String::new(),
            routing_key: queue.to_string(),
            properties,
            body,
        })
        .await
        .expect("published");
}

#[actix_rt::test]
async fn a_body_without_task_id_is_matched_by_correlation_id() {
    let (broker, results) = start().await;
    let body = serde_json::to_vec(&json!({"status": "SUCCESS", "result": 7})).expect("json");
    publish(&broker, results.reply_queue(), Some("t-1"), body).await;
    let value = results
        .async_result("t-1")
        .get(Duration::from_secs(5))
        .await
        .expect("the result arrives");
    assert_eq!(value, json!(7));
}

#[actix_rt::test]
async fn a_late_started_does_not_hide_a_ready_result() {
    let (broker, results) = start().await;
    let queue = results.reply_queue().to_string();
    let success = ResultMessage::success("t-2", json!("done"));
    let started = ResultMessage::started("t-2", 1, "node");
    publish(
        &broker,
        &queue,
        Some("t-2"),
        success.to_json().expect("json"),
    )
    .await;
    publish(
        &broker,
        &queue,
        Some("t-2"),
        started.to_json().expect("json"),
    )
    .await;
    let result = results.async_result("t-2");
    assert_eq!(
        result.get(Duration::from_secs(5)).await.expect("ready"),
        json!("done")
    );
    assert_eq!(result.state().await, TaskState::Success);
}

#[test]
fn a_started_arriving_after_the_result_was_handed_over_is_dropped() {
    let mut collector = ResultCollector::new("q", 10);
    let (reply, mut ready) = tokio::sync::oneshot::channel();
    collector.await_for_test("t", reply);
    collector.record_for_test(ResultMessage::success("t", json!(1)));
    assert!(ready.try_recv().is_ok(), "the waiter got the result");
    collector.record_for_test(ResultMessage::started("t", 1, "node"));
    assert!(collector.kept_for_test().is_empty(), "nothing kept for t");
}

#[actix_rt::test]
async fn a_failure_names_the_task_the_exception_and_its_module() {
    let (broker, results) = start().await;
    let failure = ResultMessage::exception(
        "t-3",
        TaskState::Failure,
        &ExceptionInfo::new("ValueError", "builtins", "boom"),
        None,
    );
    publish(
        &broker,
        results.reply_queue(),
        None,
        failure.to_json().expect("json"),
    )
    .await;
    let error = results
        .async_result("t-3")
        .get(Duration::from_secs(5))
        .await
        .expect_err("the task failed");
    assert!(matches!(error, ResultError::Failed { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        "task t-3 failed: ValueError: boom (builtins)"
    );
}

#[test]
fn the_oldest_unclaimed_results_are_forgotten_past_the_capacity() {
    let mut collector = ResultCollector::new("q", 2);
    for id in ["a", "b", "c"] {
        collector.record_for_test(ResultMessage::success(id, json!(id)));
    }
    assert_eq!(collector.kept_for_test(), vec!["b", "c"]);
}

#[actix_rt::test]
async fn a_result_with_too_many_values_is_dropped_before_parsing_and_the_next_one_arrives() {
    let (broker, results) = start().await;
    let queue = results.reply_queue().to_string();
    // 6 MiB of `{},`: parsed, it would take over 140 MB.
    let hostile = format!(
        r#"{{"status": "SUCCESS", "task_id": "t-9", "result": [{}0]}}"#,
        "{},".repeat(2 * 1024 * 1024)
    );
    publish(&broker, &queue, Some("t-9"), hostile.into_bytes()).await;
    let good = ResultMessage::success("t-9", json!("fine"));
    publish(&broker, &queue, Some("t-9"), good.to_json().expect("json")).await;
    let value = results
        .async_result("t-9")
        .get(Duration::from_secs(5))
        .await
        .expect("the good result arrives");
    assert_eq!(value, json!("fine"));
}
