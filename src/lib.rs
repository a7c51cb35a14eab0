//! celeriac (work in progress)
pub use celeriac_actors as actors;
pub mod protocol;
pub mod task;
