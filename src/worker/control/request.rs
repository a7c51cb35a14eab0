//! A remote-control request as Celery's `app.control` / `celery inspect` sends it to the
//! `celery.pidbox` fanout exchange (docs/wire-protocol.md, "Remote control"), and whether
//! this node handles it.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::actors::amqp::{AMQPValue, FieldTable};

/// Where a reply goes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub(crate) struct ReplyTo {
    /// The reply exchange (`reply.celery.pidbox`).
    pub(crate) exchange: String,
    /// The client's routing key.
    pub(crate) routing_key: String,
}

/// The body of a request.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub(crate) struct ControlRequest {
    /// The command.
    pub(crate) method: String,
    /// Its arguments (`null` is taken as `{}`).
    #[serde(default, deserialize_with = "object_or_null")]
    pub(crate) arguments: Map<String, Value>,
    /// Node names it is for; none: every node (unless `pattern` says otherwise).
    #[serde(default)]
    pub(crate) destination: Option<Vec<String>>,
    /// A node-name pattern, used when there is no destination.
    #[serde(default)]
    pub(crate) pattern: Option<String>,
    /// How `pattern` matches: `glob` (or `pcre`, not supported here).
    #[serde(default)]
    pub(crate) matcher: Option<String>,
    /// Echoed in the reply's `ticket` header.
    #[serde(default)]
    pub(crate) ticket: Option<String>,
    /// Where the reply goes; absent for a cast (no reply).
    #[serde(default)]
    pub(crate) reply_to: Option<ReplyTo>,
}

fn object_or_null<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Map<String, Value>, D::Error> {
    Ok(Option::<Map<String, Value>>::deserialize(deserializer)?.unwrap_or_default())
}

/// The headers of a request that matter: its sender's clock and when it expires.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct RequestHeaders {
    /// The sender's Lamport clock.
    pub(crate) clock: u64,
    /// Epoch seconds after which the request is ignored.
    pub(crate) expires: Option<f64>,
}

impl RequestHeaders {
    /// Reads `clock` and `expires` (any numeric AMQP type; other types ignored).
    pub(crate) fn from_table(table: Option<&FieldTable>) -> Self {
        let number = |name: &str| {
            table
                .and_then(|table| table.inner().get(name))
                .and_then(|value| {
                    crate::protocol::amqp::amqp_to_json(value)
                        .as_f64()
                        .filter(|_| !matches!(value, AMQPValue::Void))
                })
        };
        RequestHeaders {
            clock: number("clock")
                .filter(|clock| clock.is_finite() && *clock >= 0.0)
                .map_or(0, |clock| clock as u64),
            expires: number("expires"),
        }
    }
}

/// Why a request is not handled.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Skip {
    /// For other nodes.
    NotForUs,
    /// Its `expires` header is past.
    Expired,
    /// A `pcre` pattern (no regex engine here): logged.
    UnsupportedMatcher(String),
}

/// Whether node `node` handles `request` at `now` (epoch seconds), as kombu's
/// `Node.handle_message` and Celery's expiry check decide.
pub(crate) fn decide(
    request: &ControlRequest,
    headers: &RequestHeaders,
    node: &str,
    now: f64,
) -> Result<(), Skip> {
    // kombu: `if expires and time() > expires`: 0 (what a broadcast without a timeout
    // sends, as `AsyncResult.revoke()`) never expires.
    if headers
        .expires
        .is_some_and(|expires| expires != 0.0 && now > expires)
    {
        return Err(Skip::Expired);
    }
    match (&request.destination, &request.pattern, &request.matcher) {
        (Some(destination), _, _) if !destination.is_empty() => destination
            .iter()
            .any(|name| name == node)
            .then_some(())
            .ok_or(Skip::NotForUs),
        (_, Some(pattern), Some(matcher)) => match matcher.as_str() {
            "glob" => wildmatch::WildMatch::new(pattern)
                .matches(node)
                .then_some(())
                .ok_or(Skip::NotForUs),
            other => Err(Skip::UnsupportedMatcher(other.to_string())),
        },
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: &str) -> ControlRequest {
        serde_json::from_str(body).expect("a request")
    }

    #[test]
    fn who_handles_a_request() {
        let node = "w1@host";
        let none = RequestHeaders::default();
        let cases = [
            (r#"{"method":"ping","destination":["w1@host"]}"#, Ok(())),
            (
                r#"{"method":"ping","destination":["w2@host"]}"#,
                Err(Skip::NotForUs),
            ),
            (r#"{"method":"ping","destination":null}"#, Ok(())),
            (r#"{"method":"ping","destination":[]}"#, Ok(())),
            (
                r#"{"method":"ping","pattern":"w1@*","matcher":"glob"}"#,
                Ok(()),
            ),
            (
                r#"{"method":"ping","pattern":"w2@*","matcher":"glob"}"#,
                Err(Skip::NotForUs),
            ),
            (
                r#"{"method":"ping","pattern":"w1.*","matcher":"pcre"}"#,
                Err(Skip::UnsupportedMatcher("pcre".into())),
            ),
            // A pattern without a matcher is ignored: broadcast.
            (r#"{"method":"ping","pattern":"w2@*"}"#, Ok(())),
        ];
        for (body, expected) in cases {
            assert_eq!(
                decide(&request(body), &none, node, 100.0),
                expected,
                "{body}"
            );
        }
        let expiring = RequestHeaders {
            clock: 3,
            expires: Some(100.0),
        };
        let body = request(r#"{"method":"ping"}"#);
        assert_eq!(decide(&body, &expiring, node, 99.0), Ok(()));
        assert_eq!(decide(&body, &expiring, node, 100.5), Err(Skip::Expired));
        // `expires: 0` is kombu's "no timeout" (AsyncResult.revoke() sends it).
        let unbounded = RequestHeaders {
            clock: 3,
            expires: Some(0.0),
        };
        assert_eq!(decide(&body, &unbounded, node, 100.5), Ok(()));
    }

    #[test]
    fn parses_captured_requests() {
        for name in [
            "request_ping",
            "request_revoke",
            "request_heartbeat_broadcast",
            "request_registered",
            "request_query_task",
        ] {
            let path = format!(
                "{}/tests/fixtures/pidbox/{name}.json",
                env!("CARGO_MANIFEST_DIR")
            );
            let text = std::fs::read_to_string(&path).expect("fixture");
            let fixture: Value = serde_json::from_str(&text).expect("json");
            let parsed: ControlRequest =
                serde_json::from_value(fixture["body"].clone()).expect("parses");
            assert_eq!(
                Some(parsed.method.as_str()),
                fixture["body"]["method"].as_str()
            );
            if name == "request_heartbeat_broadcast" {
                assert_eq!(parsed.reply_to, None);
            } else {
                assert_eq!(
                    parsed.reply_to.map(|to| to.exchange),
                    Some("reply.celery.pidbox".to_string())
                );
            }
        }
    }
}
