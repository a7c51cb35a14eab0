//! `#[task]`: a function becomes a celeriac task. Use it as `celeriac::task` (this crate is
//! an implementation detail of `celeriac`; the generated code names `::celeriac`).
//!
//! ```ignore
//! use celeriac::{task, TaskError};
//!
//! /// Adds two numbers.
//! #[task(name = "tasks.add", max_retries = 5, time_limit = 30)]
//! async fn add(x: i64, y: i64) -> Result<i64, TaskError> {
//!     Ok(x + y)
//! }
//! ```
//!
//! generates, next to the function (which stays callable as it was):
//! - a type `add` (same name, type namespace) implementing `celeriac::Task`, to register
//!   with `WorkerBuilder::register::<add>()`;
//! - `AddArgs` (the function's name in CamelCase + `Args`), its arguments: positional in
//!   parameter order or by keyword (the parameter names), as a Python function binds them;
//! - `add::new(2, 3)` (and `add::try_new`), a `celeriac::Signature` of the call.
//!
//! See `celeriac::task` (the attribute's documentation) for the options and parameters.

mod expand;
mod options;
mod params;

use proc_macro::TokenStream;

/// Turns a function into a celeriac task.
///
/// ```ignore
/// use celeriac::{task, TaskContext, TaskError};
///
/// /// Adds two numbers.
/// #[task(name = "tasks.add", max_retries = 5, time_limit = 30)]
/// async fn add(x: i64, y: i64) -> Result<i64, TaskError> {
///     Ok(x + y)
/// }
///
/// /// A blocking function becomes a `BlockingTask`; `ctx` is the request (Celery's
/// /// `bind=True`); `Option` and `#[default = ..]` parameters are optional.
/// #[task(name = "tasks.resize", acks_late)]
/// fn resize(ctx: &TaskContext, path: String, #[default = 256] width: u32, label: Option<String>)
///     -> Result<String, TaskError> { .. }
///
/// // worker: WorkerSystem::builder(..).register::<add>().register::<resize>()
/// // send:   producer.send_signature(add::new(2, 3).with_countdown(Duration::from_secs(5)))
/// ```
///
/// **What it generates**, next to the function (which stays as written, callable directly):
/// - a type of the same name (`add`: types and functions live in different namespaces)
///   implementing `Task`; for a `fn` (not `async fn`) it implements `BlockingTask`, run on
///   the blocking thread pool, and `Task` through `Blocking<Self>`, so `register::<f>()` and
///   `register_blocking::<f>()` both work;
/// - the arguments type `AddArgs` (the function's name in CamelCase + `Args`): one field per
///   parameter, so a caller gives arguments positionally in parameter order, by keyword
///   (the parameter names), or both, as Python binds them (`add.delay(2, y=3)`); a missing,
///   extra or mistyped argument fails the task with a `TypeError` naming it;
/// - `add::new(2, 3)`: the `Signature` of the call (the one `send_signature`, chains,
///   groups and chords take), arguments sent positionally, with the task's `queue` option
///   as its default queue; call options come from the `with_*` methods. `add::try_new`
///   answers `Err` where `new` panics: an argument whose JSON encoding fails.
///
/// **Parameters.** Each is a plain name with an owned type that serde reads (`String`, not
/// `&str`). `Option<T>` parameters may be left out (`None`), as may those with
/// `#[default = expr]` (a string literal is converted with `Into`). One parameter may be
/// the request context, `&TaskContext` or `TaskContext` (anywhere in the list): it is not an
/// argument. The function returns `Result<T, TaskError>` (`T: Serialize`), is not generic,
/// `const`, `unsafe` nor a method; an `async fn`'s future must be `Send`.
///
/// **Options**, by Celery's task option names; all optional:
///
/// | option | value | sets |
/// |---|---|---|
/// | `name` | `"tasks.add"` | `Task::NAME`; default `concat!(module_path!(), "::", fn_name)`, e.g. `my_crate::tasks::add` (Python names tasks `module.fn`: give `name` to share a task with Python) |
/// | `max_retries` | `5`, or `None` for no limit | `TaskOptions::max_retries` |
/// | `retry_backoff` | `true` (1 s), seconds, or `false` | the first delay of the exponential backoff; `false`: a fixed `default_retry_delay` (180 s unless given) |
/// | `retry_backoff_max` | seconds | the longest delay |
/// | `retry_jitter` | `true` / `false` | random delays between the minimum and the exponential one |
/// | `default_retry_delay` | seconds | one fixed delay between retries (not with `retry_backoff`) |
/// | `time_limit`, `soft_time_limit` | seconds (`30`, `2.5`) | the hard and soft time limits |
/// | `rate_limit` | `"10/s"`, `"100/m"`, `"1000/h"`, or a number per second | starts per second on one worker (checked at compile time) |
/// | `queue` | `"reports"` | the queue producers send it to when the call and the routes name none |
/// | `ignore_result`, `store_errors_even_if_ignored`, `track_started`, `acks_late`, `acks_on_failure_or_timeout` | `true` / `false` (a bare name means `true`) | the same `TaskOptions` fields |
///
/// Unset options keep `TaskOptions::default()`'s (the worker's configuration, then
/// Celery's defaults). Hooks (`on_success`, `on_failure`, `on_retry`) need the trait: write
/// the `Task` impl by hand for them.
///
/// **Errors** are compile errors at the option or parameter at fault: an unknown option, a
/// value of the wrong type, `self`, a generic function, a pattern parameter, a reference
/// argument, a return type that is not `Result<T, TaskError>`.
#[proc_macro_attribute]
pub fn task(attr: TokenStream, item: TokenStream) -> TokenStream {
    let function = syn::parse_macro_input!(item as syn::ItemFn);
    let expanded =
        syn::parse::<options::TaskAttr>(attr).and_then(|attr| expand::task(attr, function.clone()));
    match expanded {
        Ok(tokens) => tokens.into(),
        Err(error) => {
            // The function as written (without the attribute's `#[default]`s) next to the
            // error, so that only the error is reported, not what its absence would cause.
            let mut function = function;
            params::strip_defaults(&mut function.sig);
            let error = error.into_compile_error();
            quote::quote!(#error #function).into()
        }
    }
}
