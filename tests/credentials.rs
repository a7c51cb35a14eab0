//! Credentials never shown: `connect_broker` with a malformed URL that holds a password
//! fails with an error (its text and its `Debug`) that does not contain the password, in
//! any of the shapes lapin's URL parser complains about (some of which quote the URL).
//! No broker is needed: each URL is refused before any connection.

use std::time::Duration;

use celeriac::{connect_broker, BrokerError, Config};

const PASSWORD: &str = "s3cret-Pa55";

#[actix_rt::test]
async fn a_malformed_url_with_a_password_gives_an_error_without_it() {
    let urls = [
        // No "//": lapin answers "Invalid URL: '<the URL>'".
        format!("amqp:guest:{PASSWORD}@127.0.0.1:5672/%2f"),
        format!("guest:{PASSWORD}@127.0.0.1:5672/%2f"),
        format!("amqp://guest:{PASSWORD}@127.0.0.1:99999/%2f"),
        format!("amqp://guest:{PASSWORD}@127.0.0.1:5672/%2f?heartbeat=often"),
        format!("http://guest:{PASSWORD}@127.0.0.1:5672/%2f"),
        format!("amqp://guest:{PASSWORD}%FF@127.0.0.1:5672/%2f"),
        format!("amqp://guest:{PASSWORD}@127.0.0.1:5672;amqp://guest:{PASSWORD}@127.0.0.2"),
    ];
    for url in urls {
        let config = Config {
            broker_url: url.clone(),
            connect_timeout: Duration::from_secs(5),
            ..Config::default()
        };
        let outcome = tokio::time::timeout(Duration::from_secs(30), connect_broker(&config)).await;
        let error = match outcome {
            Err(_) => panic!("connect_broker hung on the malformed URL {url:?}"),
            Ok(Ok(_)) => panic!("connect_broker accepted the malformed URL {url:?}"),
            Ok(Err(error)) => error,
        };
        let (shown, debug) = (error.to_string(), format!("{error:?}"));
        println!("{shown}");
        assert!(
            matches!(error, BrokerError::Connect { .. }),
            "{url:?}: expected a Connect error, got {shown}"
        );
        assert!(
            !shown.contains(PASSWORD),
            "{url:?}: the error shows the password: {shown}"
        );
        assert!(
            !debug.contains(PASSWORD),
            "{url:?}: its Debug shows the password: {debug}"
        );
        assert!(
            !shown.contains("Pa55"),
            "{url:?}: the error shows part of the password: {shown}"
        );
    }
}

#[actix_rt::test]
async fn an_unsupported_result_backend_is_named_without_its_password() {
    let config = Config {
        broker_url: celeriac::app::MEMORY_BROKER_URL.to_string(),
        // redis:// is supported now; memcache:// is not.
        result_backend: Some(format!("memcache://:{PASSWORD}@127.0.0.1:11211/0")),
        ..Config::default()
    };
    let broker = connect_broker(&config).await.expect("the embedded broker");
    let error = match celeriac::Producer::from_config(broker, &config).await {
        Ok(_) => panic!("a memcache:// result backend was accepted"),
        Err(error) => error.to_string(),
    };
    assert!(
        error.contains("memcache://:***@127.0.0.1:11211/0"),
        "{error}"
    );
    assert!(
        !error.contains(PASSWORD),
        "the error shows the password: {error}"
    );
}
