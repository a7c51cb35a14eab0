//! `CanvasNode`: a signature read as what it is: a task, a group, a chain or a chord.

use serde_json::Value;

use super::dict::{kind, SignatureDict};
use super::error::CanvasError;

/// How deeply workflows may nest (groups in chains in chords ...). Celery's own canvases
/// rarely go past a handful of levels; the bound keeps a hostile message from making the
/// worker recurse without end.
pub const MAX_CANVAS_DEPTH: usize = 32;

/// A workflow part.
#[derive(Debug, Clone, PartialEq)]
pub enum CanvasNode {
    /// One task call.
    Task(SignatureDict),
    /// Tasks run in parallel: Celery's `group` (`options.task_id` is the group id).
    Group {
        /// The group's own signature (its options apply to every member).
        signature: SignatureDict,
        /// The members.
        tasks: Vec<CanvasNode>,
    },
    /// Tasks run one after the other, each result the next one's first argument.
    Chain {
        /// The chain's own signature.
        signature: SignatureDict,
        /// The steps, first to last.
        tasks: Vec<CanvasNode>,
    },
    /// A group whose results, once all are in, are the first argument of `body`.
    Chord {
        /// The chord's own signature (`options.task_id`: the body's id).
        signature: SignatureDict,
        /// The header's group id, when it was given one.
        header_id: Option<String>,
        /// The header's members.
        header: Vec<CanvasNode>,
        /// What runs with the header's results.
        body: Box<CanvasNode>,
    },
}

impl CanvasNode {
    /// Reads a signature (docs/wire-protocol.md §1.8), nested at most
    /// [`MAX_CANVAS_DEPTH`] levels.
    pub fn from_value(value: &Value) -> Result<Self, CanvasError> {
        Self::parse(value, 0)
    }

    fn parse(value: &Value, depth: usize) -> Result<Self, CanvasError> {
        if depth >= MAX_CANVAS_DEPTH {
            return Err(CanvasError::TooDeep {
                limit: MAX_CANVAS_DEPTH,
            });
        }
        let signature = SignatureDict::from_value(value)?;
        match signature.subtask_type.as_deref() {
            None => Ok(CanvasNode::Task(signature)),
            Some("group") => {
                let tasks = Self::list(&signature, "tasks", depth)?;
                Ok(CanvasNode::Group { signature, tasks })
            }
            Some("chain") => {
                let tasks = Self::list(&signature, "tasks", depth)?;
                Ok(CanvasNode::Chain { signature, tasks })
            }
            Some("chord") => {
                let (header_id, header) = match signature.kwargs.get("header") {
                    Some(Value::Array(_)) => (None, Self::list(&signature, "header", depth)?),
                    Some(header @ Value::Object(_)) => match Self::parse(header, depth + 1)? {
                        CanvasNode::Group {
                            signature: group,
                            tasks,
                        } => (group.task_id().map(str::to_string), tasks),
                        single => (None, vec![single]),
                    },
                    other => {
                        return Err(CanvasError::malformed(format!(
                            "the header of a chord must be a group or a list, not {}",
                            other.map_or("nothing", kind)
                        )))
                    }
                };
                let body = match signature.kwargs.get("body") {
                    Some(body) => Box::new(Self::parse(body, depth + 1)?),
                    None => return Err(CanvasError::malformed("a chord without a body")),
                };
                Ok(CanvasNode::Chord {
                    signature,
                    header_id,
                    header,
                    body,
                })
            }
            Some(other) => Err(CanvasError::unsupported(format!(
                "signature type \"{other}\" (task {})",
                signature.task
            ))),
        }
    }

    /// The signatures in `signature.kwargs[field]`.
    fn list(
        signature: &SignatureDict,
        field: &str,
        depth: usize,
    ) -> Result<Vec<CanvasNode>, CanvasError> {
        match signature.kwargs.get(field) {
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| Self::parse(item, depth + 1))
                .collect(),
            other => Err(CanvasError::malformed(format!(
                "the {field} of {} must be a list, not {}",
                signature.task,
                other.map_or("nothing", kind)
            ))),
        }
    }

    /// The node's own signature.
    pub fn signature(&self) -> &SignatureDict {
        match self {
            CanvasNode::Task(signature)
            | CanvasNode::Group { signature, .. }
            | CanvasNode::Chain { signature, .. }
            | CanvasNode::Chord { signature, .. } => signature,
        }
    }

    /// The node's own signature, to change.
    pub fn signature_mut(&mut self) -> &mut SignatureDict {
        match self {
            CanvasNode::Task(signature)
            | CanvasNode::Group { signature, .. }
            | CanvasNode::Chain { signature, .. }
            | CanvasNode::Chord { signature, .. } => signature,
        }
    }
}
