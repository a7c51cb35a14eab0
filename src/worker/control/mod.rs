//! Remote control (Celery's pidbox, docs/wire-protocol.md "Remote control"): the node's
//! `<hostname>.celery.pidbox` queue bound to the `celery.pidbox` fanout exchange, the
//! commands `celery inspect` / `celery control` / Flower send, and the replies to
//! `reply.celery.pidbox`.
//!
//! | module | job |
//! |---|---|
//! | `request` | a request's body and headers; whether this node handles it (pure) |
//! | `commands` | command + state snapshot -> reply + action (pure) |
//! | `queues` | the queues consumed, as `add_consumer` / `cancel_consumer` change them (pure) |
//! | `node` | the pidbox queue declaration and what replies say of the node |
//! | `actor` | `PidboxActor`: consumes, applies actions, publishes replies (I/O) |

mod actor;
mod commands;
mod node;
mod queues;
mod request;

pub(crate) use actor::{ControlHooks, PidboxActor};
pub(crate) use node::{node_info, pidbox_exchange, pidbox_queue, reply_exchange, PIDBOX_EXCHANGE};
