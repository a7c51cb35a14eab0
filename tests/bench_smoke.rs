//! The benchmark still works: `examples/bench.rs` in quick mode (`BENCH_QUICK=1`: small
//! counts, one round) against the node of scripts/test. Its figures are not judged (a
//! debug build on shared cores); it must finish, check its own drains (a message left
//! unacked after a drain fails it) and print every table.

mod common;

use std::process::Stdio;

#[test]
fn the_bench_runs_in_quick_mode_and_prints_every_table() {
    let output = common::example_command("bench")
        .env("CELERIAC_BROKER_URL", common::amqp_url())
        .env("BENCH_QUICK", "1")
        .env_remove("BENCH_ONLY")
        .env_remove("BENCH_CLUSTER_URL")
        .env_remove("BENCH_REDIS_URL")
        .stdin(Stdio::null())
        .output()
        .expect("the bench example starts");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the bench failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    for table in [
        "| publish with confirms (msg/s) |",
        "| drain (msg/s), tuned",
        "| drain (msg/s), default settings, Python-shaped",
        "| drain (msg/s), concurrency 8, prefetch 1000",
        "| latency send -> start p99 (us) |",
        "| worker CPU s per 1,000 tasks |",
        "| message size (body + properties) |",
        "| queues one worker consumes |",
        "| celeriac worker holding ETA tasks |",
        "| fairness:",
    ] {
        assert!(
            stdout.contains(table),
            "the bench's output has no line starting {table:?}:\n{stdout}\n{stderr}"
        );
    }
}
