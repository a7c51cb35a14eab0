//! Python-style `repr` of JSON arguments, for the `argsrepr` and `kwargsrepr` headers that
//! Celery's logs, events and Flower show; and the `origin` header (`gen<pid>@<host>`).

use std::fmt::Write;

use serde_json::{Map, Value};

/// Celery cuts these reprs at 1024 characters (`saferepr`).
const MAX_REPR: usize = 1024;

/// `repr(tuple(args))`, as Python shows positional arguments: `(2,)`, `(1, 'a')`.
pub fn args_repr(args: &[Value]) -> String {
    let mut out = String::from("(");
    for (index, arg) in args.iter().enumerate() {
        if index > 0 {
            out.push_str(", ");
        }
        write_repr(&mut out, arg);
    }
    if args.len() == 1 {
        out.push(',');
    }
    out.push(')');
    truncate(out)
}

/// `repr(kwargs)`: `{'y': 3}`.
pub fn kwargs_repr(kwargs: &Map<String, Value>) -> String {
    let mut out = String::new();
    write_map(&mut out, kwargs);
    truncate(out)
}

/// `repr(value)` of a JSON value, as Celery's events show a task's result: `5`, `'a'`,
/// `{'x': None}` (cut at 1024 characters).
pub fn value_repr(value: &Value) -> String {
    let mut out = String::new();
    write_repr(&mut out, value);
    truncate(out)
}

/// The `origin` header of messages this process sends: `gen<pid>@<hostname>`, as Python
/// clients send it (read once per process).
pub fn origin() -> String {
    static ORIGIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ORIGIN
        .get_or_init(|| format!("gen{}@{}", std::process::id(), hostname()))
        .clone()
}

/// This machine's host name (read once per process; `localhost` when it cannot be read).
pub fn hostname() -> &'static str {
    static HOSTNAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOSTNAME.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|name| name.trim().to_string())
            .filter(|name| !name.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "localhost".to_string())
    })
}

fn truncate(mut text: String) -> String {
    if text.len() > MAX_REPR {
        let mut cut = MAX_REPR - 3;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("...");
    }
    text
}

fn write_repr(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("None"),
        Value::Bool(true) => out.push_str("True"),
        Value::Bool(false) => out.push_str("False"),
        Value::Number(number) => {
            let _ = write!(out, "{number}");
        }
        Value::String(text) => write_str(out, text),
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push_str(", ");
                }
                write_repr(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => write_map(out, map),
    }
}

fn write_map(out: &mut String, map: &Map<String, Value>) {
    out.push('{');
    for (index, (key, value)) in map.iter().enumerate() {
        if index > 0 {
            out.push_str(", ");
        }
        write_str(out, key);
        out.push_str(": ");
        write_repr(out, value);
    }
    out.push('}');
}

/// Python's `repr(str)`: single quotes, or double quotes when the text holds a single
/// quote and no double quote; the quote used, backslashes and the control characters
/// below U+0020 and from U+007F to U+00A0 (and U+00AD) escaped. (Other characters Python
/// deems unprintable, such as U+2028, are written as they are.)
fn write_str(out: &mut String, text: &str) {
    let quote = if text.contains('\'') && !text.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in text.chars() {
        match c {
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || (0x7f..=0xa0).contains(&(c as u32)) || c == '\u{ad}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reprs_like_python() {
        assert_eq!(args_repr(&[json!(2)]), "(2,)");
        assert_eq!(args_repr(&[]), "()");
        assert_eq!(
            args_repr(&[
                json!(1),
                json!("it's"),
                json!(null),
                json!(true),
                json!([1.5])
            ]),
            "(1, \"it's\", None, True, [1.5])"
        );
        // Python's quote choice and escapes: repr() of each, as CPython prints it.
        for (text, python) in [
            ("plain", "'plain'"),
            ("it's", "\"it's\""),
            ("say \"hi\"", "'say \"hi\"'"),
            ("both ' and \"", "'both \\' and \"'"),
            ("back\\slash\ttab", "'back\\\\slash\\ttab'"),
            (
                "del\u{7f} nbsp\u{a0} shy\u{ad} é",
                "'del\\x7f nbsp\\xa0 shy\\xad é'",
            ),
        ] {
            assert_eq!(value_repr(&json!(text)), python, "{text:?}");
        }
        let kwargs = json!({"y": 3, "k": {"a": "b"}});
        assert_eq!(
            kwargs_repr(kwargs.as_object().unwrap()),
            "{'y': 3, 'k': {'a': 'b'}}"
        );
        let long = args_repr(&[json!("x".repeat(5000))]);
        assert_eq!(long.len(), 1024);
        assert!(long.ends_with("..."));
        assert!(origin().starts_with(&format!("gen{}@", std::process::id())));
    }
}
