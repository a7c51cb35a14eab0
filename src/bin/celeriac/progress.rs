//! A progress line on stderr when a wait lasts longer than a second.

use std::future::Future;
use std::time::Duration;

/// How long a wait goes without a word.
const QUIET_FOR: Duration = Duration::from_secs(1);

/// Runs `work`; if it has not finished after a second, prints `message` on stderr once.
pub async fn announce_if_slow<T>(message: &str, work: impl Future<Output = T>) -> T {
    tokio::pin!(work);
    tokio::select! {
        done = &mut work => done,
        _ = tokio::time::sleep(QUIET_FOR) => {
            eprintln!("{message}");
            work.await
        }
    }
}
