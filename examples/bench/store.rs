//! The Redis side of the bench: the raw baseline that stores a Celery result document per
//! delivery (`SETEX` + `PUBLISH`, pipelined per ack batch through one multiplexed redis-rs
//! connection), and the orchestrator's helpers (empty the database, count the results).

use std::error::Error;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use lapin::options::BasicAckOptions;
use lapin::types::AMQPValue;
use lapin::Consumer;
use redis::aio::MultiplexedConnection;

type BoxError = Box<dyn Error>;

/// The TTL Celery's Redis backend gives results (`result_expires`, one day).
const EXPIRES_S: u64 = 86_400;

/// A multiplexed connection to the bench's Redis.
pub async fn connect(url: &str) -> Result<MultiplexedConnection, BoxError> {
    let client = redis::Client::open(url).map_err(|error| format!("the Redis URL: {error}"))?;
    Ok(client
        .get_multiplexed_async_connection()
        .await
        .map_err(|error| format!("connecting to Redis: {error}"))?)
}

/// Empties the bench's database (a private Redis: scripts/bench starts one).
pub async fn flush(connection: &mut MultiplexedConnection) -> Result<(), BoxError> {
    redis::cmd("FLUSHDB")
        .exec_async(connection)
        .await
        .map_err(|error| format!("FLUSHDB: {error}"))?;
    Ok(())
}

/// The number of keys in the database (one per stored result).
pub async fn count(connection: &mut MultiplexedConnection) -> Result<usize, BoxError> {
    Ok(redis::cmd("DBSIZE")
        .query_async(connection)
        .await
        .map_err(|error| format!("DBSIZE: {error}"))?)
}

/// Waits until `expect` results are stored (DBSIZE polled every millisecond), at most
/// `patience`.
pub async fn wait_for_results(
    connection: &mut MultiplexedConnection,
    expect: usize,
    patience: Duration,
) -> Result<(), BoxError> {
    let deadline = Instant::now() + patience;
    loop {
        let stored = count(connection).await?;
        if stored >= expect {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{stored} of {expect} results stored after {patience:?}").into());
        }
        actix_rt::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A SUCCESS document as Celery's Redis backend writes it, for task `id`.
fn document(id: &str) -> String {
    let done = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6f+00:00");
    format!(
        "{{\"status\": \"SUCCESS\", \"result\": 0, \"traceback\": null, \"children\": [], \
         \"date_done\": \"{done}\", \"task_id\": \"{id}\"}}"
    )
}

/// The task id of a delivery (its `id` header).
fn task_id(delivery: &lapin::message::Delivery) -> Option<String> {
    let headers = delivery.properties.headers().as_ref()?;
    match headers.inner().get("id")? {
        AMQPValue::LongString(id) => Some(id.to_string()),
        _ => None,
    }
}

/// Receives `expect` deliveries, calling `on_delivery` for each, and stores a result
/// document for each: `SETEX` and `PUBLISH` of every delivery of a batch in one pipeline
/// (one round trip), then one `basic.ack multiple=true` for the batch. A batch ends after
/// `batch` deliveries or when no further delivery is ready, as in `raw::receive`.
pub async fn receive_storing(
    consumer: &mut Consumer,
    redis: &mut MultiplexedConnection,
    expect: usize,
    batch: usize,
    mut on_delivery: impl FnMut(),
) -> Result<(), BoxError> {
    let mut received = 0;
    let mut unacked: Option<lapin::message::Delivery> = None;
    let mut pipeline = redis::pipe();
    let mut pending = 0;
    while received < expect {
        let next = match consumer.next().now_or_never() {
            Some(next) => next,
            None => {
                if let Some(last) = unacked.take() {
                    store_and_ack(redis, &mut pipeline, &last).await?;
                    pending = 0;
                }
                consumer.next().await
            }
        };
        let delivery = next
            .ok_or("the consumer ended before every message arrived")?
            .map_err(|error| format!("consuming: {error}"))?;
        on_delivery();
        let id = task_id(&delivery).ok_or("a delivery without an id header")?;
        let key = format!("celery-task-meta-{id}");
        let body = document(&id);
        pipeline
            .cmd("SETEX")
            .arg(&key)
            .arg(EXPIRES_S)
            .arg(&body)
            .ignore()
            .cmd("PUBLISH")
            .arg(&key)
            .arg(&body)
            .ignore();
        received += 1;
        pending += 1;
        unacked = Some(delivery);
        if pending >= batch || received == expect {
            if let Some(last) = unacked.take() {
                store_and_ack(redis, &mut pipeline, &last).await?;
                pending = 0;
            }
        }
    }
    Ok(())
}

/// Sends the pipeline, then acks up to `last`.
async fn store_and_ack(
    redis: &mut MultiplexedConnection,
    pipeline: &mut redis::Pipeline,
    last: &lapin::message::Delivery,
) -> Result<(), BoxError> {
    pipeline
        .exec_async(redis)
        .await
        .map_err(|error| format!("storing results: {error}"))?;
    pipeline.clear();
    last.acker
        .ack(BasicAckOptions { multiple: true })
        .await
        .map_err(|error| format!("basic.ack: {error}"))?;
    Ok(())
}
