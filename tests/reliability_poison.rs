//! Failure scenarios about what a worker receives and runs (the issue's (f) and (g)):
//! 1,000 poison messages mixed with 1,000 good ones, and 1,000 panicking tasks.
//!
//! Each prints one summary line (run with --nocapture).

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use celeriac::actors::{OutboundMessage, QueueSpec};
use celeriac::protocol::TaskMessage;
use celeriac::{Producer, QueueConfig, Signature, Task, TaskEventKind, WorkerSystem};
use serde_json::{json, Map};

use common::*;

const WAIT: Duration = Duration::from_secs(60);

/// Logs at warn by default (a run logs thousands of lines at info); poison messages and
/// panics are logged at error, so their log lines still show.
fn init() {
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .is_test(true)
        .try_init();
}

/// The kinds of poison message, each with the event it must end with and a word its
/// reason must contain.
const POISON: [(&str, &str, &str); 7] = [
    ("not JSON", "Rejected", "JSON"),
    ("a 2-element body", "Rejected", "2 elements"),
    (
        "a body that is not an array",
        "Rejected",
        "expected a 3-element array",
    ),
    ("content type text/plain", "Rejected", "content type"),
    ("arguments of the wrong type", "Failed", "TypeError"),
    ("an unknown task name", "Rejected", "NotRegistered"),
    ("a body over the size limit", "Rejected", "size limit"),
];

/// The worker's `Config::max_message_size` in this test.
const SIZE_LIMIT: usize = 64 * 1024;

/// A raw poison message of `kind` (an index of `POISON`) with task id `id`.
fn poison(kind: usize, id: &str, queue: &str) -> OutboundMessage {
    let task = if kind == 5 {
        "reliability.nope"
    } else {
        Add::NAME
    };
    let args = match kind {
        4 => vec![json!("one"), json!(["two"])],
        6 => vec![json!("x".repeat(SIZE_LIMIT + 1024)), json!(1)],
        _ => vec![json!(1), json!(2)],
    };
    let (mut properties, mut body) = TaskMessage::new_json(task, id, args, Map::new())
        .encode()
        .expect("the message encodes");
    match kind {
        0 => body = b"{not json at all".to_vec(),
        1 => body = br#"[[1, 2], {}]"#.to_vec(),
        2 => body = br#"{"args": [1, 2], "kwargs": {}}"#.to_vec(),
        3 => properties = properties.with_content_type("text/plain".into()),
        _ => {}
    }
    OutboundMessage {
        exchange: String::new(),
        routing_key: queue.to_string(),
        properties,
        body,
    }
}

/// Events per task id (but Started), rebuilt from everything the worker reported, until
/// `done` says so or `WAIT` passed; answers whether `done` held.
async fn gather(
    events: &mut Events,
    by_id: &mut HashMap<String, Vec<TaskEventKind>>,
    mut done: impl FnMut(&HashMap<String, Vec<TaskEventKind>>) -> bool,
) -> bool {
    by_id.clear();
    let mut next = 0;
    events
        .try_wait_until(WAIT, |seen| {
            for event in &seen[next..] {
                if !matches!(event.kind, TaskEventKind::Started) {
                    by_id
                        .entry(event.task_id.clone().unwrap_or_default())
                        .or_default()
                        .push(event.kind.clone());
                }
            }
            next = seen.len();
            done(by_id)
        })
        .await
}

fn kind_name(kind: &TaskEventKind) -> &'static str {
    match kind {
        TaskEventKind::Received(_) => "Received",
        TaskEventKind::Started => "Started",
        TaskEventKind::Succeeded { .. } => "Succeeded",
        TaskEventKind::Failed { .. } => "Failed",
        // Poison is rejected without requeue: a requeue would show as another outcome.
        TaskEventKind::Rejected { requeue: false, .. } => "Rejected",
        TaskEventKind::Rejected { requeue: true, .. } => "Rejected:requeue",
        TaskEventKind::Revoked { .. } => "Revoked",
        TaskEventKind::Requeued => "Requeued",
        TaskEventKind::Retried { .. } => "Retried",
        TaskEventKind::Deferred { .. } => "Deferred",
        TaskEventKind::Ignored => "Ignored",
    }
}

fn reason_of(kind: &TaskEventKind) -> String {
    match kind {
        TaskEventKind::Rejected { reason, .. } => reason.clone(),
        TaskEventKind::Failed { error } => error.to_string(),
        other => format!("{other:?}"),
    }
}

/// (f) 1,000 poison messages of 7 kinds mixed with 1,000 good ones, on a queue that
/// dead-letters: every good one runs once, every poison one is rejected (or fails, for
/// arguments of the wrong type) with a reason naming the problem and lands in the
/// dead-letter queue, the task queue ends empty, and the worker runs on at full capacity.
#[actix_rt::test]
async fn poison_messages_are_dead_lettered_and_every_good_task_runs() {
    init();
    let started = Instant::now();
    let mut config = config(2);
    config.max_message_size = SIZE_LIMIT;
    let broker = connect(&config).await;
    let queue = unique_queue("reliability-poison");
    let dead = format!("{queue}.dead");
    broker
        .declare_queue(QueueSpec::durable(&dead))
        .await
        .expect("the dead-letter queue");
    let queue_config = QueueConfig::new(&queue).with_dead_letter("", &dead);
    let (events, mut received) = task_events();
    let worker = WorkerSystem::builder(broker.clone(), &config)
        .queue_config(queue_config.clone())
        .register::<Add>()
        .on_task_event(events)
        .close_broker_on_stop(false)
        .start()
        .await
        .expect("the worker starts");
    let mut producer_config = config.clone();
    producer_config.queues.push(queue_config);
    let producer = Producer::new(broker.clone(), &producer_config);

    let mut good = Vec::new();
    let mut poisoned: HashMap<String, usize> = HashMap::new();
    for chunk in 0..20 {
        let mut sends = Vec::new();
        let mut publishes = Vec::new();
        for i in chunk * 50..(chunk + 1) * 50 {
            let signature = Signature::of::<Add>(&AddArgs { x: i, y: 1 })
                .expect("encodes")
                .with_queue(queue.clone());
            sends.push(producer.send_signature(signature));
            let id = uuid::Uuid::new_v4().to_string();
            let kind = i as usize % POISON.len();
            publishes.push(broker.publish(poison(kind, &id, &queue)));
            poisoned.insert(id, kind);
        }
        let (sent, published) = futures::join!(
            futures::future::join_all(sends),
            futures::future::join_all(publishes)
        );
        for id in sent {
            good.push(id.expect("a good task is sent"));
        }
        for outcome in published {
            outcome.expect("a poison message is published");
        }
    }

    let mut by_id = HashMap::new();
    let complete = gather(&mut received, &mut by_id, |by_id| {
        good.iter().all(|id| by_id.contains_key(id))
            && poisoned.keys().all(|id| by_id.contains_key(id))
    })
    .await;

    // Every good task ran, once.
    let lost: Vec<&String> = good.iter().filter(|id| !by_id.contains_key(*id)).collect();
    let mut duplicates = 0;
    let mut wrong_good = Vec::new();
    for id in &good {
        let kinds = by_id.get(id).map(Vec::as_slice).unwrap_or_default();
        duplicates += kinds.len().saturating_sub(1);
        if kinds.iter().any(|kind| kind_name(kind) != "Succeeded") {
            wrong_good.push(format!("{id}: {kinds:?}"));
        }
    }
    // Every poison message ended as planned, with a reason naming its problem.
    let mut outcomes: HashMap<&str, usize> = HashMap::new();
    let mut wrong_poison = Vec::new();
    for (id, kind) in &poisoned {
        let (what, expected, word) = POISON[*kind];
        match by_id.get(id).map(Vec::as_slice) {
            Some([event]) if kind_name(event) == expected && reason_of(event).contains(word) => {
                *outcomes.entry(expected).or_default() += 1;
            }
            other => wrong_poison.push(format!(
                "{what} ({id}): expected one {expected} naming {word:?}, got {:?}",
                other.map(|events| events.iter().map(reason_of).collect::<Vec<_>>())
            )),
        }
    }

    // A good task still runs afterwards, and the pool is idle at full capacity.
    let last = producer
        .send_signature(
            Signature::of::<Add>(&AddArgs { x: 40, y: 2 })
                .expect("encodes")
                .with_queue(queue.clone()),
        )
        .await
        .ok();
    let last_ran = match &last {
        Some(id) => gather(&mut received, &mut by_id, |by_id| by_id.contains_key(id)).await,
        None => false,
    };
    let status = worker.pool_status().await.expect("the pool answers");

    // Dead-lettering is asynchronous: wait for the dead-letter queue to hold them all.
    let deadline = Instant::now() + WAIT;
    let mut dead_lettered = 0;
    while Instant::now() < deadline {
        dead_lettered = broker.count_messages(&dead).await.expect("count") as usize;
        if dead_lettered >= poisoned.len() {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    let left = queue_counts_async(&queue).await;
    worker.stop().await.expect("stop");
    delete_queues(&broker, &[&queue, &dead]).await;
    broker.close().await.expect("close");

    println!(
        "reliability (f: poison messages): tasks {} good + {} poison ({} kinds), \
         good executed {}, lost {}, duplicates {}, poison rejected {} / failed {} \
         (expected {}), dead-lettered {}, left in the queue {:?}, pool {:?}, took {:.1} s",
        good.len(),
        poisoned.len(),
        POISON.len(),
        good.len() - lost.len(),
        lost.len(),
        duplicates,
        outcomes.get("Rejected").copied().unwrap_or(0),
        outcomes.get("Failed").copied().unwrap_or(0),
        poisoned.len(),
        dead_lettered,
        left,
        status,
        started.elapsed().as_secs_f64()
    );
    assert!(
        complete,
        "not every message was accounted for within {WAIT:?}"
    );
    assert!(
        lost.is_empty(),
        "{} good tasks never ran: {lost:?}",
        lost.len()
    );
    assert!(
        wrong_good.is_empty(),
        "good tasks that did not just succeed: {wrong_good:?}"
    );
    assert!(
        wrong_poison.is_empty(),
        "{} poison messages did not end as expected, e.g. {:?}",
        wrong_poison.len(),
        &wrong_poison[..wrong_poison.len().min(5)]
    );
    assert_eq!(
        dead_lettered,
        poisoned.len(),
        "the dead-letter queue holds every poison message"
    );
    assert_eq!(left, (0, 0), "the task queue ends empty");
    assert!(last_ran, "a good task sent after the poison did not run");
    assert_eq!(
        (status.capacity, status.running, status.waiting),
        (2, 0, 0),
        "the pool is idle at full capacity"
    );
}

/// Keeps the default panic hook from printing the 1,000 expected panics of (g).
fn silence_expected_panics(marker: &'static str) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let text = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or_default();
            if !text.contains(marker) {
                previous(info);
            }
        }));
    });
}

/// (g) 1,000 panicking tasks: each fails as `TaskPanicked`, then the pool is idle at its
/// full capacity, runs `concurrency` tasks at once again, and a normal task still runs.
#[actix_rt::test]
async fn after_a_thousand_panicking_tasks_the_pool_has_its_full_capacity() {
    init();
    const MARKER: &str = "reliability: an expected panic";
    silence_expected_panics(MARKER);
    let started = Instant::now();
    let concurrency = 4;
    let config = config(concurrency);
    let broker = connect(&config).await;
    let queue = unique_queue("reliability-panics");
    let (builder, mut received) = test_worker(&broker, &config, &queue);
    let worker = builder
        .register::<Panic>()
        .register::<Held>()
        .register::<Add>()
        .start()
        .await
        .expect("the worker starts");
    let producer = Producer::new(broker.clone(), &config);
    let mut panicking = Vec::new();
    for chunk in 0..10 {
        let sends = (chunk * 100..(chunk + 1) * 100).map(|i| {
            let signature = Signature::of::<Panic>(&(format!("{MARKER} #{i}"),))
                .expect("encodes")
                .with_queue(queue.clone());
            producer.send_signature(signature)
        });
        for sent in futures::future::join_all(sends).await {
            panicking.push(sent.expect("a panicking task is sent"));
        }
    }
    let mut by_id = HashMap::new();
    let complete = gather(&mut received, &mut by_id, |by_id| {
        panicking.iter().all(|id| by_id.contains_key(id))
    })
    .await;
    let panicked = panicking
        .iter()
        .filter(|id| {
            matches!(
                by_id.get(*id).map(Vec::as_slice),
                Some([TaskEventKind::Failed { error }]) if error.exc_type == "TaskPanicked"
            )
        })
        .count();
    let after_panics = worker.pool_status().await.expect("the pool answers");

    // Every slot still works: `concurrency` tasks run at once. They run until the test
    // lets them go, so all of them must be running together at some point, whatever the
    // machine's speed (no task duration to outlast the sends).
    let recovered_at = Instant::now();
    let mut slow = Vec::new();
    for _ in 0..concurrency {
        let signature = Signature::new(Held::NAME)
            .with_args(vec![json!(queue)])
            .with_queue(queue.clone());
        slow.push(producer.send_signature(signature).await.expect("sent"));
    }
    let deadline = Instant::now() + WAIT;
    let mut busiest = 0;
    while busiest < concurrency && Instant::now() < deadline {
        busiest = busiest.max(worker.pool_status().await.expect("status").running);
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    open_gate(&queue);
    let slow_done = gather(&mut received, &mut by_id, |by_id| {
        slow.iter().all(|id| by_id.contains_key(id))
    })
    .await;
    let add = producer
        .send_signature(
            Signature::of::<Add>(&AddArgs { x: 1, y: 2 })
                .expect("encodes")
                .with_queue(queue.clone()),
        )
        .await
        .expect("sent");
    let add_ran = gather(&mut received, &mut by_id, |by_id| by_id.contains_key(&add)).await;
    let normal_after = recovered_at.elapsed();
    let end_status = worker.pool_status().await.expect("the pool answers");
    worker.stop().await.expect("stop");
    delete_queues(&broker, &[&queue]).await;
    broker.close().await.expect("close");

    println!(
        "reliability (g: panicking tasks): tasks {} panicking, {} failed as TaskPanicked, \
         pool after them {:?}, {} of {concurrency} slots busy at once afterwards, \
         normal tasks done {} ms after, took {:.1} s",
        panicking.len(),
        panicked,
        after_panics,
        busiest,
        normal_after.as_millis(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        complete,
        "not every panicking task was reported within {WAIT:?}"
    );
    assert_eq!(
        panicked,
        panicking.len(),
        "every panic is one TaskPanicked failure"
    );
    assert_eq!(
        (
            after_panics.capacity,
            after_panics.running,
            after_panics.waiting
        ),
        (concurrency, 0, 0),
        "after the panics the pool is idle at full capacity"
    );
    assert_eq!(
        busiest, concurrency,
        "every slot of the pool runs a task again after the panics"
    );
    assert!(slow_done, "the slow tasks after the panics did not finish");
    assert!(add_ran, "a normal task after the panics did not run");
    assert!(
        matches!(
            by_id.get(&add).map(Vec::as_slice),
            Some([TaskEventKind::Succeeded { result }]) if *result == json!(3)
        ),
        "the normal task answers 3: {:?}",
        by_id.get(&add)
    );
    assert_eq!(
        (end_status.running, end_status.waiting),
        (0, 0),
        "the pool ends idle"
    );
}
