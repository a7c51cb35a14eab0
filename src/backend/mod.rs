//! Result backends other than `rpc://` (which lives in [`crate::result`]).
//!
//! - [`redis`]: Celery's Redis result backend (docs/wire-protocol.md §2.4): results stored under
//!   `celery-task-meta-<id>` with a TTL and published on a channel of the same name, readable
//!   from any process.

pub mod redis;
