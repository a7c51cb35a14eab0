//! The Redis result backend over TLS (`rediss://`), against the TLS port of a real Redis
//! (scripts/redis serves one with a test PKI: `CELERIAC_TEST_REDIS_TLS_URL`) and Python
//! Celery 5.7 (`CELERIAC_TEST_PYTHON`).

mod common;

use std::time::Duration;

use celeriac::backend::redis::RedisBackendError;
use celeriac::protocol::ResultMessage;
use celeriac::{AsyncResult, RedisBackendConfig, RedisResults, ResultError, Signature};
use common::redis_server::{redis_tls_url, redis_url, PrivateRedis};
use serde_json::json;

/// A generous bound for waits (loaded machines).
const PATIENCE: Duration = Duration::from_secs(30);

fn task_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The stored document of `task_id`, read over the plain port of the same server.
async fn stored_in_plain(task_id: &str) -> Option<String> {
    let mut connection = redis::Client::open(redis_url())
        .expect("a Redis URL")
        .get_multiplexed_async_connection()
        .await
        .expect("a plain connection to the test Redis");
    redis::cmd("GET")
        .arg(format!("celery-task-meta-{task_id}"))
        .query_async(&mut connection)
        .await
        .expect("GET")
}

/// A worker storing over `rediss://`, a producer reading over `rediss://`, and a handle
/// made from the task id alone (as another process would) reading over `rediss://`.
#[actix_rt::test]
async fn a_worker_stores_over_tls_what_readers_read_over_tls() {
    common::init_logging();
    let config = celeriac::Config {
        result_backend: Some(redis_tls_url()),
        ..common::config(1)
    };
    let broker = common::connect(&config).await;
    let queue = common::unique_queue("redis-tls");
    let (builder, _events) = common::test_worker(&broker, &config, &queue);
    let worker = match builder.register::<common::Add>().start().await {
        Ok(worker) => worker,
        Err(error) => panic!("a worker with a rediss:// backend starts: {error}"),
    };
    let producer = match celeriac::Producer::from_config(broker.clone(), &config).await {
        Ok(producer) => producer,
        Err(error) => panic!("a producer with a rediss:// backend: {error}"),
    };
    let result = producer
        .send_signature_with_result(
            Signature::new("test.add")
                .with_args(vec![json!(2), json!(3)])
                .with_queue(queue.clone()),
        )
        .await
        .expect("sent");
    match result.get(PATIENCE).await {
        Ok(value) => assert_eq!(value, json!(5)),
        Err(error) => panic!("expected 5 over rediss://: {error}"),
    }
    let by_id = AsyncResult::from_id(result.id(), &config).expect("a rediss:// reader");
    match by_id.get(PATIENCE).await {
        Ok(value) => assert_eq!(value, json!(5)),
        Err(error) => panic!("expected 5 from a handle made by id: {error}"),
    }
    // The same server, seen through its plain port: the result went there.
    let stored = stored_in_plain(result.id()).await.expect("stored");
    assert!(stored.contains("\"SUCCESS\""), "{stored}");
    worker.stop().await.expect("the worker stops");
    common::delete_queues(&broker, &[&queue]).await;
    broker.close().await.ok();
}

/// A Python producer whose backend is the `rediss://` URL (Celery's ssl_* parameters)
/// sends to a celeriac worker (the `interop` example) storing over `rediss://`: values,
/// exceptions, REVOKED and STARTED reach Python's `AsyncResult` over TLS.
#[actix_rt::test]
async fn python_celery_reads_over_tls_what_a_celeriac_worker_stores() {
    let config = common::config(1);
    let broker = common::connect(&config).await;
    let queue = common::unique_queue("redis-tls-worker");
    let tls_url = redis_tls_url();
    let mut worker = common::KillOnDrop(
        common::example_command("interop")
            .env("CELERIAC_BROKER_URL", common::amqp_url())
            .env("CELERIAC_RESULT_BACKEND", &tls_url)
            .env("CELERIAC_TRACK_STARTED", "true")
            .env("CELERIAC_QUEUE", &queue)
            .env("CELERIAC_CONCURRENCY", "2")
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("the interop worker starts"),
    );
    let output = std::process::Command::new(common::python())
        .arg(common::python_dir().join("redis_results.py"))
        .args([tls_url.as_str(), "send", &common::amqp_url(), &queue])
        .output()
        .expect("Python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.lines().any(|line| line == "all checks passed"),
        "redis_results.py over rediss:// failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let exit = worker.terminate(Duration::from_secs(30)).await;
    assert!(exit.success(), "the worker exited with {exit}");
    common::delete_queues(&broker, &[&queue]).await;
}

/// The password of the private Redis of the refusal tests: it must appear in no error.
fn secret() -> String {
    format!("tls-secret-{}", uuid::Uuid::new_v4().simple())
}

/// `rediss://:password@127.0.0.1:port/0?query`.
fn url(password: &str, port: u16, query: &str) -> String {
    format!("rediss://:{password}@127.0.0.1:{port}/0?{query}")
}

/// Connecting (PING) to `url` fails; answers the error, checked to be a TLS error that
/// names no password.
async fn refused(url: &str, password: &str) -> RedisBackendError {
    let error = match RedisResults::connect(RedisBackendConfig::new(url)).await {
        Ok(_) => panic!("{} was accepted", url.replace(password, "***")),
        Err(error) => error,
    };
    let text = error.to_string();
    assert!(!text.contains(password), "the password shows: {text}");
    assert!(!format!("{error:?}").contains(password), "{error:?}");
    assert!(
        matches!(error, RedisBackendError::Tls { .. }),
        "expected a TLS error: {text}"
    );
    error
}

/// A CA that did not sign the server's certificate, a certificate for another host name, a
/// missing CA file and `ssl_cert_reqs=none`: each one clear, permanent error (no retries
/// until a timeout), with the password masked. (`rediss://` to a port without TLS is not
/// here: whether Redis answers the TLS hello, which rustls then refuses, or waits for more,
/// until the connect timeout, depends on the hello's random bytes.)
#[actix_rt::test]
async fn certificate_problems_are_one_clear_error_without_the_password() {
    common::init_logging();
    let password = secret();
    let elsewhere = {
        let password = password.clone();
        actix_rt::task::spawn_blocking(move || {
            PrivateRedis::start_with(
                Some(&password),
                &[("CELERIAC_REDIS_TLS_SERVER_SAN", "DNS:elsewhere.invalid")],
            )
        })
        .await
        .expect("started")
    };
    let ca = elsewhere.tls_dir().join("ca.pem");
    let other_dir = common::tls::TempDir::new("redis-other-ca");
    let other_ca = common::tls::other_ca(&other_dir.0);

    let wrong_ca = url(
        &password,
        elsewhere.tls_port,
        &format!("ssl_cert_reqs=required&ssl_ca_certs={}", other_ca.display()),
    );
    let error = refused(&wrong_ca, &password).await;
    assert!(
        error
            .to_string()
            .contains("not signed by a CA celeriac trusts"),
        "{error}"
    );
    // A reader waiting on that server answers the same error at once, not a timeout.
    let config = celeriac::Config {
        result_backend: Some(wrong_ca.clone()),
        ..celeriac::Config::default()
    };
    let reader = AsyncResult::from_id(task_id(), &config).expect("a handle (no connection yet)");
    match reader.get(PATIENCE).await {
        Err(ResultError::Backend { reason, .. }) => {
            assert!(reason.contains("not signed by a CA"), "{reason}");
            assert!(!reason.contains(&password), "{reason}");
        }
        other => panic!("expected ResultError::Backend, got {other:?}"),
    }

    let wrong_name = url(
        &password,
        elsewhere.tls_port,
        &format!("ssl_ca_certs={}", ca.display()),
    );
    let error = refused(&wrong_name, &password).await;
    assert!(
        error.to_string().contains("not valid for the host name"),
        "{error}"
    );

    let missing = url(
        &password,
        elsewhere.tls_port,
        "ssl_cert_reqs=required&ssl_ca_certs=/nonexistent/celeriac-redis-ca.pem",
    );
    let error = refused(&missing, &password).await;
    assert!(
        error.to_string().contains(
            "cannot read the TLS CA file (ssl_ca_certs) /nonexistent/celeriac-redis-ca.pem"
        ),
        "{error}"
    );

    let unverified = url(&password, elsewhere.tls_port, "ssl_cert_reqs=none");
    let error = refused(&unverified, &password).await;
    assert!(error.to_string().contains("always verifies"), "{error}");

    drop(elsewhere);
}

/// A Redis that requires client certificates: refused without one (a clear TLS error),
/// served with `ssl_certfile` and `ssl_keyfile`; the password is checked over TLS too.
#[actix_rt::test]
async fn mutual_tls_with_a_client_certificate_and_a_password() {
    common::init_logging();
    let password = secret();
    let redis = {
        let password = password.clone();
        actix_rt::task::spawn_blocking(move || {
            PrivateRedis::start_with(
                Some(&password),
                &[("CELERIAC_REDIS_TLS_REQUIRE_CLIENT_CERT", "1")],
            )
        })
        .await
        .expect("started")
    };
    let pki = redis.tls_dir();
    let ca = format!("ssl_ca_certs={}", pki.join("ca.pem").display());

    let error = refused(&url(&password, redis.tls_port, &ca), &password).await;
    assert!(error.to_string().contains("client certificate"), "{error}");

    let with_cert = format!(
        "{ca}&ssl_certfile={}&ssl_keyfile={}",
        pki.join("client.pem").display(),
        pki.join("client.key").display()
    );
    let wrong_password = url("not-the-password", redis.tls_port, &with_cert);
    match RedisResults::connect(RedisBackendConfig::new(&wrong_password)).await {
        Err(RedisBackendError::Auth { .. }) => {}
        Err(other) => panic!("expected RedisBackendError::Auth, got {other}"),
        Ok(_) => panic!("a wrong password was accepted"),
    }
    let backend = match RedisResults::connect(RedisBackendConfig::new(url(
        &password,
        redis.tls_port,
        &with_cert,
    )))
    .await
    {
        Ok(backend) => backend,
        Err(error) => panic!("mutual TLS with the client certificate: {error}"),
    };
    let id = task_id();
    backend
        .store(ResultMessage::success(&id, json!({"over": "mTLS"})))
        .await
        .expect("stored");
    assert_eq!(
        backend.async_result(&id).get(PATIENCE).await.ok(),
        Some(json!({"over": "mTLS"}))
    );
    assert!(!format!("{backend:?}").contains(&password));
    drop(redis);
}
