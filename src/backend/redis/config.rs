//! `RedisBackendConfig`: how to reach Redis, how long results live, how stores retry.

use std::time::Duration;

use crate::actors::broker::amqp::{redact_url, RedactedUrl};
use crate::actors::ReconnectPolicy;
use crate::app::Config;

use super::error::RedisBackendError;
use super::tls::{install_crypto_provider, split_url, RedisTls, SplitUrl, UrlProblem};

/// Celery's default `result_expires`: one day.
pub const DEFAULT_RESULT_EXPIRES: Duration = Duration::from_secs(86_400);

/// How to reach Redis and how results are kept. `Debug` masks the URL's password.
#[derive(Clone)]
pub struct RedisBackendConfig {
    /// `redis://[[user]:password@]host[:port][/db]`, or `rediss://...` for TLS with
    /// Celery's query parameters `ssl_cert_reqs`, `ssl_ca_certs`, `ssl_certfile`,
    /// `ssl_keyfile` ([`RedisTls`]).
    pub url: String,
    /// The TTL of each stored result (Celery's `result_expires`), whole seconds, at least 1;
    /// zero: results never expire (Celery's `result_expires = None` or `0`: a plain `SET`).
    pub result_expires: Duration,
    /// How long connecting may take.
    pub connect_timeout: Duration,
    /// How long one command may wait for Redis's answer.
    pub response_timeout: Duration,
    /// How a failed store is retried; `max_attempts` bounds it (`None` counts as 1).
    pub store_retry: ReconnectPolicy,
}

impl RedisBackendConfig {
    /// A config for `url`: one-day TTL, 10-second connect and response timeouts, stores
    /// retried up to 30 times (25 to 51 s of backoff, with its jitter) before they fail.
    pub fn new(url: impl Into<String>) -> Self {
        RedisBackendConfig {
            url: url.into(),
            result_expires: DEFAULT_RESULT_EXPIRES,
            connect_timeout: Duration::from_secs(10),
            response_timeout: Duration::from_secs(10),
            store_retry: ReconnectPolicy {
                initial_delay: Duration::from_millis(100),
                max_delay: Duration::from_secs(2),
                max_attempts: Some(30),
            },
        }
    }

    /// The backend `config` names: its `result_backend` (a `redis://` or `rediss://` URL),
    /// `result_expires` and `connect_timeout`.
    pub fn from_config(config: &Config) -> Result<Self, RedisBackendError> {
        let url = config.result_backend.clone().unwrap_or_default();
        let mut backend = Self::new(url);
        backend.result_expires = config.result_expires;
        backend.connect_timeout = config.connect_timeout;
        backend.validate()?;
        Ok(backend)
    }

    /// The backend `config` names when its `result_backend` is a Redis URL (`redis://` or
    /// `rediss://`, see [`is_redis_url`]): `Ok(None)` for none (unset, `rpc://`, ...), an
    /// error for a Redis URL that cannot be used. For applications that read results when
    /// Redis is configured and do without otherwise.
    pub fn configured(config: &Config) -> Result<Option<Self>, RedisBackendError> {
        match config.result_backend.as_deref() {
            Some(url) if is_redis_url(url) => Self::from_config(config).map(Some),
            _ => Ok(None),
        }
    }

    /// The URL with its password masked, for messages and logs.
    pub fn server(&self) -> String {
        redact_url(&self.url)
    }

    /// The TTL in whole seconds (at least 1, as `SETEX` requires); `None` when results
    /// never expire (`result_expires` is zero).
    pub fn expires_seconds(&self) -> Option<u64> {
        expires_seconds(self.result_expires)
    }

    /// Checks the URL without reading any file: `redis://`, or `rediss://` with Celery's
    /// `ssl_*` parameters (see [`split_url`](super::tls::split_url)).
    pub fn validate(&self) -> Result<(), RedisBackendError> {
        self.split().map(|_| ())
    }

    /// The TLS settings of a `rediss://` URL (`None` for `redis://`).
    pub fn tls(&self) -> Result<Option<RedisTls>, RedisBackendError> {
        Ok(self.split()?.tls)
    }

    fn split(&self) -> Result<SplitUrl, RedisBackendError> {
        split_url(&self.url).map_err(|problem| match problem {
            UrlProblem::Invalid(reason) => RedisBackendError::InvalidUrl {
                url: self.server(),
                reason,
            },
            UrlProblem::Tls(reason) => RedisBackendError::Tls {
                server: self.server(),
                reason,
            },
        })
    }

    /// The redis-rs client for this URL (it does not connect yet). For `rediss://`, reads
    /// the certificate files now (a missing or unreadable one is [`RedisBackendError::Tls`]
    /// naming it) and makes sure rustls has its crypto provider (ring).
    pub(crate) fn client(&self) -> Result<::redis::Client, RedisBackendError> {
        let split = self.split()?;
        let invalid = |error: ::redis::RedisError| RedisBackendError::InvalidUrl {
            url: self.server(),
            reason: super::store::describe(&error, &self.url),
        };
        match split.tls {
            None => ::redis::Client::open(split.client_url.as_str()).map_err(invalid),
            Some(tls) => {
                let certificates = tls
                    .certificates()
                    .map_err(|reason| RedisBackendError::Tls {
                        server: self.server(),
                        reason,
                    })?;
                install_crypto_provider();
                ::redis::Client::build_with_tls(split.client_url.as_str(), certificates)
                    .map_err(invalid)
            }
        }
    }
}

/// Whether `result_backend` names the Redis backend: `redis://`, or `rediss://` (TLS).
pub fn is_redis_url(result_backend: &str) -> bool {
    let url = result_backend.trim();
    url.starts_with("redis://") || url.starts_with("rediss://")
}

/// The TTL of keys for `result_expires`: `None` (no TTL) for zero, as Celery's Redis backend
/// stores with a plain `SET` when its `expires` is falsy; else whole seconds, at least 1.
fn expires_seconds(result_expires: Duration) -> Option<u64> {
    (!result_expires.is_zero()).then(|| result_expires.as_secs().max(1))
}

impl std::fmt::Debug for RedisBackendConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackendConfig")
            .field("url", &RedactedUrl(&self.url))
            .field("result_expires", &self.result_expires)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("store_retry", &self.store_retry)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_means_no_ttl_and_a_ttl_is_at_least_a_second() {
        let rows = [
            (Duration::ZERO, None),
            (Duration::from_millis(1), Some(1)),
            (Duration::from_millis(1_500), Some(1)),
            (Duration::from_secs(60), Some(60)),
            (DEFAULT_RESULT_EXPIRES, Some(86_400)),
        ];
        for (result_expires, expected) in rows {
            assert_eq!(
                expires_seconds(result_expires),
                expected,
                "{result_expires:?}"
            );
        }
    }

    #[test]
    fn redis_and_rediss_urls_name_the_redis_backend() {
        let rows = [
            ("redis://127.0.0.1:6379/0", true),
            (" rediss://:pw@redis:6380/0?ssl_cert_reqs=required ", true),
            ("rpc://", false),
            ("", false),
            ("db+postgresql://u:pw@h/db", false),
            ("http://redis/0", false),
        ];
        for (url, redis) in rows {
            assert_eq!(is_redis_url(url), redis, "{url}");
        }
        let named = |backend: Option<&str>| Config {
            result_backend: backend.map(str::to_string),
            ..Config::default()
        };
        let tls = named(Some("rediss://127.0.0.1:6380/0?ssl_cert_reqs=required"));
        let backend = RedisBackendConfig::configured(&tls).expect("a usable URL");
        assert!(backend.is_some_and(|backend| backend.url.starts_with("rediss://")));
        for other in [None, Some("rpc://")] {
            assert!(matches!(
                RedisBackendConfig::configured(&named(other)),
                Ok(None)
            ));
        }
        let broken = named(Some(
            "redis://:secret@127.0.0.1:6379/0?ssl_ca_certs=/ca.pem",
        ));
        let error = RedisBackendConfig::configured(&broken).expect_err("TLS options on redis://");
        assert!(!error.to_string().contains("secret"), "{error}");
    }
}
