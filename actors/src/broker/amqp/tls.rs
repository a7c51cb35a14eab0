//! TLS for `amqps://` connections: which CAs to trust, which client certificate to show, and
//! the rustls connector built from them. The broker's certificate and host name are always
//! verified; there is no setting that turns verification off.

use std::path::{Path, PathBuf};

use lapin::tcp::{RustlsConnector, RustlsConnectorConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// TLS settings of an `amqps://` broker connection (all PEM files, read at each connection
/// attempt, so renewed certificates are picked up on reconnection).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM file of the CAs to trust, instead of the system's root certificates (`None`:
    /// the system's roots, as for HTTPS).
    pub ca_file: Option<PathBuf>,
    /// PEM file of the client certificate (its chain, leaf first) for mutual TLS. Needs
    /// `key_file`: one without the other is an error.
    pub cert_file: Option<PathBuf>,
    /// PEM file of the client certificate's private key (PKCS#8, PKCS#1 or SEC1, not
    /// encrypted). Needs `cert_file`.
    pub key_file: Option<PathBuf>,
}

impl TlsConfig {
    /// Whether any setting differs from the defaults (system roots, no client certificate).
    pub fn is_set(&self) -> bool {
        *self != TlsConfig::default()
    }

    /// The rustls connector for these settings. Fails with a reason naming the file (or the
    /// missing half of the client certificate) when the settings cannot be used.
    pub(super) fn connector(&self) -> Result<RustlsConnector, String> {
        let identity = match (&self.cert_file, &self.key_file) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some((
                read_certificates(cert, "client certificate (CELERIAC_BROKER_TLS_CERT)")?,
                read_key(key)?,
            )),
            (Some(cert), None) => {
                return Err(format!(
                    "a client certificate ({}) is set without its key: set both \
                     CELERIAC_BROKER_TLS_CERT and CELERIAC_BROKER_TLS_KEY \
                     (TlsConfig::cert_file and key_file) for mutual TLS, or neither",
                    cert.display()
                ))
            }
            (None, Some(key)) => {
                return Err(format!(
                    "a client key ({}) is set without its certificate: set both \
                     CELERIAC_BROKER_TLS_CERT and CELERIAC_BROKER_TLS_KEY \
                     (TlsConfig::cert_file and key_file) for mutual TLS, or neither",
                    key.display()
                ))
            }
        };
        let roots = match &self.ca_file {
            Some(path) => RustlsConnectorConfig::default().with_parsable_certificates(
                read_certificates(path, "CA file (CELERIAC_BROKER_TLS_CA)")?,
            ),
            None => RustlsConnectorConfig::new_with_native_certs().map_err(|error| {
                format!(
                    "no system root certificate could be loaded ({error}); name the CA to \
                     trust with CELERIAC_BROKER_TLS_CA (TlsConfig::ca_file)"
                )
            })?,
        };
        let connector = match identity {
            None => roots.connector_with_no_client_auth(),
            Some((chain, key)) => roots.connector_with_single_cert(chain, key),
        };
        connector.map_err(|error| format!("cannot set up TLS with these certificates: {error}"))
    }
}

/// Every certificate of a PEM file; fails naming the file when it cannot be read or holds none.
fn read_certificates(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read(path, what)?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| {
            format!(
                "the TLS {what} {} is not valid PEM: {error}",
                path.display()
            )
        })?;
    if certificates.is_empty() {
        return Err(format!(
            "the TLS {what} {} holds no PEM certificate",
            path.display()
        ));
    }
    Ok(certificates)
}

/// The private key of a PEM file; fails naming the file.
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let what = "client key (CELERIAC_BROKER_TLS_KEY)";
    let pem = read(path, what)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|error| {
        format!(
            "the TLS {what} {} holds no usable private key: {error}",
            path.display()
        )
    })
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path)
        .map_err(|error| format!("cannot read the TLS {what} {}: {error}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::TlsConfig;

    fn error_of(config: TlsConfig) -> String {
        match config.connector() {
            Ok(_) => panic!("{config:?} was accepted"),
            Err(error) => error,
        }
    }

    #[test]
    fn an_unreadable_file_is_named() {
        let error = error_of(TlsConfig {
            ca_file: Some("/nonexistent/celeriac-ca.pem".into()),
            ..TlsConfig::default()
        });
        assert!(error.contains("/nonexistent/celeriac-ca.pem"), "{error}");
        assert!(error.contains("CA file"), "{error}");
    }

    #[test]
    fn a_file_without_certificates_is_refused() {
        let path = std::env::temp_dir().join(format!("celeriac-empty-{}.pem", std::process::id()));
        std::fs::write(&path, "not a certificate\n").expect("a temporary file");
        let error = error_of(TlsConfig {
            ca_file: Some(path.clone()),
            ..TlsConfig::default()
        });
        let _ = std::fs::remove_file(&path);
        assert!(error.contains("holds no PEM certificate"), "{error}");
    }

    #[test]
    fn half_a_client_certificate_is_refused() {
        let error = error_of(TlsConfig {
            cert_file: Some("/tmp/client.pem".into()),
            ..TlsConfig::default()
        });
        assert!(error.contains("without its key"), "{error}");
        let error = error_of(TlsConfig {
            key_file: Some("/tmp/client.key".into()),
            ..TlsConfig::default()
        });
        assert!(error.contains("without its certificate"), "{error}");
    }
}
