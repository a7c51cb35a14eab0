//! What the code `#[task]` generates uses (not an API: it may change with the macro).

use serde::Serialize;

use super::{Task, TaskError};
use crate::app::Signature;

pub use serde;

/// What a `#[task]` function returns: `Result<T, TaskError>`, whose `T` is the task's output.
#[diagnostic::on_unimplemented(
    message = "a `#[task]` function returns `Result<T, TaskError>`, not `{Self}`",
    label = "the task's return type"
)]
pub trait TaskReturn {
    /// The `T` of `Result<T, TaskError>`.
    type Output: Serialize + Send + 'static;

    /// The result itself.
    fn into_result(self) -> Result<Self::Output, TaskError>;
}

impl<T: Serialize + Send + 'static> TaskReturn for Result<T, TaskError> {
    type Output = T;

    fn into_result(self) -> Result<T, TaskError> {
        self
    }
}

/// `name::new(..)`: the signature of a call of `T`, panicking (as `serde_json::json!` does)
/// when an argument cannot be encoded as JSON; `name::try_new` answers the error instead.
pub fn signature<T: Task>(args: &T::Args) -> Signature {
    match Signature::of::<T>(args) {
        Ok(signature) => signature,
        Err(error) => panic!("{}::new: {error}", T::NAME),
    }
}
