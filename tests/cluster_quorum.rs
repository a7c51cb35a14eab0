//! Quorum queues (`CELERIAC_DEFAULT_QUEUE_TYPE=quorum`) with a delivery limit
//! (`CELERIAC_QUORUM_DELIVERY_LIMIT`): a poison message that kills every worker that takes
//! it is dead-lettered after the limit, instead of killing workers forever. Runs on the
//! node of scripts/test (a quorum queue works on one node too). The first worker process
//! declares the queue from those two variables, as a deployment would, and the test checks
//! the declaration before anything else touches the queue.

mod common;

use std::process::Stdio;
use std::time::Duration;

use celeriac::actors::QueueSpec;
use celeriac::{Config, Producer, QueueType, Signature};
use serde_json::json;
use std::path::Path;

use common::*;

/// The delivery limit under test.
const LIMIT: u32 = 2;
/// Generous deadlines for one step (a worker process starting and taking the message).
const STEP: Duration = Duration::from_secs(60);

/// An `interop` worker process on `queue`: late acks, one task at a time, quorum queues
/// with the delivery limit, all from the environment as a deployment would set them.
fn worker_process(queue: &str) -> KillOnDrop {
    let child = common::example_command("interop")
        .env("CELERIAC_BROKER_URL", amqp_url())
        .env("CELERIAC_QUEUE", queue)
        .env("CELERIAC_ACKS_LATE", "true")
        .env("CELERIAC_CONCURRENCY", "1")
        .env("CELERIAC_PREFETCH_MULTIPLIER", "1")
        .env("CELERIAC_DEFAULT_QUEUE_TYPE", "quorum")
        .env("CELERIAC_QUORUM_DELIVERY_LIMIT", LIMIT.to_string())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the interop example starts");
    KillOnDrop(child)
}

#[actix_rt::test]
async fn a_poison_message_that_kills_its_workers_is_dead_lettered_after_the_delivery_limit() {
    let config = Config {
        default_queue_type: QueueType::Quorum,
        quorum_delivery_limit: Some(LIMIT),
        ..common::config(1)
    };
    let broker = connect(&config).await;
    let queue = unique_queue("quorum-poison");
    let dead = format!("{queue}.dead");
    let dir = std::env::var("CELERIAC_TEST_RABBIT_DIR")
        .expect("CELERIAC_TEST_RABBIT_DIR is not set: run scripts/test");
    // Dead-lettering by policy, as operators set it up: the declaration stays Celery's.
    let policy = json!({"dead-letter-exchange": "", "dead-letter-routing-key": dead}).to_string();
    let pattern = format!("^{}$", queue.replace('.', "\\."));
    let set = (dir.clone(), queue.clone(), pattern.clone(), policy.clone());
    actix_rt::task::spawn_blocking(move || {
        node_ctl(
            std::path::Path::new(&set.0),
            &["set_policy", &set.1, &set.2, &set.3, "--apply-to", "queues"],
        )
    })
    .await
    .expect("rabbitmqctl thread");
    broker
        .declare_queue(QueueSpec::durable(&dead))
        .await
        .expect("the dead-letter queue");
    // The first worker declares the queue, from its environment alone.
    let mut first_worker = Some(worker_process(&queue));
    let declared = wait_for_declaration(&dir, &queue).await;
    assert!(
        declared.contains("quorum") && declared.contains(&format!("\"x-delivery-limit\",{LIMIT}")),
        "the worker did not declare a quorum queue with x-delivery-limit {LIMIT} from \
         CELERIAC_DEFAULT_QUEUE_TYPE and CELERIAC_QUORUM_DELIVERY_LIMIT: {declared}"
    );
    // The producer declares it the same way (an equivalent declaration, else 406).
    let producer = Producer::new(broker.clone(), &config);
    // interop.block sleeps its thread an hour: the test kills its worker meanwhile, as a
    // message that crashes the process would.
    producer
        .send_signature(
            Signature::new("interop.block")
                .with_args(vec![json!(3600.0)])
                .with_queue(&queue),
        )
        .await
        .expect("the poison task is sent");

    let mut kills = 0u32;
    loop {
        let mut worker = first_worker
            .take()
            .unwrap_or_else(|| worker_process(&queue));
        let mut taken = false;
        wait_for_counts(
            "the poison message to be taken by a worker, or dead-lettered",
            STEP,
            &[&queue, &dead],
            |counts| {
                taken = counts[0] == (0, 1);
                taken || counts[1] == (1, 0)
            },
        )
        .await;
        if !taken {
            worker.terminate(STEP).await;
            break;
        }
        worker.signal(libc::SIGKILL);
        worker.wait_exit(STEP).await;
        kills += 1;
        // The broker takes the message back once it has seen the connection go.
        wait_for_counts(
            "the killed worker's message to be returned or dead-lettered",
            STEP,
            &[&queue, &dead],
            |counts| counts[0].1 == 0 && (counts[0].0 == 1 || counts[1] == (1, 0)),
        )
        .await;
        assert!(
            kills <= LIMIT + 1,
            "the poison message was delivered {kills} times, past the delivery limit {LIMIT}"
        );
    }
    println!(
        "quorum poison: dead-lettered after {kills} workers were killed (delivery limit {LIMIT})"
    );
    // RabbitMQ dead-letters a message returned more than `LIMIT` times: at its
    // `LIMIT + 1`-th return, so exactly that many workers took it.
    assert_eq!(
        kills,
        LIMIT + 1,
        "dead-lettered after {kills} deliveries, not once the limit {LIMIT} was passed"
    );
    wait_for_counts(
        "the quorum queue to be empty",
        STEP,
        &[&queue, &dead],
        |counts| counts == [(0, 0), (1, 0)],
    )
    .await;
    let cleanup = (dir, queue.clone());
    actix_rt::task::spawn_blocking(move || {
        node_ctl(
            std::path::Path::new(&cleanup.0),
            &["clear_policy", &cleanup.1],
        )
    })
    .await
    .expect("rabbitmqctl thread");
    delete_queues(&broker, &[&queue, &dead]).await;
}

/// The `type` and `arguments` columns of `rabbitmqctl list_queues` for `queue`, once it
/// exists (the worker process declares it as it starts).
async fn wait_for_declaration(dir: &str, queue: &str) -> String {
    let declared = std::cell::RefCell::new(None);
    wait_until_async(
        &format!("the worker process to declare queue {queue}"),
        STEP,
        || {
            let (dir, queue) = (dir.to_string(), queue.to_string());
            let found = &declared;
            async move {
                let listing = actix_rt::task::spawn_blocking(move || {
                    node_ctl(
                        Path::new(&dir),
                        &[
                            "list_queues",
                            "-q",
                            "--no-table-headers",
                            "name",
                            "type",
                            "arguments",
                        ],
                    )
                    .lines()
                    .find_map(|line| {
                        let (name, rest) = line.split_once('\t')?;
                        (name == queue).then(|| rest.to_string())
                    })
                })
                .await
                .expect("rabbitmqctl thread");
                let exists = listing.is_some();
                *found.borrow_mut() = listing;
                exists
            }
        },
    )
    .await;
    declared.into_inner().unwrap_or_default()
}
