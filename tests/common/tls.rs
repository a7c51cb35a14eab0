//! Helpers of the TLS tests: the node's `amqps://` listener and test PKI (made by
//! `scripts/rabbitmq start` under DIR/tls), private nodes with other TLS settings, and a
//! second CA made with openssl in a temporary directory.

use std::path::{Path, PathBuf};
use std::process::Command;

use celeriac::TlsConfig;

use super::PrivateNode;

/// The TLS listener of the test node; fails with instructions when there is none.
pub fn amqps_url() -> String {
    match std::env::var("CELERIAC_TEST_AMQPS_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "CELERIAC_TEST_AMQPS_URL is not set: these tests need a RabbitMQ with a TLS \
             listener. Run scripts/test (it starts a private node with one), or start one with \
             `scripts/rabbitmq start DIR` and `set -a; . DIR/env; set +a`"
        ),
    }
}

/// The test PKI of the test node (`ca.pem`, `client.pem`, `client.key`...).
pub fn tls_dir() -> PathBuf {
    match std::env::var("CELERIAC_TEST_TLS_DIR") {
        Ok(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => panic!(
            "CELERIAC_TEST_TLS_DIR is not set: run scripts/test, or `scripts/rabbitmq start DIR` \
             and `set -a; . DIR/env; set +a`"
        ),
    }
}

/// Trust the test CA under `dir`, no client certificate.
pub fn trust(dir: &Path) -> TlsConfig {
    TlsConfig {
        ca_file: Some(dir.join("ca.pem")),
        ..TlsConfig::default()
    }
}

/// Trust the test CA under `dir` and show its client certificate.
pub fn trust_with_client_cert(dir: &Path) -> TlsConfig {
    TlsConfig {
        ca_file: Some(dir.join("ca.pem")),
        cert_file: Some(dir.join("client.pem")),
        key_file: Some(dir.join("client.key")),
    }
}

/// A temporary directory, deleted when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A new empty directory under the system's temporary directory.
    pub fn new(label: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "celeriac-{label}-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&path).expect("a temporary directory");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Makes a self-signed CA with openssl under `dir` (`ca.pem`, `ca.key`) that signed
/// nothing the broker shows; answers the path of its certificate.
pub fn other_ca(dir: &Path) -> PathBuf {
    let output = Command::new("openssl")
        .current_dir(dir)
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=celeriac other test CA"])
        .args(["-keyout", "ca.key", "-out", "ca.pem"])
        .output()
        .expect("openssl runs (apt-get install openssl; scripts/test installs it)");
    assert!(
        output.status.success(),
        "openssl could not make a CA: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    dir.join("ca.pem")
}

/// How a private node's TLS listener is set up.
#[derive(Default)]
pub struct NodeTls {
    /// Refuse TLS clients that show no certificate (`fail_if_no_peer_cert = true`).
    pub require_client_cert: bool,
    /// The server certificate's subjectAltName, e.g. `DNS:elsewhere.invalid` (default:
    /// `DNS:localhost,IP:127.0.0.1`).
    pub server_san: Option<String>,
}

impl PrivateNode {
    /// Boots a node of the test's own whose TLS listener is set up as `tls` says.
    pub fn with_tls(tls: NodeTls) -> Self {
        let dir =
            std::env::temp_dir().join(format!("celeriac-node-{}", uuid::Uuid::new_v4().simple()));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/rabbitmq");
        let mut command = Command::new(script);
        command.arg("start").arg(&dir);
        if tls.require_client_cert {
            command.env("CELERIAC_RABBIT_TLS_REQUIRE_CLIENT_CERT", "1");
        }
        if let Some(san) = &tls.server_san {
            command.env("CELERIAC_RABBIT_TLS_SERVER_SAN", san);
        }
        let output = command.output().expect("scripts/rabbitmq runs");
        assert!(
            output.status.success(),
            "could not start a private RabbitMQ node (needs rabbitmq-server and openssl; \
             scripts/test installs them): {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let url = node_env(&dir, "CELERIAC_TEST_AMQP_URL");
        PrivateNode { dir, url }
    }

    /// The node's `amqps://` URL.
    pub fn amqps_url(&self) -> String {
        node_env(&self.dir, "CELERIAC_TEST_AMQPS_URL")
    }

    /// The node's test PKI.
    pub fn tls_dir(&self) -> PathBuf {
        self.dir.join("tls")
    }
}

/// A variable of the env file scripts/rabbitmq wrote under `dir`.
fn node_env(dir: &Path, name: &str) -> String {
    let env = std::fs::read_to_string(dir.join("env")).expect("the node's env file");
    env.lines()
        .find_map(|line| line.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("{name} is not in {}/env", dir.display()))
        .to_string()
}

/// Whether the connection named `name` (its `connection_name` client property) on the node
/// under `dir` uses TLS, from `rabbitmqctl list_connections ssl client_properties` (`None`:
/// no such connection).
pub fn connection_uses_tls(dir: &Path, name: &str) -> Option<bool> {
    let listing = super::node_ctl(
        dir,
        &[
            "list_connections",
            "-q",
            "--no-table-headers",
            "ssl",
            "client_properties",
        ],
    );
    listing
        .lines()
        .find(|line| line.contains(name))
        .map(|line| line.split('\t').next() == Some("true"))
}
