//! Keeping broker passwords out of messages, logs and `Debug` output.
//!
//! A URL's password is whatever lies between the first `:` and the last `@` of its
//! credentials, so a password with a raw `@` or `:` is masked whole; when in doubt more is
//! masked rather than less. A `;`-separated failover list (`amqp://u:p@a;amqp://u:p@b`) is
//! masked URL by URL.

use std::fmt;

/// What a password is replaced with.
const MASK: &str = "***";

/// The URL (or `;`-separated list of URLs) with every password masked, for messages and
/// logs: `amqp://guest:***@127.0.0.1:5672/%2f`.
pub fn redact_url(url: &str) -> String {
    split_list(url)
        .into_iter()
        .map(redact_one)
        .collect::<Vec<_>>()
        .join(";")
}

/// `text` (an error message, a log line) with every password of `url` masked: as written in
/// the URL, percent-decoded, and the whole URL too. For text that may echo the URL, such as
/// lapin's errors about a malformed URL.
pub fn scrub_password(text: &str, url: &str) -> String {
    let mut scrubbed = text.replace(url, &redact_url(url));
    for part in split_list(url) {
        let Some((_, password, _)) = credentials(part) else {
            continue;
        };
        let decoded = percent_decode(password);
        // Longest first, so that a decoded form inside the raw one leaves no remainder.
        let mut forms = [password.to_string(), decoded];
        forms.sort_by_key(|form| std::cmp::Reverse(form.len()));
        for form in forms.iter().filter(|form| !form.is_empty()) {
            scrubbed = scrubbed.replace(form.as_str(), MASK);
        }
    }
    scrubbed
}

/// Shows a URL in `Debug` output with its password masked (quoted, like a `String`).
pub struct RedactedUrl<'a>(pub &'a str);

impl fmt::Debug for RedactedUrl<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&redact_url(self.0), f)
    }
}

/// Splits a failover list at each `;` that starts another URL (`scheme://`), so that a raw
/// `;` inside a password does not split it.
pub(super) fn split_list(list: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    for (index, _) in list.match_indices(';') {
        if starts_with_scheme(&list[index + 1..]) {
            parts.push(&list[start..index]);
            start = index + 1;
        }
    }
    parts.push(&list[start..]);
    parts
}

/// Whether `text` begins with `scheme://`.
fn starts_with_scheme(text: &str) -> bool {
    let Some((scheme, _)) = text.split_once("://") else {
        return false;
    };
    let mut chars = scheme.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// `(before the password, the password, from the last @ on)` of one URL, when it has a
/// password (credentials with a `:`). The scheme is optional.
fn credentials(url: &str) -> Option<(&str, &str, &str)> {
    let start = url.find("://").map_or(0, |scheme| scheme + 3);
    let at = start + url[start..].rfind('@')?;
    let colon = start + url[start..at].find(':')?;
    Some((&url[..=colon], &url[colon + 1..at], &url[at..]))
}

fn redact_one(url: &str) -> String {
    match credentials(url) {
        Some((before, _, after)) => format!("{before}{MASK}{after}"),
        None => url.to_string(),
    }
}

/// `%XX` sequences decoded (as lapin decodes a password); anything malformed kept as is.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let hex = bytes
            .get(index + 1..index + 3)
            .and_then(|pair| std::str::from_utf8(pair).ok())
            .and_then(|pair| u8::from_str_radix(pair, 16).ok());
        match (bytes[index], hex) {
            (b'%', Some(byte)) => {
                decoded.push(byte);
                index += 3;
            }
            (byte, _) => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

#[cfg(test)]
mod tests {
    use super::{redact_url, scrub_password, RedactedUrl};

    #[test]
    fn masks_the_password_of_every_kind_of_url() {
        let cases = [
            (
                "amqp://guest:secret@127.0.0.1:5672/%2f",
                "amqp://guest:***@127.0.0.1:5672/%2f",
            ),
            ("amqp://127.0.0.1:5672", "amqp://127.0.0.1:5672"),
            ("amqp://guest@host/%2f", "amqp://guest@host/%2f"),
            ("guest:secret@host:5672", "guest:***@host:5672"),
            ("amqp://:secret@host", "amqp://:***@host"),
            ("amqp://u:p@ss@host/v", "amqp://u:***@host/v"),
            ("amqp://u:p:ss@host/v", "amqp://u:***@host/v"),
            ("amqp://u:p%40ss%3A@host/v", "amqp://u:***@host/v"),
            ("amqp://u:pa/ss@host/v", "amqp://u:***@host/v"),
            ("amqp://u:p;ss@host/v", "amqp://u:***@host/v"),
            ("amqp://u:p@a;amqp://v:q@b", "amqp://u:***@a;amqp://v:***@b"),
            (
                "amqp://u:p@a;amqps://b:5671;amqp://w:r@c/%2f",
                "amqp://u:***@a;amqps://b:5671;amqp://w:***@c/%2f",
            ),
            (
                "amqps://user:secret@broker.example:5671/prod?heartbeat=30",
                "amqps://user:***@broker.example:5671/prod?heartbeat=30",
            ),
            ("redis://:password@host:6379/0", "redis://:***@host:6379/0"),
            ("rpc://", "rpc://"),
            ("", ""),
        ];
        for (url, expected) in cases {
            assert_eq!(redact_url(url), expected, "redacting {url:?}");
        }
    }

    #[test]
    fn scrubs_raw_and_decoded_passwords_out_of_text() {
        let url = "amqp://user:p%40ss%2Fw0rd@host:5672/%2f";
        let text = format!("invalid URL {url}: password p@ss/w0rd or p%40ss%2Fw0rd is bad");
        let scrubbed = scrub_password(&text, url);
        assert!(!scrubbed.contains("p@ss/w0rd"), "{scrubbed}");
        assert!(!scrubbed.contains("p%40ss%2Fw0rd"), "{scrubbed}");
        assert!(
            scrubbed.contains("amqp://user:***@host:5672/%2f"),
            "{scrubbed}"
        );

        let list = "amqp://u:first-secret@a;amqp://u:second-secret@b";
        let scrubbed = scrub_password("second-secret and first-secret", list);
        assert_eq!(scrubbed, "*** and ***");
    }

    #[test]
    fn debug_shows_the_url_quoted_and_masked() {
        assert_eq!(
            format!("{:?}", RedactedUrl("amqp://u:secret@h")),
            "\"amqp://u:***@h\""
        );
    }
}
