//! How a subcommand fails: a usage error (exit code 2) or a failure (exit code 1), each
//! with the one line printed on stderr.

use derive_more::Display;

/// Why the command ends with a non-zero exit code.
#[derive(Debug, Display)]
pub enum CliError {
    /// The command line asks for something impossible (bad JSON, a bad number...).
    #[display("{_0}")]
    Usage(String),
    /// What was asked failed (broker unreachable, task failed, no reply in time...).
    #[display("{_0}")]
    Failed(String),
}

impl CliError {
    /// A failure whose line is `error`'s message.
    pub fn failed(error: impl std::fmt::Display) -> Self {
        CliError::Failed(error.to_string())
    }

    /// The process exit code: 2 for usage errors, as clap's own, 1 for failures.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Failed(_) => 1,
        }
    }
}
