//! Beat against a real RabbitMQ, through the `celeriac beat` binary: two instances send
//! each run once; the leader killed, the other takes over and no run is lost or doubled; a
//! crontab entry fires at its minute; a restart neither resends the last run nor bursts
//! the missed ones.
//!
//! Runs are counted by task id: each run's id is `run_id(beat, entry, slot)`, so the ids
//! read back map to the slots that were sent.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use celeriac::actors::broker::OpenConsumer;
use celeriac::beat::{leader, run_id};
use celeriac::BrokerClient;
use chrono::{DateTime, Timelike, Utc};
use common::KillOnDrop;
use futures::StreamExt;

/// How often the instances under test try to take the lead.
const LEADER_RETRY: Duration = Duration::from_millis(200);

/// The entry every schedule here has.
const ENTRY: &str = "tick";

/// A private directory for one test's schedule and logs.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "celeriac-beat-{test}-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    dir
}

/// Writes a schedule of one entry, `tick`, with `timing` (`every = "1s"`, say).
fn schedule(dir: &Path, queue: &str, timing: &str) -> PathBuf {
    let path = dir.join("schedule.toml");
    let text = format!(
        "[[entry]]\nname = \"{ENTRY}\"\ntask = \"beat.tick\"\nargs = [1, 2]\n\
         queue = \"{queue}\"\n{timing}\n"
    );
    std::fs::write(&path, text).expect("write the schedule");
    path
}

/// A running `celeriac beat`, its log in `log`.
struct BeatProcess {
    child: KillOnDrop,
    log: PathBuf,
}

impl BeatProcess {
    /// Starts `celeriac beat --schedule FILE --name NAME` against the test broker.
    fn start(schedule: &Path, name: &str, label: &str) -> Self {
        let log = schedule.with_file_name(format!("{label}.log"));
        let file = std::fs::File::create(&log).expect("create the log file");
        let child = Command::new(env!("CARGO_BIN_EXE_celeriac"))
            .arg("beat")
            .arg("--schedule")
            .arg(schedule)
            .args(["--name", name, "--leader-retry"])
            .arg(format!("{}ms", LEADER_RETRY.as_millis()))
            .env("CELERIAC_BROKER_URL", common::amqp_url())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start celeriac beat");
        BeatProcess {
            child: KillOnDrop(child),
            log,
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until it has connected and started trying to lead.
    async fn wait_started(&self) {
        common::wait_until(
            "celeriac beat to connect and start trying to lead",
            Duration::from_secs(30),
            || self.log_text().contains("trying to lead"),
        )
        .await;
    }

    /// SIGTERM, then waits for a clean exit.
    async fn stop(&mut self) {
        let status = self.child.terminate(Duration::from_secs(30)).await;
        assert!(
            status.success(),
            "celeriac beat exited with {status}:\n{}",
            self.log_text()
        );
    }
}

/// Ready messages in `queue` (0 before the first run declared it).
async fn count(broker: &BrokerClient, queue: &str) -> u32 {
    broker.count_messages(queue).await.unwrap_or(0)
}

/// Waits until `queue` holds at least `at_least` runs.
async fn wait_runs(broker: &BrokerClient, queue: &str, at_least: u32) {
    common::wait_until_async(
        &format!("{at_least} runs in {queue}"),
        Duration::from_secs(90),
        || async { count(broker, queue).await >= at_least },
    )
    .await;
}

/// The task ids of every message in `queue` (read once nothing publishes to it any more).
async fn read_ids(broker: &BrokerClient, queue: &str) -> Vec<String> {
    let total = count(broker, queue).await;
    if total == 0 {
        return Vec::new();
    }
    let mut stream = broker
        .open_consumer
        .send(OpenConsumer {
            queue: queue.to_string(),
            prefetch: u16::try_from(total).expect("a small queue"),
            consumer_tag: format!("beat-test-{}", uuid::Uuid::new_v4().simple()),
            global_qos: false,
        })
        .await
        .expect("the broker actor")
        .expect("consume the runs");
    let mut ids = Vec::new();
    for _ in 0..total {
        let delivery = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .expect("a run that the queue counted is delivered")
            .expect("the consumer is open")
            .expect("a delivery");
        let id = delivery
            .properties
            .correlation_id()
            .as_ref()
            .map(|id| id.to_string())
            .expect("a Celery message has its task id as correlation_id");
        ids.push(id);
    }
    ids
}

/// Maps each id to the slot it names (slots every `period` in `from..=to`); an id of no
/// slot there fails the test.
fn slots_of(
    ids: &[String],
    name: &str,
    period: Duration,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<DateTime<Utc>> {
    let step = i64::try_from(period.as_millis()).expect("a short period");
    let mut by_id = HashMap::new();
    let mut millis = from.timestamp_millis().div_euclid(step) * step;
    while millis <= to.timestamp_millis() + step {
        let slot = DateTime::from_timestamp_millis(millis).expect("a valid time");
        by_id.insert(run_id(name, ENTRY, slot), slot);
        millis += step;
    }
    let mut slots: Vec<_> = ids
        .iter()
        .map(|id| {
            *by_id
                .get(id)
                .unwrap_or_else(|| panic!("task id {id} is no run of {ENTRY} in {from}..{to}"))
        })
        .collect();
    slots.sort();
    slots
}

/// How many times each slot was sent.
fn tally(slots: &[DateTime<Utc>]) -> BTreeMap<DateTime<Utc>, usize> {
    let mut tally = BTreeMap::new();
    for slot in slots {
        *tally.entry(*slot).or_insert(0) += 1;
    }
    tally
}

/// Fails unless the distinct slots follow each other every `period` with no gap.
fn assert_contiguous(slots: &BTreeMap<DateTime<Utc>, usize>, period: Duration, what: &str) {
    let keys: Vec<_> = slots.keys().collect();
    for pair in keys.windows(2) {
        assert_eq!(
            (*pair[1] - *pair[0]).to_std().ok(),
            Some(period),
            "{what}: a run is missing between {} and {} (slots sent: {keys:?})",
            pair[0],
            pair[1]
        );
    }
}

/// Deletes the queues a test used.
async fn clean_up(broker: &BrokerClient, name: &str, queue: &str) {
    common::delete_queues(
        broker,
        &[
            queue,
            &format!("celeriac.beat.{name}.state"),
            &format!("celeriac.beat.{name}.presence"),
        ],
    )
    .await;
}

#[actix_rt::test]
async fn two_instances_send_each_run_once() {
    let broker = common::connect(&common::config(1)).await;
    let name = format!("two-{}", uuid::Uuid::new_v4().simple());
    let queue = common::unique_queue("beat-two");
    let dir = scratch("two");
    let file = schedule(&dir, &queue, "every = \"1s\"");
    let from = Utc::now();
    let mut first = BeatProcess::start(&file, &name, "first");
    let mut second = BeatProcess::start(&file, &name, "second");
    // Both are contending before the runs are counted.
    first.wait_started().await;
    second.wait_started().await;
    let before = count(&broker, &queue).await;

    wait_runs(&broker, &queue, before + 10).await;
    first.stop().await;
    second.stop().await;
    let to = Utc::now();

    let ids = read_ids(&broker, &queue).await;
    let slots = tally(&slots_of(&ids, &name, Duration::from_secs(1), from, to));
    let doubled: Vec<_> = slots.iter().filter(|(_, sent)| **sent > 1).collect();
    assert!(doubled.is_empty(), "runs sent twice: {doubled:?}");
    assert!(slots.len() >= 10, "only {} runs: {slots:?}", slots.len());
    assert_contiguous(&slots, Duration::from_secs(1), "two instances");
    clean_up(&broker, &name, &queue).await;
}

#[actix_rt::test]
async fn the_leader_killed_the_other_takes_over_without_loss_or_double() {
    let broker = common::connect(&common::config(1)).await;
    let name = format!("kill-{}", uuid::Uuid::new_v4().simple());
    let queue = common::unique_queue("beat-kill");
    let dir = scratch("kill");
    let file = schedule(&dir, &queue, "every = \"1s\"");
    let from = Utc::now();
    // The first leads (it is alone), then the second waits as a follower.
    let mut leader = BeatProcess::start(&file, &name, "leader");
    wait_runs(&broker, &queue, 2).await;
    let mut follower = BeatProcess::start(&file, &name, "follower");
    follower.wait_started().await;
    let before = count(&broker, &queue).await;
    wait_runs(&broker, &queue, before + 1).await;

    leader.child.signal(libc::SIGKILL);
    let killed_at = Utc::now();
    leader.child.wait_exit(Duration::from_secs(30)).await;
    let at_kill = count(&broker, &queue).await;
    wait_runs(&broker, &queue, at_kill + 4).await;
    follower.stop().await;
    let to = Utc::now();
    assert!(
        follower.log_text().contains("leading"),
        "the follower never led:\n{}",
        follower.log_text()
    );

    let ids = read_ids(&broker, &queue).await;
    let slots = tally(&slots_of(&ids, &name, Duration::from_secs(1), from, to));
    // The leader publishes each run and its new last run in one AMQP transaction: killed
    // before the commit, neither is there (its successor sends the run); after it, both
    // are (its successor does not). No run is sent twice.
    let doubled: Vec<_> = slots.iter().filter(|(_, sent)| **sent > 1).collect();
    assert!(
        doubled.is_empty(),
        "runs sent twice (leader killed at {killed_at}): {doubled:?}"
    );
    // The follower claims within LEADER_RETRY (200 ms) of RabbitMQ seeing the leader's
    // connection close, much less than the 1 s period: at most one slot came due
    // meanwhile, and its catch-up run sends it. So no slot is missing.
    assert_contiguous(&slots, Duration::from_secs(1), "takeover");
    assert!(
        slots.keys().any(|slot| *slot > killed_at),
        "no run after the kill: {slots:?}"
    );
    clean_up(&broker, &name, &queue).await;
}

#[actix_rt::test]
async fn a_crontab_entry_fires_at_its_minute() {
    let broker = common::connect(&common::config(1)).await;
    let name = format!("cron-{}", uuid::Uuid::new_v4().simple());
    let queue = common::unique_queue("beat-cron");
    let dir = scratch("cron");
    // The first minute starting at least 10 s from now (the beat leads well before), read
    // in Kolkata time (UTC+05:30) so the zone matters.
    let zone = chrono_tz::Asia::Kolkata;
    let soon = Utc::now() + chrono::Duration::seconds(10);
    let target = (soon + chrono::Duration::seconds(60 - i64::from(soon.second())))
        .with_nanosecond(0)
        .expect("a valid time");
    let local = target.with_timezone(&zone);
    let timing = format!(
        "cron = \"{} {} * * *\"\ntimezone = \"Asia/Kolkata\"",
        local.minute(),
        local.hour()
    );
    let file = schedule(&dir, &queue, &timing);
    let mut beat = BeatProcess::start(&file, &name, "cron");

    wait_runs(&broker, &queue, 1).await;
    let seen_at = Utc::now();
    assert!(
        seen_at >= target,
        "the run for {target} was sent early (seen at {seen_at})"
    );
    beat.stop().await;
    let ids = read_ids(&broker, &queue).await;
    assert_eq!(
        ids,
        vec![run_id(&name, ENTRY, target)],
        "one run, for {target}"
    );
    clean_up(&broker, &name, &queue).await;
}

#[actix_rt::test]
async fn a_restart_resends_nothing_and_catches_up_once() {
    let broker = common::connect(&common::config(1)).await;
    let name = format!("restart-{}", uuid::Uuid::new_v4().simple());
    let queue = common::unique_queue("beat-restart");
    let dir = scratch("restart");
    let period = Duration::from_secs(2);
    let file = schedule(&dir, &queue, "every = \"2s\"");
    let from = Utc::now();
    let mut beat = BeatProcess::start(&file, &name, "before");
    wait_runs(&broker, &queue, 2).await;
    beat.stop().await;
    let stopped_at = Utc::now();
    let before = count(&broker, &queue).await;

    // The test holds the lock while the restarted instance starts, and releases it just
    // after a slot: at least two slots were missed by then, and the next is a whole period
    // away (the instance claims within LEADER_RETRY of the release).
    let lock = leader::lock_queue(&name);
    broker
        .declare_queue(lock.clone())
        .await
        .expect("the test takes the lock");
    let mut restarted = BeatProcess::start(&file, &name, "after");
    restarted.wait_started().await;
    let step = period.as_millis() as i64;
    let release_slot = DateTime::from_timestamp_millis(
        ((stopped_at.timestamp_millis() + 2 * step).div_euclid(step) + 1) * step,
    )
    .expect("a valid time");
    let release_at = release_slot + chrono::Duration::milliseconds(100);
    common::wait_until(
        "the release time (after two missed slots)",
        Duration::from_secs(30),
        || Utc::now() >= release_at,
    )
    .await;
    assert_eq!(
        count(&broker, &queue).await,
        before,
        "a run was sent while the test held the lock"
    );
    broker
        .delete_queue(&lock.name)
        .await
        .expect("the test releases the lock");

    wait_runs(&broker, &queue, before + 2).await;
    restarted.stop().await;
    let to = Utc::now();

    let ids = read_ids(&broker, &queue).await;
    let slots = tally(&slots_of(&ids, &name, period, from, to));
    let doubled: Vec<_> = slots.iter().filter(|(_, sent)| **sent > 1).collect();
    assert!(doubled.is_empty(), "runs sent twice: {doubled:?}");
    let (old, new): (Vec<_>, Vec<_>) = slots.keys().partition(|slot| **slot <= stopped_at);
    assert_eq!(
        old.len(),
        before as usize,
        "runs before the stop: {slots:?}"
    );
    assert_eq!(
        new.first().copied(),
        Some(&release_slot),
        "the restarted beat sends one catch-up run for the latest missed slot, \
         {release_slot}, and none for the slots before it: {slots:?}"
    );
    let old: BTreeMap<_, _> = old.into_iter().map(|slot| (*slot, 1)).collect();
    let new: BTreeMap<_, _> = new.into_iter().map(|slot| (*slot, 1)).collect();
    assert_contiguous(&old, period, "before the stop");
    assert_contiguous(&new, period, "after the restart");
    clean_up(&broker, &name, &queue).await;
}

#[actix_rt::test]
async fn a_claim_on_a_held_lock_is_taken_not_an_error() {
    let holder = common::connect(&common::config(1)).await;
    let other = common::connect(&common::config(1)).await;
    let lock = leader::lock_queue(&format!("claim-{}", uuid::Uuid::new_v4().simple()));
    let held = leader::claim(&holder, &lock)
        .await
        .expect("the first claim");
    assert_eq!(held, leader::Claim::Held);
    // RabbitMQ refuses the other connection with 405 RESOURCE_LOCKED.
    let refused = leader::claim(&other, &lock)
        .await
        .expect("a refusal is no error");
    assert_eq!(refused, leader::Claim::Taken);
    assert_eq!(
        leader::claim(&holder, &lock)
            .await
            .expect("the holder's claim"),
        leader::Claim::Held
    );
    holder.delete_queue(&lock.name).await.expect("release");
    let _ = holder.close().await;
    let _ = other.close().await;
}

#[actix_rt::test]
async fn a_transaction_publishes_together_and_reports_an_unroutable_message() {
    use celeriac::actors::OutboundMessage;
    use celeriac::actors::QueueSpec;
    use celeriac::BrokerError;

    let broker = common::connect(&common::config(1)).await;
    let first = common::unique_queue("beat-tx-a");
    let second = common::unique_queue("beat-tx-b");
    for queue in [&first, &second] {
        broker
            .declare_queue(QueueSpec::durable(queue.clone()))
            .await
            .expect("declare");
    }
    let to = |queue: &str| OutboundMessage {
        exchange: String::new(),
        routing_key: queue.to_string(),
        properties: Default::default(),
        body: b"{}".to_vec(),
    };
    broker
        .publish_transaction(vec![to(&first), to(&second)])
        .await
        .expect("committed");
    assert_eq!(count(&broker, &first).await, 1);
    assert_eq!(count(&broker, &second).await, 1);

    let nowhere = common::unique_queue("beat-tx-missing");
    let outcome = broker
        .publish_transaction(vec![to(&first), to(&nowhere)])
        .await;
    assert!(
        matches!(&outcome, Err(BrokerError::Unroutable { routing_key, .. }) if *routing_key == nowhere),
        "{outcome:?}"
    );
    common::delete_queues(&broker, &[&first, &second]).await;
    let _ = broker.close().await;
}

#[actix_rt::test]
async fn a_worker_runs_its_beat() {
    use celeriac::{Beat, Signature, Task};

    let config = common::config(1);
    let broker = common::connect(&config).await;
    let name = format!("worker-{}", uuid::Uuid::new_v4().simple());
    let queue = common::unique_queue("beat-worker");
    let beat = Beat::builder()
        .name(&name)
        .leader_retry(LEADER_RETRY)
        .every(
            ENTRY,
            Duration::from_secs(1),
            Signature::new(common::Add::NAME)
                .with_args(vec![2.into(), 3.into()])
                .with_queue(&queue),
        )
        .build()
        .expect("a valid schedule");
    let from = Utc::now();
    let (builder, mut events) = common::test_worker(&broker, &config, &queue);
    let worker = builder
        .register::<common::Add>()
        .beat(beat)
        .start()
        .await
        .expect("the worker starts");

    let mut ids = Vec::new();
    for _ in 0..2 {
        let event = events
            .take_next(
                Duration::from_secs(30),
                "a beat run succeeding",
                common::succeeded,
            )
            .await;
        ids.push(event.task_id.expect("a task id"));
    }
    worker.stop().await.expect("the worker stops");
    let slots = slots_of(&ids, &name, Duration::from_secs(1), from, Utc::now());
    assert_ne!(slots[0], slots[1], "two distinct runs: {ids:?}");
    clean_up(&broker, &name, &queue).await;
}

#[test]
fn a_bad_schedule_is_one_line_naming_the_entry_and_the_field() {
    let dir = scratch("bad");
    let path = dir.join("schedule.toml");
    std::fs::write(
        &path,
        "[[entry]]\nname = \"report\"\ntask = \"reports.daily\"\n\
         cron = \"30 9 * * *\"\ntimezone = \"Mars/Olympus\"\n",
    )
    .expect("write the schedule");
    let output = Command::new(env!("CARGO_BIN_EXE_celeriac"))
        .arg("beat")
        .arg("--schedule")
        .arg(&path)
        .env("CELERIAC_BROKER_URL", "amqp://127.0.0.1:1/%2f")
        .output()
        .expect("run celeriac beat");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains("entry \"report\": field `timezone`: unknown time zone \"Mars/Olympus\""),
        "{stderr}"
    );
}
