//! The in-process broker and the executor pool, without RabbitMQ: prefetch windows,
//! requeue, channel failure, panics, concurrency limits and draining.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use celeriac_actors::amqp::BasicProperties;
use celeriac_actors::broker::{BreakConsumerChannel, OpenConsumer};
use celeriac_actors::executor::{Drain, Execute, GetPoolStatus};
use celeriac_actors::{
    BrokerClient, Delivery, ExecutionReport, ExecutorPool, MemoryBrokerActor, OutboundMessage,
    QueueSpec, Settlement,
};
use futures::{FutureExt, StreamExt};

fn message(queue: &str, body: &str) -> OutboundMessage {
    OutboundMessage {
        exchange: String::new(),
        routing_key: queue.to_string(),
        properties: BasicProperties::default(),
        body: body.as_bytes().to_vec(),
    }
}

async fn next(stream: &mut celeriac_actors::broker::DeliveryStream, what: &str) -> Delivery {
    match tokio::time::timeout(Duration::from_secs(5), stream.next()).await {
        Ok(Some(Ok(delivery))) => delivery,
        Ok(Some(Err(error))) => panic!("error instead of {what}: {error}"),
        Ok(None) => panic!("stream ended instead of {what}"),
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

async fn broker_with_queue(queue: &str) -> BrokerClient {
    let broker = BrokerClient::new(&MemoryBrokerActor::new().start());
    broker
        .declare_queue(QueueSpec::durable(queue))
        .await
        .expect("declared");
    broker
}

#[actix_rt::test]
async fn the_prefetch_window_limits_unsettled_deliveries_and_reject_requeues() {
    let broker = broker_with_queue("q").await;
    for body in ["a", "b", "c"] {
        broker.publish(message("q", body)).await.expect("published");
    }
    let mut stream = broker
        .open_consumer
        .send(OpenConsumer {
            queue: "q".into(),
            prefetch: 2,
            consumer_tag: "t".into(),
            global_qos: false,
        })
        .await
        .expect("mailbox")
        .expect("consumer");
    let first = next(&mut stream, "the first delivery").await;
    let second = next(&mut stream, "the second delivery").await;
    assert_eq!(
        (first.body.as_slice(), second.body.as_slice()),
        (&b"a"[..], &b"b"[..])
    );
    assert!(
        stream.next().now_or_never().is_none(),
        "a third delivery arrived beyond the prefetch window of 2"
    );
    assert_eq!(broker.count_messages("q").await.expect("count"), 1);

    first
        .acker
        .settle(Settlement::Reject { requeue: true })
        .await
        .expect("rejected");
    let again = next(&mut stream, "the requeued delivery").await;
    assert_eq!(again.body, b"a");
    assert!(
        again.redelivered,
        "a requeued message is marked redelivered"
    );
    second.acker.settle(Settlement::Ack).await.expect("acked");
    let third = next(&mut stream, "the third delivery").await;
    assert_eq!(third.body, b"c");
    third
        .acker
        .settle(Settlement::Reject { requeue: false })
        .await
        .expect("rejected");
    again.acker.settle(Settlement::Ack).await.expect("acked");
    assert_eq!(broker.count_messages("q").await.expect("count"), 0);
}

#[actix_rt::test]
async fn a_broken_channel_ends_the_stream_with_an_error_and_requeues_its_deliveries() {
    let broker = broker_with_queue("q").await;
    broker.publish(message("q", "a")).await.expect("published");
    let mut stream = broker
        .open_consumer
        .send(OpenConsumer {
            queue: "q".into(),
            prefetch: 1,
            consumer_tag: "t".into(),
            global_qos: false,
        })
        .await
        .expect("mailbox")
        .expect("consumer");
    let _held = next(&mut stream, "the delivery").await;
    broker
        .break_channel
        .send(BreakConsumerChannel {
            consumer_tag: "t".into(),
        })
        .await
        .expect("mailbox")
        .expect("broken");
    match tokio::time::timeout(Duration::from_secs(5), stream.next()).await {
        Ok(Some(Err(_))) => {}
        other => panic!(
            "expected an error item, got {:?}",
            other.map(|o| o.map(|r| r.is_ok()))
        ),
    }
    assert_eq!(
        broker.count_messages("q").await.expect("count"),
        1,
        "the delivery went back"
    );
}

#[actix_rt::test]
async fn publishing_to_a_missing_queue_is_an_error() {
    let broker = BrokerClient::new(&MemoryBrokerActor::new().start());
    let error = broker
        .publish(message("nowhere", "x"))
        .await
        .expect_err("unroutable");
    assert!(error.to_string().contains("nowhere"), "{error}");
}

#[actix_rt::test]
async fn the_pool_catches_panics_and_bounds_concurrency() {
    let pool = ExecutorPool::new(2).start();
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    // Jobs wait for each other in pairs: the pool must run two at once for any to end
    // (however slow the machine), and the peak shows it never runs a third.
    let pair = Arc::new(tokio::sync::Barrier::new(2));
    let jobs = (0..6).map(|i| {
        let (running, peak, pair) = (running.clone(), peak.clone(), pair.clone());
        pool.send(Execute {
            job: async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                pair.wait().await;
                running.fetch_sub(1, Ordering::SeqCst);
                if i % 3 == 0 {
                    panic!("job {i} panics");
                }
            }
            .boxed(),
            hard_limit: None,
            on_start: None,
        })
    });
    let reports: Vec<_> =
        tokio::time::timeout(Duration::from_secs(30), futures::future::join_all(jobs))
            .await
            .expect("the pool ran two jobs at once, so each pair could meet")
            .into_iter()
            .map(|report| report.expect("the pool answers"))
            .collect();
    assert_eq!(
        peak.load(Ordering::SeqCst),
        2,
        "never more than 2 jobs at once"
    );
    for (i, report) in reports.iter().enumerate() {
        if i % 3 == 0 {
            assert_eq!(
                report,
                &ExecutionReport::Panicked(format!("job {i} panics"))
            );
        } else {
            assert_eq!(report, &ExecutionReport::Completed);
        }
    }
    let status = pool.send(GetPoolStatus).await.expect("status");
    assert_eq!((status.capacity, status.running, status.waiting), (2, 0, 0));
}

#[actix_rt::test]
async fn a_hard_limit_frees_the_slot_and_drain_cancels_waiting_jobs() {
    let pool = ExecutorPool::new(1).start();
    let stuck = pool.send(Execute {
        job: futures::future::pending().boxed(),
        hard_limit: Some(Duration::from_millis(50)),
        on_start: None,
    });
    assert_eq!(stuck.await.expect("answer"), ExecutionReport::TimedOut);

    let long = pool.send(Execute {
        job: actix_rt::time::sleep(Duration::from_millis(100)).boxed(),
        hard_limit: None,
        on_start: None,
    });
    let waiting = pool.send(Execute {
        job: async {}.boxed(),
        hard_limit: None,
        on_start: None,
    });
    // Both are queued in the pool's mailbox before Drain, in this order.
    let drained = pool.send(Drain);
    let (long, waiting, drained) = futures::join!(long, waiting, drained);
    drained.expect("drained");
    assert_eq!(
        long.expect("answer"),
        ExecutionReport::Completed,
        "running jobs finish"
    );
    assert_eq!(
        waiting.expect("answer"),
        ExecutionReport::Cancelled,
        "waiting jobs are cancelled"
    );
}

#[actix_rt::test]
async fn purge_removes_ready_messages_and_names_a_missing_queue() {
    let broker = broker_with_queue("purged").await;
    for body in ["a", "b", "c"] {
        broker
            .publish(message("purged", body))
            .await
            .expect("published");
    }
    assert_eq!(broker.purge_queue("purged").await.expect("purged"), 3);
    assert_eq!(broker.count_messages("purged").await.expect("counted"), 0);
    assert_eq!(broker.purge_queue("purged").await.expect("purged"), 0);
    assert!(matches!(
        broker.purge_queue("missing").await,
        Err(celeriac_actors::BrokerError::NoSuchQueue(queue)) if queue == "missing"
    ));
}

#[actix_rt::test]
async fn a_transaction_is_all_or_nothing() {
    let broker = broker_with_queue("q").await;
    let refused = broker
        .publish_transaction(vec![message("q", "a"), message("nowhere", "b")])
        .await;
    assert!(
        matches!(
            refused,
            Err(celeriac_actors::BrokerError::Unroutable { .. })
        ),
        "{refused:?}"
    );
    assert_eq!(broker.count_messages("q").await.expect("count"), 0);
    broker
        .publish_transaction(vec![message("q", "a"), message("q", "b")])
        .await
        .expect("committed");
    assert_eq!(broker.count_messages("q").await.expect("count"), 2);
}
