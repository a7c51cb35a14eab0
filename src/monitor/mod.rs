//! Monitoring: Celery events on the `celeryev` exchange, as Celery 5.7's worker sends them
//! (docs/wire-protocol.md §4), so that Flower and `celery events` see celeriac workers.
//!
//! - `clock`: `LamportClock`, the worker's one logical clock (events and pidbox replies);
//! - [`event`]: what each event says (pure functions, tested against captured events);
//! - [`host`]: the facts about this machine events carry (load average, UTC offset);
//! - [`switch`]: [`TaskEvents`], the run-time switch of task events;
//! - [`receiver`]: [`receiver::receive_events`], every event on the broker as a stream
//!   (what `celeriac events` prints);
//! - [`publisher`]: `EventPublisher`, the actor that owns publishing: worker-online at
//!   start, a heartbeat every 2 s, task events in batches, worker-offline at a warm stop.

pub(crate) mod clock;
pub mod event;
pub mod host;
pub(crate) mod publisher;
pub mod receiver;
mod switch;

pub(crate) use clock::LamportClock;
pub(crate) use publisher::SendHeartbeat;
pub use switch::TaskEvents;
