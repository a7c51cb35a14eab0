//! An actix-web service that sends tasks: `POST /add?x=2&y=3` answers `{"task_id": "..."}`
//! once the broker confirmed the task.
//!
//! ```text
//! CELERIAC_BROKER_URL=amqp://guest:guest@127.0.0.1:5672/%2f cargo run --example actix_web
//! curl -X POST 'http://127.0.0.1:8080/add?x=2&y=3'
//! ```
//!
//! Listens on `CELERIAC_HTTP_ADDR` (default `127.0.0.1:8080`), sends to `CELERIAC_QUEUE`
//! (default `celery`). The producer (and the publisher actor behind it) is started once,
//! outside the server factory, and shared through `web::Data`. The server's own signal
//! handling is off (it would stop the whole actix System at once): on SIGINT or SIGTERM the
//! app stops the server gracefully, a second signal stops it at once, then the broker
//! connection closes.

#[path = "shared/tasks.rs"]
mod tasks;

use std::process::ExitCode;

use actix_web::{web, App, HttpResponse, HttpServer, ResponseError};
use celeriac::{connect_broker, Config, Producer, SendError, Signature};
use derive_more::{Display, Error, From};
use serde::Deserialize;

/// Why a request failed.
#[derive(Debug, Display, Error, From)]
enum ApiError {
    /// The task could not be sent.
    #[display("could not send the task: {_0}")]
    Send(SendError),
}

impl ResponseError for ApiError {
    fn status_code(&self) -> actix_web::http::StatusCode {
        actix_web::http::StatusCode::SERVICE_UNAVAILABLE
    }
}

/// Query of `POST /add`.
#[derive(Deserialize)]
struct AddQuery {
    x: i64,
    y: i64,
}

/// Where tasks go.
struct Target {
    producer: Producer,
    queue: String,
}

async fn add(
    target: web::Data<Target>,
    query: web::Query<AddQuery>,
) -> Result<HttpResponse, ApiError> {
    let signature = Signature::of::<tasks::Add>(&tasks::AddArgs {
        x: query.x,
        y: query.y,
    })?
    .with_queue(target.queue.clone());
    let task_id = target.producer.send_signature(signature).await?;
    Ok(HttpResponse::Accepted().json(serde_json::json!({ "task_id": task_id })))
}

#[actix_web::main]
async fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            log::error!("actix_web example failed: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let config = Config::from_env();
    let addr = std::env::var("CELERIAC_HTTP_ADDR").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let queue = std::env::var("CELERIAC_QUEUE").unwrap_or_else(|_| config.default_queue.clone());
    let broker = connect_broker(&config).await?;
    let target = web::Data::new(Target {
        producer: Producer::new(broker.clone(), &config),
        queue,
    });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(target.clone())
            .route("/add", web::post().to(add))
    })
    .disable_signals()
    .bind(&addr)?
    .run();
    let handle = server.handle();
    log::info!("listening on http://{addr}");
    let serving = actix_rt::spawn(server);

    let mut terminate =
        actix_rt::signal::unix::signal(actix_rt::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = actix_rt::signal::ctrl_c() => log::info!("SIGINT: graceful shutdown (again to stop at once)"),
        _ = terminate.recv() => log::info!("SIGTERM: graceful shutdown (again to stop at once)"),
    }
    // Warm: requests in progress finish (their sends are confirmed or fail), new ones are
    // refused. A second signal stops at once. Then the broker connection closes.
    let graceful = handle.stop(true);
    tokio::select! {
        () = graceful => {}
        _ = actix_rt::signal::ctrl_c() => {
            log::warn!("second signal: stopping at once");
            handle.stop(false).await;
        }
        _ = terminate.recv() => {
            log::warn!("second signal: stopping at once");
            handle.stop(false).await;
        }
    }
    let _ = serving.await;
    broker.close().await?;
    Ok(())
}
