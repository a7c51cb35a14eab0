//! Scaling out on a 3-node RabbitMQ cluster (scripts/rabbitmq-cluster): the issue's
//! scenarios (h), (i) and (j), each with 5,000 tasks on a quorum queue, counted by id as in
//! tests/reliability_faults.rs.
//!
//! The producer and two workers (in this process, each with a broker connection of its
//! own) connect to given nodes through the failover list of all three nodes, that node
//! first; the queue is declared first through a given node, which then leads it (RabbitMQ
//! places a quorum queue's leader on the declaring node). Halfway through the sends, the
//! sender pauses at a gate and the fault is injected:
//! - (h) the node one worker is connected to is killed (`kill -9` of its Erlang VM), then
//!   booted again;
//! - (i) the node leading the queue is killed (and one worker with it), then booted again;
//! - (j) the node the producer is connected to stops its RabbitMQ application
//!   (`rabbitmqctl stop_app`) while sends are in flight, then starts it again.
//!
//! The bound on duplicate executions, from the mechanism: a worker whose node is lost fails
//! over and its unacked deliveries go back to the queue (a quorum queue returns the
//! messages checked out to a consumer whose channel is gone): each may run again, at most
//! one prefetch window (`CONCURRENCY x PREFETCH_MULTIPLIER`) per worker on the lost node.
//! Consumers on the surviving nodes keep their deliveries across a leader change (the
//! queue's state, checked-out messages included, is replicated). A producer whose node is
//! lost publishes again each message whose confirm was lost (at-least-once): at most the
//! sends in flight at the fault (the sender is paused at the gate, so these are counted).
//!
//! Each prints one summary line (run with --nocapture): tasks, lost, duplicates and their
//! bound, recovery time (from the fault to the first execution of a task sent after it).

mod common;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use celeriac::{
    connect_broker, task_event_channel, BrokerClient, Config, Producer, QueueType, Signature, Task,
    TaskEventKind, WorkerSystem,
};
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use serde_json::json;
use tokio::sync::watch;

use common::cluster::{blocking, Cluster};
use common::*;

/// Tasks accepted (send returned Ok) per scenario.
const TASKS: usize = 5_000;
/// Each worker's concurrency and prefetch multiplier: a window of 4.
const CONCURRENCY: usize = 2;
const PREFETCH_MULTIPLIER: usize = 2;
/// Sends in flight at once.
const IN_FLIGHT: usize = 32;
/// Accepted tasks not executed yet, at most: the load runs across the fault.
const BACKLOG: usize = 64;
/// The fault comes after this many sends.
const GATE: usize = TASKS / 2;
/// How long the sending phase may last (a generous deadline for a failure message, not a
/// performance bound).
const SEND_PHASE: Duration = Duration::from_secs(180);
/// How long the accepted tasks may take to execute after the sends.
const DRAIN: Duration = Duration::from_secs(60);

fn init() {
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .is_test(true)
        .try_init();
}

/// A client of the cluster connected to node `node` first, declaring quorum queues.
fn client_config(cluster: &Cluster, node: usize, name: &str) -> Config {
    Config {
        broker_url: cluster.url_from(node),
        default_queue_type: QueueType::Quorum,
        concurrency: CONCURRENCY,
        prefetch_multiplier: Some(PREFETCH_MULTIPLIER),
        connect_timeout: Duration::from_secs(10),
        send_timeout: Duration::from_secs(60),
        connection_name: format!("celeriac-cluster-{name}"),
        ..Config::default()
    }
}

/// What the workers reported.
#[derive(Default)]
struct Observed {
    /// Successful executions per task id.
    executions: HashMap<String, u32>,
    /// Every success, in order.
    executed_at: Vec<(Instant, String)>,
    /// Events other than Started and Succeeded.
    others: Vec<String>,
}

/// Starts a worker for `test.add` on `queue`, tallying into `observed`.
async fn start_worker(
    config: &Config,
    queue: &str,
    observed: &Rc<RefCell<Observed>>,
) -> WorkerSystem {
    // Each worker its own node name: two live workers of one name are refused.
    let config = &Config {
        hostname: format!("cluster-{}@celeriac-test", uuid::Uuid::new_v4().simple()),
        ..config.clone()
    };
    let broker = connect_broker(config)
        .await
        .unwrap_or_else(|error| panic!("the worker cannot connect: {error}"));
    let (events, mut received) = task_event_channel();
    let tally = observed.clone();
    actix_rt::spawn(async move {
        while let Some(event) = received.next().await {
            let mut tally = tally.borrow_mut();
            match event.kind {
                TaskEventKind::Started => {}
                TaskEventKind::Succeeded { .. } => {
                    let id = event.task_id.unwrap_or_default();
                    *tally.executions.entry(id.clone()).or_default() += 1;
                    tally.executed_at.push((Instant::now(), id));
                }
                other => tally.others.push(format!("{other:?}")),
            }
        }
    });
    WorkerSystem::builder(broker, config)
        .queue(queue)
        .register::<Add>()
        .on_task_event(events)
        .start()
        .await
        .unwrap_or_else(|error| panic!("the worker did not start: {error}"))
}

/// What the sender did.
#[derive(Default)]
struct Load {
    /// Tasks whose send returned Ok, with when their send started.
    accepted: HashMap<String, Instant>,
    /// Send errors by text.
    errors: HashMap<String, usize>,
    /// Sends in flight when the sender reached the gate.
    in_flight_at_gate: usize,
}

/// Sends `test.add` tasks to `queue` until `TASKS` were accepted, `IN_FLIGHT` at a time;
/// after `GATE` sends, pauses until `gate` opens (`reached` tells the injector).
async fn send_load(
    producer: &Producer,
    queue: &str,
    observed: &RefCell<Observed>,
    reached: &watch::Sender<bool>,
    mut gate: watch::Receiver<bool>,
) -> Load {
    let mut load = Load::default();
    let deadline = tokio::time::Instant::now() + SEND_PHASE;
    let mut in_flight = FuturesUnordered::new();
    let mut started = 0usize;
    loop {
        let blocked = started >= GATE && !*gate.borrow();
        if blocked && !*reached.borrow() {
            load.in_flight_at_gate = in_flight.len();
            reached.send_replace(true);
        }
        let wanted = load.accepted.len() + in_flight.len() < TASKS;
        let backlogged = load.accepted.len() > observed.borrow().executions.len() + BACKLOG;
        if wanted && !blocked && !backlogged && in_flight.len() < IN_FLIGHT {
            let id = uuid::Uuid::new_v4().to_string();
            let signature = Signature::new(Add::NAME)
                .with_args(vec![json!(started), json!(1)])
                .with_queue(queue)
                .with_id(id.clone());
            let producer = producer.clone();
            in_flight.push(async move {
                let at = Instant::now();
                let outcome = producer.send_signature(signature).await;
                (id, at, outcome)
            });
            started += 1;
            continue;
        }
        if in_flight.is_empty() && !wanted {
            return load;
        }
        tokio::select! {
            Some((id, at, outcome)) = in_flight.next(), if !in_flight.is_empty() => match outcome {
                Ok(_) => {
                    load.accepted.insert(id, at);
                }
                Err(error) => {
                    *load.errors.entry(error.to_string()).or_default() += 1;
                    // No hot loop of failures: this slot waits a little before sending again.
                    actix_rt::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = gate.wait_for(|open| *open), if blocked => {}
            () = actix_rt::time::sleep(Duration::from_millis(5)), if backlogged && !blocked => {}
            () = tokio::time::sleep_until(deadline) => panic!(
                "the sending phase did not end within {SEND_PHASE:?}: {} accepted, {} in flight, \
                 errors {:?}",
                load.accepted.len(),
                in_flight.len(),
                load.errors
            ),
        }
    }
}

/// Where the clients and the queue are, and the fault.
struct Layout {
    name: &'static str,
    /// The node the queue is declared through (its leader).
    leader: usize,
    producer: usize,
    workers: [usize; 2],
    fault: Fault,
}

/// What is done to a node at the gate.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// `kill -9` of the node's Erlang VM, booted again once recovery is seen.
    Kill(usize),
    /// `rabbitmqctl stop_app`, `start_app` once recovery is seen.
    StopApp(usize),
}

impl Fault {
    fn node(self) -> usize {
        match self {
            Fault::Kill(node) | Fault::StopApp(node) => node,
        }
    }
}

async fn run_scenario(layout: Layout) {
    init();
    let began = Instant::now();
    let cluster = Arc::new(blocking(Cluster::start).await);
    let booted = began.elapsed();
    let queue = unique_queue(&format!("cluster-{}", layout.name));
    let fault_node = layout.fault.node();
    // Declare the queue through its leader's node, and check it leads.
    let setup_config = Config {
        broker_url: cluster.urls[layout.leader].clone(),
        ..client_config(&cluster, layout.leader, "setup")
    };
    let setup = connect_broker(&setup_config)
        .await
        .unwrap_or_else(|error| panic!("connecting to the cluster: {error}"));
    setup
        .declare_queue(setup_config.queue_spec(&queue))
        .await
        .unwrap_or_else(|error| panic!("declaring the quorum queue: {error}"));
    let (reading, asked) = (cluster.clone(), queue.clone());
    let leader = blocking(move || reading.leader_of(&asked, 0)).await;
    assert_eq!(
        leader,
        Some(layout.leader),
        "the queue's leader is not the node that declared it"
    );

    let observed = Rc::new(RefCell::new(Observed::default()));
    let mut workers = Vec::new();
    for (k, node) in layout.workers.iter().enumerate() {
        let config = client_config(&cluster, *node, &format!("{}-worker{k}", layout.name));
        workers.push(start_worker(&config, &queue, &observed).await);
    }
    let producer_config = client_config(
        &cluster,
        layout.producer,
        &format!("{}-producer", layout.name),
    );
    let producer_broker: BrokerClient = connect_broker(&producer_config)
        .await
        .unwrap_or_else(|error| panic!("the producer cannot connect: {error}"));
    let producer = Producer::new(producer_broker, &producer_config);

    let (reached, mut at_gate) = watch::channel(false);
    let (open, gate) = watch::channel(false);
    let mut fault_at = None;
    let injecting = async {
        let _ = at_gate.wait_for(|reached| *reached).await;
        let injected = cluster.clone();
        let fault = layout.fault;
        blocking(move || match fault {
            Fault::Kill(node) => injected.kill(node),
            Fault::StopApp(node) => {
                injected.ctl(node, &["stop_app"]);
            }
        })
        .await;
        fault_at = Some(Instant::now());
        open.send_replace(true);
    };
    let (load, ()) = futures::join!(
        send_load(&producer, &queue, &observed, &reached, gate),
        injecting
    );
    let fault_at = fault_at.expect("the fault was injected");

    // Every accepted task runs.
    let deadline = Instant::now() + DRAIN;
    while !load
        .accepted
        .keys()
        .all(|id| observed.borrow().executions.contains_key(id))
    {
        if Instant::now() > deadline {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    // The node comes back and rejoins; the queue settles (redeliveries done).
    let restored = cluster.clone();
    let fault = layout.fault;
    blocking(move || match fault {
        Fault::Kill(node) => restored.boot(node),
        Fault::StopApp(node) => {
            restored.ctl(node, &["start_app"]);
        }
    })
    .await;
    let survivor = (fault_node + 1) % 3;
    let checking = cluster.clone();
    wait_until_async("the cluster to run its three nodes again", DRAIN, || {
        let checking = checking.clone();
        async move { blocking(move || checking.running_nodes(survivor) == 3).await }
    })
    .await;
    let (checking, counted) = (cluster.clone(), queue.clone());
    wait_until_async("the queue to hold nothing ready or unacked", DRAIN, || {
        let (checking, counted) = (checking.clone(), counted.clone());
        async move { blocking(move || checking.queue_counts(&counted, survivor) == (0, 0)).await }
    })
    .await;

    for worker in workers {
        let _ = worker.stop().await;
    }
    let _ = setup.delete_queue(&queue).await;

    let observed = observed.borrow();
    let lost: Vec<&String> = load
        .accepted
        .keys()
        .filter(|id| !observed.executions.contains_key(*id))
        .collect();
    let duplicates: u64 = observed
        .executions
        .values()
        .map(|count| u64::from(count.saturating_sub(1)))
        .sum();
    let unexpected = observed
        .executions
        .keys()
        .filter(|id| !load.accepted.contains_key(*id))
        .count();
    let window = CONCURRENCY * PREFETCH_MULTIPLIER;
    let workers_lost = layout
        .workers
        .iter()
        .filter(|node| **node == fault_node)
        .count();
    let republishable = if layout.producer == fault_node {
        load.in_flight_at_gate
    } else {
        0
    };
    let bound = (window * workers_lost + republishable) as u64;
    let recovery = observed
        .executed_at
        .iter()
        .find(|(at, id)| {
            *at >= fault_at && load.accepted.get(id).is_some_and(|sent| *sent >= fault_at)
        })
        .map(|(at, _)| at.duration_since(fault_at));
    println!(
        "cluster ({}): {:?}, leader node {}, producer node {}, workers nodes {:?}: tasks {} \
         accepted, lost {}, duplicates {duplicates} (bound {bound}: window {window} x {workers_lost} \
         workers on the lost node + {republishable} sends in flight at the producer's loss), \
         recovery {}, send errors {:?}, cluster up after {:.1} s (with the wait for the previous test's), took {:.1} s",
        layout.name,
        layout.fault,
        layout.leader,
        layout.producer,
        layout.workers,
        load.accepted.len(),
        lost.len(),
        recovery.map_or("never".to_string(), |r| format!("{} ms", r.as_millis())),
        load.errors,
        booted.as_secs_f64(),
        began.elapsed().as_secs_f64()
    );
    assert!(
        observed.others.is_empty(),
        "unexpected events: {:?}",
        &observed.others[..observed.others.len().min(5)]
    );
    assert_eq!(
        load.accepted.len(),
        TASKS,
        "not every send was accepted: {:?}",
        load.errors
    );
    assert!(
        lost.is_empty(),
        "{} accepted tasks never ran, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    assert_eq!(unexpected, 0, "tasks whose send failed ran");
    assert!(recovery.is_some(), "no task sent after the fault ran");
    assert!(
        duplicates <= bound,
        "{duplicates} duplicate executions, more than the mechanism allows ({bound})"
    );
}

/// (h) Two workers and the producer on different nodes; the node of one worker is killed
/// (`kill -9`) mid-run, then booted again.
#[actix_rt::test]
async fn h_a_workers_node_killed_mid_run_loses_no_task() {
    run_scenario(Layout {
        name: "h-worker-node-killed",
        leader: 0,
        producer: 0,
        workers: [1, 2],
        fault: Fault::Kill(1),
    })
    .await;
}

/// (i) The node leading the quorum queue (and one worker's) is killed under load: the queue
/// elects a new leader and work goes on.
#[actix_rt::test]
async fn i_the_queue_leaders_node_killed_under_load_loses_no_task() {
    run_scenario(Layout {
        name: "i-leader-killed",
        leader: 0,
        producer: 1,
        workers: [0, 2],
        fault: Fault::Kill(0),
    })
    .await;
}

/// (j) The producer's node stops (`rabbitmqctl stop_app`) during a burst of sends: the
/// producer fails over, and every send that returned Ok runs.
#[actix_rt::test]
async fn j_the_producers_node_stopped_during_a_burst_loses_no_accepted_send() {
    run_scenario(Layout {
        name: "j-producer-node-stopped",
        leader: 1,
        producer: 0,
        workers: [1, 2],
        fault: Fault::StopApp(0),
    })
    .await;
}
