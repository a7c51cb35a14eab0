//! `celeriac beat --schedule FILE`: runs a Beat from a TOML schedule until SIGINT or
//! SIGTERM; then, if it leads, it saves its state and releases the lead.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use celeriac::beat::schedule::parse_every;
use celeriac::{connect_broker, Beat, Config};

/// The arguments of `celeriac beat`.
#[derive(Debug, clap::Args)]
pub struct BeatArgs {
    /// The TOML schedule: `[[entry]]` tables (see the README's Beat section).
    #[arg(long, short = 's')]
    schedule: PathBuf,
    /// The beat's name, overriding the file's: instances with the same name share one
    /// leader and one stored state.
    #[arg(long)]
    name: Option<String>,
    /// How often a follower tries to take the lead (`500ms`, `1s`...), overriding the file's.
    #[arg(long, value_parser = parse_every)]
    leader_retry: Option<Duration>,
}

/// Runs the beat; exit code 1 on a schedule or broker error (one line on stderr).
pub fn run(args: BeatArgs, config: Config) -> ExitCode {
    let system = actix_rt::System::new();
    match system.block_on(serve(args, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("celeriac beat: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: BeatArgs, config: Config) -> Result<(), Box<dyn std::error::Error>> {
    let mut beat = Beat::from_file(&args.schedule)?;
    if let Some(name) = args.name {
        beat = beat.with_name(name);
    }
    if let Some(retry) = args.leader_retry {
        beat = beat.with_leader_retry(retry);
    }
    let broker = connect_broker(&config).await?;
    log::info!(
        "beat \"{}\": {} entries from {}, trying to lead every {:?}",
        beat.name(),
        beat.entries().len(),
        args.schedule.display(),
        beat.leader_retry()
    );
    let handle = beat.start(broker.clone(), &config);
    let mut terminate =
        actix_rt::signal::unix::signal(actix_rt::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = actix_rt::signal::ctrl_c() => log::info!("SIGINT received: stopping"),
        _ = terminate.recv() => log::info!("SIGTERM received: stopping"),
    }
    handle.stop().await?;
    broker.close().await?;
    Ok(())
}
