//! Leadership: exactly one active scheduler among the instances of a beat, with no service
//! besides RabbitMQ. The leader holds an exclusive queue, `celeriac.beat.<name>.leader`:
//! the first instance to declare it wins; RabbitMQ refuses the others with 405
//! RESOURCE_LOCKED while the leader's connection lives, and deletes the queue when that
//! connection dies (a killed process, a lost network), so the next declaration wins.
//!
//! A refused declaration closes a channel (and lapin logs it), so followers first look
//! quietly: the leader consumes a second, shared queue, `celeriac.beat.<name>.presence`,
//! and a follower declares that one and reads its consumer count; only when it has none
//! (the leader is gone) does the follower claim the lock.

use crate::actors::amqp::{AMQPValue, FieldTable};
use crate::actors::{BrokerClient, BrokerError, QueueSpec};

/// How long the presence queue outlives its last use (declaration or consumer).
const PRESENCE_EXPIRES_MS: i32 = 60_000;

/// The lock queue of beat `name`: exclusive to the leader's connection, not durable.
pub fn lock_queue(name: &str) -> QueueSpec {
    let mut spec = QueueSpec::durable(format!("celeriac.beat.{name}.leader"));
    spec.durable = false;
    spec.exclusive = true;
    spec
}

/// The presence queue of beat `name`: shared, not durable, consumed by the leader only,
/// deleted by RabbitMQ a minute after the last instance stopped declaring it.
pub fn presence_queue(name: &str) -> QueueSpec {
    let mut spec = QueueSpec::durable(format!("celeriac.beat.{name}.presence"));
    spec.durable = false;
    let mut arguments = FieldTable::default();
    arguments.insert("x-expires".into(), AMQPValue::LongInt(PRESENCE_EXPIRES_MS));
    spec.arguments = arguments;
    spec
}

/// What a declaration of the lock queue says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Declared: this connection holds the lock (it just took it, or held it already).
    Held,
    /// Refused with 405 RESOURCE_LOCKED: another connection holds it.
    Taken,
}

/// How lapin renders reply code 405 (amq-protocol's `AMQPSoftError::RESOURCELOCKED`,
/// chosen by the code, not by the broker's text). [`BrokerError`] keeps lapin's error as
/// text only, so the code is recognised by this rendering.
const RESOURCE_LOCKED: &str = "AMQP soft error: RESOURCE-LOCKED";

/// Reads a declaration's outcome: reply code 405 RESOURCE_LOCKED is [`Claim::Taken`], any
/// other failure stays an error (the broker is away, say).
pub fn claim_outcome(declared: Result<(), BrokerError>) -> Result<Claim, BrokerError> {
    match declared {
        Ok(()) => Ok(Claim::Held),
        Err(BrokerError::Amqp { reason, .. }) if reason.contains(RESOURCE_LOCKED) => {
            Ok(Claim::Taken)
        }
        Err(error) => Err(error),
    }
}

/// Declares the lock queue: takes the lock if it is free, confirms it if held.
pub async fn claim(broker: &BrokerClient, spec: &QueueSpec) -> Result<Claim, BrokerError> {
    claim_outcome(broker.declare_queue(spec.clone()).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declaration_outcomes() {
        let locked = BrokerError::Amqp {
            operation: "queue.declare \"celeriac.beat.b.leader\"".into(),
            reason: "protocol error: AMQP soft error: RESOURCE-LOCKED: RESOURCE_LOCKED - \
                     cannot obtain exclusive access to locked queue"
                .into(),
        };
        // Another soft error whose text holds "405" (a queue name, say) is no refusal.
        let other = BrokerError::Amqp {
            operation: "queue.declare \"q405\"".into(),
            reason: "protocol error: AMQP soft error: PRECONDITION-FAILED: \
                     PRECONDITION_FAILED - inequivalent arg 'x-405'"
                .into(),
        };
        assert!(claim_outcome(Err(other)).is_err());
        let lost = BrokerError::ConnectionLost {
            operation: "queue.declare".into(),
            reason: "connection reset".into(),
        };
        assert_eq!(claim_outcome(Ok(())).ok(), Some(Claim::Held));
        assert_eq!(claim_outcome(Err(locked)).ok(), Some(Claim::Taken));
        assert!(claim_outcome(Err(lost)).is_err());
    }

    #[test]
    fn the_lock_queue_is_exclusive_and_not_durable() {
        let spec = lock_queue("nightly");
        assert_eq!(spec.name, "celeriac.beat.nightly.leader");
        assert!(spec.exclusive && !spec.durable && !spec.auto_delete);
        let presence = presence_queue("nightly");
        assert_eq!(presence.name, "celeriac.beat.nightly.presence");
        assert!(!presence.exclusive && !presence.durable && !presence.auto_delete);
    }
}
