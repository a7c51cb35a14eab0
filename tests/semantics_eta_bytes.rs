//! The byte limit of held ETA tasks (`Config::eta_task_bytes_limit`) on a real RabbitMQ: a
//! worker whose limit fits three large messages holds three of a burst and defers the rest
//! to the wait queue; every task still runs once, not before its ETA; and the bytes are
//! given back when the held tasks run, so a second burst is held again.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use celeriac::{Producer, Signature, Task, TaskContext, TaskError, TaskEvent, TaskEventKind};

use common::*;

const WAIT: Duration = Duration::from_secs(30);

/// Characters of the string argument: each message's body is at least this long.
const ARGUMENT: usize = 100_000;
/// What a message is counted for beyond its argument: the rest of the body, the
/// properties and the headers (`argsrepr` is truncated to 1 KiB), well under this.
const OVERHEAD_AT_MOST: usize = 16 * 1024;
/// Tasks the limit fits: `HELD * (ARGUMENT + OVERHEAD_AT_MOST) <= LIMIT < (HELD + 1) *
/// ARGUMENT`, so exactly this many are held whatever the headers weigh.
const HELD: usize = 3;
const LIMIT: usize = HELD * ARGUMENT + ARGUMENT / 2;
/// Tasks in the first burst.
const BURST: usize = 8;

/// `eta.blob(text)`: answers how many milliseconds after its ETA it started.
struct Blob;

impl Task for Blob {
    const NAME: &'static str = "eta.blob";
    type Args = (String,);
    type Output = i64;
    async fn run(ctx: TaskContext, (_text,): (String,)) -> Result<i64, TaskError> {
        let eta = ctx
            .eta
            .ok_or_else(|| TaskError::value_error("eta.blob needs an eta"))?;
        Ok((chrono::Utc::now() - eta).num_milliseconds())
    }
}

/// Sends `count` blobs due in `countdown`; answers their ids and a time no later than
/// the earliest of their ETAs.
async fn send_burst(
    producer: &Producer,
    queue: &str,
    count: usize,
    countdown: Duration,
) -> (Vec<String>, chrono::DateTime<chrono::Utc>) {
    let due = chrono::Utc::now() + chrono::Duration::from_std(countdown).expect("in range");
    let mut ids = Vec::new();
    for _ in 0..count {
        let signature = Signature::of::<Blob>(&("x".repeat(ARGUMENT),))
            .expect("encodes")
            .with_countdown(countdown)
            .with_queue(queue.to_string());
        ids.push(producer.send_signature(signature).await.expect("sent"));
    }
    (ids, due)
}

/// For each of `ids`: how many times it was deferred and how it ran.
fn tally<'a>(seen: &'a [TaskEvent], ids: &[String]) -> HashMap<&'a str, (usize, Vec<i64>)> {
    let mut tally: HashMap<&str, (usize, Vec<i64>)> = HashMap::new();
    for event in seen {
        let Some(id) = event
            .task_id
            .as_deref()
            .filter(|id| ids.iter().any(|i| i == id))
        else {
            continue;
        };
        let entry = tally.entry(id).or_default();
        match &event.kind {
            TaskEventKind::Deferred { .. } => entry.0 += 1,
            TaskEventKind::Succeeded { result } => entry
                .1
                .push(result.as_i64().expect("eta.blob answers milliseconds")),
            _ => {}
        }
    }
    tally
}

/// Waits until each of `ids` succeeded, then asserts that each ran exactly once, not
/// before its ETA, and that exactly `deferred` of them were deferred (once each: deferred
/// tasks come back after the horizon, past their ETA, and run at once).
async fn assert_burst(
    events: &mut Events,
    ids: &[String],
    due: chrono::DateTime<chrono::Utc>,
    deferred: usize,
    what: &str,
) {
    events
        .wait_until(WAIT, &format!("every task of {what} to succeed"), |seen| {
            let tally = tally(seen, ids);
            ids.iter().all(|id| {
                tally
                    .get(id.as_str())
                    .is_some_and(|(_, runs)| !runs.is_empty())
            })
        })
        .await;
    events.take_ready();
    let tally = tally(events.seen(), ids);
    // The timing this relies on: every delivery of the burst was received (and placed,
    // in the same poll) before the burst's ETA; a delivery placed after it runs at once,
    // neither held nor deferred, and would change the counts below. Say so rather than
    // miscount. (The time an event is taken off the channel is no earlier than its
    // emission.)
    for id in ids {
        let received = events
            .received_at(|event| {
                event.task_id.as_deref() == Some(id.as_str())
                    && matches!(event.kind, TaskEventKind::Received(_))
            })
            .expect("a Received event for every task");
        assert!(
            received < due,
            "task {id} of {what} was received at {received}, after its ETA {due}: this \
             machine did not take in {} deliveries within the countdown, so the counts \
             below would not show the limit",
            ids.len()
        );
    }
    for (id, (_, runs)) in &tally {
        assert_eq!(
            runs.len(),
            1,
            "task {id} of {what} ran {} times",
            runs.len()
        );
        assert!(
            runs[0] >= -5,
            "task {id} of {what} started {} ms before its ETA",
            -runs[0]
        );
    }
    let deferred_ids: Vec<_> = tally.iter().filter(|(_, (times, _))| *times > 0).collect();
    assert!(
        deferred_ids.iter().all(|(_, (times, _))| *times == 1),
        "a task of {what} was deferred more than once: {deferred_ids:?}"
    );
    assert_eq!(
        deferred_ids.len(),
        deferred,
        "{what}: {} of {} tasks were deferred, expected {deferred} (the byte limit of \
         {LIMIT} B fits {HELD} messages of {ARGUMENT} to {} B); times each task was deferred: {:?}",
        deferred_ids.len(),
        ids.len(),
        ARGUMENT + OVERHEAD_AT_MOST,
        tally
            .iter()
            .map(|(id, (times, _))| (*id, *times))
            .collect::<Vec<_>>()
    );
}

#[actix_rt::test]
async fn the_byte_limit_holds_what_fits_defers_the_rest_and_every_task_runs_once() {
    // The horizon (the wait queue's TTL) is longer than the countdown: a deferred task
    // comes back past its ETA and runs at once. The window (2 x 4 = 8) takes the burst in.
    let config = celeriac::Config {
        eta_horizon: Duration::from_millis(4000),
        eta_task_bytes_limit: LIMIT,
        send_events: true,
        ..config(2)
    };
    let countdown = Duration::from_millis(3000);
    let broker = connect(&config).await;
    let queue = unique_queue("eta-bytes");
    let wait_queue = format!("{queue}.celeriac.wait.4000ms");
    let (builder, mut events) = test_worker(&broker, &config, &queue);
    let worker = builder.register::<Blob>().start().await.expect("worker");
    let producer = Producer::new(broker.clone(), &config);

    // A burst of eight: the first three fit the limit and are held; the five others would
    // pass it and are deferred to the wait queue.
    let (first, due) = send_burst(&producer, &queue, BURST, countdown).await;
    assert_burst(&mut events, &first, due, BURST - HELD, "the first burst").await;

    // The three held tasks ran and gave their bytes back (the five deferred ones were
    // never counted): three more are all held again, none deferred.
    let (second, due) = send_burst(&producer, &queue, HELD, countdown).await;
    assert_burst(&mut events, &second, due, 0, "the second burst").await;

    // Nothing left anywhere: no task is waiting to run a second time.
    wait_for_counts(
        "the task queue and the wait queue to be empty and settled",
        WAIT,
        &[&queue, &wait_queue],
        |counts| counts == [(0, 0), (0, 0)],
    )
    .await;
    worker.stop().await.expect("stop");
    delete_queues(&broker, &[&queue, &wait_queue]).await;
}
