//! TLS (`amqps://`) against a real RabbitMQ with the test PKI of `scripts/rabbitmq start`:
//! tasks run end to end over TLS; a broker whose certificate comes from an unknown CA, or
//! is made for another host name, is refused at once with an error naming the broker and
//! the certificate problem; a broker that requires a client certificate takes ours.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use celeriac::{
    connect_broker, BrokerError, Config, Producer, Signature, TaskEventKind, TlsConfig,
};
use serde_json::json;

use common::tls::{
    amqps_url, connection_uses_tls, other_ca, tls_dir, trust, trust_with_client_cert, NodeTls,
    TempDir,
};
use common::*;

/// The connect timeout of every test: a refusal must come before it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

fn tls_config(url: &str, tls: TlsConfig, name: &str) -> Config {
    Config {
        broker_url: url.to_string(),
        broker_tls: tls,
        concurrency: 2,
        connect_timeout: CONNECT_TIMEOUT,
        connection_name: name.to_string(),
        ..Config::default()
    }
}

/// A connection name no other test uses (to find the connection with rabbitmqctl).
fn connection_name(test: &str) -> String {
    format!("celeriac-tls-{test}-{}", uuid::Uuid::new_v4().simple())
}

/// `url` with its password replaced by `password` (refused before the password is used).
fn with_password(url: &str, password: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let (credentials, host) = rest.split_once('@').expect("credentials");
    let user = credentials.split(':').next().unwrap_or_default();
    format!("{scheme}://{user}:{password}@{host}")
}

/// Connects, expecting a refusal; answers the error. That the refusal came before the
/// connect timeout is shown by its kind (`assert_refusal` wants `BrokerError::Connect`
/// with the TLS reason, not `ConnectTimeout`), not by a clock.
async fn refused(config: &Config, what: &str) -> BrokerError {
    init_logging();
    // The connect timeout bounds connect_broker; the guard only catches a hang.
    match tokio::time::timeout(CONNECT_TIMEOUT * 3, connect_broker(config)).await {
        Err(_) => panic!("{what}: connect_broker hung for {:?}", CONNECT_TIMEOUT * 3),
        Ok(Ok(_)) => panic!("{what}: connected although it should have been refused"),
        Ok(Err(error)) => error,
    }
}

/// Asserts the error is a refusal to connect naming the broker (password masked) and
/// containing each of `reasons`.
fn assert_refusal(error: &BrokerError, url: &str, password: &str, reasons: &[&str]) {
    let text = error.to_string();
    assert!(
        matches!(error, BrokerError::Connect { .. }),
        "expected a refusal with its reason, not: {text}"
    );
    let shown = celeriac::actors::broker::amqp::redact_url(url);
    assert!(
        text.contains(&shown),
        "the error does not name {shown}: {text}"
    );
    assert!(
        !text.contains(password),
        "the error shows the password: {text}"
    );
    for reason in reasons {
        assert!(
            text.contains(reason),
            "the error does not say {reason:?}: {text}"
        );
    }
}

/// Starts a worker for `test.add` on a new queue, sends `count` tasks, waits until each ran
/// once, stops the worker and closes the broker connection.
async fn run_tasks_over(config: &Config, count: i64) {
    let broker = connect(config).await;
    let queue = unique_queue("tls");
    let (builder, mut events) = test_worker(&broker, config, &queue);
    let worker = builder
        .register::<Add>()
        .start()
        .await
        .unwrap_or_else(|error| panic!("the worker did not start over TLS: {error}"));
    let producer = Producer::new(broker.clone(), config);
    let mut pending = HashSet::new();
    for n in 0..count {
        let signature = Signature::new("test.add")
            .with_args(vec![json!(n), json!(1)])
            .with_queue(&queue);
        let id = producer
            .send_signature(signature)
            .await
            .unwrap_or_else(|error| panic!("sending over TLS failed: {error}"));
        pending.insert(id);
    }
    while !pending.is_empty() {
        let left = pending.len();
        let event = wait_for_event(
            &mut events,
            Duration::from_secs(30),
            &format!("{left} of {count} tasks sent over TLS to succeed"),
            |event| matches!(event.kind, TaskEventKind::Succeeded { .. }),
        )
        .await;
        let id = event.task_id.unwrap_or_default();
        assert!(
            pending.remove(&id),
            "task {id} succeeded twice or was never sent"
        );
    }
    worker.stop().await.expect("the worker stops");
    delete_queues(&broker, &[&queue]).await;
    broker.close().await.expect("the connection closes");
}

/// Whether rabbitmqctl lists connection `name` on the node under `dir` as TLS, from a
/// blocking thread.
async fn listed_as_tls(dir: &Path, name: &str) -> Option<bool> {
    let (dir, name) = (dir.to_path_buf(), name.to_string());
    actix_rt::task::spawn_blocking(move || connection_uses_tls(&dir, &name))
        .await
        .expect("the rabbitmqctl thread")
}

/// (a) A worker and a producer over amqps:// trusting the test CA: every task runs once,
/// and RabbitMQ lists the connection as TLS.
#[actix_rt::test]
async fn a_worker_and_a_producer_over_amqps_run_every_task() {
    let name = connection_name("end-to-end");
    let config = tls_config(&amqps_url(), trust(&tls_dir()), &name);
    let probe = connect(&config).await;
    let node_dir = std::env::var("CELERIAC_TEST_RABBIT_DIR")
        .expect("CELERIAC_TEST_RABBIT_DIR is not set: run scripts/test");
    let mut listed = None;
    wait_until_async(
        "RabbitMQ to list the connection",
        Duration::from_secs(30),
        async || {
            listed = listed_as_tls(Path::new(&node_dir), &name).await;
            listed.is_some()
        },
    )
    .await;
    assert_eq!(
        listed,
        Some(true),
        "RabbitMQ does not list {name} as a TLS connection"
    );
    probe.close().await.expect("the connection closes");
    run_tasks_over(&config, 50).await;
}

/// Polls an async `condition` until it holds, failing after `timeout` with `what`.
async fn wait_until_async(what: &str, timeout: Duration, mut condition: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
}

/// (b) Trusting another CA: the broker's certificate does not verify, and connecting fails
/// at once, naming the broker and the unknown issuer, never falling back to plain AMQP.
#[actix_rt::test]
async fn a_broker_certificate_from_an_unknown_ca_is_refused() {
    let other = TempDir::new("other-ca");
    let tls = TlsConfig {
        ca_file: Some(other_ca(&other.0)),
        ..TlsConfig::default()
    };
    let password = "tls-test-password";
    let url = with_password(&amqps_url(), password);
    let config = tls_config(&url, tls, &connection_name("unknown-ca"));
    let error = refused(&config, "a server certificate from an unknown CA").await;
    println!("unknown CA: {error}");
    assert_refusal(
        &error,
        &url,
        password,
        &["invalid peer certificate", "UnknownIssuer"],
    );
}

/// (c) A broker whose certificate (signed by the trusted CA) is made for another host name
/// is refused, naming the name problem.
#[actix_rt::test]
async fn a_broker_certificate_for_another_host_name_is_refused() {
    let node = PrivateNode::with_tls(NodeTls {
        server_san: Some("DNS:elsewhere.invalid".into()),
        ..NodeTls::default()
    });
    let password = "tls-test-password";
    let url = with_password(&node.amqps_url(), password);
    let config = tls_config(&url, trust(&node.tls_dir()), &connection_name("wrong-name"));
    let error = refused(&config, "a server certificate for another host name").await;
    println!("another host name: {error}");
    assert_refusal(
        &error,
        &url,
        password,
        &["invalid peer certificate", "not valid for name"],
    );
}

/// (d) A broker that requires a client certificate: without one, connecting fails with a
/// clear error; with the test client certificate it works, and RabbitMQ saw that
/// certificate.
#[actix_rt::test]
async fn a_broker_requiring_a_client_certificate_takes_ours_and_refuses_none() {
    let node = PrivateNode::with_tls(NodeTls {
        require_client_cert: true,
        ..NodeTls::default()
    });
    let url = node.amqps_url();
    let without = tls_config(
        &url,
        trust(&node.tls_dir()),
        &connection_name("no-client-cert"),
    );
    let error = refused(&without, "no client certificate").await;
    println!("without a client certificate: {error}");
    let shown = celeriac::actors::broker::amqp::redact_url(&url);
    assert!(
        error.to_string().contains(&shown),
        "the error does not name {shown}: {error}"
    );

    let name = connection_name("client-cert");
    let with = tls_config(&url, trust_with_client_cert(&node.tls_dir()), &name);
    let probe = connect(&with).await;
    let listing = node_ctl(
        &node.dir,
        &[
            "list_connections",
            "-q",
            "--no-table-headers",
            "ssl",
            "peer_cert_subject",
            "client_properties",
        ],
    );
    let line = listing
        .lines()
        .find(|line| line.contains(&name))
        .unwrap_or_else(|| panic!("{name} is not listed:\n{listing}"));
    assert!(
        line.starts_with("true\t") && line.contains("CN=celeriac test client"),
        "RabbitMQ did not see our client certificate over TLS: {line}"
    );
    probe.close().await.expect("the connection closes");
    run_tasks_over(&with, 10).await;
}

/// A client certificate without its key is refused before connecting, naming the file.
#[actix_rt::test]
async fn a_client_certificate_without_its_key_is_a_clear_error() {
    let tls = TlsConfig {
        cert_file: Some("/nonexistent/client.pem".into()),
        ..TlsConfig::default()
    };
    let config = tls_config(
        "amqps://guest:guest@127.0.0.1:1/%2f",
        tls,
        &connection_name("half-identity"),
    );
    let error = refused(&config, "a client certificate without its key").await;
    assert!(matches!(error, BrokerError::Tls { .. }), "{error}");
    let text = error.to_string();
    assert!(
        text.contains("/nonexistent/client.pem") && text.contains("without its key"),
        "{text}"
    );

    let config = Config {
        broker_tls: TlsConfig {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..TlsConfig::default()
        },
        ..config
    };
    let error = refused(&config, "an unreadable CA file").await;
    let text = error.to_string();
    assert!(
        text.contains("cannot read the TLS CA file") && text.contains("/nonexistent/ca.pem"),
        "{text}"
    );
}
