//! Errors of the protocol layer.

use derive_more::{Display, Error, From};

/// Everything that can go wrong while decoding or encoding a Celery message.
///
/// Every message names the problem precisely, so that a log line about a
/// rejected message is enough to understand why it was rejected.
#[derive(Debug, Display, Error, From)]
pub enum ProtocolError {
    /// The body could not be parsed as JSON.
    #[display("body is not valid JSON: {reason}")]
    #[from(ignore)]
    InvalidJson {
        /// What the JSON parser reported.
        reason: String,
    },
    /// The body is JSON but does not have the expected shape.
    #[display("malformed body: {reason}")]
    #[from(ignore)]
    MalformedBody {
        /// Why the body was refused, e.g. "body is a JSON array of 2 elements, expected 3 [args, kwargs, embed]".
        reason: String,
    },
    /// The `content_type` property names a serializer celeriac does not read.
    #[display("unsupported content type {content_type:?}")]
    #[from(ignore)]
    UnsupportedContentType {
        /// The content type as received.
        content_type: String,
    },
    /// The content type is one celeriac reads, but the receiver does not accept it
    /// (Celery's `accept_content`).
    #[display("content type {content_type:?} is not accepted (accepted: {accepted})")]
    #[from(ignore)]
    RefusedContentType {
        /// The content type as received.
        content_type: String,
        /// The accepted content types, comma-separated.
        accepted: String,
    },
    /// The body is larger than the receiver's size limit (before or after decompression).
    #[display("message body of {size} bytes is over the size limit of {limit} bytes")]
    #[from(ignore)]
    TooLarge {
        /// The body's size in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// A JSON body holds so many values that parsing it would take more memory than the
    /// receiver allows for one message.
    #[display("JSON body of {size} bytes would take up to {parsed} bytes once parsed, over the limit of {limit} bytes (too many values)")]
    #[from(ignore)]
    TooManyValues {
        /// The body's size in bytes.
        size: usize,
        /// What parsing it may take, in bytes.
        parsed: usize,
        /// The memory limit for one parsed body, in bytes.
        limit: usize,
    },
    /// The `compression` header names an algorithm celeriac does not read.
    #[display("unsupported compression {compression:?}")]
    #[from(ignore)]
    UnsupportedCompression {
        /// The `compression` header as received.
        compression: String,
    },
    /// The body could not be decompressed.
    #[display("cannot decompress body ({compression}): {reason}")]
    #[from(ignore)]
    Decompression {
        /// The `compression` header.
        compression: String,
        /// What went wrong in the decompressor.
        reason: String,
    },
    /// A required header (or, for protocol v1, a required body field) is absent.
    #[display("missing header {name:?}")]
    #[from(ignore)]
    MissingHeader {
        /// Name of the header.
        name: String,
    },
    /// A header is present but its value has the wrong AMQP type or content.
    #[display("header {name:?}: {reason}")]
    #[from(ignore)]
    InvalidHeader {
        /// Name of the header.
        name: String,
        /// What is wrong with its value.
        reason: String,
    },
    /// `eta` or `expires` is not an ISO 8601 datetime.
    #[display("{field} {value:?} is not an ISO 8601 datetime")]
    #[from(ignore)]
    InvalidDatetime {
        /// `eta` or `expires`.
        field: String,
        /// The value as received.
        value: String,
    },
    /// The message has no `task` header and its body is not a protocol v1 task object.
    #[display("not a task message: {reason}")]
    #[from(ignore)]
    NotATaskMessage {
        /// What was found instead.
        reason: String,
    },
    /// A value cannot be represented in an AMQP property (e.g. a string longer than 255 bytes for a short string).
    #[display("property {name:?}: {reason}")]
    #[from(ignore)]
    InvalidProperty {
        /// Name of the property or header.
        name: String,
        /// Why it cannot be encoded.
        reason: String,
    },
    /// A JSON (de)serialization error outside of task bodies (e.g. result documents).
    #[display("JSON error: {_0}")]
    Json(serde_json::Error),
}
