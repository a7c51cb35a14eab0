//! How much memory a JSON body takes once parsed, bounded before it is parsed.
//!
//! A parsed `serde_json::Value` takes 72 bytes (with `preserve_order`), whatever the text
//! it came from: `{},` is 3 bytes on the wire and 72 in memory, so a 16 MiB body of them
//! would cost over 400 MB. A single pass over the bytes counts the values and object keys
//! the body can hold (every `[`, `{`, `,` and `:` outside strings, plus one), which bounds
//! what parsing will allocate; a body over its budget is refused before it is parsed.

use super::error::ProtocolError;

/// Bytes of memory one parsed value or object key may take, all included: the `Value`
/// itself (72 bytes) in a vector that may have doubled its capacity (144), and for an object
/// entry (two tokens, `:` and `,`) the key's `String`, the map's slot and its index.
pub const BYTES_PER_VALUE: usize = 160;

/// Refuses `body` when parsing it could take more than `limit` bytes
/// ([`ProtocolError::TooManyValues`]). A body too short to reach the limit even if every
/// byte were a value is not scanned.
pub fn check_parsed_size(body: &[u8], limit: usize) -> Result<(), ProtocolError> {
    let worst = body
        .len()
        .saturating_add(1)
        .saturating_mul(BYTES_PER_VALUE)
        .saturating_add(body.len());
    if worst <= limit {
        return Ok(());
    }
    let parsed = parsed_size_bound(body);
    if parsed > limit {
        return Err(ProtocolError::TooManyValues {
            size: body.len(),
            parsed,
            limit,
        });
    }
    Ok(())
}

/// An upper bound of the memory, in bytes, that parsing `body` as JSON takes: every value
/// and key at [`BYTES_PER_VALUE`], plus the text of strings and numbers (at most the body's
/// length). Not JSON at all is not checked here: the parser refuses it.
pub fn parsed_size_bound(body: &[u8]) -> usize {
    let mut tokens: usize = 1;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in body {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' | b',' | b':' => tokens += 1,
            _ => {}
        }
    }
    tokens
        .saturating_mul(BYTES_PER_VALUE)
        .saturating_add(body.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_structure_outside_strings_only() {
        assert_eq!(parsed_size_bound(b"1"), BYTES_PER_VALUE + 1);
        let body = br#"[[1, 2], {"a": "x,y:[{"}, null]"#;
        // [ [ , , { : , ... : the string's punctuation does not count
        let tokens = 1 + 2 + 1 + 1 + 1 + 1 + 1;
        assert_eq!(
            parsed_size_bound(body),
            tokens * BYTES_PER_VALUE + body.len()
        );
        let escaped = br#"["a\"[,", 1]"#;
        assert_eq!(
            parsed_size_bound(escaped),
            3 * BYTES_PER_VALUE + escaped.len()
        );
    }

    #[test]
    fn short_bodies_pass_unscanned_and_long_ones_are_measured() {
        let body = format!("[{}0]", "{},".repeat(1000));
        assert!(check_parsed_size(body.as_bytes(), 10 * 1024 * 1024).is_ok());
        let error = check_parsed_size(body.as_bytes(), 1000 * 72).unwrap_err();
        assert!(error.to_string().contains("too many values"), "{error}");
        assert!(check_parsed_size(b"[1, 2]", 2000).is_ok());
    }

    #[test]
    fn a_body_of_empty_objects_costs_what_it_declares() {
        let body = format!("[{}0]", "{},".repeat(1000));
        assert!(parsed_size_bound(body.as_bytes()) > 1000 * 72);
    }
}
