//! Carrying out the workflow around a task (docs/wire-protocol.md §3): the plans of
//! [`crate::canvas`] turned into publishes, stored failures and chord joins on Redis.
//!
//! Everything here logs and goes on: a workflow part that cannot be read or sent never
//! fails the task it came with, and the tasks waiting on it get a FAILURE result instead
//! of waiting for ever.

use std::collections::VecDeque;

use serde_json::Value;

use super::pipeline::Services;
use super::results::ResultAddress;
use crate::backend::redis::chord::{ChordJoin, ChordPartReturn};
use crate::backend::redis::document::encode_value;
use crate::canvas::message::task_message;
use crate::canvas::{self, Action, ChordPart, Embed, Finished, Plan};
use crate::log_text::clip;
use crate::protocol::{ExceptionInfo, TaskMessage, TaskPayload, TaskState};

/// The workflow parts of one task message, kept from before its arguments are handed to
/// the task.
#[derive(Debug, Clone)]
pub(crate) struct Workflow {
    /// The task's id.
    id: String,
    /// The task's name (for logs).
    name: String,
    /// The first task of the workflow.
    root_id: String,
    /// The group (chord header) the task belongs to, and its place in it.
    group: Option<(String, Option<i64>)>,
    /// Callbacks, errbacks, the rest of the chain, the chord body.
    embed: Embed,
}

impl Workflow {
    /// The workflow of `message`, `None` when it has none (most messages): nothing to do
    /// after the task. A malformed part is logged and dropped here.
    pub(crate) fn of(message: &TaskMessage) -> Option<Workflow> {
        let TaskPayload::Json { embed, .. } = &message.payload else {
            return None;
        };
        let (embed, problems) = Embed::from_value(embed);
        let headers = &message.headers;
        for problem in &problems {
            log::error!(
                "task {}[{}]: {} (dropped)",
                clip(&headers.task),
                clip(&headers.id),
                clip(problem)
            );
        }
        if embed.is_empty() {
            return None;
        }
        Some(Workflow {
            id: headers.id.clone(),
            name: headers.task.clone(),
            root_id: headers
                .root_id
                .clone()
                .unwrap_or_else(|| headers.id.clone()),
            group: headers
                .group
                .clone()
                .map(|group| (group, headers.group_index)),
            embed,
        })
    }

    fn finished(&self) -> Finished<'_> {
        Finished {
            id: &self.id,
            root_id: &self.root_id,
        }
    }

    /// After success, before the result is stored (as Celery, so that the callbacks are
    /// out when a client sees SUCCESS): the callbacks and the next chain step.
    pub(crate) async fn dispatch(&self, services: &Services, result: &Value) {
        let plan = canvas::on_success(&self.embed, self.finished(), result, &mut new_id);
        self.carry_out(services, plan, None).await;
    }

    /// After the task's own result is stored: counts it in its chord, if it is in one.
    pub(crate) async fn succeeded(&self, services: &Services, result: &Value) {
        self.chord_part(services, TaskState::Success, result.clone())
            .await;
    }

    /// After a failure for good (or a revocation) was stored: counts it in its chord,
    /// fails the rest of the chain and calls the errbacks.
    pub(crate) async fn failed(
        &self,
        services: &Services,
        state: TaskState,
        exception: &ExceptionInfo,
    ) {
        self.chord_part(services, state, exception.to_value()).await;
        if state == TaskState::Revoked {
            // Celery fails neither the chain nor calls errbacks for a revoked task.
            return;
        }
        let plan = canvas::on_failure(&self.embed, self.finished(), exception, &mut new_id);
        self.carry_out(services, plan, None).await;
    }

    /// Counts the task's final state in its chord; calls the body when that completes it.
    async fn chord_part(&self, services: &Services, state: TaskState, result: Value) {
        let (Some(body), Some((group_id, group_index))) = (&self.embed.chord, &self.group) else {
            return;
        };
        let member = ChordMember {
            group_id,
            group_index: *group_index,
            task_id: &self.id,
            body,
        };
        self.join_chord(services, member, state, result).await;
    }

    /// Counts `member`'s final state in its chord; calls the body when that completes it.
    async fn join_chord(
        &self,
        services: &Services,
        member: ChordMember<'_>,
        state: TaskState,
        result: Value,
    ) {
        let ChordMember {
            group_id,
            group_index,
            task_id,
            body,
        } = member;
        let body_id = body["options"]["task_id"].as_str();
        let Some(redis) = services.results.redis() else {
            log::error!(
                "task {task_id} is part of chord {group_id}, but chords need the Redis result \
                 backend (CELERIAC_RESULT_BACKEND=redis://...): its body will not run",
            );
            let plan = canvas::on_chord_complete(
                body,
                &[Err("chords need the Redis result backend".into())],
                &mut new_id,
            );
            self.carry_out(services, plan, body_id).await;
            return;
        };
        let entry = ChordPart {
            task_id: task_id.to_string(),
            state: state.as_str().to_string(),
            result,
        };
        let join = redis
            .chord_part_return(ChordPartReturn {
                group_id: group_id.to_string(),
                task_id: task_id.to_string(),
                group_index,
                entry: encode_value(&entry.to_value()),
            })
            .await;
        match join {
            Ok(ChordJoin::Waiting) => {}
            Ok(ChordJoin::AlreadyDone) => log::info!(
                "task {task_id}: chord {group_id} was already done; this result came late",
            ),
            Ok(ChordJoin::ClaimLost) => log::warn!(
                "chord {group_id}: the claim to call its body was lost before it was called; \
                 another worker may call it"
            ),
            Ok(ChordJoin::Complete { token, entries }) => {
                let parts: Vec<Result<ChordPart, String>> = entries
                    .iter()
                    .map(|entry| {
                        serde_json::from_slice::<Value>(entry)
                            .map_err(|error| format!("a chord entry is not JSON: {error}"))
                            .and_then(|value| ChordPart::from_value(&value))
                    })
                    .collect();
                let plan = canvas::on_chord_complete(body, &parts, &mut new_id);
                self.carry_out(services, plan, body_id).await;
                match redis.finish_chord(group_id, &token).await {
                    Ok(true) => {}
                    Ok(false) => log::warn!(
                        "chord {group_id}: its claim expired before its data was deleted; \
                         the data is left to expire"
                    ),
                    Err(error) => log::warn!("chord {group_id}: {error}"),
                }
            }
            Err(error) => log::error!(
                "task {task_id}: could not count its result in chord {group_id}: {error}",
            ),
        }
    }

    /// Does what `plan` says, in order; logs what it could not do. `chord_body` is the id
    /// of the chord body the plan calls, if it calls one.
    ///
    /// A call that cannot be sent gets a FAILURE instead (and its errbacks and chain, see
    /// [`canvas::on_unsent`]); what that plan sends is not followed further when it fails.
    /// Boxed: a chain step counted in its chord can complete the chord, whose plan is
    /// carried out here again (bounded by the nesting of the message).
    fn carry_out<'a>(
        &'a self,
        services: &'a Services,
        plan: Plan,
        chord_body: Option<&'a str>,
    ) -> futures::future::LocalBoxFuture<'a, ()> {
        Box::pin(async move {
            self.log_plan(&plan);
            // Chords whose body already failed (size not recorded, a member not sent): the
            // rest of their header is not published.
            let mut failed_chords: Vec<String> = Vec::new();
            // Each action, and whether a failure to send it is followed up.
            let mut pending: VecDeque<(Action, bool)> = plan
                .actions
                .into_iter()
                .map(|action| (action, true))
                .collect();
            let already_failed = self.already_failed(services, &pending).await;
            while let Some((action, follow_up)) = pending.pop_front() {
                match action {
                    Action::Publish(call) => {
                        let chord = call
                            .options
                            .get("chord")
                            .and_then(|chord| chord["options"]["task_id"].as_str())
                            .map(str::to_string);
                        if chord
                            .as_ref()
                            .is_some_and(|id| failed_chords.iter().any(|failed| failed == id))
                        {
                            continue;
                        }
                        let Err(reason) = self.publish(services, &call).await else {
                            continue;
                        };
                        if !follow_up {
                            continue;
                        }
                        let id = call.task_id();
                        let is_body = chord_body.is_some() && id == chord_body;
                        let unsent = canvas::on_unsent(&call, &reason, is_body, &mut new_id);
                        log::error!(
                            "task {}[{}]: {}[{}] of its workflow could not be sent ({}): \
                             storing FAILURE for it{}",
                            self.name,
                            self.id,
                            clip(&call.task),
                            clip(id.unwrap_or("?")),
                            clip(&reason),
                            if chord.is_some() {
                                " and for its chord's body"
                            } else {
                                ""
                            }
                        );
                        self.log_plan(&unsent);
                        failed_chords.extend(chord);
                        pending.extend(unsent.actions.into_iter().map(|action| (action, false)));
                    }
                    Action::SetChordSize {
                        group_id,
                        size,
                        body,
                    } => {
                        let recorded = match services.results.redis() {
                            Some(redis) => redis
                                .set_chord_size(&group_id, size)
                                .await
                                .map_err(|error| error.to_string()),
                            None => Err("chords need the Redis result backend \
                                         (CELERIAC_RESULT_BACKEND=redis://...)"
                                .to_string()),
                        };
                        if let Err(reason) = recorded {
                            log::error!(
                                "task {}[{}]: chord {group_id} not started: {reason}",
                                self.name,
                                self.id
                            );
                            let Some(body_id) = body.task_id() else {
                                continue;
                            };
                            failed_chords.push(body_id.to_string());
                            let exception = ExceptionInfo::new(
                                "ChordError",
                                "celery.exceptions",
                                format!("chord {group_id} not started: {reason}"),
                            );
                            let to = ResultAddress::for_task(
                                body_id,
                                body.option_str("reply_to").map(str::to_string),
                                body.option_str("group_id").map(str::to_string),
                            );
                            services
                                .results
                                .exception(&to, TaskState::Failure, &exception)
                                .await;
                        }
                    }
                    Action::Fail {
                        task_id,
                        reply_to,
                        group_id,
                        exception,
                    } => {
                        let to = ResultAddress::for_task(&task_id, reply_to, group_id);
                        services
                            .results
                            .exception(&to, TaskState::Failure, &exception)
                            .await;
                    }
                    Action::JoinChord { task_id, .. } if already_failed.contains(&task_id) => {
                        log::debug!(
                            "task {}[{}]: chain step {task_id} had already failed and been \
                             counted in its chord",
                            self.name,
                            self.id
                        );
                    }
                    Action::JoinChord {
                        group_id,
                        group_index,
                        task_id,
                        body,
                        exception,
                    } => {
                        let member = ChordMember {
                            group_id: &group_id,
                            group_index,
                            task_id: &task_id,
                            body: &body,
                        };
                        self.join_chord(services, member, TaskState::Failure, exception.to_value())
                            .await;
                    }
                }
            }
        })
    }

    /// The chain steps among the [`Action::JoinChord`]s of `actions` whose stored state is
    /// already FAILURE or REVOKED, read before the plan stores anything: they returned
    /// their part of the chord when they failed (a redelivered task failing again must not
    /// count twice), as Celery's `_fail_chain` checks. A state that cannot be read counts
    /// as not failed: the chord is not left waiting.
    async fn already_failed(
        &self,
        services: &Services,
        actions: &VecDeque<(Action, bool)>,
    ) -> Vec<String> {
        let Some(redis) = services.results.redis() else {
            return Vec::new();
        };
        let mut failed = Vec::new();
        for (action, _) in actions {
            let Action::JoinChord { task_id, .. } = action else {
                continue;
            };
            match redis.document(task_id).await {
                Ok(Some(document))
                    if matches!(document.status, TaskState::Failure | TaskState::Revoked) =>
                {
                    failed.push(task_id.clone());
                }
                Ok(_) => {}
                Err(error) => log::warn!(
                    "task {}[{}]: could not read the state of chain step {task_id} before \
                     counting it in its chord: {error}",
                    self.name,
                    self.id
                ),
            }
        }
        failed
    }

    /// Logs the parts of `plan` that were dropped and what it says about itself.
    fn log_plan(&self, plan: &Plan) {
        for problem in &plan.problems {
            log::error!(
                "task {}[{}]: {} (dropped)",
                self.name,
                self.id,
                clip(problem)
            );
        }
        for notice in &plan.notices {
            log::info!("task {}[{}]: {}", self.name, self.id, clip(notice));
        }
    }

    /// Publishes one call of the workflow; `Err` says why it was not sent.
    async fn publish(
        &self,
        services: &Services,
        call: &canvas::SignatureDict,
    ) -> Result<(), String> {
        match task_message(call, chrono::Utc::now()) {
            Ok(out) => services
                .producer
                .send_message(out.message, out.queue)
                .await
                .map_err(|error| error.to_string()),
            Err(error) => Err(error.to_string()),
        }
    }
}

/// A header member of a chord, as it is counted in it.
#[derive(Debug, Clone, Copy)]
struct ChordMember<'a> {
    /// The header's group id.
    group_id: &'a str,
    /// The member's place in the header.
    group_index: Option<i64>,
    /// The member's task id.
    task_id: &'a str,
    /// The chord's body.
    body: &'a Value,
}

/// A new task or group id.
fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}
