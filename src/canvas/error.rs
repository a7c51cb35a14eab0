//! `CanvasError`: what is wrong with a workflow a message carries or a program builds.

use derive_more::{Display, Error};

/// A workflow part that cannot be run. The worker logs it with the task it came with,
/// drops that part, and stores a failure for the tasks waiting on it.
#[derive(Debug, Clone, PartialEq, Eq, Display, Error)]
pub enum CanvasError {
    /// The part is not a signature Celery would write.
    #[display("malformed workflow part: {reason}")]
    Malformed {
        /// What is wrong.
        reason: String,
    },
    /// Nested deeper than [`MAX_CANVAS_DEPTH`](super::MAX_CANVAS_DEPTH).
    #[display("workflow nested deeper than {limit} levels")]
    TooDeep {
        /// The limit.
        limit: usize,
    },
    /// Valid for Celery, but not something celeriac can run.
    #[display("unsupported workflow part: {reason}")]
    Unsupported {
        /// What is not supported.
        reason: String,
    },
}

impl CanvasError {
    /// A [`CanvasError::Malformed`] with this reason.
    pub fn malformed(reason: impl Into<String>) -> Self {
        CanvasError::Malformed {
            reason: reason.into(),
        }
    }

    /// A [`CanvasError::Unsupported`] with this reason.
    pub fn unsupported(reason: impl Into<String>) -> Self {
        CanvasError::Unsupported {
            reason: reason.into(),
        }
    }
}
