//! The dispatcher: receives every delivery of the worker's consumers and runs each one
//! (see `pipeline`) concurrently, keeping count so that a stop can wait until every
//! message is settled.

use std::sync::Arc;

use actix::prelude::*;
use futures::channel::oneshot;

use super::pipeline::{process, Services};
use crate::actors::consumer::Deliver;

/// Answers once every delivery received so far is settled.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct WaitIdle;

/// From now on, tasks waiting for their ETA go back to their queue instead of running.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct BeginDrain;

/// Routes deliveries to tasks.
pub struct Dispatcher {
    /// The registry, pool, event sink and result store every delivery uses.
    services: Arc<Services>,
    /// Turns true when the worker stops: held ETA tasks are then requeued.
    draining: tokio::sync::watch::Sender<bool>,
    /// Deliveries received and not settled yet.
    in_flight: usize,
    /// Answered when `in_flight` drops to zero.
    idle_waiters: Vec<oneshot::Sender<()>>,
}

impl Dispatcher {
    /// A dispatcher that runs deliveries with `services`.
    pub(crate) fn new(services: Services) -> Self {
        Dispatcher {
            services: Arc::new(services),
            draining: tokio::sync::watch::Sender::new(false),
            in_flight: 0,
            idle_waiters: Vec::new(),
        }
    }
}

impl Actor for Dispatcher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(4096);
    }
}

impl Handler<Deliver> for Dispatcher {
    type Result = ();

    fn handle(&mut self, Deliver(delivery): Deliver, ctx: &mut Context<Self>) {
        self.in_flight += 1;
        // Boxed where it is built: the pipeline's future is large, and the actor-future
        // wrappers below would otherwise copy it by value on the way to `spawn`'s box.
        let work = Box::pin(process(
            delivery,
            self.services.clone(),
            self.draining.subscribe(),
        ));
        ctx.spawn(work.into_actor(self).map(|_, dispatcher, _| {
            dispatcher.in_flight -= 1;
            if dispatcher.in_flight == 0 {
                for waiter in dispatcher.idle_waiters.drain(..) {
                    let _ = waiter.send(());
                }
            }
        }));
    }
}

impl Handler<BeginDrain> for Dispatcher {
    type Result = ();

    fn handle(&mut self, _: BeginDrain, _: &mut Context<Self>) {
        self.draining.send_replace(true);
    }
}

impl Handler<WaitIdle> for Dispatcher {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: WaitIdle, _: &mut Context<Self>) -> Self::Result {
        let (done, idle) = oneshot::channel();
        if self.in_flight == 0 {
            let _ = done.send(());
        } else {
            self.idle_waiters.push(done);
        }
        Box::pin(async move {
            let _ = idle.await;
        })
    }
}
