//! Heartbeats and half-open connections: the heartbeat celeriac asks for is the one
//! RabbitMQ uses, and a worker whose connection goes silent without closing (the test
//! proxy holds its bytes, both ways, for good) notices by the missed heartbeats, connects
//! again, and loses no task.
//!
//! Duplicates are bounded by what can be unacked when the connection goes silent: the
//! broker hands a consumer at most one prefetch window (concurrency x prefetch multiplier)
//! of unacked messages, and only those come back after the fault. One fault: at most one
//! window of duplicate executions.

mod common;

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use celeriac::{
    connect_broker, task_event_channel, Config, Producer, Signature, TaskEventKind, WorkerSystem,
};
use futures::StreamExt;
use serde_json::json;

use common::proxy::Proxy;
use common::*;

/// Tasks sent.
const TASKS: usize = 1_000;
/// Each task sleeps this long, so that the run lasts across the fault.
const TASK_MS: u64 = 5;
const CONCURRENCY: usize = 2;
const PREFETCH_MULTIPLIER: usize = 2;
/// The short heartbeat of the worker: silence is noticed after about two of them.
const HEARTBEAT: Duration = Duration::from_secs(2);
/// How long each phase may take on a loaded machine before the test fails.
const PHASE: Duration = Duration::from_secs(90);

/// The node of scripts/test (for rabbitmqctl).
fn node_dir() -> String {
    std::env::var("CELERIAC_TEST_RABBIT_DIR")
        .ok()
        .filter(|dir| !dir.is_empty())
        .expect("CELERIAC_TEST_RABBIT_DIR is not set: run scripts/test")
}

/// The heartbeat timeout RabbitMQ lists for the connection named `name` (its
/// `connection_name` client property), in seconds; `None` while it is not listed.
fn listed_heartbeat(dir: &str, name: &str) -> Option<u64> {
    let listing = node_ctl(
        Path::new(dir),
        &[
            "list_connections",
            "-q",
            "--no-table-headers",
            "timeout",
            "client_properties",
        ],
    );
    let line = listing.lines().find(|line| line.contains(name))?;
    let timeout = line.split('\t').next()?;
    Some(timeout.trim().parse().expect("a timeout in seconds"))
}

/// Connects with `heartbeat` and answers what RabbitMQ lists for the connection.
async fn negotiated(heartbeat: Duration) -> u64 {
    let name = format!("celeriac-heartbeat-{}", uuid::Uuid::new_v4().simple());
    let config = Config {
        broker_url: amqp_url(),
        broker_heartbeat: heartbeat,
        connection_name: name.clone(),
        ..Config::default()
    };
    let broker = connect(&config).await;
    let dir = node_dir();
    let deadline = Instant::now() + Duration::from_secs(30);
    let listed = loop {
        let (dir, wanted) = (dir.clone(), name.clone());
        let listed = actix_rt::task::spawn_blocking(move || listed_heartbeat(&dir, &wanted))
            .await
            .expect("the rabbitmqctl thread");
        if let Some(listed) = listed {
            break listed;
        }
        assert!(
            Instant::now() < deadline,
            "RabbitMQ did not list connection {name} within 30 s"
        );
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    };
    broker.close().await.expect("the connection closes");
    listed
}

#[actix_rt::test]
async fn the_heartbeat_asked_for_is_the_one_rabbitmq_uses() {
    assert_eq!(
        negotiated(Config::default().broker_heartbeat).await,
        60,
        "the default"
    );
    assert_eq!(negotiated(HEARTBEAT).await, 2, "a 2 s heartbeat");
    // Zero asks for none; lapin then follows the broker's proposal (RabbitMQ: 60 s).
    assert_eq!(
        negotiated(Duration::ZERO).await,
        60,
        "no heartbeat asked for"
    );
}

/// The proxy's `stall_open`: connections open when it is called hold their bytes, both
/// ways, and stay open; connections made afterwards are forwarded.
#[test]
fn stall_open_holds_open_connections_and_forwards_new_ones() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let upstream = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut buffer = [0u8; 64];
                while let Ok(read) = stream.read(&mut buffer) {
                    if read == 0 || stream.write_all(&buffer[..read]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    let proxy = Proxy::start(upstream);
    let echo = |stream: &mut TcpStream, text: &[u8]| -> std::io::Result<Vec<u8>> {
        stream.write_all(text)?;
        let mut back = vec![0u8; text.len()];
        stream.read_exact(&mut back)?;
        Ok(back)
    };
    let mut old = TcpStream::connect(proxy.addr()).expect("connect");
    old.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("read timeout");
    assert_eq!(echo(&mut old, b"before").expect("an echo"), b"before");
    assert_eq!(proxy.stall_open(), 1);
    assert!(
        echo(&mut old, b"held").is_err(),
        "a stalled connection forwarded bytes"
    );
    let mut new = TcpStream::connect(proxy.addr()).expect("connect");
    new.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    assert_eq!(
        echo(&mut new, b"after").expect("a new connection is forwarded"),
        b"after"
    );
    assert_eq!(proxy.active(), 2, "the stalled connection was closed");
}

/// Successful executions per task id, from the worker's task events.
type Executions = Rc<RefCell<HashMap<String, u32>>>;

/// Starts a worker for `test.slow` on `queue`; its successes are counted by task id.
async fn start_worker(
    broker: &celeriac::BrokerClient,
    config: &Config,
    queue: &str,
) -> (WorkerSystem, Executions) {
    let executions = Executions::default();
    let (events, mut received) = task_event_channel();
    let tally = executions.clone();
    actix_rt::spawn(async move {
        while let Some(event) = received.next().await {
            if let TaskEventKind::Succeeded { .. } = event.kind {
                *tally
                    .borrow_mut()
                    .entry(event.task_id.unwrap_or_default())
                    .or_default() += 1;
            }
        }
    });
    let worker = WorkerSystem::builder(broker.clone(), config)
        .queue(queue)
        .register::<Slow>()
        .on_task_event(events)
        .start()
        .await
        .unwrap_or_else(|error| panic!("the worker did not start: {error}"));
    (worker, executions)
}

/// Waits until `condition` holds, failing after `PHASE` with `what` and `state()`.
async fn wait_for(what: &str, mut condition: impl FnMut() -> bool, state: impl Fn() -> String) {
    let deadline = Instant::now() + PHASE;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {PHASE:?} waiting for {what} ({})",
            state()
        );
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The worker's connection goes silent (half-open) mid-run: with a 2 s heartbeat, lapin
/// notices the missed heartbeats, the connection is made again (a new one through the
/// proxy), the broker redelivers what was unacked on the silent one, and every task runs.
#[actix_rt::test]
async fn a_silent_worker_connection_is_noticed_by_heartbeat_and_loses_no_task() {
    init_logging();
    let started = Instant::now();
    let proxy = Proxy::for_url(&amqp_url());
    let config = Config {
        broker_url: proxy.url(&amqp_url()),
        broker_heartbeat: HEARTBEAT,
        concurrency: CONCURRENCY,
        prefetch_multiplier: Some(PREFETCH_MULTIPLIER),
        connection_name: "celeriac-reliability-heartbeat".into(),
        ..Config::default()
    };
    let window = CONCURRENCY * PREFETCH_MULTIPLIER;
    let producer_config = Config {
        broker_url: amqp_url(),
        ..config.clone()
    };
    let producer_broker = connect_broker(&producer_config)
        .await
        .expect("the broker, directly");
    let worker_broker = connect_broker(&config)
        .await
        .expect("the broker through the proxy");
    let queue = unique_queue("reliability-heartbeat");
    let producer = Producer::new(producer_broker.clone(), &producer_config);
    let sends = (0..TASKS).map(|_| {
        producer.send_signature(
            Signature::new("test.slow")
                .with_args(vec![json!(TASK_MS)])
                .with_queue(&queue),
        )
    });
    let sent: Vec<String> = futures::stream::iter(sends)
        .buffer_unordered(32)
        .map(|sent| sent.unwrap_or_else(|error| panic!("a send failed: {error}")))
        .collect()
        .await;
    let (worker, executions) = start_worker(&worker_broker, &config, &queue).await;
    let ran = || executions.borrow().len();
    let state = || {
        format!(
            "{} of {TASKS} tasks ran, the proxy accepted {} connections",
            executions.borrow().len(),
            proxy.connections()
        )
    };

    wait_for("a third of the tasks to run", || ran() >= TASKS / 3, state).await;
    let connections_before = proxy.connections();
    let stalled = proxy.stall_open();
    let stalled_at = Instant::now();
    let ran_at_stall = ran();
    assert!(
        stalled >= 1,
        "no connection was open through the proxy to stall"
    );
    assert!(
        ran_at_stall < TASKS,
        "every task ran before the stall: the run is too short to test anything"
    );
    wait_for(
        "the worker to connect again after its connection went silent",
        || proxy.connections() > connections_before,
        state,
    )
    .await;
    let noticed_after = stalled_at.elapsed();
    wait_for(
        "every task to run",
        || sent.iter().all(|id| executions.borrow().contains_key(id)),
        state,
    )
    .await;
    let recovered_after = stalled_at.elapsed();

    let executions = executions.borrow().clone();
    let lost = sent
        .iter()
        .filter(|id| !executions.contains_key(*id))
        .count();
    let duplicates: u32 = executions.values().map(|count| count - 1).sum();
    println!(
        "reliability (heartbeat): {TASKS} tasks, 1 silent connection at {ran_at_stall} done, \
         heartbeat {HEARTBEAT:?}: new connection after {noticed_after:.1?}, all done \
         {recovered_after:.1?} after the stall; lost {lost}, duplicates {duplicates} \
         (bound {window}); {} connections through the proxy; took {:.1?}",
        proxy.connections(),
        started.elapsed()
    );
    assert_eq!(lost, 0, "tasks lost");
    assert!(
        duplicates as usize <= window,
        "{duplicates} duplicate executions, more than one prefetch window ({window})"
    );
    assert_eq!(executions.len(), TASKS, "tasks ran that were never sent");

    worker.stop().await.expect("the worker stops");
    delete_queues(&producer_broker, &[&queue]).await;
    let _ = tokio::time::timeout(Duration::from_secs(10), worker_broker.close()).await;
    producer_broker
        .close()
        .await
        .expect("the connection closes");
}
