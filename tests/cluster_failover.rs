//! Scaling out on a 3-node RabbitMQ cluster (scripts/rabbitmq-cluster): the issue's
//! scenarios (h), (i) and (j), each with 5,000 tasks on a quorum queue, counted by id as in
//! tests/reliability_faults.rs.
//!
//! The producer and two workers (in this process, each with a broker connection of its
//! own) connect to given nodes through the failover list of all three nodes, that node
//! first; the queue is declared first through a given node, which then leads it (RabbitMQ
//! places a quorum queue's leader on the declaring node). Each task takes `TASK_MS`, so the
//! workers are the bottleneck: once a third of the tasks were sent and more tasks wait than
//! the workers' windows hold (so every window is full), the fault is injected while the
//! sender goes on sending (`IN_FLIGHT` sends at a time):
//! - (h) the node one worker is connected to is killed (`kill -9` of its Erlang VM), then
//!   booted again;
//! - (i) the node leading the queue is killed (and one worker with it); a new leader on
//!   another node is checked for; then the node is booted again;
//! - (j) the node the producer is connected to stops its RabbitMQ application
//!   (`rabbitmqctl stop_app`) while sends are in flight, then starts it again.
//!
//! In (h) and (i) the worker on the lost node must run tasks sent after the fault: the
//! survivor alone could run everything, which would hide a worker that never failed over.
//! It has time to: the survivor alone needs at least `(TASKS - GATE) x TASK_MS / CONCURRENCY`
//! (8 s) for the rest.
//!
//! The bound on duplicate executions, from the mechanism: a worker whose node is lost fails
//! over and its unacked deliveries go back to the queue (a quorum queue returns the
//! messages checked out to a consumer whose channel is gone): each may run again, at most
//! one prefetch window (`CONCURRENCY x PREFETCH_MULTIPLIER`) per worker on the lost node.
//! Consumers on the surviving nodes keep their deliveries across a leader change (the
//! queue's state, checked-out messages included, is replicated). A producer whose node is
//! lost publishes again each message whose confirm was lost (at-least-once): at most the
//! accepted sends in flight when it saw its connection go down (`ConnectionEvent::Down`),
//! those started before and returned after; (j) also requires there were some, i.e. that
//! the fault landed among the sends.
//!
//! Each prints one summary line (run with --nocapture): tasks, lost, duplicates and their
//! bound, what the fault caught in flight, recovery times (from the fault to the first
//! execution of a task sent after it, and to the lost node's worker's first execution).

mod common;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use celeriac::actors::{ConnectionEvent, SubscribeConnection};
use celeriac::{
    connect_broker, task_event_channel, BrokerClient, Config, Producer, QueueType, Signature, Task,
    TaskEventKind, WorkerSystem,
};
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use serde_json::json;

use common::cluster::{blocking, Cluster};
use common::*;

/// Tasks accepted (send returned Ok) per scenario.
const TASKS: usize = 5_000;
/// How long each task takes (`test.slow`): the workers, not the sender, set the pace.
const TASK_MS: u64 = 5;
/// Each worker's concurrency and prefetch multiplier: a window of 4.
const CONCURRENCY: usize = 2;
const PREFETCH_MULTIPLIER: usize = 2;
/// Workers per scenario.
const WORKERS: usize = 2;
/// Sends in flight at once.
const IN_FLIGHT: usize = 32;
/// Accepted tasks not executed yet, at most: the load runs across the fault.
const BACKLOG: usize = 256;
/// The fault comes once this many sends were accepted...
const GATE: usize = TASKS / 3;
/// ... and at least this many accepted tasks wait (twice what the windows of all workers
/// hold: every window is full, and more wait ready in the queue).
const HELD: usize = 2 * WORKERS * CONCURRENCY * PREFETCH_MULTIPLIER;
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
    /// Every success, in order: when, the task id, and the index of the worker.
    executed_at: Vec<(Instant, String, usize)>,
    /// Events other than Started and Succeeded.
    others: Vec<String>,
}

/// Starts worker number `index` for `test.slow` on `queue`, tallying into `observed`.
async fn start_worker(
    config: &Config,
    queue: &str,
    index: usize,
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
                    tally.executed_at.push((Instant::now(), id, index));
                }
                other => tally.others.push(format!("{other:?}")),
            }
        }
    });
    WorkerSystem::builder(broker, config)
        .queue(queue)
        .register::<Slow>()
        .on_task_event(events)
        .start()
        .await
        .unwrap_or_else(|error| panic!("the worker did not start: {error}"))
}

/// One send: when it started and when it returned.
#[derive(Clone, Copy)]
struct Span {
    started: Instant,
    finished: Instant,
}

impl Span {
    /// Whether the send was in flight at some moment of `[from, to]`.
    fn overlaps(self, from: Instant, to: Instant) -> bool {
        self.started <= to && self.finished >= from
    }
}

/// What the sender did.
#[derive(Default)]
struct Load {
    /// Tasks whose send returned Ok, with when their send started and returned.
    accepted: HashMap<String, Span>,
    /// Sends that failed, with when; and their errors by text.
    failed: Vec<Span>,
    errors: HashMap<String, usize>,
}

/// Sends `test.slow` tasks to `queue` until `TASKS` were accepted, `IN_FLIGHT` at a time,
/// at most `BACKLOG` ahead of the executions; `accepted` counts the accepted sends as they
/// return. Never pauses for the fault: it lands among the sends.
async fn send_load(
    producer: &Producer,
    queue: &str,
    observed: &RefCell<Observed>,
    accepted: &Cell<usize>,
) -> Load {
    let mut load = Load::default();
    let deadline = tokio::time::Instant::now() + SEND_PHASE;
    let mut in_flight = FuturesUnordered::new();
    loop {
        let wanted = load.accepted.len() + in_flight.len() < TASKS;
        let backlogged = load.accepted.len() > observed.borrow().executions.len() + BACKLOG;
        if wanted && !backlogged && in_flight.len() < IN_FLIGHT {
            let id = uuid::Uuid::new_v4().to_string();
            let signature = Signature::new(Slow::NAME)
                .with_args(vec![json!(TASK_MS)])
                .with_queue(queue)
                .with_id(id.clone());
            let producer = producer.clone();
            in_flight.push(async move {
                let started = Instant::now();
                let outcome = producer.send_signature(signature).await;
                let span = Span {
                    started,
                    finished: Instant::now(),
                };
                (id, span, outcome)
            });
            continue;
        }
        if in_flight.is_empty() && !wanted {
            return load;
        }
        tokio::select! {
            Some((id, span, outcome)) = in_flight.next(), if !in_flight.is_empty() => match outcome {
                Ok(_) => {
                    load.accepted.insert(id, span);
                    accepted.set(load.accepted.len());
                }
                Err(error) => {
                    load.failed.push(span);
                    *load.errors.entry(error.to_string()).or_default() += 1;
                    // No hot loop of failures: this slot waits a little before sending again.
                    actix_rt::time::sleep(Duration::from_millis(100)).await;
                }
            },
            () = actix_rt::time::sleep(Duration::from_millis(5)), if backlogged => {}
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

/// When `broker` first reports its connection down (`ConnectionEvent::Down`: lapin saw the
/// connection fail, checked every 250 ms).
async fn first_loss(broker: &BrokerClient) -> Rc<Cell<Option<Instant>>> {
    let (listener, mut events) = forward::<ConnectionEvent>();
    broker
        .subscribe_connection
        .send(SubscribeConnection(listener))
        .await
        .unwrap_or_else(|error| panic!("subscribing to the producer's connection: {error}"));
    let lost = Rc::new(Cell::new(None));
    let noted = lost.clone();
    actix_rt::spawn(async move {
        while let Some(event) = events.next().await {
            if matches!(event, ConnectionEvent::Down { .. }) && noted.get().is_none() {
                noted.set(Some(Instant::now()));
            }
        }
    });
    lost
}

/// Where the clients and the queue are, and the fault.
struct Layout {
    name: &'static str,
    /// The node the queue is declared through (its leader).
    leader: usize,
    producer: usize,
    workers: [usize; WORKERS],
    fault: Fault,
}

/// What is done to a node under load.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// `kill -9` of the node's Erlang VM, booted again once the accepted tasks ran.
    Kill(usize),
    /// `rabbitmqctl stop_app`, `start_app` once the accepted tasks ran.
    StopApp(usize),
}

impl Fault {
    fn node(self) -> usize {
        match self {
            Fault::Kill(node) | Fault::StopApp(node) => node,
        }
    }
}

/// When the fault was injected: from the command's start to its end (for a kill, until
/// the VM is gone; for `stop_app`, until the application stopped).
#[derive(Clone, Copy)]
struct FaultWindow {
    began: Instant,
    ended: Instant,
    /// Accepted tasks not executed yet when the fault began.
    waiting: usize,
}

#[allow(clippy::too_many_lines)]
async fn run_scenario(layout: Layout) {
    init();
    let began = Instant::now();
    let cluster = Arc::new(blocking(Cluster::start).await);
    let booted = began.elapsed();
    let queue = unique_queue(&format!("cluster-{}", layout.name));
    let fault_node = layout.fault.node();
    let survivor = (fault_node + 1) % 3;
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
        workers.push(start_worker(&config, &queue, k, &observed).await);
    }
    let producer_config = client_config(
        &cluster,
        layout.producer,
        &format!("{}-producer", layout.name),
    );
    let producer_broker: BrokerClient = connect_broker(&producer_config)
        .await
        .unwrap_or_else(|error| panic!("the producer cannot connect: {error}"));
    let producer_lost = first_loss(&producer_broker).await;
    let producer = Producer::new(producer_broker, &producer_config);

    let accepted = Cell::new(0usize);
    let waiting = || {
        accepted
            .get()
            .saturating_sub(observed.borrow().executions.len())
    };
    let mut window = None;
    let injecting = async {
        wait_until(
            &format!(
                "{GATE} accepted sends with {HELD} tasks waiting (the sender must outpace the \
                 workers)"
            ),
            SEND_PHASE,
            || accepted.get() >= GATE && waiting() >= HELD,
        )
        .await;
        let waiting = waiting();
        let injected = cluster.clone();
        let fault = layout.fault;
        let began = Instant::now();
        blocking(move || match fault {
            Fault::Kill(node) => injected.kill(node),
            Fault::StopApp(node) => {
                injected.ctl(node, &["stop_app"]);
            }
        })
        .await;
        window = Some(FaultWindow {
            began,
            ended: Instant::now(),
            waiting,
        });
    };
    let (load, ()) = futures::join!(
        send_load(&producer, &queue, &observed, &accepted),
        injecting
    );
    let fault = window.expect("the fault was injected");

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
    // The queue's leader, before the lost node is back: (i) needs a new one elsewhere.
    let (reading, asked) = (cluster.clone(), queue.clone());
    let leader_after = blocking(move || reading.leader_of(&asked, survivor)).await;
    if layout.leader == fault_node {
        let (checking, asked) = (cluster.clone(), queue.clone());
        wait_until_async(
            &format!("the queue to elect a leader on a node other than node {fault_node}"),
            DRAIN,
            || {
                let (checking, asked) = (checking.clone(), asked.clone());
                async move {
                    blocking(move || {
                        checking
                            .leader_of(&asked, survivor)
                            .is_some_and(|node| node != fault_node)
                    })
                    .await
                }
            },
        )
        .await;
    }
    // The node comes back and rejoins; the queue settles (redeliveries done).
    let restored = cluster.clone();
    let injected = layout.fault;
    blocking(move || match injected {
        Fault::Kill(node) => restored.boot(node),
        Fault::StopApp(node) => {
            restored.ctl(node, &["start_app"]);
        }
    })
    .await;
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
    let worker_window = CONCURRENCY * PREFETCH_MULTIPLIER;
    let lost_workers: Vec<usize> = (0..WORKERS)
        .filter(|k| layout.workers[*k] == fault_node)
        .collect();
    // Sends the fault caught in flight (overlapping its injection), and those the
    // producer's connection loss caught: started before the producer saw it down and
    // returned after. That is a superset of the publishes whose confirm the lost connection
    // owed (each may be published twice): none of those can return before the Down event
    // is noted, since publishing again needs a new connection (network round trips) while
    // the event reaches this test in a few turns of its thread.
    let producer_lost = producer_lost.get();
    let in_flight_at_loss = producer_lost.map_or(0, |down| {
        load.accepted
            .values()
            .filter(|span| span.overlaps(down, down))
            .count()
    });
    let in_flight_accepted = load
        .accepted
        .values()
        .filter(|span| span.overlaps(fault.began, fault.ended))
        .count();
    let in_flight_failed = load
        .failed
        .iter()
        .filter(|span| span.overlaps(fault.began, fault.ended))
        .count();
    let republishable = if layout.producer == fault_node {
        in_flight_at_loss
    } else {
        0
    };
    let bound = (worker_window * lost_workers.len() + republishable) as u64;
    let sent_after = |id: &String| {
        load.accepted
            .get(id)
            .is_some_and(|span| span.started >= fault.ended)
    };
    // Executions of tasks sent after the fault, per worker, and the first of each.
    let mut after_fault = [0usize; WORKERS];
    let mut first_after = [None::<Duration>; WORKERS];
    for (at, id, worker) in &observed.executed_at {
        if sent_after(id) {
            after_fault[*worker] += 1;
            first_after[*worker].get_or_insert(at.duration_since(fault.ended));
        }
    }
    let recovery = first_after.iter().flatten().min().copied();
    let ms =
        |d: Option<Duration>| d.map_or("never".to_string(), |d| format!("{} ms", d.as_millis()));
    println!(
        "cluster ({}): {:?}, leader node {} (after the fault: {:?}), producer node {}, workers \
         nodes {:?}: tasks {} accepted, lost {}, duplicates {duplicates} (bound {bound}: window \
         {worker_window} x {} workers on the lost node + {republishable} republishable); at the \
         fault ({} ms to inject): {} tasks waiting, sends in flight {in_flight_accepted} accepted \
         + {in_flight_failed} failed, at the producer's connection loss ({}) \
         {in_flight_at_loss}; tasks sent after the fault run per worker {after_fault:?}; \
         recovery {} (first task sent after the fault), lost node's worker {}; send errors {:?}, \
         cluster up after {:.1} s (with the wait for the previous test's), took {:.1} s",
        layout.name,
        layout.fault,
        layout.leader,
        leader_after,
        layout.producer,
        layout.workers,
        load.accepted.len(),
        lost.len(),
        lost_workers.len(),
        fault.ended.duration_since(fault.began).as_millis(),
        fault.waiting,
        producer_lost.map_or("not seen".to_string(), |down| format!(
            "{} ms into the fault",
            down.saturating_duration_since(fault.began).as_millis()
        )),
        ms(recovery),
        if lost_workers.is_empty() {
            "none there".to_string()
        } else {
            lost_workers
                .iter()
                .map(|k| ms(first_after[*k]))
                .collect::<Vec<_>>()
                .join(", ")
        },
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
    for k in &lost_workers {
        assert!(
            after_fault[*k] > 0,
            "worker {k}, on the lost node {fault_node}, ran no task sent after the fault (it \
             did not fail over): per worker {after_fault:?}"
        );
    }
    if layout.producer == fault_node {
        assert!(
            producer_lost.is_some(),
            "the producer never saw its node's connection go down"
        );
        assert!(
            in_flight_at_loss > 0,
            "no send was in flight at the producer's connection loss: the fault did not land \
             under load"
        );
    }
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
