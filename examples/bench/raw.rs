//! The raw lapin baseline: a minimal publisher with pipelined confirms and a minimal
//! consumer that acks with `multiple=true` from a task of its own (its receiving loop never
//! waits for an ack). It also manages the bench's queues.

use std::error::Error;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, Consumer};

type BoxError = Box<dyn Error>;

/// lapin's runtime for the baseline: a multi-threaded tokio runtime of its own, as
/// celeriac gives its connection (one per process).
fn runtime() -> Result<async_rs::TokioRuntime, BoxError> {
    static RUNTIME: OnceLock<async_rs::TokioRuntime> = OnceLock::new();
    if let Some(runtime) = RUNTIME.get() {
        return Ok(runtime.clone());
    }
    let runtime = async_rs::Runtime::tokio()
        .map_err(|error| format!("starting a tokio runtime for lapin: {error}"))?;
    Ok(RUNTIME.get_or_init(|| runtime).clone())
}

/// A lapin connection on its own runtime.
pub async fn connect(url: &str, name: &str) -> Result<Connection, BoxError> {
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    Connection::connect_with_runtime(url, properties, runtime()?)
        .await
        .map_err(|error| {
            // lapin's error for a malformed URL quotes the URL, password included.
            let reason = celeriac::actors::broker::amqp::scrub_password(&error.to_string(), url);
            format!("connecting to {} failed: {reason}", redact(url)).into()
        })
}

/// The URL with its password masked.
pub fn redact(url: &str) -> String {
    celeriac::actors::broker::amqp::redact_url(url)
}

/// Declares `queue` as Celery does (durable, no arguments).
pub async fn declare(channel: &Channel, queue: &str) -> Result<(), BoxError> {
    declare_typed(channel, queue, false).await
}

/// Declares `queue` durable, as a quorum queue (`x-queue-type: quorum`, as celeriac's
/// `CELERIAC_DEFAULT_QUEUE_TYPE=quorum` does) or a classic one.
pub async fn declare_typed(channel: &Channel, queue: &str, quorum: bool) -> Result<(), BoxError> {
    let mut arguments = FieldTable::default();
    if quorum {
        arguments.insert(
            "x-queue-type".into(),
            lapin::types::AMQPValue::LongString("quorum".into()),
        );
    }
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            arguments,
        )
        .await
        .map_err(|error| format!("declaring queue {queue}: {error}"))?;
    Ok(())
}

/// Deletes `queue`; answers how many messages it still held.
pub async fn delete(channel: &Channel, queue: &str) -> Result<u32, BoxError> {
    channel
        .queue_delete(queue.into(), QueueDeleteOptions::default())
        .await
        .map_err(|error| format!("deleting queue {queue}: {error}").into())
}

/// Messages ready in `queue` (a passive declare on a channel of its own).
pub async fn ready_count(connection: &Connection, queue: &str) -> Result<u32, BoxError> {
    Ok(counts(connection, queue).await?.0)
}

/// Messages ready in `queue` and its consumers (a passive declare on a channel of its own).
pub async fn counts(connection: &Connection, queue: &str) -> Result<(u32, u32), BoxError> {
    let channel = connection.create_channel().await?;
    let queue_info = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|error| format!("counting messages of queue {queue}: {error}"))?;
    let _ = channel.close(200, "OK".into()).await;
    Ok((queue_info.message_count(), queue_info.consumer_count()))
}

/// A channel in publisher-confirm mode.
pub async fn confirm_channel(connection: &Connection) -> Result<Channel, BoxError> {
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|error| format!("confirm.select: {error}"))?;
    Ok(channel)
}

/// Publishes one message to `queue` and waits for its confirm.
pub async fn publish_confirmed(
    channel: &Channel,
    queue: &str,
    properties: BasicProperties,
    body: &[u8],
) -> Result<(), BoxError> {
    let confirm = channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions {
                mandatory: true,
                immediate: false,
            },
            body,
            properties,
        )
        .await
        .map_err(|error| format!("basic.publish to {queue}: {error}"))?;
    match confirm
        .await
        .map_err(|error| format!("confirm of a publish to {queue}: {error}"))?
    {
        Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
        Confirmation::Ack(Some(_)) => Err(format!("a publish to {queue} was returned").into()),
        Confirmation::Nack(_) => Err(format!("the broker nacked a publish to {queue}").into()),
    }
}

/// Publishes every message of `messages` to `queue` with at most `in_flight`
/// unconfirmed at a time; answers how long it took.
pub async fn publish_all(
    channel: &Channel,
    queue: &str,
    messages: &[(BasicProperties, Vec<u8>)],
    in_flight: usize,
) -> Result<Duration, BoxError> {
    let started = Instant::now();
    let mut confirms = futures::stream::iter(
        messages
            .iter()
            .map(|(properties, body)| publish_confirmed(channel, queue, properties.clone(), body)),
    )
    .buffer_unordered(in_flight);
    while let Some(confirmed) = confirms.next().await {
        confirmed?;
    }
    Ok(started.elapsed())
}

/// Starts consuming `queue` with `prefetch` on a new channel.
pub async fn consume(
    connection: &Connection,
    queue: &str,
    prefetch: u16,
) -> Result<(Channel, Consumer), BoxError> {
    let (channel, mut consumers) = consume_many(connection, &[queue.to_string()], prefetch).await?;
    let consumer = consumers.pop().ok_or("no consumer was started")?;
    Ok((channel, consumer))
}

/// Starts one consumer per queue of `queues` on one new channel, each with `prefetch`
/// (`basic.qos` per consumer, as celeriac's per-queue windows).
pub async fn consume_many(
    connection: &Connection,
    queues: &[String],
    prefetch: u16,
) -> Result<(Channel, Vec<Consumer>), BoxError> {
    let channel = connection.create_channel().await?;
    channel
        .basic_qos(prefetch, BasicQosOptions { global: false })
        .await
        .map_err(|error| format!("basic.qos: {error}"))?;
    let mut consumers = Vec::with_capacity(queues.len());
    for (index, queue) in queues.iter().enumerate() {
        let consumer = channel
            .basic_consume(
                queue.as_str().into(),
                format!("bench-raw-{}-{index}", std::process::id())
                    .as_str()
                    .into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|error| format!("basic.consume on {queue}: {error}"))?;
        consumers.push(consumer);
    }
    Ok((channel, consumers))
}

/// Receives `expect` deliveries from `deliveries` (one channel's consumers), calling
/// `on_delivery` for each, and acks with `multiple=true` up to the highest delivery tag
/// below which every delivery has been received, every `batch` deliveries, when no further
/// delivery is ready, and at the end. With several consumers on the channel, deliveries
/// arrive out of tag order: a tag is acked only once every lower one was received. The
/// acks are sent by a task of their own (see `AckTask`), so the receiving loop never waits
/// for one; this answers once the last ack has been written.
pub async fn receive<S>(
    deliveries: &mut S,
    expect: usize,
    batch: usize,
    mut on_delivery: impl FnMut(),
) -> Result<(), BoxError>
where
    S: futures::Stream<Item = Result<lapin::message::Delivery, lapin::Error>> + Unpin,
{
    let acks = AckTask::spawn();
    let mut received = 0;
    let mut frontier = Frontier::default();
    let mut pending = 0;
    while received < expect {
        let next = match deliveries.next().now_or_never() {
            Some(next) => next,
            None => {
                // The batch ended: ack what we hold before waiting.
                if let Some(last) = frontier.take_ackable() {
                    acks.ack_up_to(last)?;
                    pending = 0;
                }
                deliveries.next().await
            }
        };
        let delivery = next
            .ok_or("the consumer ended before every message arrived")?
            .map_err(|error| format!("consuming: {error}"))?;
        on_delivery();
        received += 1;
        pending += 1;
        frontier.received(delivery);
        if pending >= batch || received == expect {
            if let Some(last) = frontier.take_ackable() {
                acks.ack_up_to(last)?;
                pending = 0;
            }
        }
    }
    if let Some(last) = frontier.take_ackable() {
        acks.ack_up_to(last)?;
    }
    if !frontier.waiting.is_empty() {
        return Err(format!(
            "{} deliveries received with tags above a tag never delivered",
            frontier.waiting.len()
        )
        .into());
    }
    acks.finish().await
}

/// The received deliveries of a channel, by tag: which can be acked with one
/// `multiple=true` (every lower tag received).
#[derive(Default)]
struct Frontier {
    /// The highest tag below which every delivery was received.
    contiguous: u64,
    /// Received above a gap.
    waiting: std::collections::BTreeMap<u64, lapin::message::Delivery>,
    /// The delivery at `contiguous`, not yet acked.
    ackable: Option<lapin::message::Delivery>,
}

impl Frontier {
    fn received(&mut self, delivery: lapin::message::Delivery) {
        self.waiting.insert(delivery.delivery_tag, delivery);
        while let Some(entry) = self.waiting.first_entry() {
            if *entry.key() != self.contiguous + 1 {
                break;
            }
            self.contiguous += 1;
            self.ackable = Some(entry.remove());
        }
    }

    fn take_ackable(&mut self) -> Option<lapin::message::Delivery> {
        self.ackable.take()
    }
}

/// The baseline's ack sender: a task that sends `basic.ack multiple=true` for the last
/// delivery of each batch it is handed, in order (an ack for an older tag after a newer
/// one would be an unknown tag to the broker), taking only the newest when several queued
/// up meanwhile.
struct AckTask {
    batches: tokio::sync::mpsc::UnboundedSender<lapin::message::Delivery>,
    task: actix_rt::task::JoinHandle<Result<(), String>>,
}

impl AckTask {
    fn spawn() -> Self {
        let (batches, mut receiver) =
            tokio::sync::mpsc::unbounded_channel::<lapin::message::Delivery>();
        let task = actix_rt::spawn(async move {
            while let Some(mut last) = receiver.recv().await {
                while let Ok(newer) = receiver.try_recv() {
                    last = newer;
                }
                last.acker
                    .ack(BasicAckOptions { multiple: true })
                    .await
                    .map_err(|error| format!("basic.ack: {error}"))?;
            }
            Ok(())
        });
        AckTask { batches, task }
    }

    /// Hands over the last delivery of a batch.
    fn ack_up_to(&self, last: lapin::message::Delivery) -> Result<(), BoxError> {
        self.batches
            .send(last)
            .map_err(|_| "the ack task ended early".into())
    }

    /// Waits until every ack handed over has been sent.
    async fn finish(self) -> Result<(), BoxError> {
        drop(self.batches);
        self.task
            .await
            .map_err(|error| format!("the ack task failed: {error}"))??;
        Ok(())
    }
}
