//! celeriac: a Celery-compatible distributed task system for Rust, built on actix actors
//! and RabbitMQ.
//!
//! Rust and Python producers and workers share one broker: celeriac speaks Celery's
//! message protocol v2 (and reads v1), JSON by default.
//!
//! | module | what it holds |
//! |---|---|
//! | [`protocol`] | Celery messages: encode and decode, headers, content types, results |
//! | [`task`] | the [`Task`] trait, [`TaskContext`], [`TaskError`], the registry, argument decoding |
//! | [`app`] | [`Config`], connecting to the broker, [`Producer`] and [`Signature`] for sending |
//! | [`worker`] | [`WorkerSystem`]: consumers, dispatcher and executor pool, with warm shutdown; results stored as `rpc://` does |
//! | [`beat`] | [`Beat`]: the periodic scheduler (interval and crontab entries, one leader among instances) |
//! | [`canvas`] | workflows (chains, groups, chords, callbacks, errbacks) as messages carry them |
//! | [`result`] | the `rpc://` result client: [`AsyncResult`] and [`ResultError`] |
//! | [`types`] | [`Kombu<T>`](types::Kombu): datetimes, dates, times, decimals, UUIDs and bytes as Python's own types |
//! | [`actors`] | the actix actors underneath (re-export of `celeriac-actors`) |
//!
//! # Features
//!
//! - `fault-injection` (off by default): test-only hooks that break things on purpose,
//!   `WorkerSystem::break_consumer` (closes a consumer's channel with a channel error, as
//!   a broker would) and, through `celeriac-actors/fault-injection`, the messages under it.
//!   celeriac's own tests turn it on (a dev-dependency of the crate on itself), so
//!   `cargo test` needs no flag; applications leave it off, and these hooks are then not
//!   part of the API.

pub use celeriac_actors as actors;

pub mod app;
pub mod backend;
pub mod beat;
pub mod canvas;
pub(crate) mod log_text;
pub mod monitor;
pub mod protocol;
pub mod result;
pub mod task;
pub mod types;
pub mod worker;

pub use actors::{BrokerClient, BrokerError, RestartPolicy, SupervisorEvent, TlsConfig};
pub use app::{
    connect_broker, Config, Producer, QueueConfig, QueueType, SendError, Signature, TaskRoute,
};
pub use app::{ControlCall, ControlReply};
pub use backend::redis::{RedisAsyncResult, RedisBackendConfig, RedisResults};
pub use beat::{Beat, BeatHandle};
pub use canvas::{Canvas, Chain, Chord, Group};
/// `#[task]`: a function becomes a task (see the attribute's own documentation).
pub use celeriac_macros::task;
pub use monitor::TaskEvents;
pub use result::{AsyncResult, GroupResult, ResultError};
pub use task::{Task, TaskContext, TaskError, TaskRegistry};
pub use worker::{task_event_channel, TaskEvent, TaskEventKind, WorkerError, WorkerSystem};
