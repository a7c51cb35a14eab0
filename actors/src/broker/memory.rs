//! `MemoryBrokerActor`: an in-process broker with RabbitMQ's queue semantics (prefetch,
//! ack, reject with or without requeue), answering the same messages as
//! `AmqpBrokerActor`. It is the quickstart's embedded default and serves fast unit tests;
//! it is not a production broker (nothing is persisted).

use std::collections::{HashMap, VecDeque};

use actix::prelude::*;
use futures::channel::mpsc;
use futures::StreamExt;
use lapin::BasicProperties;

use super::{
    CancelConsumer, CloseBroker, CloseConsumer, CountMessages, DeclareQueue, DeleteQueue,
    DeliveryStream, FlushAcks, OpenConsumer, PublishMessage, SetPrefetch, SubscribeConnection,
};
use crate::delivery::{Acker, Delivery, Settle, Settlement};
use crate::error::BrokerError;

/// Settles a delivery of the memory broker (sent by its [`MemoryAcker`]).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SettleMemory {
    /// The queue the delivery came from.
    pub queue: String,
    /// Its delivery tag.
    pub delivery_tag: u64,
    /// Ack or reject.
    pub settlement: Settlement,
}

/// Settles one delivery of the memory broker through the broker actor.
struct MemoryAcker {
    /// The memory broker that holds the unacked message.
    broker: Recipient<SettleMemory>,
    /// The queue the message came from.
    queue: String,
    /// The delivery tag within that queue.
    delivery_tag: u64,
}

impl std::fmt::Debug for MemoryAcker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MemoryAcker({}#{})", self.queue, self.delivery_tag)
    }
}

impl Settle for MemoryAcker {
    fn is_usable(&self) -> bool {
        true
    }

    fn settle(
        &self,
        settlement: Settlement,
    ) -> futures::future::BoxFuture<'static, Result<(), BrokerError>> {
        let sent = self.broker.send(SettleMemory {
            queue: self.queue.clone(),
            delivery_tag: self.delivery_tag,
            settlement,
        });
        Box::pin(async move { sent.await.map_err(BrokerError::from) })
    }
}

/// A message waiting in, or delivered from, a memory queue.
#[derive(Debug, Clone)]
struct StoredMessage {
    exchange: String,
    routing_key: String,
    properties: BasicProperties,
    body: Vec<u8>,
    /// Set once the message was delivered and put back.
    redelivered: bool,
}

/// One consumer of a memory queue.
struct MemoryConsumer {
    tag: String,
    prefetch: usize,
    /// Delivery tags handed to this consumer and not settled yet.
    unsettled: usize,
    sender: mpsc::UnboundedSender<Result<Delivery, BrokerError>>,
}

/// A memory queue: ready messages, consumers, and what is delivered but unsettled.
#[derive(Default)]
struct MemoryQueue {
    ready: VecDeque<StoredMessage>,
    consumers: Vec<MemoryConsumer>,
    /// Delivered messages by delivery tag, with the tag of the consumer holding them.
    unsettled: HashMap<u64, (String, StoredMessage)>,
    /// Round-robin position among consumers.
    next_consumer: usize,
}

/// The in-process broker.
#[derive(Default)]
pub struct MemoryBrokerActor {
    queues: HashMap<String, MemoryQueue>,
    /// Source of delivery tags, unique across queues.
    next_tag: u64,
    /// Set by `CloseBroker`.
    closed: bool,
}

impl MemoryBrokerActor {
    /// A broker with no queues.
    pub fn new() -> Self {
        Self::default()
    }

    /// What closing a consumer's channel does: the consumer goes away and its unsettled
    /// deliveries go back to the front of their queue, to be delivered again.
    fn close_channel_of(&mut self, consumer_tag: &str, ctx: &mut Context<Self>) {
        let mut touched = Vec::new();
        for (name, queue) in self.queues.iter_mut() {
            queue
                .consumers
                .retain(|consumer| consumer.tag != consumer_tag);
            let orphaned: Vec<u64> = queue
                .unsettled
                .iter()
                .filter(|(_, (tag, _))| tag == consumer_tag)
                .map(|(delivery_tag, _)| *delivery_tag)
                .collect();
            for delivery_tag in orphaned {
                if let Some((_, mut message)) = queue.unsettled.remove(&delivery_tag) {
                    message.redelivered = true;
                    queue.ready.push_front(message);
                    touched.push(name.clone());
                }
            }
        }
        let me = ctx.address();
        for name in touched {
            self.dispatch(&name, &me);
        }
    }

    /// Hands ready messages of `queue` to consumers with room in their prefetch window.
    fn dispatch(&mut self, queue_name: &str, me: &Addr<Self>) {
        let Some(queue) = self.queues.get_mut(queue_name) else {
            return;
        };
        queue
            .consumers
            .retain(|consumer| !consumer.sender.is_closed());
        while !queue.ready.is_empty() {
            let count = queue.consumers.len();
            let Some(index) = (0..count)
                .map(|offset| (queue.next_consumer + offset) % count.max(1))
                .find(|&index| queue.consumers[index].unsettled < queue.consumers[index].prefetch)
            else {
                return;
            };
            queue.next_consumer = index + 1;
            let Some(message) = queue.ready.pop_front() else {
                return;
            };
            self.next_tag += 1;
            let tag = self.next_tag;
            let consumer = &mut queue.consumers[index];
            consumer.unsettled += 1;
            let delivery = Delivery {
                queue: queue_name.to_string(),
                consumer_tag: consumer.tag.clone(),
                exchange: message.exchange.clone(),
                routing_key: message.routing_key.clone(),
                redelivered: message.redelivered,
                properties: message.properties.clone(),
                body: message.body.clone(),
                acker: Acker::new(MemoryAcker {
                    broker: me.clone().recipient(),
                    queue: queue_name.to_string(),
                    delivery_tag: tag,
                }),
            };
            queue.unsettled.insert(tag, (consumer.tag.clone(), message));
            let _ = consumer.sender.unbounded_send(Ok(delivery));
        }
    }
}

impl Actor for MemoryBrokerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(1024);
    }
}

impl Handler<DeclareQueue> for MemoryBrokerActor {
    type Result = Result<(), BrokerError>;

    fn handle(&mut self, DeclareQueue(spec): DeclareQueue, _: &mut Context<Self>) -> Self::Result {
        if self.closed {
            return Err(BrokerError::Closed);
        }
        self.queues.entry(spec.name).or_default();
        Ok(())
    }
}

impl Handler<PublishMessage> for MemoryBrokerActor {
    type Result = Result<(), BrokerError>;

    fn handle(
        &mut self,
        PublishMessage(message): PublishMessage,
        ctx: &mut Context<Self>,
    ) -> Self::Result {
        if self.closed {
            return Err(BrokerError::Closed);
        }
        // The default exchange routes by queue name; a named exchange is taken to be the
        // direct exchange Celery binds to the queue of the same name.
        let queue_name = message.routing_key.clone();
        let Some(queue) = self.queues.get_mut(&queue_name) else {
            return Err(BrokerError::Unroutable {
                exchange: message.exchange,
                routing_key: message.routing_key,
                node: "memory://".into(),
            });
        };
        queue.ready.push_back(StoredMessage {
            exchange: message.exchange,
            routing_key: message.routing_key,
            properties: message.properties,
            body: message.body,
            redelivered: false,
        });
        self.dispatch(&queue_name, &ctx.address());
        Ok(())
    }
}

impl Handler<OpenConsumer> for MemoryBrokerActor {
    type Result = Result<DeliveryStream, BrokerError>;

    fn handle(&mut self, open: OpenConsumer, ctx: &mut Context<Self>) -> Self::Result {
        if self.closed {
            return Err(BrokerError::Closed);
        }
        let queue = self
            .queues
            .get_mut(&open.queue)
            .ok_or_else(|| BrokerError::NoSuchQueue(open.queue.clone()))?;
        let (sender, receiver) = mpsc::unbounded();
        queue.consumers.push(MemoryConsumer {
            tag: open.consumer_tag,
            prefetch: usize::from(open.prefetch.max(1)),
            unsettled: 0,
            sender,
        });
        self.dispatch(&open.queue, &ctx.address());
        Ok(Box::pin(receiver.boxed()))
    }
}

impl Handler<CancelConsumer> for MemoryBrokerActor {
    type Result = Result<(), BrokerError>;

    fn handle(&mut self, cancel: CancelConsumer, _: &mut Context<Self>) -> Self::Result {
        for queue in self.queues.values_mut() {
            // Dropping the sender ends the consumer's stream; its deliveries stay settleable.
            queue
                .consumers
                .retain(|consumer| consumer.tag != cancel.consumer_tag);
        }
        Ok(())
    }
}

impl Handler<SetPrefetch> for MemoryBrokerActor {
    type Result = Result<(), BrokerError>;

    fn handle(&mut self, request: SetPrefetch, ctx: &mut Context<Self>) -> Self::Result {
        let mut touched = Vec::new();
        for (name, queue) in self.queues.iter_mut() {
            for consumer in &mut queue.consumers {
                if consumer.tag == request.consumer_tag {
                    consumer.prefetch = usize::from(request.prefetch.max(1));
                    touched.push(name.clone());
                }
            }
        }
        let me = ctx.address();
        for name in touched {
            self.dispatch(&name, &me);
        }
        Ok(())
    }
}

impl Handler<CloseConsumer> for MemoryBrokerActor {
    type Result = ();

    fn handle(&mut self, close: CloseConsumer, ctx: &mut Context<Self>) {
        self.close_channel_of(&close.consumer_tag, ctx);
    }
}

impl Handler<SettleMemory> for MemoryBrokerActor {
    type Result = ();

    fn handle(&mut self, settle: SettleMemory, ctx: &mut Context<Self>) {
        let Some(queue) = self.queues.get_mut(&settle.queue) else {
            return;
        };
        let Some((consumer_tag, mut message)) = queue.unsettled.remove(&settle.delivery_tag) else {
            log::warn!(
                "memory broker: delivery {} of queue \"{}\" was already settled",
                settle.delivery_tag,
                settle.queue
            );
            return;
        };
        if let Some(consumer) = queue.consumers.iter_mut().find(|c| c.tag == consumer_tag) {
            consumer.unsettled = consumer.unsettled.saturating_sub(1);
        }
        if settle.settlement == (Settlement::Reject { requeue: true }) {
            message.redelivered = true;
            queue.ready.push_front(message);
        }
        self.dispatch(&settle.queue, &ctx.address());
    }
}

impl Handler<CountMessages> for MemoryBrokerActor {
    type Result = Result<u32, BrokerError>;

    fn handle(
        &mut self,
        CountMessages(queue): CountMessages,
        _: &mut Context<Self>,
    ) -> Self::Result {
        let found = self
            .queues
            .get(&queue)
            .ok_or(BrokerError::NoSuchQueue(queue))?;
        Ok(u32::try_from(found.ready.len()).unwrap_or(u32::MAX))
    }
}

impl Handler<super::CountConsumers> for MemoryBrokerActor {
    type Result = Result<u32, BrokerError>;

    fn handle(
        &mut self,
        super::CountConsumers(spec): super::CountConsumers,
        _: &mut Context<Self>,
    ) -> Self::Result {
        if self.closed {
            return Err(BrokerError::Closed);
        }
        let queue = self.queues.entry(spec.name).or_default();
        Ok(u32::try_from(queue.consumers.len()).unwrap_or(u32::MAX))
    }
}

impl Handler<DeleteQueue> for MemoryBrokerActor {
    type Result = Result<u32, BrokerError>;

    fn handle(&mut self, DeleteQueue(queue): DeleteQueue, _: &mut Context<Self>) -> Self::Result {
        let removed = self.queues.remove(&queue);
        Ok(removed.map_or(0, |q| u32::try_from(q.ready.len()).unwrap_or(u32::MAX)))
    }
}

impl Handler<super::PurgeQueue> for MemoryBrokerActor {
    type Result = Result<u32, BrokerError>;

    fn handle(
        &mut self,
        super::PurgeQueue(queue): super::PurgeQueue,
        _: &mut Context<Self>,
    ) -> Self::Result {
        let found = self
            .queues
            .get_mut(&queue)
            .ok_or(BrokerError::NoSuchQueue(queue))?;
        let purged = u32::try_from(found.ready.len()).unwrap_or(u32::MAX);
        found.ready.clear();
        Ok(purged)
    }
}

impl Handler<CloseBroker> for MemoryBrokerActor {
    type Result = Result<(), BrokerError>;

    fn handle(&mut self, _: CloseBroker, _: &mut Context<Self>) -> Self::Result {
        self.closed = true;
        for queue in self.queues.values_mut() {
            queue.consumers.clear();
            // As RabbitMQ does when a connection closes: unsettled messages go back.
            let unsettled: Vec<_> = queue.unsettled.drain().collect();
            for (_, (_, mut message)) in unsettled {
                message.redelivered = true;
                queue.ready.push_front(message);
            }
        }
        Ok(())
    }
}

#[cfg(feature = "fault-injection")]
impl Handler<super::BreakConsumerChannel> for MemoryBrokerActor {
    type Result = Result<(), BrokerError>;

    fn handle(
        &mut self,
        request: super::BreakConsumerChannel,
        ctx: &mut Context<Self>,
    ) -> Self::Result {
        for queue in self.queues.values() {
            for consumer in &queue.consumers {
                if consumer.tag == request.consumer_tag {
                    let _ = consumer.sender.unbounded_send(Err(BrokerError::Amqp {
                        operation: "memory channel".into(),
                        reason: "channel closed by fault injection".into(),
                    }));
                }
            }
        }
        self.close_channel_of(&request.consumer_tag, ctx);
        Ok(())
    }
}

impl Handler<SubscribeConnection> for MemoryBrokerActor {
    type Result = ();

    /// The in-process broker never loses its connection: nothing will be sent.
    fn handle(&mut self, _: SubscribeConnection, _: &mut Context<Self>) {}
}

impl Handler<FlushAcks> for MemoryBrokerActor {
    type Result = ();

    /// Settlements reach the in-process broker before `settle` returns: nothing to flush.
    fn handle(&mut self, _: FlushAcks, _: &mut Context<Self>) {}
}

impl Handler<super::DeclareExchange> for MemoryBrokerActor {
    type Result = Result<(), BrokerError>;

    /// The in-process broker has no exchanges to declare.
    fn handle(&mut self, _: super::DeclareExchange, _: &mut Context<Self>) -> Self::Result {
        if self.closed {
            return Err(BrokerError::Closed);
        }
        Ok(())
    }
}

impl Handler<super::PublishTransaction> for MemoryBrokerActor {
    type Result = Result<(), BrokerError>;

    /// All or nothing: every message must be routable (to a queue of its routing key's
    /// name) before any is queued.
    fn handle(
        &mut self,
        super::PublishTransaction { messages }: super::PublishTransaction,
        ctx: &mut Context<Self>,
    ) -> Self::Result {
        if self.closed {
            return Err(BrokerError::Closed);
        }
        if let Some(unroutable) = messages
            .iter()
            .find(|message| !self.queues.contains_key(&message.routing_key))
        {
            return Err(BrokerError::Unroutable {
                exchange: unroutable.exchange.clone(),
                routing_key: unroutable.routing_key.clone(),
                node: "memory://".into(),
            });
        }
        for message in messages {
            self.handle(PublishMessage(message), ctx)?;
        }
        Ok(())
    }
}

impl Handler<super::PublishTransient> for MemoryBrokerActor {
    type Result = Result<(), BrokerError>;

    /// Routed as `PublishMessage` when a queue of the routing key's name exists; dropped
    /// otherwise (a transient message nobody listens for is not an error).
    fn handle(
        &mut self,
        publish: super::PublishTransient,
        ctx: &mut Context<Self>,
    ) -> Self::Result {
        if self.queues.contains_key(&publish.message.routing_key) {
            return self.handle(super::PublishMessage(publish.message), ctx);
        }
        if self.closed {
            return Err(BrokerError::Closed);
        }
        Ok(())
    }
}
