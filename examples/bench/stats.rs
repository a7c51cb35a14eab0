//! Measuring helpers for the bench: `/proc` readings of a child process, the on-wire size
//! of a message, percentiles, and the result table.

use std::error::Error;
use std::time::Duration;

use celeriac::actors::amqp::{AMQPValue, BasicProperties, FieldTable};

/// What `/proc/<pid>/status` and `/proc/<pid>/stat` say about a process.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcStats {
    /// Resident set size now (`VmRSS`), KiB.
    pub rss_kib: u64,
    /// Peak resident set size (`VmHWM`), KiB.
    pub hwm_kib: u64,
    /// User + system CPU time, clock ticks.
    pub cpu_ticks: u64,
}

/// Reads the memory and CPU figures of process `pid`.
pub fn read_proc(pid: u32) -> Result<ProcStats, Box<dyn Error>> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|error| format!("reading /proc/{pid}/status: {error}"))?;
    let kib = |field: &str| -> Result<u64, Box<dyn Error>> {
        let line = status
            .lines()
            .find(|line| line.starts_with(field))
            .ok_or_else(|| format!("/proc/{pid}/status has no {field} line"))?;
        let number = line
            .split_whitespace()
            .nth(1)
            .ok_or_else(|| format!("/proc/{pid}/status: malformed {field} line {line:?}"))?;
        Ok(number.parse()?)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|error| format!("reading /proc/{pid}/stat: {error}"))?;
    // Fields after the command name (which may hold spaces) start with field 3, `state`;
    // utime and stime are fields 14 and 15.
    let after_name = stat
        .rfind(')')
        .map(|at| &stat[at + 1..])
        .ok_or_else(|| format!("/proc/{pid}/stat is malformed: {stat:?}"))?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |index: usize| -> Result<u64, Box<dyn Error>> {
        Ok(fields
            .get(index)
            .ok_or_else(|| format!("/proc/{pid}/stat has too few fields"))?
            .parse()?)
    };
    Ok(ProcStats {
        rss_kib: kib("VmRSS:")?,
        hwm_kib: kib("VmHWM:")?,
        cpu_ticks: field(11)? + field(12)?,
    })
}

/// Clock ticks per second (`getconf CLK_TCK`); 100, Linux's value, when getconf fails.
pub fn clock_ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .filter(|ticks: &u64| *ticks > 0)
        .unwrap_or(100)
}

/// Encoded size of an AMQP field value, without its type byte.
fn value_size(value: &AMQPValue) -> usize {
    match value {
        AMQPValue::Boolean(_) | AMQPValue::ShortShortInt(_) | AMQPValue::ShortShortUInt(_) => 1,
        AMQPValue::ShortInt(_) | AMQPValue::ShortUInt(_) => 2,
        AMQPValue::LongInt(_) | AMQPValue::LongUInt(_) | AMQPValue::Float(_) => 4,
        AMQPValue::LongLongInt(_) | AMQPValue::Timestamp(_) | AMQPValue::Double(_) => 8,
        AMQPValue::DecimalValue(_) => 5,
        AMQPValue::ShortString(text) => 1 + text.as_str().len(),
        AMQPValue::LongString(text) => 4 + text.as_bytes().len(),
        AMQPValue::ByteArray(bytes) => 4 + bytes.as_slice().len(),
        AMQPValue::FieldArray(items) => {
            4 + items
                .as_slice()
                .iter()
                .map(|item| 1 + value_size(item))
                .sum::<usize>()
        }
        AMQPValue::FieldTable(table) => table_size(table),
        AMQPValue::Void => 0,
    }
}

/// Encoded size of an AMQP field table, its 4-byte length included.
fn table_size(table: &FieldTable) -> usize {
    4 + table
        .inner()
        .iter()
        .map(|(key, value)| 1 + key.as_str().len() + 1 + value_size(value))
        .sum::<usize>()
}

/// How many bytes a message takes on the wire.
#[derive(Debug, Clone, Copy)]
pub struct WireSize {
    /// The body.
    pub body: usize,
    /// The headers table alone.
    pub headers: usize,
    /// The content header frame payload: class, weight, body size, flags, properties.
    pub properties: usize,
    /// All three frames of a publish (method, content header, body), frame overhead included.
    pub frames: usize,
}

/// The on-wire size of a message published with `properties` and `body` to `routing_key`
/// on the default exchange.
pub fn wire_size(properties: &BasicProperties, body: &[u8], routing_key: &str) -> WireSize {
    let short = |text: &Option<celeriac::actors::amqp::ShortString>| {
        text.as_ref().map_or(0, |text| 1 + text.as_str().len())
    };
    let headers = properties.headers().as_ref().map_or(0, table_size);
    let properties_size = 2 + 2 + 8 + 2 // class, weight, body size, property flags
        + short(properties.content_type())
        + short(properties.content_encoding())
        + headers
        + properties.delivery_mode().map_or(0, |_| 1)
        + properties.priority().map_or(0, |_| 1)
        + short(properties.correlation_id())
        + short(properties.reply_to())
        + short(properties.expiration())
        + short(properties.message_id())
        + properties.timestamp().map_or(0, |_| 8)
        + short(properties.kind())
        + short(properties.user_id())
        + short(properties.app_id());
    const FRAME_OVERHEAD: usize = 7 + 1; // type, channel, size; frame-end octet
                                         // basic.publish: class, method, reserved short, exchange "", routing key, flag bits.
    let method = 2 + 2 + 2 + 1 + 1 + routing_key.len() + 1;
    WireSize {
        body: body.len(),
        headers,
        properties: properties_size,
        frames: 3 * FRAME_OVERHEAD + method + properties_size + body.len(),
    }
}

/// Latency percentiles of a sample.
#[derive(Debug, Clone, Copy, Default)]
pub struct Latency {
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Largest.
    pub max: Duration,
}

/// p50, p99 and max of `samples` (nearest-rank).
pub fn percentiles(mut samples: Vec<Duration>) -> Latency {
    if samples.is_empty() {
        return Latency::default();
    }
    samples.sort_unstable();
    let rank = |p: f64| {
        let index = ((p * samples.len() as f64).ceil() as usize).max(1) - 1;
        samples[index.min(samples.len() - 1)]
    };
    Latency {
        p50: rank(0.50),
        p99: rank(0.99),
        max: samples[samples.len() - 1],
    }
}

/// How a figure is judged.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// No target: shown for information.
    None,
    /// celeriac / raw must be at least this.
    RatioAtLeast(f64),
    /// celeriac / raw must be at most this.
    RatioAtMost(f64),
    /// celeriac's value must be at most this, in the row's unit.
    AtMost(f64),
}

/// One row of the result table.
pub struct Row {
    /// What is measured, with its unit.
    pub figure: String,
    /// celeriac's value.
    pub celeriac: f64,
    /// The raw lapin value.
    pub raw: f64,
    /// Decimal places to print.
    pub decimals: usize,
    /// The target.
    pub target: Target,
}

impl Row {
    fn ratio(&self) -> f64 {
        if self.raw > 0.0 {
            self.celeriac / self.raw
        } else {
            f64::NAN
        }
    }

    fn target_text(&self) -> String {
        match self.target {
            Target::None => "-".into(),
            Target::RatioAtLeast(ratio) => format!(">= {ratio:.2} x raw"),
            Target::RatioAtMost(ratio) => format!("<= {ratio:.2} x raw"),
            Target::AtMost(value) => format!("<= {value}"),
        }
    }

    fn verdict(&self) -> &'static str {
        let met = match self.target {
            Target::None => return "-",
            Target::RatioAtLeast(ratio) => self.ratio() >= ratio,
            Target::RatioAtMost(ratio) => self.ratio() <= ratio,
            Target::AtMost(value) => self.celeriac <= value,
        };
        if met {
            "met"
        } else {
            "MISSED"
        }
    }
}

/// The result table, as Markdown (readable on a terminal, pasteable into BENCHMARKS.md).
pub fn render_table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| figure | celeriac | raw lapin | celeriac/raw | target | verdict |\n|---|---:|---:|---:|---|---|\n",
    );
    for row in rows {
        out.push_str(&format!(
            "| {} | {:.*} | {:.*} | {:.2} | {} | {} |\n",
            row.figure,
            row.decimals,
            row.celeriac,
            row.decimals,
            row.raw,
            row.ratio(),
            row.target_text(),
            row.verdict()
        ));
    }
    out
}
