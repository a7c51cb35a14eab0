//! TLS for `rediss://` URLs: Celery's `ssl_*` URL parameters, the certificates they name,
//! rustls's process-wide crypto provider, and what a TLS failure means.
//!
//! The server's certificate and host name are always verified, against the CA of
//! `ssl_ca_certs` or else the system's root certificates. `ssl_cert_reqs=none` is refused:
//! redis-rs's unverified mode (`tls-rustls-insecure`) accepts any certificate without even
//! checking the handshake signatures.

use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The TLS settings of a `rediss://` URL, as Celery's Redis backend spells them in the
/// query: `ssl_cert_reqs`, `ssl_ca_certs`, `ssl_certfile`, `ssl_keyfile`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedisTls {
    /// `ssl_ca_certs`: PEM file of the CAs to trust instead of the system's root
    /// certificates.
    pub ca_file: Option<PathBuf>,
    /// `ssl_certfile`: PEM file of the client certificate (its chain, leaf first) for mutual
    /// TLS; needs `key_file`.
    pub cert_file: Option<PathBuf>,
    /// `ssl_keyfile`: PEM file of the client certificate's private key (not encrypted);
    /// needs `cert_file`.
    pub key_file: Option<PathBuf>,
}

/// A backend URL split in two: what redis-rs connects to, and the TLS settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SplitUrl {
    /// The URL without Celery's `ssl_*` parameters (redis-rs does not know them).
    pub client_url: String,
    /// `Some` for `rediss://`.
    pub tls: Option<RedisTls>,
}

/// Why a URL's TLS settings cannot be used: the URL itself is wrong, or it asks for TLS in
/// a way celeriac refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UrlProblem {
    /// Malformed, or `ssl_*` parameters where they mean nothing.
    Invalid(String),
    /// A well-formed TLS setting celeriac does not support.
    Tls(String),
}

/// The `ssl_*` query parameters Celery's Redis backend reads.
const SSL_PARAMETERS: [&str; 4] = [
    "ssl_cert_reqs",
    "ssl_ca_certs",
    "ssl_certfile",
    "ssl_keyfile",
];

/// What `ssl_cert_reqs` asks for (Celery accepts these six spellings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CertReqs {
    /// `CERT_REQUIRED`, `required`, or absent (celeriac's default; Celery requires it).
    Required,
    /// `CERT_OPTIONAL`, `optional`: a client verifies the certificate a server shows, and a
    /// server always shows one, so it is `Required` in effect (as for Python's `ssl`).
    Optional,
    /// `CERT_NONE`, `none`: no verification.
    None,
    /// Anything else.
    Unknown,
}

fn cert_reqs(value: Option<&str>) -> CertReqs {
    match value {
        None | Some("CERT_REQUIRED" | "required") => CertReqs::Required,
        Some("CERT_OPTIONAL" | "optional") => CertReqs::Optional,
        Some("CERT_NONE" | "none") => CertReqs::None,
        Some(_) => CertReqs::Unknown,
    }
}

/// Splits Celery's `ssl_*` parameters out of `url`. `redis://` URLs pass unchanged (and may
/// carry none of them, as in Celery); `rediss://` URLs answer their [`RedisTls`].
pub(crate) fn split_url(url: &str) -> Result<SplitUrl, UrlProblem> {
    let scheme = url.split_once("://").map(|(scheme, _)| scheme);
    let mut parsed = match scheme {
        Some("redis") | Some("rediss") => url::Url::parse(url)
            .map_err(|error| UrlProblem::Invalid(format!("not a URL ({error})")))?,
        _ => {
            return Err(UrlProblem::Invalid(
                "expected redis://[:password@]host[:port][/db] or rediss://...".into(),
            ))
        }
    };
    let (ssl, others): (Vec<_>, Vec<_>) = parsed
        .query_pairs()
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .partition(|(name, _)| SSL_PARAMETERS.contains(&name.as_str()));
    let setting = |name: &str| {
        ssl.iter()
            .rev()
            .find(|(key, value)| key == name && !value.is_empty())
            .map(|(_, value)| value.as_str())
    };
    if scheme == Some("redis") {
        if let Some((name, _)) = ssl.first() {
            return Err(UrlProblem::Invalid(format!(
                "{name} is a TLS parameter but the scheme is redis://: use rediss:// for TLS"
            )));
        }
        return Ok(SplitUrl {
            client_url: url.to_string(),
            tls: None,
        });
    }
    if parsed.fragment().is_some() {
        return Err(UrlProblem::Invalid(
            "a rediss:// URL takes no #fragment (#insecure is not supported: the server's \
             certificate is always verified)"
                .into(),
        ));
    }
    match cert_reqs(setting("ssl_cert_reqs")) {
        CertReqs::Required | CertReqs::Optional => {}
        CertReqs::None => {
            return Err(UrlProblem::Tls(
                "ssl_cert_reqs=none (no certificate verification) is not supported: celeriac \
                 always verifies the server's certificate and host name; name the CA that \
                 signed the server's certificate with ssl_ca_certs=/path/ca.pem"
                    .into(),
            ))
        }
        CertReqs::Unknown => {
            return Err(UrlProblem::Invalid(
                "ssl_cert_reqs must be CERT_REQUIRED, required, CERT_OPTIONAL or optional \
                 (CERT_NONE and none are refused)"
                    .into(),
            ))
        }
    }
    let tls = RedisTls {
        ca_file: setting("ssl_ca_certs").map(PathBuf::from),
        cert_file: setting("ssl_certfile").map(PathBuf::from),
        key_file: setting("ssl_keyfile").map(PathBuf::from),
    };
    if others.is_empty() {
        parsed.set_query(None);
    } else {
        parsed.query_pairs_mut().clear().extend_pairs(others);
    }
    Ok(SplitUrl {
        client_url: parsed.to_string(),
        tls: Some(tls),
    })
}

impl RedisTls {
    /// Reads the PEM files into what redis-rs takes. Fails with a reason naming the file (or
    /// the missing half of the client certificate).
    pub(crate) fn certificates(&self) -> Result<redis::TlsCertificates, String> {
        let client_tls = match (&self.cert_file, &self.key_file) {
            (None, None) => None,
            (Some(cert), Some(key)) => {
                let client_cert = read_certificates(cert, "client certificate (ssl_certfile)")?;
                let client_key = read_key(key)?;
                Some(redis::ClientTlsConfig {
                    client_cert,
                    client_key,
                })
            }
            (Some(cert), None) => {
                return Err(format!(
                    "a client certificate (ssl_certfile={}) is given without its key: give \
                     both ssl_certfile and ssl_keyfile for mutual TLS, or neither",
                    cert.display()
                ))
            }
            (None, Some(key)) => {
                return Err(format!(
                    "a client key (ssl_keyfile={}) is given without its certificate: give \
                     both ssl_certfile and ssl_keyfile for mutual TLS, or neither",
                    key.display()
                ))
            }
        };
        let root_cert = self
            .ca_file
            .as_deref()
            .map(|path| read_certificates(path, "CA file (ssl_ca_certs)"))
            .transpose()?;
        Ok(redis::TlsCertificates {
            client_tls,
            root_cert,
        })
    }
}

/// A PEM file holding at least one certificate; fails naming the file.
fn read_certificates(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    let pem = read(path, what)?;
    let count = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| {
            format!(
                "the TLS {what} {} is not valid PEM: {error}",
                path.display()
            )
        })?
        .len();
    if count == 0 {
        return Err(format!(
            "the TLS {what} {} holds no PEM certificate",
            path.display()
        ));
    }
    Ok(pem)
}

/// A PEM file holding a private key; fails naming the file.
fn read_key(path: &Path) -> Result<Vec<u8>, String> {
    let what = "client key (ssl_keyfile)";
    let pem = read(path, what)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|error| {
        format!(
            "the TLS {what} {} holds no usable private key: {error}",
            path.display()
        )
    })?;
    Ok(pem)
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path)
        .map_err(|error| format!("cannot read the TLS {what} {}: {error}", path.display()))
}

/// Installs ring as rustls's process-wide crypto provider, once (redis-rs builds its
/// rustls configurations with the process default). A provider the application installed
/// first is kept.
pub(crate) fn install_crypto_provider() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        if rustls::crypto::ring::default_provider()
            .install_default()
            .is_err()
        {
            log::debug!("rustls already has a process-wide crypto provider; keeping it");
        }
    });
}

/// When `error` is a TLS failure (a certificate refused, a handshake that failed), what it
/// means; `None` for other errors. Such failures are permanent: retrying does not help.
pub(crate) fn failure(error: &redis::RedisError) -> Option<String> {
    rustls_error(error).map(explain)
}

/// The rustls error inside a redis-rs error: redis-rs keeps the I/O error of the TLS stream
/// (kind `InvalidData`, wrapping rustls's error) behind an `Arc`.
fn rustls_error(error: &redis::RedisError) -> Option<&rustls::Error> {
    use std::error::Error;
    type Shared = std::sync::Arc<dyn Error + Send + Sync>;
    let mut current: Option<&(dyn Error + 'static)> = error.source();
    while let Some(error) = current {
        let inner: &(dyn Error + 'static) = match error.downcast_ref::<Shared>() {
            Some(shared) => shared.as_ref(),
            None => error,
        };
        if let Some(found) = inner.downcast_ref::<rustls::Error>() {
            return Some(found);
        }
        if let Some(io) = inner.downcast_ref::<std::io::Error>() {
            if let Some(found) = io
                .get_ref()
                .and_then(|wrapped| wrapped.downcast_ref::<rustls::Error>())
            {
                return Some(found);
            }
        }
        current = inner.source();
    }
    None
}

/// What a rustls error means for someone configuring a `rediss://` URL.
fn explain(error: &rustls::Error) -> String {
    use rustls::CertificateError as Cert;
    let meaning = match error {
        rustls::Error::InvalidCertificate(Cert::UnknownIssuer) => {
            "the server's certificate is not signed by a CA celeriac trusts (ssl_ca_certs \
             names the CA to trust; without it, the system's root certificates are used)"
        }
        rustls::Error::InvalidCertificate(
            Cert::NotValidForName | Cert::NotValidForNameContext { .. },
        ) => "the server's certificate is not valid for the host name of the URL",
        rustls::Error::InvalidCertificate(
            Cert::Expired
            | Cert::ExpiredContext { .. }
            | Cert::NotValidYet
            | Cert::NotValidYetContext { .. },
        ) => "the server's certificate is expired or not valid yet",
        rustls::Error::InvalidCertificate(_) => "the server's certificate was refused",
        rustls::Error::AlertReceived(_) => {
            "the server refused the TLS handshake (does it require a client certificate? \
             ssl_certfile and ssl_keyfile name one)"
        }
        _ => "the TLS handshake failed (does this port serve TLS?)",
    };
    format!("{meaning}: {error}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls_of(url: &str) -> RedisTls {
        split_url(url)
            .unwrap_or_else(|problem| panic!("{url}: {problem:?}"))
            .tls
            .unwrap_or_else(|| panic!("{url}: no TLS"))
    }

    #[test]
    fn cert_reqs_as_celery_spells_them() {
        let table = [
            (None, CertReqs::Required),
            (Some("CERT_REQUIRED"), CertReqs::Required),
            (Some("required"), CertReqs::Required),
            (Some("CERT_OPTIONAL"), CertReqs::Optional),
            (Some("optional"), CertReqs::Optional),
            (Some("CERT_NONE"), CertReqs::None),
            (Some("none"), CertReqs::None),
            (Some("REQUIRED"), CertReqs::Unknown),
            (Some("yes"), CertReqs::Unknown),
        ];
        for (value, expected) in table {
            assert_eq!(cert_reqs(value), expected, "{value:?}");
        }
    }

    #[test]
    fn celery_parameters_are_split_out_and_decoded() {
        let split = split_url(
            "rediss://:pw@redis.example:6380/2?ssl_cert_reqs=required\
             &ssl_ca_certs=%2Fetc%2Fca%20dir%2Fca.pem&ssl_certfile=/c.pem&ssl_keyfile=/c.key\
             &protocol=resp2",
        )
        .expect("a valid URL");
        assert_eq!(
            split.client_url,
            "rediss://:pw@redis.example:6380/2?protocol=resp2"
        );
        assert_eq!(
            split.tls,
            Some(RedisTls {
                ca_file: Some("/etc/ca dir/ca.pem".into()),
                cert_file: Some("/c.pem".into()),
                key_file: Some("/c.key".into()),
            })
        );
        let split = split_url("rediss://127.0.0.1:6380/0?ssl_cert_reqs=CERT_OPTIONAL").expect("ok");
        assert_eq!(split.client_url, "rediss://127.0.0.1:6380/0");
        assert_eq!(tls_of("rediss://127.0.0.1/0"), RedisTls::default());
    }

    #[test]
    fn plain_urls_pass_unchanged() {
        let url = "redis://:p%40ss@127.0.0.1:6379/1";
        let split = split_url(url).expect("a valid URL");
        assert_eq!(split.client_url, url);
        assert_eq!(split.tls, None);
    }

    #[test]
    fn what_is_refused_and_why() {
        let table = [
            ("rediss://h/0?ssl_cert_reqs=none", "Tls", "not supported"),
            (
                "rediss://h/0?ssl_cert_reqs=CERT_NONE",
                "Tls",
                "always verifies",
            ),
            (
                "rediss://h/0?ssl_cert_reqs=maybe",
                "Invalid",
                "ssl_cert_reqs must be",
            ),
            (
                "rediss://h/0#insecure",
                "Invalid",
                "#insecure is not supported",
            ),
            (
                "redis://h/0?ssl_ca_certs=/ca.pem",
                "Invalid",
                "use rediss://",
            ),
            ("http://h/0", "Invalid", "expected redis://"),
            ("rediss://h:notaport/0", "Invalid", "not a URL"),
        ];
        for (url, kind, text) in table {
            let (got, reason) = match split_url(url) {
                Ok(split) => panic!("{url} accepted: {split:?}"),
                Err(UrlProblem::Tls(reason)) => ("Tls", reason),
                Err(UrlProblem::Invalid(reason)) => ("Invalid", reason),
            };
            assert_eq!(got, kind, "{url}: {reason}");
            assert!(reason.contains(text), "{url}: {reason}");
        }
    }

    #[test]
    fn unusable_files_are_named() {
        let missing = RedisTls {
            ca_file: Some("/nonexistent/celeriac-ca.pem".into()),
            ..RedisTls::default()
        };
        let error = missing.certificates().expect_err("no such file");
        assert!(error.contains("/nonexistent/celeriac-ca.pem"), "{error}");
        assert!(error.contains("ssl_ca_certs"), "{error}");

        let path =
            std::env::temp_dir().join(format!("celeriac-redis-empty-{}.pem", std::process::id()));
        std::fs::write(&path, "not a certificate\n").expect("a temporary file");
        let empty = RedisTls {
            ca_file: Some(path.clone()),
            ..RedisTls::default()
        };
        let error = empty.certificates().expect_err("no certificate");
        let _ = std::fs::remove_file(&path);
        assert!(error.contains("holds no PEM certificate"), "{error}");

        let half = RedisTls {
            cert_file: Some("/tmp/client.pem".into()),
            ..RedisTls::default()
        };
        assert!(half
            .certificates()
            .expect_err("half")
            .contains("without its key"));
        let half = RedisTls {
            key_file: Some("/tmp/client.key".into()),
            ..RedisTls::default()
        };
        assert!(half
            .certificates()
            .expect_err("half")
            .contains("without its certificate"));
    }

    /// Pins how redis-rs wraps the TLS stream's errors: if an upgrade changes it, TLS
    /// failures would be retried as lost connections, and this fails.
    #[test]
    fn tls_failures_are_found_inside_redis_errors() {
        let table = [
            (
                rustls::CertificateError::UnknownIssuer,
                "not signed by a CA celeriac trusts",
            ),
            (
                rustls::CertificateError::NotValidForName,
                "not valid for the host name",
            ),
            (rustls::CertificateError::Expired, "expired"),
        ];
        for (certificate, text) in table {
            let io = std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                rustls::Error::InvalidCertificate(certificate),
            );
            let error = redis::RedisError::from(io);
            let meaning = failure(&error).unwrap_or_else(|| panic!("{error} not seen as TLS"));
            assert!(meaning.contains(text), "{meaning}");
        }
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(failure(&redis::RedisError::from(refused)), None);
    }
}
