//! Workflows (Celery's canvas): chains, groups, chords, callbacks and errbacks, as they
//! travel inside task messages (docs/wire-protocol.md §3).
//!
//! - [`dict`]: [`SignatureDict`], a call as Celery serializes it;
//! - [`node`]: [`CanvasNode`], a signature read as a task, group, chain or chord;
//! - [`apply`]: what calling a node amounts to ([`Action`]s: messages, chord sizes);
//! - [`workflow`]: what a worker does after a task: callbacks and the next chain step on
//!   success, failures and errbacks on failure, a chord's body once its header is done,
//!   failures for calls that could not be sent;
//! - [`message`]: a call as the message that publishes it;
//! - [`build`]: workflows built in Rust ([`Chain`], [`Group`], [`Chord`]), frozen into
//!   the same dicts.
//!
//! All of it is pure; the worker carries the actions out.

pub mod apply;
pub mod build;
pub mod dict;
pub mod error;
pub mod message;
pub mod node;
pub mod workflow;

#[cfg(test)]
mod tests;

pub use apply::{apply, Action};
pub use build::{Canvas, Chain, Chord, Group};
pub use dict::SignatureDict;
pub use error::CanvasError;
pub use node::{CanvasNode, MAX_CANVAS_DEPTH};
pub use workflow::{
    fail_chain, old_style_errbacks_notice, on_chord_complete, on_failure, on_success, on_unsent,
    ChordPart, Embed, Finished, Plan,
};
