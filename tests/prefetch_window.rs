//! The adaptive prefetch window on a real RabbitMQ (no prefetch multiplier set): it grows
//! while tasks are short, shrinks to its floor (concurrency x 4) when they run long while
//! keeping (and running, once each) what it already held, and two workers of long
//! tasks each hold no more than their window. The window is read from the broker (the
//! consumer channel's global prefetch count), the rest from message counts.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use celeriac::{BrokerClient, Config, Producer, Signature, Task, TaskContext, TaskError};

use common::*;

/// Generous: every condition below normally holds within seconds.
const WAIT: Duration = Duration::from_secs(90);

/// Executor slots of the workers here.
const CONCURRENCY: usize = 2;

/// The adaptive window's floor for them: concurrency x 4.
const FLOOR: u64 = 4 * CONCURRENCY as u64;

/// `window.nap(ms)`: a long task (long against the window's 50 ms of held work per slot).
struct Nap;

impl Task for Nap {
    const NAME: &'static str = "window.nap";
    type Args = (u64,);
    type Output = ();
    async fn run(_: TaskContext, (ms,): (u64,)) -> Result<(), TaskError> {
        actix_rt::time::sleep(Duration::from_millis(ms)).await;
        Ok(())
    }
}

/// The prefetch windows of `queue`'s consumers, as the broker applies them (their
/// channels' global prefetch count), read with rabbitmqctl off the worker's thread.
async fn broker_windows(queue: &str) -> Vec<u64> {
    let queue = queue.to_string();
    actix_rt::task::spawn_blocking(move || {
        let dir = std::env::var("CELERIAC_TEST_RABBIT_DIR")
            .expect("CELERIAC_TEST_RABBIT_DIR (run scripts/test)");
        let dir = std::path::Path::new(&dir);
        let consumers = node_ctl(
            dir,
            &[
                "list_consumers",
                "-q",
                "--no-table-headers",
                "queue_name",
                "channel_pid",
            ],
        );
        let channels = node_ctl(
            dir,
            &[
                "list_channels",
                "-q",
                "--no-table-headers",
                "pid",
                "global_prefetch_count",
            ],
        );
        let windows: HashMap<&str, u64> = channels
            .lines()
            .filter_map(|line| {
                let (pid, count) = line.split_once('\t')?;
                Some((pid.trim(), count.trim().parse().ok()?))
            })
            .collect();
        consumers
            .lines()
            .filter_map(|line| line.split_once('\t'))
            .filter(|(name, _)| *name == queue)
            .filter_map(|(_, pid)| windows.get(pid.trim()).copied())
            .collect()
    })
    .await
    .expect("the rabbitmqctl thread")
}

/// Waits until the one consumer of `queue` has a window satisfying `condition`.
async fn wait_for_window(queue: &str, what: &str, condition: impl Fn(u64) -> bool) -> u64 {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let windows = broker_windows(queue).await;
        if let [window] = windows[..] {
            if condition(window) {
                return window;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {WAIT:?} waiting for {what}; windows of {queue}: {windows:?}"
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends `count` `test.add` tasks (short) to `queue`.
async fn send_short(producer: &Producer, queue: &str, count: usize) {
    for i in 0..count {
        let signature = Signature::of::<Add>(&AddArgs { x: i as i64, y: 1 })
            .expect("encodes")
            .with_queue(queue.to_string());
        producer.send_signature(signature).await.expect("sent");
    }
}

/// Sends `count` naps of `ms` to `queue`.
async fn send_naps(producer: &Producer, queue: &str, count: usize, ms: u64) {
    for _ in 0..count {
        let signature = Signature::new(Nap::NAME)
            .with_args(vec![serde_json::json!(ms)])
            .with_queue(queue.to_string());
        producer.send_signature(signature).await.expect("sent");
    }
}

/// A config without prefetch multiplier (the adaptive window) and without results.
fn adaptive_config() -> Config {
    let mut config = config(CONCURRENCY);
    config.result_backend = None;
    assert_eq!(config.prefetch_multiplier, None, "adaptive is the default");
    config
}

async fn start(
    broker: &BrokerClient,
    config: &Config,
    queue: &str,
) -> (celeriac::WorkerSystem, Events) {
    let (builder, events) = test_worker(broker, config, queue);
    let worker = builder
        .register::<Add>()
        .register::<Nap>()
        .start()
        .await
        .expect("worker");
    (worker, events)
}

#[actix_rt::test]
async fn the_window_grows_under_short_tasks_then_shrinks_and_keeps_what_it_holds() {
    let config = adaptive_config();
    let broker = connect(&config).await;
    let queue = unique_queue("window-adapt");
    let (worker, mut events) = start(&broker, &config, &queue).await;
    let producer = Producer::new(broker.clone(), &config);
    wait_for_window(&queue, "the window to open at its floor", |window| {
        window == FLOOR
    })
    .await;

    // Short tasks: every FLOOR runs may double the window. NAPS naps must then all fit in
    // it, so that the worker holds every one of them.
    const NAPS: usize = 64;
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        send_short(&producer, &queue, 200).await;
        wait_for_counts("the short tasks to run", WAIT, &[&queue], |counts| {
            counts == [(0, 0)]
        })
        .await;
        let windows = broker_windows(&queue).await;
        if windows.iter().all(|window| *window >= NAPS as u64) && windows.len() == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the window did not grow to {NAPS} under short tasks: {windows:?}"
        );
    }

    // Long tasks (300 ms, two at a time): the worker takes all of them at once...
    let mut naps = Vec::new();
    for _ in 0..NAPS {
        let signature = Signature::new(Nap::NAME)
            .with_args(vec![serde_json::json!(300)])
            .with_queue(queue.clone());
        naps.push(producer.send_signature(signature).await.expect("sent"));
    }
    wait_for_counts(
        "the worker to hold every nap (a window of at least NAPS)",
        WAIT,
        &[&queue],
        |counts| counts[0].0 == 0 && counts[0].1 > 0,
    )
    .await;
    // ...and after FLOOR of them ran, the window shrinks to its floor (the broker then
    // hands over no more than FLOOR beyond what the worker holds). What the worker holds
    // stays with it: nothing goes back to the queue, and every nap runs once.
    wait_for_window(&queue, "the window to shrink to its floor", |window| {
        window == FLOOR
    })
    .await;
    let (ready, _) = queue_counts_async(&queue).await;
    assert_eq!(
        ready, 0,
        "naps went back to the queue when the window shrank"
    );
    wait_for_counts("every nap to run", WAIT, &[&queue], |counts| {
        counts == [(0, 0)]
    })
    .await;
    let ran = |seen: &[celeriac::TaskEvent], id: &String| {
        seen.iter()
            .filter(|event| succeeded(event) && event.task_id.as_ref() == Some(id))
            .count()
    };
    events
        .wait_until(WAIT, "every nap to succeed", |seen| {
            naps.iter().all(|id| ran(seen, id) > 0)
        })
        .await;
    for id in &naps {
        assert_eq!(
            ran(events.seen(), id),
            1,
            "nap {id} did not run exactly once"
        );
    }

    delete_queues(&broker, &[&queue]).await;
    worker.stop().await.expect("stop");
}

#[actix_rt::test]
async fn two_workers_of_long_tasks_hold_no_more_than_their_windows() {
    let config_a = adaptive_config();
    let config_b = adaptive_config();
    let broker = connect(&config_a).await;
    let queue = unique_queue("window-fair");
    let (worker_a, mut events_a) = start(&broker, &config_a, &queue).await;
    let (worker_b, mut events_b) = start(&broker, &config_b, &queue).await;
    wait_until_async("both workers to consume", WAIT, || async {
        queue_consumers_async(&queue).await == 2
    })
    .await;
    let producer = Producer::new(broker.clone(), &config_a);
    const NAPS: usize = 48;
    send_naps(&producer, &queue, NAPS, 300).await;
    // Each worker holds at most its window unacked (it acks a task when it starts), and
    // long tasks keep the window at its floor: never more than 2 x FLOOR unacked.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (ready, unacked) = queue_counts_async(&queue).await;
        assert!(
            unacked <= 2 * FLOOR,
            "two workers held {unacked} naps unacked, more than their windows (2 x {FLOOR})"
        );
        if ready == 0 && unacked == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the naps were not all taken within {WAIT:?}: {ready} ready, {unacked} unacked"
        );
    }
    // Both ran some: neither took the backlog for itself.
    for (name, events) in [("a", &mut events_a), ("b", &mut events_b)] {
        events
            .wait_until(WAIT, &format!("worker {name} to run a nap"), |seen| {
                seen.iter().any(succeeded)
            })
            .await;
    }
    worker_a.stop().await.expect("stop a");
    worker_b.stop().await.expect("stop b");
    delete_queues(&broker, &[&queue]).await;
}
