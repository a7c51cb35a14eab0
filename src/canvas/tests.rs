//! The workflow rules against messages real Celery 5.7 clients and workers sent.

use serde_json::{json, Map, Value};

use super::message::task_message;
use super::*;

/// The `embed` (body[2]) of a captured message.
fn embed_of(fixture: &str) -> Embed {
    let captured: Value = serde_json::from_str(fixture).unwrap();
    let (embed, problems) = Embed::from_value(&captured["body"][2]);
    assert!(problems.is_empty(), "{problems:?}");
    embed
}

/// Ids `id-1`, `id-2`, ... in order.
fn ids() -> impl FnMut() -> String {
    let mut next = 0;
    move || {
        next += 1;
        format!("id-{next}")
    }
}

fn published(plan: &Plan) -> Vec<&SignatureDict> {
    plan.actions
        .iter()
        .filter_map(|action| match action {
            Action::Publish(call) => Some(call),
            _ => None,
        })
        .collect()
}

const TASK: Finished<'static> = Finished {
    id: "t-1",
    root_id: "root-1",
};

#[test]
fn a_chain_continues_with_its_last_element_and_the_rest_reversed() {
    // chain(add(1, 2), add.s(3), mul.s(10)): embed.chain = [mul, add].
    let embed = embed_of(include_str!("../../tests/fixtures/celery-v2/chain_3.json"));
    let plan = on_success(&embed, TASK, &json!(3), &mut ids());
    assert!(plan.problems.is_empty(), "{:?}", plan.problems);
    let calls = published(&plan);
    assert_eq!(calls.len(), 1);
    let next = calls[0];
    assert_eq!(next.task, "probe.add");
    assert_eq!(next.args, vec![json!(3), json!(3)]);
    assert_eq!(next.task_id(), Some("4e7a0a34-cf4d-4ea3-b26e-388602892afe"));
    assert_eq!(next.option_str("parent_id"), Some("t-1"));
    assert_eq!(next.option_str("root_id"), Some("root-1"));

    // As a Python worker publishes it (worker-published/chain_step2.json): args [3, 3],
    // the preset id, the last step still in embed.chain.
    let out = task_message(next, chrono::Utc::now()).unwrap();
    let message = out.message;
    assert_eq!(message.headers.id, "4e7a0a34-cf4d-4ea3-b26e-388602892afe");
    assert_eq!(message.headers.parent_id.as_deref(), Some("t-1"));
    assert_eq!(message.headers.root_id.as_deref(), Some("root-1"));
    assert_eq!(message.headers.argsrepr.as_deref(), Some("(3, 3)"));
    assert_eq!(
        message.reply_to.as_deref(),
        Some("d16dfcab-8ce6-32c8-b9ac-774ccc9fe0d9")
    );
    let crate::protocol::TaskPayload::Json { embed, .. } = &message.payload else {
        panic!("not JSON");
    };
    assert_eq!(embed["chain"][0]["task"], "probe.mul");
    assert_eq!(embed["chain"].as_array().unwrap().len(), 1);
    assert_eq!(embed["callbacks"], Value::Null);
    assert_eq!(out.queue, None);
}

#[test]
fn the_last_chain_step_carries_no_chain() {
    let mut embed = embed_of(include_str!("../../tests/fixtures/celery-v2/chain_3.json"));
    embed.chain.truncate(1);
    let plan = on_success(&embed, TASK, &json!(6), &mut ids());
    let next = published(&plan)[0];
    assert_eq!(next.task, "probe.mul");
    assert_eq!(next.args, vec![json!(6), json!(10)]);
    assert!(!next.options.contains_key("chain"));
}

#[test]
fn a_callback_gets_the_result_and_an_errback_the_task_id_in_a_group() {
    let embed = embed_of(include_str!(
        "../../tests/fixtures/celery-v2/link_link_error.json"
    ));
    let plan = on_success(&embed, TASK, &json!(3), &mut ids());
    let calls = published(&plan);
    assert_eq!(calls.len(), 1, "the errback is not called on success");
    assert_eq!(calls[0].task, "probe.mul");
    assert_eq!(calls[0].args, vec![json!(3), json!(2)]);
    assert_eq!(calls[0].task_id(), Some("id-1"));
    assert!(!calls[0].options.contains_key("group_id"));

    let error = crate::protocol::ExceptionInfo::new("ValueError", "builtins", "boom");
    let plan = on_failure(&embed, TASK, &error, &mut ids());
    let calls = published(&plan);
    assert_eq!(calls.len(), 1, "the callback is not called on failure");
    // As worker-published/link_error_errback.json: args [failed id], a one-member group,
    // parent and root the failed task.
    let errback = calls[0];
    assert_eq!(errback.task, "probe.on_error");
    assert_eq!(errback.args, vec![json!("t-1")]);
    assert_eq!(errback.option_str("group_id"), Some("id-1"));
    assert_eq!(errback.options["group_index"], json!(0));
    assert_eq!(errback.option_str("parent_id"), Some("t-1"));
    assert_eq!(errback.task_id(), Some("id-2"));
}

#[test]
fn several_callbacks_are_one_group() {
    let callback = |task: &str| json!({"task": task, "args": [], "kwargs": {}, "options": {}, "subtask_type": null, "immutable": true});
    let embed = Embed {
        callbacks: vec![callback("a"), callback("b")],
        ..Embed::default()
    };
    let plan = on_success(&embed, TASK, &json!(1), &mut ids());
    let calls = published(&plan);
    assert_eq!(calls.len(), 2);
    for (index, call) in calls.iter().enumerate() {
        assert_eq!(call.option_str("group_id"), Some("id-1"));
        assert_eq!(call.options["group_index"], json!(index));
        assert!(
            call.args.is_empty(),
            "immutable: the result is not prepended"
        );
    }
}

#[test]
fn a_group_in_a_chain_is_expanded_with_its_id_and_indexes() {
    let embed = embed_of(include_str!(
        "../../tests/fixtures/celery-v2/chain_then_group.json"
    ));
    let plan = on_success(&embed, TASK, &json!(2), &mut ids());
    let calls = published(&plan);
    assert_eq!(calls.len(), 2);
    let group_id = "71ace52c-e147-433b-9cb4-2cd0d4835bcf";
    assert_eq!(calls[0].args, vec![json!(2), json!(2)]);
    assert_eq!(calls[1].args, vec![json!(2), json!(3)]);
    for (index, call) in calls.iter().enumerate() {
        assert_eq!(call.option_str("group_id"), Some(group_id));
        assert_eq!(call.options["group_index"], json!(index));
        assert_eq!(call.option_str("parent_id"), Some("t-1"));
    }
    assert_eq!(
        calls[0].task_id(),
        Some("65dd30a8-f804-48ee-97d2-cb4c19cb408d")
    );
}

#[test]
fn a_failed_task_fails_every_remaining_chain_step() {
    let embed = embed_of(include_str!("../../tests/fixtures/celery-v2/chain_3.json"));
    let error = crate::protocol::ExceptionInfo::new("ValueError", "builtins", "boom");
    let plan = on_failure(&embed, TASK, &error, &mut ids());
    let failed: Vec<&str> = plan
        .actions
        .iter()
        .map(|action| match action {
            Action::Fail {
                task_id,
                exception,
                reply_to,
                ..
            } => {
                assert_eq!(exception, &error);
                assert_eq!(
                    reply_to.as_deref(),
                    Some("d16dfcab-8ce6-32c8-b9ac-774ccc9fe0d9")
                );
                task_id.as_str()
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        failed,
        [
            "00000000-0000-4000-8000-000000000007",
            "4e7a0a34-cf4d-4ea3-b26e-388602892afe"
        ]
    );
}

fn chord_body() -> Value {
    let captured: Value = serde_json::from_str(include_str!(
        "../../tests/fixtures/celery-v2/chord_redis_header.0.json"
    ))
    .unwrap();
    captured["body"][2]["chord"].clone()
}

#[test]
fn a_complete_chord_calls_its_body_with_the_results_in_header_order() {
    let parts = vec![
        Ok(ChordPart {
            task_id: "a".into(),
            state: "SUCCESS".into(),
            result: json!(2),
        }),
        Ok(ChordPart {
            task_id: "b".into(),
            state: "SUCCESS".into(),
            result: json!(4),
        }),
    ];
    let plan = on_chord_complete(&chord_body(), &parts, &mut ids());
    let calls = published(&plan);
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].task, "probe.tsum");
    assert_eq!(calls[0].args, vec![json!([2, 4])]);
    assert_eq!(
        calls[0].task_id(),
        Some("00000000-0000-4000-8000-0000000000c1")
    );
}

#[test]
fn a_failed_header_task_fails_the_body_with_chord_error() {
    let parts = vec![
        Ok(ChordPart {
            task_id: "a".into(),
            state: "SUCCESS".into(),
            result: json!(2),
        }),
        Ok(ChordPart {
            task_id: "b".into(),
            state: "FAILURE".into(),
            result: json!({"exc_type": "ValueError", "exc_message": ["boom"], "exc_module": "builtins"}),
        }),
    ];
    let plan = on_chord_complete(&chord_body(), &parts, &mut ids());
    assert_eq!(
        plan.actions,
        vec![Action::Fail {
            task_id: "00000000-0000-4000-8000-0000000000c1".into(),
            reply_to: Some("55f538ea-e9da-3eb2-8f5e-09c237154c9e".into()),
            group_id: Some("b08a1d09-1b9d-49ec-8efb-3615be87b853".into()),
            exception: crate::protocol::ExceptionInfo::new(
                "ChordError",
                "celery.exceptions",
                "Dependency b raised ValueError('boom')"
            ),
        }]
    );
}

#[test]
fn a_chord_in_a_chain_records_its_size_then_publishes_its_header() {
    let member = |task: &str, id: &str| json!({"task": task, "args": [], "kwargs": {}, "options": {"task_id": id}, "subtask_type": null, "immutable": false});
    let chord = json!({
        "task": "celery.chord", "args": [], "kwargs": {
            "header": {"task": "celery.group", "args": [], "kwargs": {"tasks": [member("add", "h1"), member("add", "h2")]},
                       "options": {"task_id": "g-1"}, "subtask_type": "group", "immutable": false},
            "body": member("tsum", "body-1"), "kwargs": {}},
        "options": {"task_id": "body-1"}, "subtask_type": "chord", "immutable": false});
    let after = member("mul", "after-1");
    let embed = Embed {
        chain: vec![after.clone(), chord],
        ..Embed::default()
    };
    let plan = on_success(&embed, TASK, &json!(5), &mut ids());
    assert!(plan.problems.is_empty(), "{:?}", plan.problems);
    let Action::SetChordSize {
        group_id,
        size,
        body,
    } = &plan.actions[0]
    else {
        panic!("{:?}", plan.actions[0]);
    };
    assert_eq!((group_id.as_str(), *size), ("g-1", 2));
    assert_eq!(body.task_id(), Some("body-1"));
    // The rest of the chain runs after the body.
    assert_eq!(body.options["chain"], json!([after]));
    let calls = published(&plan);
    assert_eq!(calls.len(), 2);
    for (index, call) in calls.iter().enumerate() {
        assert_eq!(call.args, vec![json!(5)]);
        assert_eq!(call.option_str("group_id"), Some("g-1"));
        assert_eq!(call.options["group_index"], json!(index));
        assert_eq!(call.options["chord"]["options"]["task_id"], "body-1");
        assert!(
            !call.options.contains_key("chain"),
            "the chain goes to the body only"
        );
    }
}

#[test]
fn malformed_parts_are_dropped_with_their_reason() {
    let (embed, problems) = Embed::from_value(&json!([1, 2]));
    assert!(embed.is_empty());
    assert_eq!(problems, ["embed must be an object, not a list"]);

    let (embed, problems) = Embed::from_value(&json!({"callbacks": 3, "chain": [{"args": []}]}));
    assert_eq!(problems, ["embed.callbacks must be a list, not a number"]);
    let plan = on_success(&embed, TASK, &json!(1), &mut ids());
    assert!(published(&plan).is_empty());
    assert_eq!(
        plan.problems,
        ["next chain step: malformed workflow part: a signature without a task name"]
    );
}

#[test]
fn a_chain_step_that_cannot_run_fails_the_chain_instead_of_hanging_it() {
    let step = json!({"task": "celery.chord", "kwargs": {"header": [], "body": 3}, "options": {"task_id": "x"}, "subtask_type": "chord"});
    let embed = Embed {
        chain: vec![step],
        ..Embed::default()
    };
    let plan = on_success(&embed, TASK, &json!(1), &mut ids());
    assert_eq!(plan.problems.len(), 1, "{:?}", plan.problems);
    assert!(matches!(&plan.actions[..], [Action::Fail { task_id, .. }] if task_id == "x"));
}

#[test]
fn nesting_is_bounded() {
    let mut value = json!({"task": "leaf"});
    for _ in 0..(MAX_CANVAS_DEPTH + 1) {
        value =
            json!({"task": "celery.group", "kwargs": {"tasks": [value]}, "subtask_type": "group"});
    }
    assert_eq!(
        CanvasNode::from_value(&value),
        Err(CanvasError::TooDeep {
            limit: MAX_CANVAS_DEPTH
        })
    );
}

#[test]
fn options_map_to_headers_and_properties() {
    let mut options = Map::new();
    for (key, value) in [
        ("task_id", json!("x")),
        ("queue", json!("q")),
        ("priority", json!(7)),
        ("countdown", json!(10)),
        ("expires", json!("2030-01-01T00:00:00+00:00")),
        ("time_limit", json!(30)),
        ("group_id", json!("g")),
        ("group_index", json!(2)),
        ("link", json!({"task": "cb"})),
    ] {
        options.insert(key.into(), value);
    }
    let mut call = SignatureDict::new("t", vec![json!(1)], Map::new());
    call.options = options;
    let now = chrono::Utc::now();
    let out = task_message(&call, now).unwrap();
    assert_eq!(out.queue.as_deref(), Some("q"));
    let message = out.message;
    assert_eq!(message.priority, Some(7));
    assert_eq!(
        message.headers.eta,
        Some(now + chrono::Duration::seconds(10))
    );
    assert_eq!(message.headers.timelimit, (Some(30.0), None));
    assert_eq!(message.headers.group.as_deref(), Some("g"));
    assert_eq!(message.headers.group_index, Some(2));
    assert!(message.headers.expires.is_some());
    let crate::protocol::TaskPayload::Json { embed, .. } = &message.payload else {
        panic!("not JSON");
    };
    assert_eq!(embed["callbacks"], json!([{"task": "cb"}]));
}

#[test]
fn exception_reprs_are_pythons() {
    use super::workflow::exception_repr;
    let exception = |args: Value| json!({"exc_type": "E", "exc_message": args, "exc_module": "m"});
    assert_eq!(exception_repr(&exception(json!(["boom"]))), "E('boom')");
    assert_eq!(exception_repr(&exception(json!([42, "d"]))), "E(42, 'd')");
    assert_eq!(exception_repr(&exception(json!([]))), "E()");
}

fn frozen(canvas: Canvas, reply_to: Option<&str>) -> SignatureDict {
    let route = |task: &str, default: Option<&str>| {
        default.map_or_else(|| format!("routed-{task}"), str::to_string)
    };
    let mut new_id = ids();
    build::Freezer {
        route: &route,
        reply_to,
        new_id: &mut new_id,
    }
    .freeze(&canvas)
    .unwrap()
}

#[test]
fn a_rust_chain_is_frozen_as_python_freezes_one() {
    use crate::Signature;
    let chain = crate::chain![
        Signature::new("a").with_args(vec![json!(1)]),
        Signature::new("b").with_queue("q"),
        Signature::new("c")
            .immutable()
            .with_link(Signature::new("cb")),
    ];
    let dict = frozen(Canvas::from(chain), Some("reply"));
    assert_eq!(dict.subtask_type.as_deref(), Some("chain"));
    let tasks = dict.kwargs["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 3);
    assert_eq!(tasks[0]["options"]["task_id"], "id-1");
    assert_eq!(tasks[0]["options"]["queue"], "routed-a");
    assert_eq!(tasks[0]["options"]["reply_to"], "reply");
    assert_eq!(tasks[1]["options"]["queue"], "q");
    assert_eq!(tasks[2]["immutable"], true);
    assert_eq!(tasks[2]["options"]["link"][0]["task"], "cb");
    assert_eq!(build::result_id(&dict).as_deref(), Some("id-3"));

    // Sent: the first step, carrying the other two reversed.
    let node = CanvasNode::from_value(&dict.to_value()).unwrap();
    let mut actions = Vec::new();
    apply(&node, &[], &Map::new(), &mut ids(), &mut actions).unwrap();
    let [Action::Publish(first)] = &actions[..] else {
        panic!("{actions:?}");
    };
    assert_eq!(first.task, "a");
    let chain: Vec<&str> = first.options["chain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| step["task"].as_str().unwrap())
        .collect();
    assert_eq!(chain, ["c", "b"]);
}

#[test]
fn a_group_followed_by_a_step_is_a_chord() {
    use crate::Signature;
    let chain = crate::chain![
        Group::of([Signature::new("a"), Signature::new("b")]),
        Signature::new("sum"),
    ];
    let dict = frozen(Canvas::from(chain), None);
    let tasks = dict.kwargs["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0]["subtask_type"], "chord");
    let body_id = tasks[0]["kwargs"]["body"]["options"]["task_id"].clone();
    assert_eq!(tasks[0]["options"]["task_id"], body_id);
    assert_eq!(
        build::result_id(&dict),
        body_id.as_str().map(str::to_string)
    );

    let node = CanvasNode::from_value(&dict.to_value()).unwrap();
    let mut actions = Vec::new();
    apply(&node, &[], &Map::new(), &mut ids(), &mut actions).unwrap();
    assert!(matches!(&actions[0], Action::SetChordSize { size: 2, .. }));
    assert_eq!(actions.len(), 3);
}

#[test]
fn bincode_arguments_cannot_be_part_of_a_workflow() {
    let mut signature = crate::Signature::new("t");
    signature.bincode_args = Some(vec![1]);
    let route = |_: &str, _: Option<&str>| "q".to_string();
    let mut new_id = ids();
    let refused = build::Freezer {
        route: &route,
        reply_to: None,
        new_id: &mut new_id,
    }
    .freeze(&Canvas::from(signature));
    assert!(
        matches!(refused, Err(CanvasError::Unsupported { .. })),
        "{refused:?}"
    );
}

#[test]
fn errbacks_called_old_style_are_named_in_one_notice_per_failure() {
    let embed = embed_of(include_str!(
        "../../tests/fixtures/celery-v2/link_link_error.json"
    ));
    let error = crate::protocol::ExceptionInfo::new("ValueError", "builtins", "boom");
    let failed = on_failure(&embed, TASK, &error, &mut ids());
    let [notice] = &failed.notices[..] else {
        panic!("one notice per failed task: {:?}", failed.notices);
    };
    for part in [
        "probe.on_error",
        "t-1",
        "old-style",
        "(request, exc, traceback)",
    ] {
        assert!(notice.contains(part), "{part:?} missing in {notice:?}");
    }
    // No errbacks, no notice; a success calls none.
    let plain = embed_of(include_str!("../../tests/fixtures/celery-v2/chain_3.json"));
    assert!(on_failure(&plain, TASK, &error, &mut ids())
        .notices
        .is_empty());
    assert!(on_success(&embed, TASK, &json!(3), &mut ids())
        .notices
        .is_empty());
    // A chord body failed by its header calls its errbacks the same way.
    let mut body = chord_body();
    body["options"]["link_error"] = json!([{"task": "probe.on_error", "args": [], "kwargs": {}, "options": {}, "subtask_type": null, "immutable": false}]);
    let failure = vec![Ok(ChordPart {
        task_id: "a".into(),
        state: "FAILURE".into(),
        result: json!({"exc_type": "ValueError", "exc_message": ["boom"], "exc_module": "builtins"}),
    })];
    let plan = on_chord_complete(&body, &failure, &mut ids());
    assert_eq!(plan.notices.len(), 1, "{:?}", plan.notices);
    assert!(plan.notices[0].contains("00000000-0000-4000-8000-0000000000c1"));
}

/// A signature dict as Celery sends it.
fn call(task: &str, options: Value) -> SignatureDict {
    SignatureDict::from_value(&json!({"task": task, "args": [], "kwargs": {}, "options": options, "subtask_type": null, "immutable": false})).unwrap()
}

/// `(task id, exception type, message)` of every `Fail`, and the tasks published.
fn outcome(plan: &Plan) -> (Vec<(String, String, String)>, Vec<String>) {
    let mut failed = Vec::new();
    let mut sent = Vec::new();
    for action in &plan.actions {
        match action {
            Action::Fail {
                task_id, exception, ..
            } => failed.push((
                task_id.clone(),
                exception.exc_type.clone(),
                exception.exc_message[0].as_str().unwrap_or("").to_string(),
            )),
            Action::Publish(call) => sent.push(call.task.clone()),
            other => panic!("unexpected {other:?}"),
        }
    }
    (failed, sent)
}

#[test]
fn a_call_that_cannot_be_sent_is_failed_with_what_waits_on_it() {
    let rest = json!([{"task": "last", "args": [], "kwargs": {}, "options": {"task_id": "c"}, "subtask_type": null, "immutable": false}]);
    let errback = json!([{"task": "on_error", "args": [], "kwargs": {}, "options": {}, "subtask_type": null, "immutable": true}]);

    // The next chain step: FAILURE for it and the rest of the chain, its errbacks called.
    let step = call(
        "next",
        json!({"task_id": "b", "chain": rest, "link_error": errback}),
    );
    let plan = on_unsent(&step, "connection lost", false, &mut ids());
    let (failed, sent) = outcome(&plan);
    assert_eq!(
        failed,
        [
            (
                "b".to_string(),
                "CanvasError".to_string(),
                "could not send next[b]: connection lost".to_string()
            ),
            (
                "c".to_string(),
                "CanvasError".to_string(),
                "could not send next[b]: connection lost".to_string()
            ),
        ]
    );
    assert_eq!(sent, ["on_error"]);
    assert_eq!(plan.notices.len(), 1, "errbacks are called old-style");

    // A chord body: ChordError('Callback error: ...'), as Celery's chord_error_from_stack.
    let body = SignatureDict::from_value(&chord_body()).unwrap();
    let (failed, sent) = outcome(&on_unsent(&body, "refused", true, &mut ids()));
    assert_eq!(
        failed,
        [(
            "00000000-0000-4000-8000-0000000000c1".to_string(),
            "ChordError".to_string(),
            "Callback error: could not send probe.tsum[00000000-0000-4000-8000-0000000000c1]: \
             refused"
                .to_string()
        )]
    );
    assert!(sent.is_empty());

    // A chord header member: it and the chord's body, which would wait for it.
    let member = call(
        "add",
        json!({"task_id": "h1", "group_id": "g", "group_index": 0, "chord": chord_body()}),
    );
    let (failed, _) = outcome(&on_unsent(&member, "refused", false, &mut ids()));
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert_eq!(failed[0].0, "h1");
    assert_eq!(failed[1].0, "00000000-0000-4000-8000-0000000000c1");
    assert_eq!(failed[1].1, "ChordError");
    assert_eq!(
        failed[1].2,
        "Dependency h1 raised CanvasError('could not send add[h1]: refused')"
    );

    // A plain callback: FAILURE for it alone.
    let (failed, sent) = outcome(&on_unsent(
        &call("cb", json!({"task_id": "x"})),
        "refused",
        false,
        &mut ids(),
    ));
    assert_eq!(failed.len(), 1);
    assert!(sent.is_empty());
}

#[test]
fn a_failed_chain_in_a_chord_header_counts_its_last_step_in_the_chord() {
    // Python's chord([chain(fail('x'), add.s(1)), add.s(1, 1)], tsum.s()): the chain's last
    // step carries the chord, its group and index.
    let embed = embed_of(include_str!(
        "../../tests/fixtures/canvas/chord_header_chain.json"
    ));
    let step = &embed.chain[0]["options"];
    let error = crate::protocol::ExceptionInfo::new("ValueError", "builtins", "x");
    let plan = on_failure(&embed, TASK, &error, &mut ids());
    let [Action::Fail { task_id, .. }, Action::JoinChord {
        group_id,
        group_index,
        task_id: joined,
        body,
        exception,
    }] = &plan.actions[..]
    else {
        panic!("{:?}", plan.actions);
    };
    assert_eq!(task_id, step["task_id"].as_str().unwrap());
    assert_eq!(joined, task_id);
    assert_eq!(group_id, step["group_id"].as_str().unwrap());
    assert_eq!(*group_index, Some(0));
    assert_eq!(body, &step["chord"]);
    assert_eq!(exception, &error);

    // A step without a group cannot be counted: FAILURE only.
    let mut embed = embed;
    embed.chain[0]["options"]
        .as_object_mut()
        .unwrap()
        .remove("group_id");
    let plan = on_failure(&embed, TASK, &error, &mut ids());
    assert!(matches!(&plan.actions[..], [Action::Fail { .. }]));
}

/// `value` with every UUID replaced by `<id>` (ids are random on both sides).
fn mask_ids(value: &Value) -> Value {
    match value {
        Value::String(text) if uuid::Uuid::parse_str(text).is_ok() => json!("<id>"),
        Value::Array(items) => Value::Array(items.iter().map(mask_ids).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, value)| (key.clone(), mask_ids(value)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Drops `options.queue` from every signature in `value`: a Rust producer routes each task
/// when it freezes the workflow and writes its queue; Python leaves an unrouted task's
/// queue out (its worker then routes it). Both honour a queue that is there.
fn without_queues(value: &Value) -> Value {
    match value {
        Value::Array(items) => Value::Array(items.iter().map(without_queues).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(key, value)| !(key.as_str() == "queue" && value.is_string()))
                .map(|(key, value)| (key.clone(), without_queues(value)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The messages a Rust producer publishes for `canvas`, as (headers, body) in JSON.
fn sent_by_rust(canvas: Canvas) -> Vec<(Map<String, Value>, Value)> {
    let reply_to = uuid::Uuid::new_v4().to_string();
    let route = |_: &str, _: Option<&str>| "celery".to_string();
    let mut new_id = || uuid::Uuid::new_v4().to_string();
    let frozen = build::Freezer {
        route: &route,
        reply_to: Some(&reply_to),
        new_id: &mut new_id,
    }
    .freeze(&canvas)
    .unwrap();
    let node = CanvasNode::from_value(&frozen.to_value()).unwrap();
    let mut actions = Vec::new();
    apply(&node, &[], &Map::new(), &mut new_id, &mut actions).unwrap();
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Publish(call) => Some(call),
            _ => None,
        })
        .map(|call| {
            let (properties, body) = task_message(call, chrono::Utc::now())
                .unwrap()
                .message
                .encode()
                .unwrap();
            let headers = properties.headers().clone().unwrap_or_default();
            (
                crate::protocol::amqp::table_to_json(&headers),
                serde_json::from_slice(&body).unwrap(),
            )
        })
        .collect()
}

/// Compares one message a Rust producer sent with one Celery 5.7 sent, header by header
/// and embed field by field, ids masked. `lang` ("rust"/"py") and `origin` (the sending
/// process) differ by design.
fn assert_sent_as_python(fixture: &str, rust: &(Map<String, Value>, Value)) {
    let python: Value = serde_json::from_str(fixture).unwrap();
    let (headers, body) = rust;
    let expected = python["headers"].as_object().unwrap();
    let mut names: Vec<&String> = expected.keys().chain(headers.keys()).collect();
    names.sort();
    names.dedup();
    for name in names {
        if matches!(name.as_str(), "lang" | "origin") {
            continue;
        }
        assert_eq!(
            headers.get(name).map(mask_ids),
            expected.get(name).map(mask_ids),
            "header {name}"
        );
    }
    for lineage in ["root_id", "parent_id"] {
        assert_eq!(
            headers[lineage] == headers["id"],
            python["headers"][lineage] == python["headers"]["id"],
            "header {lineage} is (or is not) the task's own id"
        );
    }
    assert_eq!(body[0], python["body"][0], "args");
    assert_eq!(body[1], python["body"][1], "kwargs");
    for field in ["callbacks", "errbacks", "chain", "chord"] {
        assert_eq!(
            mask_ids(&without_queues(&body[2][field])),
            mask_ids(&python["body"][2][field]),
            "embed.{field}"
        );
    }
}

#[test]
fn rust_built_chains_and_chords_are_sent_as_celery_sends_them() {
    use crate::Signature;
    // chain(add.s(1, 2), add.s(3), mul.s(10)).
    let chain = crate::chain![
        Signature::new("probe.add").with_args(vec![json!(1), json!(2)]),
        Signature::new("probe.add").with_args(vec![json!(3)]),
        Signature::new("probe.mul").with_args(vec![json!(10)]),
    ];
    let sent = sent_by_rust(Canvas::from(chain));
    assert_eq!(sent.len(), 1, "the first step only");
    assert_sent_as_python(
        include_str!("../../tests/fixtures/celery-v2/chain_3.json"),
        &sent[0],
    );

    // chord([add.s(1, 1), add.s(2, 2)], tsum.s()) with the Redis backend.
    let chord = Chord::new(
        Group::of([
            Signature::new("probe.add").with_args(vec![json!(1), json!(1)]),
            Signature::new("probe.add").with_args(vec![json!(2), json!(2)]),
        ]),
        Signature::new("probe.tsum"),
    );
    let sent = sent_by_rust(Canvas::from(chord));
    assert_eq!(sent.len(), 2, "the header");
    assert_sent_as_python(
        include_str!("../../tests/fixtures/celery-v2/chord_redis_header.0.json"),
        &sent[0],
    );
    assert_sent_as_python(
        include_str!("../../tests/fixtures/celery-v2/chord_redis_header.1.json"),
        &sent[1],
    );
}

#[test]
fn a_chains_errbacks_go_to_every_step() {
    // As Celery's `chord(..., chain(a, b)).link_error(e)` sends its body: the errback in
    // the chain's own options, none on its steps; whichever step fails must call it.
    let errback = json!({"task": "e", "args": [], "kwargs": {}, "options": {}, "subtask_type": null, "immutable": true});
    let step = |name: &str| json!({"task": name, "args": [], "kwargs": {}, "options": {}, "subtask_type": null, "immutable": false});
    let chain = json!({"task": "celery.chain", "args": [], "kwargs": {"tasks": [step("a"), step("b")]},
        "options": {"link_error": [errback.clone()]}, "subtask_type": "chain", "immutable": false});
    let node = CanvasNode::from_value(&chain).unwrap();
    let mut actions = Vec::new();
    apply(&node, &[], &Map::new(), &mut ids(), &mut actions).unwrap();
    let [Action::Publish(first)] = &actions[..] else {
        panic!("{actions:?}");
    };
    assert_eq!(first.options["link_error"], json!([errback]));
    assert_eq!(first.options["chain"][0]["task"], "b");
    assert_eq!(
        first.options["chain"][0]["options"]["link_error"],
        json!([errback])
    );

    // A step that already has the errback keeps it once.
    let mut own = step("a");
    own["options"]["link_error"] = json!([errback.clone()]);
    let chain = json!({"task": "celery.chain", "args": [], "kwargs": {"tasks": [own, step("b")]},
        "options": {"link_error": [errback.clone()]}, "subtask_type": "chain", "immutable": false});
    let node = CanvasNode::from_value(&chain).unwrap();
    let mut actions = Vec::new();
    apply(&node, &[], &Map::new(), &mut ids(), &mut actions).unwrap();
    let [Action::Publish(first)] = &actions[..] else {
        panic!("{actions:?}");
    };
    assert_eq!(first.options["link_error"], json!([errback]));
}
