//! Whole task messages: AMQP properties + headers + body (docs/wire-protocol.md §1.2-§1.6).

use celeriac_actors::amqp::{AMQPValue, BasicProperties, FieldTable};
use serde_json::{Map, Value};

use super::amqp::{as_opt_string, short_string};
use super::body::{
    describe, empty_embed, encode_v2_json_body, parse_json, parse_v2_json_body, ContentType,
    TaskPayload,
};
use super::compression::decompress;
use super::error::ProtocolError;
use super::headers::{timelimit_from_json, TaskHeaders, COMPRESSION_HEADER};
use super::json_cost::check_parsed_size;
use super::repr::{args_repr, kwargs_repr, origin};
use super::time::parse_datetime;

/// The size of the largest body a receiver reads by default (16 MiB), before and after
/// decompression.
pub const DEFAULT_MAX_BODY_SIZE: usize = 16 * 1024 * 1024;

/// How many times `max_body_size` a parsed JSON body may take in memory.
pub const PARSED_SIZE_FACTOR: usize = 4;

/// What a receiver is willing to read: checked before anything is parsed or inflated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodePolicy {
    /// Bodies larger than this, as received or once decompressed, are refused; inflating
    /// stops as soon as it is passed.
    pub max_body_size: usize,
    /// The content types accepted (Celery's `accept_content`); a message without a
    /// `content_type` is read as JSON.
    pub accept: Vec<ContentType>,
}

impl Default for DecodePolicy {
    /// JSON only, up to [`DEFAULT_MAX_BODY_SIZE`]: Celery's defaults.
    fn default() -> Self {
        DecodePolicy {
            max_body_size: DEFAULT_MAX_BODY_SIZE,
            accept: vec![ContentType::Json],
        }
    }
}

impl DecodePolicy {
    /// The content type of a message with these properties, when it is accepted.
    pub fn content_type(&self, properties: &BasicProperties) -> Result<ContentType, ProtocolError> {
        let content_type = match properties.content_type() {
            None => ContentType::Json,
            Some(mime) => ContentType::from_mime(mime.as_str()).ok_or_else(|| {
                ProtocolError::UnsupportedContentType {
                    content_type: mime.as_str().to_owned(),
                }
            })?,
        };
        if self.accept.contains(&content_type) {
            return Ok(content_type);
        }
        Err(ProtocolError::RefusedContentType {
            content_type: content_type.mime().to_owned(),
            accepted: self
                .accept
                .iter()
                .map(ContentType::mime)
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// The most memory one parsed JSON body may take: [`PARSED_SIZE_FACTOR`] x
    /// `max_body_size`.
    pub fn max_parsed_size(&self) -> usize {
        self.max_body_size.saturating_mul(PARSED_SIZE_FACTOR)
    }

    /// Refuses a JSON body whose parsed form could take more than
    /// [`DecodePolicy::max_parsed_size`].
    pub fn check_json_cost(&self, body: &[u8]) -> Result<(), ProtocolError> {
        check_parsed_size(body, self.max_parsed_size())
    }

    /// Refuses a body over the size limit.
    pub fn check_size(&self, size: usize) -> Result<(), ProtocolError> {
        if size > self.max_body_size {
            return Err(ProtocolError::TooLarge {
                size,
                limit: self.max_body_size,
            });
        }
        Ok(())
    }
}

/// A whole task message: what a producer sends and a worker receives.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskMessage {
    /// Protocol v2 headers (for a v1 message, converted from its body).
    pub headers: TaskHeaders,
    /// The task's arguments.
    pub payload: TaskPayload,
    /// How the body is serialized.
    pub content_type: ContentType,
    /// AMQP `correlation_id` (= task id for Celery); the rpc backend echoes it.
    pub correlation_id: Option<String>,
    /// AMQP `reply_to`: where rpc:// results go.
    pub reply_to: Option<String>,
    /// AMQP `priority` (0-255; RabbitMQ queues use 0-`x-max-priority`).
    pub priority: Option<u8>,
    /// AMQP `delivery_mode`: 2 persistent (default, also when the property
    /// is absent on a received message), 1 transient.
    pub delivery_mode: u8,
    /// AMQP `expiration` property in milliseconds (a string on the wire),
    /// set by producers when `expires` is given.
    pub expiration_ms: Option<u64>,
    /// Which protocol version the message came in as (1 or 2); encode always writes 2.
    pub protocol_version: u8,
}

impl TaskMessage {
    /// A v2 JSON message with positional args and kwargs, embed null-filled
    /// as Python sends it (`{"callbacks":null,"errbacks":null,"chain":null,"chord":null}`),
    /// `correlation_id` = `id`, `delivery_mode` 2.
    ///
    /// Like Python's `apply_async`, it also sets `argsrepr`, `kwargsrepr`, `origin` and
    /// `ignore_result: false`, so Celery's logs, events and Flower show the call.
    pub fn new_json(task: &str, id: &str, args: Vec<Value>, kwargs: Map<String, Value>) -> Self {
        let mut message = Self::with_payload(
            task,
            id,
            TaskPayload::Json {
                args,
                kwargs,
                embed: empty_embed(),
            },
            ContentType::Json,
        );
        if let TaskPayload::Json { args, kwargs, .. } = &message.payload {
            message.headers.argsrepr = Some(args_repr(args));
            message.headers.kwargsrepr = Some(kwargs_repr(kwargs));
        }
        message.headers.origin = Some(origin());
        message.headers.ignore_result = Some(false);
        message
    }

    /// A v2 bincode message whose body is `encoded` (the bincode encoding
    /// of the task's typed argument value), `correlation_id` = `id`, `delivery_mode` 2.
    pub fn new_bincode(task: &str, id: &str, encoded: Vec<u8>) -> Self {
        Self::with_payload(
            task,
            id,
            TaskPayload::Bincode(encoded),
            ContentType::Bincode,
        )
    }

    fn with_payload(task: &str, id: &str, payload: TaskPayload, content_type: ContentType) -> Self {
        Self {
            headers: TaskHeaders::new(task, id),
            payload,
            content_type,
            correlation_id: Some(id.to_owned()),
            reply_to: None,
            priority: None,
            delivery_mode: 2,
            expiration_ms: None,
            protocol_version: 2,
        }
    }

    /// Encode to AMQP properties and body bytes: always protocol v2, always a
    /// 3-element JSON body `[args, kwargs, embed]` for JSON. Headers use the
    /// AMQP field types of docs/wire-protocol.md §1.3 (see [`TaskHeaders::to_field_table`]).
    /// Sets `content_type`, `content_encoding` (`utf-8` / `binary`),
    /// `correlation_id`, `reply_to`, `priority`, `delivery_mode` and `expiration`.
    pub fn encode(&self) -> Result<(BasicProperties, Vec<u8>), ProtocolError> {
        let body = match (&self.payload, self.content_type) {
            (
                TaskPayload::Json {
                    args,
                    kwargs,
                    embed,
                },
                ContentType::Json,
            ) => encode_v2_json_body(args, kwargs, embed)?,
            (TaskPayload::Bincode(bytes), ContentType::Bincode) => bytes.clone(),
            (_, content_type) => {
                return Err(ProtocolError::InvalidProperty {
                    name: "content_type".to_owned(),
                    reason: format!(
                        "payload kind does not match content type {:?}",
                        content_type.mime()
                    ),
                })
            }
        };
        let mut properties = BasicProperties::default()
            .with_content_type(self.content_type.mime().into())
            .with_content_encoding(self.content_type.encoding().into())
            .with_headers(self.headers.to_field_table()?)
            .with_delivery_mode(self.delivery_mode);
        if let Some(priority) = self.priority {
            properties = properties.with_priority(priority);
        }
        if let Some(correlation_id) = &self.correlation_id {
            properties =
                properties.with_correlation_id(short_string("correlation_id", correlation_id)?);
        }
        if let Some(reply_to) = &self.reply_to {
            properties = properties.with_reply_to(short_string("reply_to", reply_to)?);
        }
        if let Some(expiration) = self.expiration_ms {
            properties = properties.with_expiration(expiration.to_string().into());
        }
        Ok((properties, body))
    }

    /// Decode a delivery (its properties and body), reading JSON and bincode bodies of up
    /// to [`DEFAULT_MAX_BODY_SIZE`]. A receiver of untrusted messages uses
    /// [`TaskMessage::decode_with`] and its own [`DecodePolicy`].
    pub fn decode(properties: &BasicProperties, body: &[u8]) -> Result<TaskMessage, ProtocolError> {
        static JSON_AND_BINCODE: std::sync::LazyLock<DecodePolicy> =
            std::sync::LazyLock::new(|| DecodePolicy {
                accept: vec![ContentType::Json, ContentType::Bincode],
                ..DecodePolicy::default()
            });
        Self::decode_with(properties, body, &JSON_AND_BINCODE)
    }

    /// Decode a delivery under `policy`.
    ///
    /// Protocol v2 when `headers["task"]` exists; else protocol v1 (a JSON
    /// object body with `task`/`id`/`args`/`kwargs`..., docs/wire-protocol.md §1.6);
    /// else an error. A missing `content_type` is read as JSON; types other than JSON and
    /// bincode are [`ProtocolError::UnsupportedContentType`], types the policy does not
    /// accept [`ProtocolError::RefusedContentType`], both before the body is looked at. The
    /// `compression` header is honoured, and the body must fit the policy's size limit both
    /// as received and once decompressed ([`ProtocolError::TooLarge`],
    /// [`ProtocolError::Decompression`]); a JSON body must not hold so many values that
    /// parsing it would take more than [`DecodePolicy::max_parsed_size`]
    /// ([`ProtocolError::TooManyValues`]).
    pub fn decode_with(
        properties: &BasicProperties,
        body: &[u8],
        policy: &DecodePolicy,
    ) -> Result<TaskMessage, ProtocolError> {
        let content_type = policy.content_type(properties)?;
        policy.check_size(body.len())?;
        let empty = FieldTable::default();
        let table = properties.headers().as_ref().unwrap_or(&empty);
        let header = |name: &str| {
            table
                .inner()
                .get(name)
                .filter(|value| !matches!(value, AMQPValue::Void))
        };
        let decompressed;
        let body = match header(COMPRESSION_HEADER) {
            Some(value) => match as_opt_string(COMPRESSION_HEADER, value)? {
                Some(compression) => {
                    decompressed = decompress(&compression, body, policy.max_body_size)?;
                    decompressed.as_slice()
                }
                None => body,
            },
            None => body,
        };

        if content_type == ContentType::Json {
            policy.check_json_cost(body)?;
        }
        let (headers, payload, protocol_version) = if header("task").is_some() {
            let headers = TaskHeaders::from_field_table(table)?;
            let payload = match content_type {
                ContentType::Json => parse_v2_json_body(body)?,
                ContentType::Bincode => TaskPayload::Bincode(body.to_vec()),
            };
            (headers, payload, 2)
        } else {
            if content_type == ContentType::Bincode {
                return Err(ProtocolError::MissingHeader {
                    name: "task".to_owned(),
                });
            }
            let (headers, payload) = decode_v1_body(body)?;
            (headers, payload, 1)
        };

        let short = |value: &Option<celeriac_actors::amqp::ShortString>| {
            value.as_ref().map(|text| text.as_str().to_owned())
        };
        Ok(TaskMessage {
            headers,
            payload,
            content_type,
            correlation_id: short(properties.correlation_id()),
            reply_to: short(properties.reply_to()),
            priority: *properties.priority(),
            delivery_mode: properties.delivery_mode().unwrap_or(2),
            expiration_ms: properties
                .expiration()
                .as_ref()
                .and_then(|ms| ms.as_str().trim().parse().ok()),
            protocol_version,
        })
    }

    /// Task id and name, for log lines about a message that failed to
    /// decode: `(id, task)`, best effort from the headers (the id falls back
    /// to `correlation_id`).
    pub fn peek_identity(properties: &BasicProperties) -> (Option<String>, Option<String>) {
        let lookup = |name: &str| {
            properties
                .headers()
                .as_ref()
                .and_then(|table| table.inner().get(name))
                .and_then(|value| as_opt_string(name, value).ok().flatten())
        };
        let id = lookup("id").or_else(|| {
            properties
                .correlation_id()
                .as_ref()
                .map(|id| id.as_str().to_owned())
        });
        (id, lookup("task"))
    }
}

/// Convert a protocol v1 body (a JSON object) to v2 headers and payload,
/// the way Celery's `proto1_to_proto2` does: `taskset` becomes `group`, the
/// embed holds `callbacks`, `errbacks` and `chord`, and `chain` is null.
fn decode_v1_body(body: &[u8]) -> Result<(TaskHeaders, TaskPayload), ProtocolError> {
    let value = parse_json(body)?;
    let object = match value {
        Value::Object(object) if object.contains_key("task") => object,
        Value::Array(_) => {
            return Err(ProtocolError::MissingHeader {
                name: "task".to_owned(),
            })
        }
        other => {
            return Err(ProtocolError::NotATaskMessage {
                reason: format!(
                    "no \"task\" header and the body is {}, not a protocol v1 task object",
                    describe(&other)
                ),
            })
        }
    };
    let field_str = |name: &str| object.get(name).and_then(Value::as_str).map(str::to_owned);
    let malformed = |reason: String| ProtocolError::MalformedBody { reason };
    let task = field_str("task")
        .ok_or_else(|| malformed("protocol v1 body: \"task\" is not a string".to_owned()))?;
    let id = field_str("id")
        .ok_or_else(|| malformed("protocol v1 body has no \"id\" string".to_owned()))?;
    let args = match object.get("args") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(args)) => args.clone(),
        Some(other) => {
            return Err(malformed(format!(
                "protocol v1 args is {}, expected an array",
                describe(other)
            )))
        }
    };
    let kwargs = match object.get("kwargs") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(kwargs)) => kwargs.clone(),
        Some(other) => {
            return Err(malformed(format!(
                "protocol v1 kwargs is {}, expected an object",
                describe(other)
            )))
        }
    };
    let datetime = |name: &str| match field_str(name) {
        Some(text) => {
            parse_datetime(&text)
                .map(Some)
                .ok_or_else(|| ProtocolError::InvalidDatetime {
                    field: name.to_owned(),
                    value: text,
                })
        }
        None => Ok(None),
    };

    let mut headers = TaskHeaders::new(task, id);
    headers.lang = "py".to_owned();
    headers.eta = datetime("eta")?;
    headers.expires = datetime("expires")?;
    headers.group = field_str("group").or_else(|| field_str("taskset"));
    headers.group_index = object.get("group_index").and_then(Value::as_i64);
    headers.retries = object
        .get("retries")
        .and_then(Value::as_u64)
        .and_then(|retries| u32::try_from(retries).ok())
        .unwrap_or(0);
    headers.timelimit = timelimit_from_json(object.get("timelimit"));
    headers.root_id = field_str("root_id");
    headers.parent_id = field_str("parent_id");

    let mut embed = Map::new();
    for key in ["callbacks", "errbacks"] {
        embed.insert(
            key.to_owned(),
            object.get(key).cloned().unwrap_or(Value::Null),
        );
    }
    embed.insert("chain".to_owned(), Value::Null);
    embed.insert(
        "chord".to_owned(),
        object.get("chord").cloned().unwrap_or(Value::Null),
    );
    Ok((
        headers,
        TaskPayload::Json {
            args,
            kwargs,
            embed: Value::Object(embed),
        },
    ))
}
