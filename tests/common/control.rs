//! Helpers for the remote-control tests: a unique node name, and Python Celery 5.7's own
//! CLI (`celery inspect` / `celery control` / `celery status`) run against the test broker.
#![allow(dead_code)]

use serde_json::Value;

/// A node name no other test uses.
pub fn unique_node(test: &str) -> String {
    format!(
        "{test}-{}@celeriac-test",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// What a CLI run printed.
#[derive(Debug)]
pub struct CliRun {
    /// Exit status code.
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs `python -m celery -b <broker> ARGS` and waits for it (off the async threads).
pub async fn celery(args: &[&str]) -> CliRun {
    let args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
    actix_rt::task::spawn_blocking(move || {
        let output = std::process::Command::new(crate::common::python())
            .args(["-m", "celery", "-b", &crate::common::amqp_url()])
            .args(&args)
            .output()
            .expect("the celery CLI runs");
        CliRun {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    })
    .await
    .expect("the CLI thread")
}

/// `celery inspect METHOD [ARGS] -d NODE --json --timeout 10`: the node's reply value.
/// The CLI stops waiting as soon as the node answered; 10 s only bounds a node that does
/// not answer at all.
pub async fn inspect(node: &str, method: &str, args: &[&str]) -> Value {
    let mut all = vec!["inspect", method];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-d", node, "--json", "--timeout", "10"]);
    let run = celery(&all).await;
    assert_eq!(run.code, Some(0), "celery inspect {method} failed: {run:?}");
    let line = run.stdout.lines().last().unwrap_or_default();
    let parsed: Value = serde_json::from_str(line).unwrap_or_else(|error| {
        panic!("celery inspect {method} printed no JSON ({error}): {run:?}")
    });
    parsed
        .get(node)
        .cloned()
        .unwrap_or_else(|| panic!("celery inspect {method}: no reply from {node}: {run:?}"))
}

/// `celery control METHOD ARGS -d NODE --json --timeout 10`: the node's reply value.
pub async fn control(node: &str, method: &str, args: &[&str]) -> Value {
    let mut all = vec!["control", method];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-d", node, "--json", "--timeout", "10"]);
    let run = celery(&all).await;
    assert_eq!(run.code, Some(0), "celery control {method} failed: {run:?}");
    let line = run.stdout.lines().last().unwrap_or_default();
    let parsed: Value = serde_json::from_str(line).unwrap_or_else(|error| {
        panic!("celery control {method} printed no JSON ({error}): {run:?}")
    });
    parsed
        .as_array()
        .and_then(|replies| replies.iter().find_map(|reply| reply.get(node).cloned()))
        .unwrap_or_else(|| panic!("celery control {method}: no reply from {node}: {run:?}"))
}
