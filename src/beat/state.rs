//! The last run of each entry ([`BeatState`]) and where it is kept: a durable RabbitMQ
//! queue of its own, `celeriac.beat.<name>.state`, holding the newest state as one
//! persistent JSON message (`x-max-length` 1: each save pushes the previous one out).
//!
//! The leader reads it when it takes over (without settling it, so it stays), and publishes
//! it with each round of runs, in the same transaction. Reading merges every message it finds, keeping the latest
//! time per entry: a state is only ever moved forward.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::BeatError;
use crate::actors::amqp::{AMQPValue, BasicProperties, FieldTable};
use crate::actors::broker::{CloseConsumer, OpenConsumer};
use crate::actors::{BrokerClient, BrokerError, OutboundMessage, QueueSpec};

/// The last run (its slot) of each entry, by entry name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BeatState {
    /// Entry name -> the slot of its last run sent.
    pub last_run: BTreeMap<String, DateTime<Utc>>,
}

impl BeatState {
    /// Keeps, for each entry, the later of the two last runs.
    pub fn merge(&mut self, other: BeatState) {
        for (entry, slot) in other.last_run {
            let kept = self.last_run.entry(entry).or_insert(slot);
            if slot > *kept {
                *kept = slot;
            }
        }
    }

    /// The JSON body of a state message: `{"last_run": {"<entry>": "<RFC 3339 UTC>"}}`.
    pub fn encode(&self) -> Vec<u8> {
        let wire = StateWire {
            last_run: self
                .last_run
                .iter()
                .map(|(entry, slot)| {
                    let slot = slot.to_rfc3339_opts(SecondsFormat::Millis, true);
                    (entry.clone(), slot)
                })
                .collect(),
        };
        // A map of strings to strings always serialises.
        serde_json::to_vec(&wire).unwrap_or_default()
    }

    /// Reads a state message's body.
    pub fn decode(body: &[u8]) -> Result<Self, BeatError> {
        let invalid = |reason: String| BeatError::State {
            reason: format!("a stored state is not of the expected shape: {reason}"),
        };
        let wire: StateWire =
            serde_json::from_slice(body).map_err(|error| invalid(error.to_string()))?;
        let mut state = BeatState::default();
        for (entry, slot) in wire.last_run {
            let slot = DateTime::parse_from_rfc3339(&slot)
                .map_err(|error| invalid(format!("entry \"{entry}\": \"{slot}\": {error}")))?;
            state.last_run.insert(entry, slot.with_timezone(&Utc));
        }
        Ok(state)
    }
}

/// The JSON shape of a state message.
#[derive(Serialize, Deserialize)]
struct StateWire {
    last_run: BTreeMap<String, String>,
}

/// How long reading the state waits for a message the queue said it holds.
const READ_WAIT: Duration = Duration::from_secs(5);

/// At most this many state messages are read (normally there is one).
const READ_AT_MOST: u32 = 16;

/// The state queue of one beat, on one broker.
#[derive(Debug, Clone)]
pub struct StateStore {
    broker: BrokerClient,
    queue: String,
}

impl StateStore {
    /// The store of beat `name`.
    pub fn new(broker: BrokerClient, name: &str) -> Self {
        StateStore {
            broker,
            queue: format!("celeriac.beat.{name}.state"),
        }
    }

    /// The queue's name.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// The state queue: durable, classic, keeping only the newest message.
    fn spec(&self) -> QueueSpec {
        let mut spec = QueueSpec::durable(self.queue.clone());
        let mut arguments = FieldTable::default();
        arguments.insert("x-max-length".into(), AMQPValue::LongInt(1));
        spec.arguments = arguments;
        spec
    }

    /// Reads the stored state (empty when none was ever saved). The messages read are not
    /// settled: closing the consumer puts them back.
    pub async fn load(&self) -> Result<BeatState, BeatError> {
        self.broker.declare_queue(self.spec()).await?;
        let count = self.broker.count_messages(&self.queue).await?;
        let mut state = BeatState::default();
        if count == 0 {
            return Ok(state);
        }
        let wanted = count.min(READ_AT_MOST);
        let consumer_tag = format!("celeriac-beat-state-{}", uuid::Uuid::new_v4().simple());
        let mut stream = self
            .broker
            .open_consumer
            .send(OpenConsumer {
                queue: self.queue.clone(),
                prefetch: u16::try_from(wanted).unwrap_or(16),
                consumer_tag: consumer_tag.clone(),
                global_qos: false,
            })
            .await
            .map_err(BrokerError::from)??;
        let mut read = 0;
        let mut outcome = Ok(());
        while read < wanted {
            match tokio::time::timeout(READ_WAIT, stream.next()).await {
                Ok(Some(Ok(delivery))) => {
                    read += 1;
                    match BeatState::decode(&delivery.body) {
                        Ok(stored) => state.merge(stored),
                        Err(error) => log::warn!("{error}: ignored"),
                    }
                }
                Ok(Some(Err(error))) => {
                    outcome = Err(error.into());
                    break;
                }
                // Another reader holds them, or the count was stale: what was read stands.
                Ok(None) | Err(_) => break,
            }
        }
        drop(stream);
        let _ = self
            .broker
            .close_consumer
            .send(CloseConsumer { consumer_tag })
            .await;
        outcome.map(|()| state)
    }

    /// The message that saves `state` as the newest one (persistent): published by the
    /// leader in the transaction of the runs it records.
    pub fn message(&self, state: &BeatState) -> OutboundMessage {
        let properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2);
        OutboundMessage {
            exchange: String::new(),
            routing_key: self.queue.clone(),
            properties,
            body: state.encode(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).expect("valid")
    }

    #[test]
    fn merging_keeps_the_latest_run_of_each_entry() {
        let mut state = BeatState::default();
        state.last_run.insert("a".into(), at(10));
        state.last_run.insert("b".into(), at(30));
        let mut other = BeatState::default();
        other.last_run.insert("a".into(), at(20));
        other.last_run.insert("b".into(), at(20));
        other.last_run.insert("c".into(), at(5));
        state.merge(other);
        assert_eq!(state.last_run["a"], at(20));
        assert_eq!(state.last_run["b"], at(30));
        assert_eq!(state.last_run["c"], at(5));
    }

    #[test]
    fn state_round_trips_and_bad_bodies_are_errors() {
        let mut state = BeatState::default();
        state
            .last_run
            .insert("every second".into(), at(1_790_000_000));
        assert_eq!(BeatState::decode(&state.encode()).expect("decodes"), state);
        assert!(BeatState::decode(b"{\"last_run\": 3}").is_err());
        assert!(BeatState::decode(b"not json").is_err());
        assert!(BeatState::decode(b"{\"last_run\": {\"a\": \"yesterday\"}}").is_err());
    }
}
