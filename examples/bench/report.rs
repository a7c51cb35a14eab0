//! The bench's closing tables, Markdown (readable on a terminal, pasteable into
//! BENCHMARKS.md), from the figures of one run.

use std::time::Duration;

use crate::drain::Compared;
use crate::fairness::Fairness;
use crate::growth::{GrowthRow, Held};
use crate::stats::{self, Latency, Row, Target};
use crate::{Footprint, Settings};

/// A drain on the cluster.
pub struct ClusterRow {
    /// "classic" or "quorum".
    pub kind: &'static str,
    /// The medians.
    pub compared: Compared,
}

/// Every figure of a run; phases that did not run stay empty.
#[derive(Default)]
pub struct Report {
    /// Publish medians (celeriac, raw), msg/s.
    pub publish: Option<(f64, f64)>,
    /// Drain cases: label, medians, target ratio.
    pub drains: Vec<(String, Compared, f64)>,
    /// Latency (celeriac, raw).
    pub latency: Option<(Latency, Latency)>,
    /// Footprint (celeriac, raw).
    pub footprint: Option<(Footprint, Footprint)>,
    /// Drain against message size.
    pub sizes: Vec<GrowthRow>,
    /// Drain against queues consumed.
    pub queues: Vec<GrowthRow>,
    /// RSS with held ETA tasks.
    pub held: Option<Held>,
    /// The fairness case.
    pub fairness: Option<Fairness>,
    /// Classic against quorum on the cluster.
    pub cluster: Vec<ClusterRow>,
    /// The drain with results (already printed).
    pub results: Vec<Row>,
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

impl Report {
    /// Prints every table.
    pub fn print(&self, settings: &Settings) {
        println!("\n== results");
        let mut rows = Vec::new();
        if let Some((celeriac, raw)) = self.publish {
            rows.push(Row {
                figure: "publish with confirms (msg/s)".into(),
                celeriac,
                raw,
                decimals: 0,
                target: Target::RatioAtLeast(0.9),
            });
        }
        for (label, compared, target) in &self.drains {
            rows.push(Row {
                figure: format!("drain (msg/s), {label}"),
                celeriac: compared.celeriac,
                raw: compared.raw,
                decimals: 0,
                target: Target::RatioAtLeast(*target),
            });
        }
        if let Some((celeriac, raw)) = &self.latency {
            rows.push(Row {
                figure: "latency send -> start p50 (us)".into(),
                celeriac: micros(celeriac.p50),
                raw: micros(raw.p50),
                decimals: 0,
                target: Target::None,
            });
            rows.push(Row {
                figure: "latency send -> start p99 (us)".into(),
                celeriac: micros(celeriac.p99),
                raw: micros(raw.p99),
                decimals: 0,
                target: Target::RatioAtMost(1.3),
            });
        }
        if let Some((celeriac, raw)) = &self.footprint {
            rows.push(Row {
                figure: "worker RSS, idle after startup (MiB)".into(),
                celeriac: mib(celeriac.idle.rss_kib),
                raw: mib(raw.idle.rss_kib),
                decimals: 1,
                target: Target::AtMost(20.0),
            });
            rows.push(Row {
                figure: "worker peak RSS after N tasks, VmHWM (MiB)".into(),
                celeriac: mib(celeriac.peak_kib),
                raw: mib(raw.peak_kib),
                decimals: 1,
                target: Target::None,
            });
            rows.push(Row {
                figure: "worker CPU s per 1,000 tasks".into(),
                celeriac: celeriac.cpu_per_thousand,
                raw: raw.cpu_per_thousand,
                decimals: 4,
                target: Target::RatioAtMost(1.2),
            });
        }
        if !rows.is_empty() {
            println!("\n{}", stats::render_table(&rows));
        }
        growth_table("message size (body + properties)", &self.sizes);
        growth_table("queues one worker consumes", &self.queues);
        if let Some(held) = &self.held {
            println!(
                "| celeriac worker holding ETA tasks | RSS (MiB) | VmHWM (MiB) | per held task | counted per task (eta_task_bytes_limit) |\n\
                 |---|---:|---:|---:|---:|\n\
                 | idle | {:.1} | | | |\n\
                 | holding {} | {:.1} | {:.1} | {:.0} B | {} B ({:.0} MiB) |\n",
                mib(held.idle_kib),
                held.count,
                mib(held.held_kib),
                mib(held.peak_kib),
                held.per_task_bytes(),
                held.message_bytes,
                held.bytes_limit as f64 / (1024.0 * 1024.0),
            );
        }
        if let Some(fairness) = &self.fairness {
            println!(
                "| fairness: {} tasks of {} ms, 2 default workers, {} slots | makespan (s) | ideal (s) | makespan/ideal | tasks run (first / second) |\n\
                 |---|---:|---:|---:|---|\n\
                 | celeriac | {:.2} | {:.2} | {:.2} | {} / {} |\n",
                fairness.tasks,
                fairness.task_time.as_millis(),
                fairness.slots,
                fairness.makespan.as_secs_f64(),
                fairness.ideal.as_secs_f64(),
                fairness.ratio(),
                fairness.ran[0],
                fairness.ran[1]
            );
        }
        if !self.cluster.is_empty() {
            let mut table = String::from(
                "| cluster drain, tuned settings | celeriac (msg/s) | raw lapin (msg/s) | celeriac/raw | peak RSS celeriac / raw (MiB) |\n|---|---:|---:|---:|---|\n",
            );
            for row in &self.cluster {
                table.push_str(&format!(
                    "| {} queue | {:.0} | {:.0} | {:.2} | {:.1} / {:.1} |\n",
                    row.kind,
                    row.compared.celeriac,
                    row.compared.raw,
                    row.compared.celeriac / row.compared.raw.max(1e-9),
                    mib(row.compared.celeriac_peak_kib),
                    mib(row.compared.raw_peak_kib)
                ));
            }
            println!("{table}");
        }
        if !self.results.is_empty() {
            println!("{}", stats::render_table(&self.results));
        }
        println!(
            "{} rounds per comparison, medians; rounds alternate which side goes first. \
             CPU time from /proc/<pid>/stat at {} ticks/s (getconf CLK_TCK); RSS from \
             /proc/<pid>/status. Targets are checked on this run's figures only; a missed \
             target does not fail the bench. Figures are noisy when other work shares the \
             cores.",
            settings.rounds,
            stats::clock_ticks_per_second()
        );
    }
}

fn growth_table(what: &str, rows: &[GrowthRow]) {
    if rows.is_empty() {
        return;
    }
    let mut table = format!(
        "| {what} | N | celeriac (msg/s) | raw lapin (msg/s) | celeriac/raw | peak RSS celeriac (MiB) | peak RSS raw (MiB) |\n|---|---:|---:|---:|---:|---:|---:|\n"
    );
    for row in rows {
        table.push_str(&format!(
            "| {} | {} | {:.0} | {:.0} | {:.2} | {:.1} | {:.1} |\n",
            row.label,
            row.n,
            row.compared.celeriac,
            row.compared.raw,
            row.compared.celeriac / row.compared.raw.max(1e-9),
            mib(row.compared.celeriac_peak_kib),
            mib(row.compared.raw_peak_kib)
        ));
    }
    println!("{table}");
}
