//! `ExecutorPool`: runs jobs with bounded concurrency. Each job runs under `catch_unwind`
//! (a panicking job is reported, never kills the pool) and an optional hard time limit.
//! Jobs beyond the concurrency wait in order. `Drain` stops starting jobs, cancels the
//! waiting ones and answers once the running ones are done.

use std::any::Any;
use std::collections::VecDeque;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::time::Duration;

use actix::prelude::*;
use futures::channel::oneshot;
use futures::FutureExt;

/// The work of one job.
pub type Job = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Called once, when the job gets a slot and starts (early acknowledgement hooks here).
pub type OnStart = Box<dyn FnOnce() + Send>;

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecutionReport {
    /// It ran to the end.
    Completed,
    /// It panicked; the panic message.
    Panicked(String),
    /// It ran past its hard time limit and was dropped.
    TimedOut,
    /// It never started: the pool was draining.
    Cancelled,
}

/// Runs a job; answers when it has ended (or was cancelled).
#[derive(Message)]
#[rtype(result = "ExecutionReport")]
pub struct Execute {
    /// The work.
    pub job: Job,
    /// Drop the job if it runs longer than this.
    pub hard_limit: Option<Duration>,
    /// Called when the job starts.
    pub on_start: Option<OnStart>,
}

/// Stops starting jobs, cancels the waiting ones, and answers once none is running.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Drain;

/// How busy the pool is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, MessageResponse)]
pub struct PoolStatus {
    /// Maximum concurrent jobs.
    pub capacity: usize,
    /// Jobs running now.
    pub running: usize,
    /// Jobs waiting for a slot.
    pub waiting: usize,
}

/// Asks for the pool's `PoolStatus`.
#[derive(Debug, Message)]
#[rtype(result = "PoolStatus")]
pub struct GetPoolStatus;

/// A job waiting for a slot.
struct Waiting {
    execute: Execute,
    reply: oneshot::Sender<ExecutionReport>,
}

/// The pool.
pub struct ExecutorPool {
    capacity: usize,
    running: usize,
    waiting: VecDeque<Waiting>,
    /// Set by `Drain`.
    draining: bool,
    /// Answered when the last running job ends during a drain.
    drained: Vec<oneshot::Sender<()>>,
}

impl ExecutorPool {
    /// A pool that runs at most `capacity` jobs at once (at least one).
    pub fn new(capacity: usize) -> Self {
        ExecutorPool {
            capacity: capacity.max(1),
            running: 0,
            waiting: VecDeque::new(),
            draining: false,
            drained: Vec::new(),
        }
    }

    fn start(&mut self, waiting: Waiting, ctx: &mut Context<Self>) {
        let Waiting { execute, reply } = waiting;
        self.running += 1;
        if let Some(on_start) = execute.on_start {
            on_start();
        }
        let guarded = AssertUnwindSafe(execute.job).catch_unwind();
        let hard_limit = execute.hard_limit;
        let run = async move {
            let outcome = match hard_limit {
                Some(limit) => match tokio::time::timeout(limit, guarded).await {
                    Ok(outcome) => outcome,
                    Err(_) => return ExecutionReport::TimedOut,
                },
                None => guarded.await,
            };
            match outcome {
                Ok(()) => ExecutionReport::Completed,
                Err(panic) => ExecutionReport::Panicked(panic_message(&*panic)),
            }
        };
        ctx.spawn(run.into_actor(self).map(move |report, pool, ctx| {
            let _ = reply.send(report);
            pool.running -= 1;
            pool.start_waiting(ctx);
        }));
    }

    fn start_waiting(&mut self, ctx: &mut Context<Self>) {
        while !self.draining && self.running < self.capacity {
            let Some(next) = self.waiting.pop_front() else {
                break;
            };
            self.start(next, ctx);
        }
        if self.draining && self.running == 0 {
            for done in self.drained.drain(..) {
                let _ = done.send(());
            }
        }
    }
}

/// The text of a panic payload.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic with a non-text payload".to_string()
    }
}

impl Actor for ExecutorPool {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(4096);
    }
}

impl Handler<Execute> for ExecutorPool {
    type Result = ResponseFuture<ExecutionReport>;

    fn handle(&mut self, execute: Execute, ctx: &mut Context<Self>) -> Self::Result {
        let (reply, report) = oneshot::channel();
        if self.draining {
            return Box::pin(async { ExecutionReport::Cancelled });
        }
        self.waiting.push_back(Waiting { execute, reply });
        self.start_waiting(ctx);
        Box::pin(async move { report.await.unwrap_or(ExecutionReport::Cancelled) })
    }
}

impl Handler<Drain> for ExecutorPool {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Drain, ctx: &mut Context<Self>) -> Self::Result {
        self.draining = true;
        for waiting in self.waiting.drain(..) {
            let _ = waiting.reply.send(ExecutionReport::Cancelled);
        }
        let (done, drained) = oneshot::channel();
        self.drained.push(done);
        self.start_waiting(ctx);
        Box::pin(async move {
            let _ = drained.await;
        })
    }
}

impl Handler<GetPoolStatus> for ExecutorPool {
    type Result = PoolStatus;

    fn handle(&mut self, _: GetPoolStatus, _: &mut Context<Self>) -> PoolStatus {
        PoolStatus {
            capacity: self.capacity,
            running: self.running,
            waiting: self.waiting.len(),
        }
    }
}
