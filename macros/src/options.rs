//! The options of `#[task(...)]`: parsed and checked here, by Celery's task option names,
//! into [`TaskAttr`]; every error points at the option or value at fault.

use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Expr, ExprLit, Lit, LitStr, Meta, Token};

/// A number of seconds, split as `std::time::Duration::new` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seconds {
    /// Whole seconds.
    pub secs: u64,
    /// The fraction, in nanoseconds.
    pub nanos: u32,
}

/// How retries without a countdown are spaced (Celery's `retry_backoff` family and
/// `default_retry_delay`); `None` fields keep `RetryBackoff::default()`'s.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Backoff {
    /// `retry_backoff = N` / `true`: the first delay of the exponential backoff.
    pub min: Option<Seconds>,
    /// `retry_backoff_max`: no delay is longer.
    pub max: Option<Seconds>,
    /// `retry_jitter`.
    pub jitter: Option<bool>,
    /// `default_retry_delay` (or `retry_backoff = false`): one fixed delay.
    pub fixed: Option<Seconds>,
}

/// Everything `#[task(...)]` may say.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskAttr {
    /// `name = "tasks.add"`; `None`: `module_path!()::fn_name`.
    pub name: Option<String>,
    /// `max_retries = 5` (`None` in the attribute: forever, `u32::MAX`).
    pub max_retries: Option<u32>,
    /// The retry delays.
    pub backoff: Backoff,
    /// `time_limit = 30` (seconds).
    pub time_limit: Option<Seconds>,
    /// `soft_time_limit = 25` (seconds).
    pub soft_time_limit: Option<Seconds>,
    /// `rate_limit = "10/m"`.
    pub rate_limit: Option<String>,
    /// `queue = "reports"`.
    pub queue: Option<String>,
    /// `ignore_result`.
    pub ignore_result: Option<bool>,
    /// `store_errors_even_if_ignored`.
    pub store_errors_even_if_ignored: Option<bool>,
    /// `track_started`.
    pub track_started: Option<bool>,
    /// `acks_late`.
    pub acks_late: Option<bool>,
    /// `acks_on_failure_or_timeout`.
    pub acks_on_failure_or_timeout: Option<bool>,
}

/// The options `#[task]` knows, as the unknown-option error lists them.
pub const KNOWN: &[&str] = &[
    "name",
    "max_retries",
    "default_retry_delay",
    "retry_backoff",
    "retry_backoff_max",
    "retry_jitter",
    "time_limit",
    "soft_time_limit",
    "rate_limit",
    "queue",
    "ignore_result",
    "store_errors_even_if_ignored",
    "track_started",
    "acks_late",
    "acks_on_failure_or_timeout",
];

/// The value of one option: a literal, `None`, or nothing (a bare flag).
enum Value<'a> {
    Flag,
    Lit(&'a Lit),
    None,
    Other,
}

fn value_of(meta: &Meta) -> Result<Value<'_>, syn::Error> {
    match meta {
        Meta::Path(_) => Ok(Value::Flag),
        Meta::List(list) => Err(syn::Error::new_spanned(
            list,
            "a task option is `name = value` (or a bare flag for `true`)",
        )),
        Meta::NameValue(pair) => Ok(match &pair.value {
            Expr::Lit(ExprLit { lit, .. }) => Value::Lit(lit),
            Expr::Path(path) if path.path.is_ident("None") => Value::None,
            _ => Value::Other,
        }),
    }
}

/// The tokens to point at when the value is wrong: the value, or the bare flag.
fn value_tokens(meta: &Meta) -> proc_macro2::TokenStream {
    match meta {
        Meta::NameValue(pair) => quote::ToTokens::to_token_stream(&pair.value),
        other => quote::ToTokens::to_token_stream(other),
    }
}

fn wrong(meta: &Meta, name: &str, expects: &str) -> syn::Error {
    syn::Error::new_spanned(value_tokens(meta), format!("`{name}` expects {expects}"))
}

fn boolean(meta: &Meta, name: &str) -> Result<bool, syn::Error> {
    match value_of(meta)? {
        Value::Flag => Ok(true),
        Value::Lit(Lit::Bool(flag)) => Ok(flag.value),
        _ => Err(wrong(meta, name, "`true` or `false`")),
    }
}

fn string(meta: &Meta, name: &str) -> Result<LitStr, syn::Error> {
    match value_of(meta)? {
        Value::Lit(Lit::Str(text)) if !text.value().is_empty() => Ok(text.clone()),
        _ => Err(wrong(meta, name, "a non-empty string literal")),
    }
}

/// A literal number of seconds (integer or decimal, not negative, finite).
fn seconds(meta: &Meta, name: &str) -> Result<Seconds, syn::Error> {
    let expects = "a number of seconds (an integer or decimal literal, e.g. 30 or 0.5)";
    let value = match value_of(meta)? {
        Value::Lit(Lit::Int(int)) => int
            .base10_parse::<u64>()
            .map(|secs| Seconds { secs, nanos: 0 }),
        Value::Lit(Lit::Float(float)) => float.base10_parse::<f64>().and_then(|secs| {
            seconds_from_f64(secs).ok_or_else(|| syn::Error::new_spanned(float, "out of range"))
        }),
        _ => return Err(wrong(meta, name, expects)),
    };
    value.map_err(|_| wrong(meta, name, expects))
}

fn seconds_from_f64(secs: f64) -> Option<Seconds> {
    if !secs.is_finite() || secs < 0.0 || secs >= u64::MAX as f64 {
        return None;
    }
    let whole = secs.trunc();
    let nanos = ((secs - whole) * 1e9).round().min(999_999_999.0) as u32;
    Some(Seconds {
        secs: whole as u64,
        nanos,
    })
}

/// Checks a rate the way the worker reads it (`N`, `N/s`, `N/m`, `N/h`), so a typo is a
/// compile error rather than a log line at run time.
fn rate(meta: &Meta) -> Result<String, syn::Error> {
    let expects = "a rate such as \"10/s\", \"100/m\", \"1000/h\" or a number per second";
    let text = match value_of(meta)? {
        Value::Lit(Lit::Str(text)) => text.value(),
        Value::Lit(Lit::Int(int)) => int.base10_digits().to_string(),
        _ => return Err(wrong(meta, "rate_limit", expects)),
    };
    let (count, unit) = text.split_once('/').unwrap_or((&text, "s"));
    let count_ok = count
        .trim()
        .parse::<f64>()
        .is_ok_and(|n| n.is_finite() && n >= 0.0);
    let unit_ok = matches!(unit.trim().chars().next(), Some('s' | 'm' | 'h'));
    if count_ok && unit_ok {
        Ok(text)
    } else {
        Err(wrong(meta, "rate_limit", expects))
    }
}

fn max_retries(meta: &Meta) -> Result<u32, syn::Error> {
    let expects = "a number of retries (0 to 4294967295), or `None` for no limit";
    match value_of(meta)? {
        Value::None => Ok(u32::MAX),
        Value::Lit(Lit::Int(int)) => int
            .base10_parse::<u32>()
            .map_err(|_| wrong(meta, "max_retries", expects)),
        _ => Err(wrong(meta, "max_retries", expects)),
    }
}

/// `retry_backoff = true` (1 s), `= N` (N seconds) or `= false` (a fixed delay).
enum RetryBackoff {
    Exponential(Seconds),
    Off,
}

fn retry_backoff(meta: &Meta) -> Result<RetryBackoff, syn::Error> {
    match value_of(meta)? {
        Value::Flag | Value::Lit(Lit::Bool(_)) => Ok(if boolean(meta, "retry_backoff")? {
            RetryBackoff::Exponential(Seconds { secs: 1, nanos: 0 })
        } else {
            RetryBackoff::Off
        }),
        Value::Lit(Lit::Int(_) | Lit::Float(_)) => {
            seconds(meta, "retry_backoff").map(RetryBackoff::Exponential)
        }
        _ => Err(wrong(
            meta,
            "retry_backoff",
            "`true`, `false` or the first delay in seconds",
        )),
    }
}

/// Celery's `default_retry_delay`, used when `retry_backoff = false` is given alone.
const CELERY_DEFAULT_RETRY_DELAY: Seconds = Seconds {
    secs: 180,
    nanos: 0,
};

impl Parse for TaskAttr {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let metas = Punctuated::<Meta, Token![,]>::parse_terminated(input)?;
        let mut attr = TaskAttr::default();
        let mut seen: Vec<String> = Vec::new();
        let mut backoff_off = None;
        let mut errors: Option<syn::Error> = None;
        for meta in &metas {
            if let Err(error) = attr.apply(meta, &mut seen, &mut backoff_off) {
                match &mut errors {
                    Some(all) => all.combine(error),
                    None => errors = Some(error),
                }
            }
        }
        if let Some(errors) = errors {
            return Err(errors);
        }
        if let Some(meta) = backoff_off {
            if attr.backoff.min.is_some() {
                return Err(syn::Error::new_spanned(
                    meta,
                    "`retry_backoff = false` and an exponential backoff contradict each other",
                ));
            }
            attr.backoff.fixed.get_or_insert(CELERY_DEFAULT_RETRY_DELAY);
        }
        if attr.backoff.fixed.is_some()
            && (attr.backoff.min.is_some() || attr.backoff.max.is_some())
        {
            return Err(syn::Error::new(
                proc_macro2::Span::call_site(),
                "`default_retry_delay` is one fixed delay, `retry_backoff`/`retry_backoff_max` an exponential one: give one or the other",
            ));
        }
        Ok(attr)
    }
}

impl TaskAttr {
    /// Applies one option; `seen` catches an option given twice.
    fn apply(
        &mut self,
        meta: &Meta,
        seen: &mut Vec<String>,
        backoff_off: &mut Option<Meta>,
    ) -> syn::Result<()> {
        let path = meta.path();
        let Some(key) = path.get_ident().map(ToString::to_string) else {
            return Err(syn::Error::new_spanned(
                path,
                "a task option is a plain name",
            ));
        };
        if seen.contains(&key) {
            return Err(syn::Error::new_spanned(
                path,
                format!("`{key}` is given twice"),
            ));
        }
        seen.push(key.clone());
        match key.as_str() {
            "name" => self.name = Some(string(meta, &key)?.value()),
            "max_retries" => self.max_retries = Some(max_retries(meta)?),
            "default_retry_delay" => self.backoff.fixed = Some(seconds(meta, &key)?),
            "retry_backoff" => match retry_backoff(meta)? {
                RetryBackoff::Exponential(min) => self.backoff.min = Some(min),
                RetryBackoff::Off => *backoff_off = Some(meta.clone()),
            },
            "retry_backoff_max" => self.backoff.max = Some(seconds(meta, &key)?),
            "retry_jitter" => self.backoff.jitter = Some(boolean(meta, &key)?),
            "time_limit" => self.time_limit = Some(seconds(meta, &key)?),
            "soft_time_limit" => self.soft_time_limit = Some(seconds(meta, &key)?),
            "rate_limit" => self.rate_limit = Some(rate(meta)?),
            "queue" => self.queue = Some(string(meta, &key)?.value()),
            "ignore_result" => self.ignore_result = Some(boolean(meta, &key)?),
            "store_errors_even_if_ignored" => {
                self.store_errors_even_if_ignored = Some(boolean(meta, &key)?)
            }
            "track_started" => self.track_started = Some(boolean(meta, &key)?),
            "acks_late" => self.acks_late = Some(boolean(meta, &key)?),
            "acks_on_failure_or_timeout" => {
                self.acks_on_failure_or_timeout = Some(boolean(meta, &key)?)
            }
            "bind" => {
                return Err(syn::Error::new_spanned(
                    path,
                    "no `bind` option: take a `&TaskContext` parameter to get the request",
                ))
            }
            _ => {
                return Err(syn::Error::new_spanned(
                    path,
                    format!(
                        "unknown task option `{key}`; the options are: {}",
                        KNOWN.join(", ")
                    ),
                ))
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<TaskAttr, String> {
        syn::parse_str::<TaskAttr>(text).map_err(|error| error.to_string())
    }

    #[test]
    fn options_by_celery_names() {
        let attr = parse(
            r#"name = "tasks.add", max_retries = 5, time_limit = 30, soft_time_limit = 2.5,
               rate_limit = "10/m", queue = "q", acks_late, ignore_result = false"#,
        )
        .unwrap();
        assert_eq!(attr.name.as_deref(), Some("tasks.add"));
        assert_eq!(attr.max_retries, Some(5));
        assert_eq!(attr.time_limit, Some(Seconds { secs: 30, nanos: 0 }));
        assert_eq!(
            attr.soft_time_limit,
            Some(Seconds {
                secs: 2,
                nanos: 500_000_000
            })
        );
        assert_eq!(attr.rate_limit.as_deref(), Some("10/m"));
        assert_eq!(attr.queue.as_deref(), Some("q"));
        assert_eq!(attr.acks_late, Some(true));
        assert_eq!(attr.ignore_result, Some(false));
        assert_eq!(
            parse("max_retries = None").unwrap().max_retries,
            Some(u32::MAX)
        );
    }

    #[test]
    fn retry_delays() {
        let one = Seconds { secs: 1, nanos: 0 };
        let attr = parse("retry_backoff, retry_backoff_max = 60, retry_jitter = false").unwrap();
        assert_eq!(
            attr.backoff,
            Backoff {
                min: Some(one),
                max: Some(Seconds { secs: 60, nanos: 0 }),
                jitter: Some(false),
                fixed: None
            }
        );
        assert_eq!(
            parse("retry_backoff = 4").unwrap().backoff.min,
            Some(Seconds { secs: 4, nanos: 0 })
        );
        assert_eq!(
            parse("retry_backoff = false").unwrap().backoff.fixed,
            Some(CELERY_DEFAULT_RETRY_DELAY)
        );
        assert_eq!(
            parse("default_retry_delay = 10, retry_backoff = false")
                .unwrap()
                .backoff
                .fixed,
            Some(Seconds { secs: 10, nanos: 0 })
        );
    }

    #[test]
    fn errors_name_the_option() {
        let table = [
            ("colour = 1", "unknown task option `colour`"),
            (
                "max_retries = \"5\"",
                "`max_retries` expects a number of retries",
            ),
            (
                "max_retries = -1",
                "`max_retries` expects a number of retries",
            ),
            (
                "time_limit = \"30s\"",
                "`time_limit` expects a number of seconds",
            ),
            ("acks_late = 1", "`acks_late` expects `true` or `false`"),
            ("name = \"\"", "`name` expects a non-empty string literal"),
            ("rate_limit = \"10/d\"", "`rate_limit` expects a rate"),
            ("name = \"a\", name = \"b\"", "`name` is given twice"),
            ("bind = true", "no `bind` option"),
            ("queue(\"x\")", "a task option is `name = value`"),
            (
                "default_retry_delay = 3, retry_backoff = 2",
                "give one or the other",
            ),
            ("retry_backoff = false, retry_backoff = 1", "given twice"),
        ];
        for (text, expected) in table {
            let error = parse(text).unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }
}
