//! `GroupResult`: the results of a group's members, in the group's order.

use std::time::Duration;

use serde_json::Value;

use super::{AsyncResult, ResultError};

/// A handle on the results of a group (Celery's `GroupResult`).
#[derive(Debug, Clone)]
pub struct GroupResult {
    /// The group id.
    id: String,
    /// The members' results, in group order.
    results: Vec<AsyncResult>,
}

impl GroupResult {
    /// The group `id` made of these members' results.
    pub fn new(id: impl Into<String>, results: Vec<AsyncResult>) -> Self {
        GroupResult {
            id: id.into(),
            results,
        }
    }

    /// The group id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The members' handles, in group order.
    pub fn results(&self) -> &[AsyncResult] {
        &self.results
    }

    /// Waits, `timeout` in all, for every member; answers their values in group order, or
    /// the first failure (in group order) as Celery's `GroupResult.get` raises it.
    pub async fn get(&self, timeout: Duration) -> Result<Vec<Value>, ResultError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut values = Vec::with_capacity(self.results.len());
        for result in &self.results {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            values.push(result.get(left).await?);
        }
        Ok(values)
    }

    /// How many members finished successfully.
    pub async fn completed_count(&self) -> usize {
        let mut completed = 0;
        for result in &self.results {
            if result.state().await == crate::protocol::TaskState::Success {
                completed += 1;
            }
        }
        completed
    }

    /// Whether every member finished (SUCCESS, FAILURE or REVOKED).
    pub async fn ready(&self) -> bool {
        for result in &self.results {
            if !result.ready().await {
                return false;
            }
        }
        true
    }
}
