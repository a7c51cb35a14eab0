//! An actix-web service that sends tasks: `POST /add?x=2&y=3` answers `{"task_id": "..."}`
//! once the broker confirmed the task, and `GET /tasks/{id}` answers its state and result
//! from the Redis result backend (`redis://`, or `rediss://` over TLS), from any instance of
//! the service (the usual web pattern: return the id, poll it later).
//!
//! ```text
//! CELERIAC_BROKER_URL=amqp://guest:guest@127.0.0.1:5672/%2f \
//!   CELERIAC_RESULT_BACKEND=redis://127.0.0.1:6379/0 cargo run --example actix_web
//! curl -X POST 'http://127.0.0.1:8080/add?x=2&y=3'     # {"task_id": "..."}
//! curl 'http://127.0.0.1:8080/tasks/<id>'              # {"state": "SUCCESS", "result": 5, ...}
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
use celeriac::{
    connect_broker, Config, Producer, RedisBackendConfig, RedisResults, ResultError, SendError,
};
use derive_more::{Display, Error, From};
use serde::Deserialize;

/// Why a request failed.
#[derive(Debug, Display, Error, From)]
enum ApiError {
    /// The task could not be sent.
    #[display("could not send the task: {_0}")]
    Send(SendError),
    /// The result could not be read.
    #[display("could not read the result: {_0}")]
    Result(ResultError),
    /// No result backend to read from.
    #[display("no result backend: set CELERIAC_RESULT_BACKEND=redis://... (or rediss://...)")]
    NoResults,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> actix_web::http::StatusCode {
        match self {
            ApiError::NoResults => actix_web::http::StatusCode::NOT_IMPLEMENTED,
            _ => actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code())
            .json(serde_json::json!({ "error": self.to_string() }))
    }
}

/// Query of `POST /add`.
#[derive(Deserialize)]
struct AddQuery {
    x: i64,
    y: i64,
}

/// Where tasks go, and where their results are read.
struct Target {
    producer: Producer,
    queue: String,
    /// The Redis result backend, when `CELERIAC_RESULT_BACKEND` names one (`redis://` or
    /// `rediss://`).
    results: Option<RedisResults>,
}

/// `GET /tasks/{id}`: `{"task_id", "state", "ready", "result"}`, with the exception
/// (`{"exc_type", "exc_message"}`) as `result` for FAILURE and REVOKED, and PENDING for a
/// task nobody stored a result for (yet).
async fn task_state(
    target: web::Data<Target>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let results = target.results.as_ref().ok_or(ApiError::NoResults)?;
    let id = id.into_inner();
    let document = results.redis_async_result(&id).latest().await?;
    let body = match document {
        None => serde_json::json!({
            "task_id": id, "state": "PENDING", "ready": false, "result": null,
        }),
        Some(document) => serde_json::json!({
            "task_id": id,
            "state": document.status.as_str(),
            "ready": document.status.is_ready(),
            "result": document.result,
        }),
    };
    Ok(HttpResponse::Ok().json(body))
}

async fn add(
    target: web::Data<Target>,
    query: web::Query<AddQuery>,
) -> Result<HttpResponse, ApiError> {
    let signature = tasks::add::try_new(query.x, query.y)?.with_queue(target.queue.clone());
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
    // redis:// or rediss:// (TLS); any other backend (or none) leaves GET /tasks/{id} out.
    let results = match RedisBackendConfig::configured(&config)? {
        Some(backend) => Some(RedisResults::connect(backend).await?),
        None => None,
    };
    let target = web::Data::new(Target {
        producer: Producer::new(broker.clone(), &config),
        queue,
        results,
    });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(target.clone())
            .route("/add", web::post().to(add))
            .route("/tasks/{id}", web::get().to(task_state))
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
