//! [`BeatActor`]: the scheduler. A follower looks every `leader_retry` whether the presence
//! queue has a consumer (the leader); when it has none, it claims the lock queue. The new
//! leader consumes the presence queue and reads the stored last runs; then at each due
//! slot it confirms it still holds the lock, then publishes the runs (encoded by its
//! [`Producer`], task id from [`run_id`]) and the new last runs in one AMQP transaction. A
//! failure makes it a follower that backs off and reads the stored state afresh when it
//! leads again (a commit cut short may or may not have taken effect); so do losing the
//! connection (its consumer on the presence queue ends) and a refused claim. Supervised:
//! restarted as a follower.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use tokio::sync::watch;

use super::due::decide;
use super::entry::{run_id, Entry};
use super::leader::{claim, Claim};
use super::state::{BeatState, StateStore};
use super::BeatError;
use crate::actors::broker::{CloseConsumer, DeliveryStream, OpenConsumer};
use crate::actors::{BrokerClient, BrokerError, QueueSpec};
use crate::app::Producer;

/// What the actor schedules: fixed for its life.
#[derive(Debug)]
pub(crate) struct Plan {
    /// The beat's name: its lock and state queues, and its run ids.
    pub name: String,
    /// The entries.
    pub entries: Vec<Entry>,
    /// How often a follower tries to take the lead.
    pub leader_retry: Duration,
}

/// The longest pause after repeated failures.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How long a leader sleeps when no entry will ever run again.
const IDLE: Duration = Duration::from_secs(3600);

/// Where this instance stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Follower,
    Leader,
}

/// The scheduler actor.
pub(crate) struct BeatActor {
    plan: Arc<Plan>,
    broker: BrokerClient,
    producer: Producer,
    store: StateStore,
    lock: QueueSpec,
    presence: QueueSpec,
    role: Role,
    /// The last runs as this leader knows them.
    state: BeatState,
    /// For entries that never ran: when this instance started leading (their first run is
    /// the first slot after it). Not stored.
    baseline: Option<DateTime<Utc>>,
    /// Consecutive failures, for the backoff.
    failures: u32,
    /// The pending wake-up.
    timer: Option<SpawnHandle>,
    /// A claim or a round of runs is under way (a stop waits for it to end).
    busy: watch::Sender<bool>,
    /// Stopped by its handle: no more rounds.
    stopped: bool,
    /// Counts terms as leader, so that a watcher of an old term is ignored.
    term: u64,
    /// The consumer on the presence queue (its tag) and the future watching it.
    watch: Option<(String, SpawnHandle)>,
}

impl BeatActor {
    pub(crate) fn new(plan: Plan, broker: BrokerClient, producer: Producer) -> Self {
        let store = StateStore::new(broker.clone(), &plan.name);
        let lock = super::leader::lock_queue(&plan.name);
        let presence = super::leader::presence_queue(&plan.name);
        BeatActor {
            plan: Arc::new(plan),
            broker,
            producer,
            store,
            lock,
            presence,
            role: Role::Follower,
            state: BeatState::default(),
            baseline: None,
            failures: 0,
            timer: None,
            busy: watch::channel(false).0,
            stopped: false,
            term: 0,
            watch: None,
        }
    }

    /// Wakes up after `delay` (replacing any pending wake-up).
    fn wake_in(&mut self, ctx: &mut Context<Self>, delay: Duration) {
        if let Some(timer) = self.timer.take() {
            ctx.cancel_future(timer);
        }
        if !self.stopped {
            self.timer = Some(ctx.notify_later(Tick, delay));
        }
    }

    /// Wakes up after a failure: the retry period, doubling, at most `MAX_BACKOFF`.
    fn back_off(&mut self, ctx: &mut Context<Self>, error: &BeatError) {
        self.failures = self.failures.saturating_add(1);
        let delay = self
            .plan
            .leader_retry
            .saturating_mul(2u32.saturating_pow(self.failures.min(16) - 1))
            .min(MAX_BACKOFF.max(self.plan.leader_retry));
        log::warn!(
            "beat \"{}\": {error}; trying again in {delay:?}",
            self.plan.name
        );
        self.wake_in(ctx, delay);
    }

    /// Claims the lock if no leader is present; on success consumes the presence queue
    /// and reads the state.
    fn try_to_lead(&mut self, ctx: &mut Context<Self>) {
        let broker = self.broker.clone();
        let lock = self.lock.clone();
        let presence = self.presence.clone();
        let store = self.store.clone();
        let tag = format!("celeriac-beat-leader-{}", uuid::Uuid::new_v4().simple());
        let consumer_tag = tag.clone();
        let claiming = async move {
            if broker.count_consumers(presence.clone()).await? > 0 {
                return Ok(None);
            }
            if claim(&broker, &lock).await? == Claim::Taken {
                return Ok(None);
            }
            let stream = broker
                .open_consumer
                .send(OpenConsumer {
                    queue: presence.name.clone(),
                    prefetch: 1,
                    consumer_tag: consumer_tag.clone(),
                    global_qos: false,
                })
                .await
                .map_err(BrokerError::from)??;
            match store.load().await {
                Ok(state) => Ok(Some((stream, state))),
                Err(error) => {
                    // Let another instance try: release the lock.
                    let _ = broker
                        .close_consumer
                        .send(CloseConsumer { consumer_tag })
                        .await;
                    let _ = broker.delete_queue(&lock.name).await;
                    Err(error)
                }
            }
        };
        ctx.spawn(claiming.into_actor(self).map(
            move |outcome: Result<_, BeatError>, actor, ctx| {
                actor.busy.send_replace(false);
                match outcome {
                    Ok(None) => {
                        actor.failures = 0;
                        let retry = actor.plan.leader_retry;
                        actor.wake_in(ctx, retry);
                    }
                    Ok(Some((stream, state))) => {
                        actor.failures = 0;
                        actor.lead(ctx, stream, tag, state);
                        actor.wake_in(ctx, Duration::ZERO);
                    }
                    Err(error) => actor.back_off(ctx, &error),
                }
            },
        ));
    }

    /// Becomes the leader with the stored `state`, watching the lock consumer.
    fn lead(
        &mut self,
        ctx: &mut Context<Self>,
        stream: DeliveryStream,
        tag: String,
        state: BeatState,
    ) {
        self.role = Role::Leader;
        self.term += 1;
        self.state.merge(state);
        self.baseline = Some(Utc::now());
        let term = self.term;
        log::info!(
            "beat \"{}\": leading (entries {:?})",
            self.plan.name,
            self.plan
                .entries
                .iter()
                .map(|entry| &entry.name)
                .collect::<Vec<_>>()
        );
        let watching = async move {
            let mut stream = stream;
            // Nothing is published to the presence queue: the stream ends (or fails) when
            // the consumer's channel or connection does.
            while let Some(item) = stream.next().await {
                if item.is_err() {
                    break;
                }
            }
        };
        let handle = ctx.spawn(watching.into_actor(self).map(move |(), actor, ctx| {
            if actor.term == term && actor.role == Role::Leader && !actor.stopped {
                log::warn!(
                    "beat \"{}\": the presence queue's consumer ended (connection lost?)",
                    actor.plan.name
                );
                actor.watch = None;
                actor.step_down(ctx);
            }
        }));
        self.watch = Some((tag, handle));
    }

    /// Becomes a follower again and tries to lead after the retry period.
    fn step_down(&mut self, ctx: &mut Context<Self>) {
        log::warn!("beat \"{}\": no longer leading", self.plan.name);
        self.role = Role::Follower;
        self.release_watch(ctx);
        let retry = self.plan.leader_retry;
        self.wake_in(ctx, retry);
    }

    /// Stops watching the lock consumer and closes it.
    fn release_watch(&mut self, ctx: &mut Context<Self>) {
        if let Some((consumer_tag, handle)) = self.watch.take() {
            ctx.cancel_future(handle);
            self.broker
                .close_consumer
                .do_send(CloseConsumer { consumer_tag });
        }
    }

    /// Sends the runs due now with the new state (after confirming the lock), or sleeps
    /// until the next slot.
    fn run_due(&mut self, ctx: &mut Context<Self>) {
        let now = Utc::now();
        let mut runs: Vec<(Entry, DateTime<Utc>, u64)> = Vec::new();
        let mut next: Option<DateTime<Utc>> = None;
        for entry in &self.plan.entries {
            let last = self.state.last_run.get(&entry.name).copied();
            let due = decide(&entry.schedule, last.or(self.baseline), now);
            if let Some(slot) = due.run {
                runs.push((entry.clone(), slot, due.skipped));
            }
            next = match (next, due.next) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        if runs.is_empty() {
            self.busy.send_replace(false);
            let delay = next.map_or(IDLE, |next| {
                // A millisecond late rather than early: the slot is then due.
                (next - Utc::now())
                    .to_std()
                    .unwrap_or_default()
                    .saturating_add(Duration::from_millis(1))
            });
            self.wake_in(ctx, delay);
            return;
        }
        let broker = self.broker.clone();
        let lock = self.lock.clone();
        let producer = self.producer.clone();
        let store = self.store.clone();
        let plan = self.plan.clone();
        let mut state = self.state.clone();
        let round = async move {
            let mut round = Round::default();
            match claim(&broker, &lock).await {
                Ok(Claim::Held) => {}
                Ok(Claim::Taken) => {
                    round.lost = true;
                    return round;
                }
                Err(error) => {
                    round.error = Some(error.into());
                    return round;
                }
            }
            // The runs and the new state go out in one transaction: a leader killed before
            // the commit sent nothing (its successor sends the runs), one killed after it
            // stored them (its successor does not).
            let mut messages = Vec::with_capacity(runs.len() + 1);
            for (entry, slot, _) in &runs {
                let id = run_id(&plan.name, &entry.name, *slot);
                match producer
                    .prepare_signature(entry.signature.clone().with_id(id))
                    .await
                {
                    Ok((_, message)) => messages.push(message),
                    Err(error) => {
                        round.error = Some(error.into());
                        return round;
                    }
                }
                state.last_run.insert(entry.name.clone(), *slot);
            }
            messages.push(store.message(&state));
            if let Err(error) = broker.publish_transaction(messages).await {
                round.error = Some(error.into());
                return round;
            }
            for (entry, slot, skipped) in &runs {
                if *skipped > 0 {
                    log::info!(
                        "beat \"{}\": \"{}\" caught up with one run for {slot} \
                         ({skipped} earlier slots missed)",
                        plan.name,
                        entry.name
                    );
                }
                log::debug!(
                    "beat \"{}\": sent \"{}\" for {slot} as {}",
                    plan.name,
                    entry.name,
                    run_id(&plan.name, &entry.name, *slot)
                );
            }
            round.state = state;
            round
        };
        ctx.spawn(
            round
                .into_actor(self)
                .map(|round, actor, ctx| actor.finish_round(ctx, round)),
        );
    }

    /// Takes in what a round did.
    fn finish_round(&mut self, ctx: &mut Context<Self>, round: Round) {
        self.busy.send_replace(false);
        if round.lost {
            log::warn!(
                "beat \"{}\": another instance holds the lock",
                self.plan.name
            );
            self.step_down(ctx);
            return;
        }
        match round.error {
            Some(error) => {
                // Whether a failed commit took effect is unknown: lead again (if still
                // possible) from the stored state rather than from this one.
                self.role = Role::Follower;
                self.release_watch(ctx);
                self.back_off(ctx, &error);
            }
            None => {
                self.state.merge(round.state);
                self.failures = 0;
                self.wake_in(ctx, Duration::ZERO);
            }
        }
    }
}

/// What one round of runs did.
#[derive(Default)]
struct Round {
    /// The lock was held by another instance: nothing was sent.
    lost: bool,
    /// The state with the runs sent.
    state: BeatState,
    /// What failed, if anything.
    error: Option<BeatError>,
}

impl Actor for BeatActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.wake_in(ctx, Duration::ZERO);
    }
}

impl Supervised for BeatActor {
    fn restarting(&mut self, _: &mut Context<Self>) {
        log::warn!("beat \"{}\": restarting as a follower", self.plan.name);
        self.role = Role::Follower;
        self.busy.send_replace(false);
        self.timer = None;
        self.watch = None;
    }
}

/// Wakes the scheduler: a follower claims the lock, a leader sends what is due.
#[derive(Debug, Message)]
#[rtype(result = "()")]
struct Tick;

impl Handler<Tick> for BeatActor {
    type Result = ();

    fn handle(&mut self, _: Tick, ctx: &mut Context<Self>) {
        self.timer = None;
        if *self.busy.borrow() || self.stopped {
            return;
        }
        self.busy.send_replace(true);
        match self.role {
            Role::Follower => self.try_to_lead(ctx),
            Role::Leader => self.run_due(ctx),
        }
    }
}

/// Stops scheduling; a leader deletes the lock queue (its state went out with each round),
/// so that another instance takes over at its next claim.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct StopBeat;

impl Handler<StopBeat> for BeatActor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: StopBeat, ctx: &mut Context<Self>) -> Self::Result {
        self.stopped = true;
        if let Some(timer) = self.timer.take() {
            ctx.cancel_future(timer);
        }
        // A round under way finishes first: releasing the lock during it could let another
        // instance send the same run.
        let mut busy = self.busy.subscribe();
        let idle = async move {
            let _ = busy.wait_for(|busy| !*busy).await;
        };
        Box::pin(idle.into_actor(self).then(|(), actor, ctx| {
            let leading = actor.role == Role::Leader;
            actor.role = Role::Follower;
            actor.release_watch(ctx);
            let broker = actor.broker.clone();
            let lock = actor.lock.name.clone();
            let name = actor.plan.name.clone();
            async move {
                if leading {
                    if let Err(error) = broker.delete_queue(&lock).await {
                        log::warn!("beat \"{name}\": releasing the lock: {error}");
                    }
                }
                log::info!("beat \"{name}\": stopped");
            }
            .into_actor(actor)
        }))
    }
}

/// Answers whether this instance leads.
#[derive(Debug, Message)]
#[rtype(result = "bool")]
pub(crate) struct IsLeading;

impl Handler<IsLeading> for BeatActor {
    type Result = bool;

    fn handle(&mut self, _: IsLeading, _: &mut Context<Self>) -> bool {
        self.role == Role::Leader
    }
}
