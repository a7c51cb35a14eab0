//! `celeriac events`: prints every event workers send, one line each (or one JSON object
//! per line with `--json`), until interrupted. Once its queue is bound it broadcasts
//! `heartbeat`, as Celery's event receiver does, so that every worker announces itself
//! at once (a `worker-heartbeat` with `freq` 5) instead of at its next periodic one.

use std::io::Write;

use celeriac::monitor::receiver::receive_events;
use celeriac::Config;
use clap::Args;
use futures::StreamExt;

use crate::error::CliError;
use crate::{output, session};

/// `events`' command line.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// One JSON object per line instead of text.
    #[arg(long, short = 'j')]
    json: bool,
}

/// Prints events as they come; fails when the broker connection fails.
pub async fn run(args: EventsArgs, config: &Config) -> Result<(), CliError> {
    let (broker, producer) = session::connect(config).await?;
    let mut events = receive_events(&broker).await.map_err(CliError::failed)?;
    // Not fatal: the workers' periodic heartbeats come anyway.
    if let Err(error) = producer.broadcast("heartbeat", Default::default()).await {
        log::warn!("could not ask the workers for a heartbeat: {error}");
    }
    eprintln!("receiving events (Ctrl-C to stop)");
    let mut stdout = std::io::stdout();
    let outcome = loop {
        let event = tokio::select! {
            event = events.next() => event,
            _ = actix_rt::signal::ctrl_c() => break Ok(()),
        };
        let line = match event {
            Some(Ok(event)) if args.json => event.to_string(),
            Some(Ok(event)) => output::event_line(&event),
            Some(Err(error)) => break Err(CliError::failed(error)),
            None => break Err(CliError::Failed("the event stream ended".into())),
        };
        // Flushed per line, so that a pipe sees each event as it arrives.
        if writeln!(stdout, "{line}")
            .and_then(|()| stdout.flush())
            .is_err()
        {
            break Ok(());
        }
    };
    session::close(&broker).await;
    outcome
}
