//! Batched acknowledgements: one task per consumer channel receives every settlement of
//! that channel's deliveries and, each time it wakes up, acks the contiguous run of
//! settled deliveries at the front with a single `basic.ack multiple=true`; settled
//! deliveries behind an unsettled one are acked one by one, so a long task never holds
//! back the acks of the others. Rejections are sent one by one at once.

use std::collections::BTreeMap;

use lapin::options::{BasicAckOptions, BasicRejectOptions};
use tokio::sync::{mpsc, oneshot};

use futures::future::BoxFuture;

use crate::delivery::{Settle, Settlement};
use crate::error::BrokerError;

/// What the ack task is told.
pub(crate) enum AckCommand {
    /// A delivery was handed out (sent before the delivery itself, so it is known first).
    Delivered {
        /// Its delivery tag.
        tag: u64,
        /// lapin's acker for it.
        acker: lapin::Acker,
    },
    /// A delivery was settled.
    Settle {
        /// Its delivery tag.
        tag: u64,
        /// Ack or reject.
        settlement: Settlement,
    },
    /// Sends every pending ack, then answers.
    Flush(oneshot::Sender<()>),
}

/// The sending side, held by each delivery's `Acker`.
pub(crate) type AckSender = mpsc::UnboundedSender<AckCommand>;

/// Settles one delivery through its consumer's ack task.
#[derive(Clone)]
pub struct BatchedAcker {
    /// The delivery tag.
    tag: u64,
    /// lapin's acker, to know whether the channel is still usable.
    acker: lapin::Acker,
    /// The consumer's ack task.
    acks: AckSender,
}

impl std::fmt::Debug for BatchedAcker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BatchedAcker(#{})", self.tag)
    }
}

impl BatchedAcker {
    pub(crate) fn new(tag: u64, acker: lapin::Acker, acks: AckSender) -> Self {
        BatchedAcker { tag, acker, acks }
    }

    /// Hands the settlement to the ack task; fails when the channel is gone (the broker
    /// then redelivers the message: it is never replayed on another channel) or the task
    /// has ended.
    fn hand_over(&self, settlement: Settlement) -> Result<(), BrokerError> {
        if !self.acker.usable() {
            return Err(BrokerError::ConnectionLost {
                operation: "basic.ack/reject".into(),
                reason: "the delivery's channel is gone; the broker will redeliver it".into(),
            });
        }
        self.acks
            .send(AckCommand::Settle {
                tag: self.tag,
                settlement,
            })
            .map_err(|_| BrokerError::Closed)
    }
}

impl Settle for BatchedAcker {
    fn is_usable(&self) -> bool {
        self.acker.usable()
    }

    fn settle(&self, settlement: Settlement) -> BoxFuture<'static, Result<(), BrokerError>> {
        Box::pin(std::future::ready(self.hand_over(settlement)))
    }
}

/// Starts the ack task of a consumer channel of `queue` on the current runtime; `node` is
/// the URL of the channel's node, password masked, for its log lines.
pub(crate) fn spawn_ack_task(queue: String, node: String) -> AckSender {
    let (sender, receiver) = mpsc::unbounded_channel();
    actix_rt::spawn(run(queue, node, receiver));
    sender
}

/// One delivery not yet acked.
struct Outstanding {
    acker: lapin::Acker,
    settled: bool,
}

async fn run(queue: String, node: String, mut commands: mpsc::UnboundedReceiver<AckCommand>) {
    let mut outstanding: BTreeMap<u64, Outstanding> = BTreeMap::new();
    let mut flushed = Vec::new();
    while let Some(first) = commands.recv().await {
        let mut next = Some(first);
        while let Some(command) = next.take() {
            match command {
                AckCommand::Delivered { tag, acker } => {
                    outstanding.insert(
                        tag,
                        Outstanding {
                            acker,
                            settled: false,
                        },
                    );
                }
                AckCommand::Settle {
                    tag,
                    settlement: Settlement::Ack,
                } => {
                    if let Some(entry) = outstanding.get_mut(&tag) {
                        entry.settled = true;
                    }
                }
                AckCommand::Settle {
                    tag,
                    settlement: Settlement::Reject { requeue },
                } => {
                    if let Some(entry) = outstanding.remove(&tag) {
                        if let Err(error) = entry.acker.reject(BasicRejectOptions { requeue }).await
                        {
                            log::warn!(
                                "rejecting delivery {tag} of queue \"{queue}\" at {node}: {error}"
                            );
                        }
                    }
                }
                AckCommand::Flush(done) => flushed.push(done),
            }
            next = commands.try_recv().ok();
        }
        // The contiguous settled run at the front: one ack for all of it.
        let mut highest = None;
        while let Some(entry) = outstanding.first_entry() {
            if !entry.get().settled {
                break;
            }
            highest = Some(entry.remove());
        }
        if let Some(last) = highest {
            let multiple = BasicAckOptions { multiple: true };
            if let Err(error) = last.acker.ack(multiple).await {
                log::warn!("acking deliveries of queue \"{queue}\" at {node}: {error}");
            }
        }
        // Settled deliveries behind an unsettled one: one by one.
        let behind: Vec<u64> = outstanding
            .iter()
            .filter(|(_, entry)| entry.settled)
            .map(|(tag, _)| *tag)
            .collect();
        for tag in behind {
            if let Some(entry) = outstanding.remove(&tag) {
                if let Err(error) = entry.acker.ack(BasicAckOptions::default()).await {
                    log::warn!("acking delivery {tag} of queue \"{queue}\" at {node}: {error}");
                }
            }
        }
        for done in flushed.drain(..) {
            let _ = done.send(());
        }
    }
}
