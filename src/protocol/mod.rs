//! The Celery message protocol, as spoken on RabbitMQ (see docs/wire-protocol.md).
//!
//! Module map:
//! - [`message`]: [`TaskMessage`], a whole task message; `encode` to AMQP
//!   properties + body, `decode` a delivery (protocol v2 and v1).
//! - [`headers`]: [`TaskHeaders`], the protocol v2 headers and their AMQP
//!   field types.
//! - [`body`]: [`ContentType`], [`TaskPayload`] and the `[args, kwargs, embed]` body.
//! - [`time`]: ISO 8601 `eta`/`expires` parsing and formatting.
//! - [`compression`]: the `compression` header (zlib bodies).
//! - [`json_cost`]: the memory a JSON body takes once parsed, bounded before parsing.
//! - [`amqp`]: AMQP field value <-> JSON conversions with py-amqp's type codes.
//! - [`result`]: [`TaskState`] and [`ResultMessage`], the result document.
//! - [`exception`]: [`ExceptionInfo`], how task errors travel in results.
//! - [`error`]: the error type, [`ProtocolError`].

pub mod amqp;
pub mod body;
pub mod compression;
pub mod error;
pub mod exception;
pub mod headers;
pub mod json_cost;
pub mod kombu;
pub mod message;
pub mod repr;
pub mod result;
pub mod time;

#[cfg(test)]
mod tests;

pub use body::{empty_embed, ContentType, TaskPayload};
pub use error::ProtocolError;
pub use exception::ExceptionInfo;
pub use headers::TaskHeaders;
pub use message::{DecodePolicy, TaskMessage, DEFAULT_MAX_BODY_SIZE, PARSED_SIZE_FACTOR};
pub use result::{ExtendedMeta, ResultMessage, TaskState};
