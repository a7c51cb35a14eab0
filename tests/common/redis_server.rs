//! The Redis of the Redis result backend tests: the private one of scripts/test
//! (`CELERIAC_TEST_REDIS_URL`, and its TLS port `CELERIAC_TEST_REDIS_TLS_URL`), or one a test
//! starts for itself with `scripts/redis` (with a password, or to stop and restart it).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The Redis the tests run against; fails with instructions when there is none.
pub fn redis_url() -> String {
    match std::env::var("CELERIAC_TEST_REDIS_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "CELERIAC_TEST_REDIS_URL is not set: these tests need a real Redis. Run \
             scripts/test (it installs redis-server and starts a private one), or start one \
             with `scripts/redis start DIR` and export the CELERIAC_TEST_REDIS_URL it writes \
             to DIR/env, e.g. redis://127.0.0.1:6379/0"
        ),
    }
}

/// The TLS port of the tests' Redis, as a `rediss://` URL trusting its test CA
/// (`?ssl_cert_reqs=required&ssl_ca_certs=...`); fails with instructions when there is none.
pub fn redis_tls_url() -> String {
    match std::env::var("CELERIAC_TEST_REDIS_TLS_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "CELERIAC_TEST_REDIS_TLS_URL is not set: these tests need a real Redis serving TLS. \
             Run scripts/test (its private Redis serves TLS too), or start one with \
             `scripts/redis start DIR` and `set -a; . DIR/env; set +a` (it writes \
             CELERIAC_TEST_REDIS_TLS_URL and CELERIAC_TEST_REDIS_TLS_DIR)"
        ),
    }
}

/// The test PKI of the tests' Redis (`ca.pem`, `client.pem`, `client.key`...).
pub fn redis_tls_dir() -> PathBuf {
    match std::env::var("CELERIAC_TEST_REDIS_TLS_DIR") {
        Ok(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => panic!(
            "CELERIAC_TEST_REDIS_TLS_DIR is not set: run scripts/test, or `scripts/redis start \
             DIR` and `set -a; . DIR/env; set +a`"
        ),
    }
}

/// A Redis of a test's own, started with scripts/redis, stopped when dropped.
pub struct PrivateRedis {
    /// Its directory (config, log, env).
    dir: PathBuf,
    /// Its port, kept across restarts.
    pub port: u16,
    /// The password it requires, if any.
    password: Option<String>,
    /// `redis://[:password@]127.0.0.1:port/0`.
    pub url: String,
    /// Its TLS port, kept across restarts.
    pub tls_port: u16,
    /// `rediss://[:password@]127.0.0.1:tls_port/0?ssl_cert_reqs=required&ssl_ca_certs=...`.
    pub tls_url: String,
    /// The scripts/redis settings it was started with (kept for restarts).
    settings: Vec<(String, String)>,
}

impl PrivateRedis {
    /// Starts a Redis on a free port, requiring `password` when given. Blocking (run it in
    /// `spawn_blocking` from async code that must keep running meanwhile).
    pub fn start(password: Option<&str>) -> Self {
        Self::start_with(password, &[])
    }

    /// [`start`](Self::start) with more of scripts/redis's settings, e.g.
    /// `("CELERIAC_REDIS_TLS_SERVER_SAN", "DNS:elsewhere.invalid")` or
    /// `("CELERIAC_REDIS_TLS_REQUIRE_CLIENT_CERT", "1")`. Blocking.
    pub fn start_with(password: Option<&str>, settings: &[(&str, &str)]) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "celeriac-test-redis-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let mut redis = PrivateRedis {
            dir,
            port: 0,
            password: password.map(str::to_string),
            url: String::new(),
            tls_port: 0,
            tls_url: String::new(),
            settings: settings
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
        };
        redis.boot(None);
        redis
    }

    /// Stops the server (`scripts/redis stop`). Blocking.
    pub fn stop(&self) {
        script(&["stop"], &self.dir, &[]);
    }

    /// Starts it again on the same ports (and with the same test PKI). Blocking.
    pub fn restart(&mut self) {
        let ports = (self.port, self.tls_port);
        self.boot(Some(ports));
    }

    /// Its test PKI (`ca.pem`, `client.pem`, `client.key`...).
    pub fn tls_dir(&self) -> PathBuf {
        self.dir.join("tls")
    }

    fn boot(&mut self, ports: Option<(u16, u16)>) {
        let mut env: Vec<(&str, String)> = self
            .settings
            .iter()
            .map(|(name, value)| (name.as_str(), value.clone()))
            .collect();
        if let Some(password) = &self.password {
            env.push(("CELERIAC_REDIS_PASSWORD", password.clone()));
        }
        if let Some((port, tls_port)) = ports {
            env.push(("CELERIAC_REDIS_PORT", port.to_string()));
            env.push(("CELERIAC_REDIS_TLS_PORT", tls_port.to_string()));
        }
        let printed = script(&["start"], &self.dir, &env);
        for line in printed.lines() {
            if let Some(url) = line.strip_prefix("CELERIAC_TEST_REDIS_URL=") {
                self.url = url.to_string();
            }
            if let Some(port) = line.strip_prefix("CELERIAC_TEST_REDIS_PORT=") {
                self.port = port.parse().expect("scripts/redis prints a port");
            }
            // Quoted for the shell (the query has a `&`).
            if let Some(url) = line.strip_prefix("CELERIAC_TEST_REDIS_TLS_URL=") {
                self.tls_url = url.trim_matches('\'').to_string();
            }
            if let Some(port) = line.strip_prefix("CELERIAC_TEST_REDIS_TLS_PORT=") {
                self.tls_port = port.parse().expect("scripts/redis prints a TLS port");
            }
        }
        assert!(
            !self.url.is_empty() && !self.tls_url.is_empty(),
            "scripts/redis printed no URL or no TLS URL: {printed}"
        );
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `scripts/redis ARGS DIR` and answers what it printed; fails the test if it fails.
fn script(args: &[&str], dir: &Path, env: &[(&str, String)]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/redis");
    let mut command = Command::new(&path);
    command.args(args).arg(dir);
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("cannot run {}: {error}", path.display()));
    assert!(
        output.status.success(),
        "scripts/redis {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
