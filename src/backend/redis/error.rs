//! `RedisBackendError`: why the Redis result backend could not store, read or delete.

use derive_more::{Display, Error, From};

/// Why a Redis result backend operation failed. Every `server` is the URL with its
/// password masked.
#[derive(Debug, Clone, Display, Error, From)]
pub enum RedisBackendError {
    /// The URL cannot be used (not `redis://` or `rediss://`, malformed).
    #[display("invalid Redis result backend URL {url}: {reason}")]
    #[from(skip)]
    InvalidUrl {
        /// The URL, password masked.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `rediss://` cannot be used as given: a TLS setting refused (`ssl_cert_reqs=none`), a
    /// certificate file missing or unreadable, or a TLS handshake that failed (a server
    /// certificate signed by another CA or for another host name, a port without TLS).
    /// Retrying does not help.
    #[display("Redis over TLS at {server}: {reason}")]
    #[from(skip)]
    Tls {
        /// The server, password masked.
        server: String,
        /// What is wrong, naming the file or the certificate check that failed.
        reason: String,
    },
    /// Redis refused the credentials (wrong or missing password, unknown user).
    #[display("Redis at {server} refused the login (check the password in the URL): {reason}")]
    #[from(skip)]
    Auth {
        /// The server, password masked.
        server: String,
        /// Redis's answer.
        reason: String,
    },
    /// Redis could not be reached, or a command failed.
    #[display("Redis at {server}: {operation} failed: {reason}")]
    #[from(skip)]
    Command {
        /// The server, password masked.
        server: String,
        /// What was attempted, e.g. `storing the result of task 1234`.
        operation: String,
        /// The client's error, passwords scrubbed.
        reason: String,
    },
    /// A stored document is not a result document.
    #[display("the result of task {task_id} stored in Redis is malformed: {reason}")]
    #[from(skip)]
    Malformed {
        /// The task id.
        task_id: String,
        /// Why it does not parse.
        reason: String,
    },
    /// The backend's actor stopped.
    #[display("the Redis result backend stopped: {_0}")]
    Stopped(actix::MailboxError),
}
