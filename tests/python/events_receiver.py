"""Python Celery 5.7's own event receiver watching a celeriac worker (tests/events_python.rs).

    python events_receiver.py MODE        # MODE: "on" (the worker runs with task events) or "off"

Env: CELERIAC_TEST_AMQP_URL (the broker), CELERIAC_QUEUE (the worker's queue),
CELERIAC_HOSTNAME (the worker's node name). Protocol with the test on stdout: "ready" once
the event queue is bound (the test then starts the worker), "stop-worker" when the test
should SIGTERM it, "ok <check>" per check, "all checks passed" at the end. A check that
fails raises: the exit status is non-zero and the traceback says what did not happen.

In "on" mode State also sees a task retried (task-retried with its exception, then
SUCCESS), a countdown task revoked (REVOKED, never started) and a running task terminated
(REVOKED, terminated by signal 15), through remote control addressed to this worker only.
"""
import uuid

import os
import socket
import sys
import time

from celery import Celery
from celery.events.state import State

URL = os.environ["CELERIAC_TEST_AMQP_URL"]
QUEUE = os.environ["CELERIAC_QUEUE"]
HOSTNAME = os.environ["CELERIAC_HOSTNAME"]
MODE = sys.argv[1]
DEADLINE = 60

app = Celery("events_checks", broker=URL, backend="rpc://")
app.conf.task_default_queue = QUEUE
state = State()
events = []  # the worker's events, in arrival order
states_at = {}  # (uuid, event type) -> the task's State state right after that event


def on_event(event):
    if event.get("hostname") == HOSTNAME:
        events.append(event)
        state.event(event)
        if event["type"] in ("task-retried", "task-revoked"):
            states_at[(event["uuid"], event["type"])] = state.tasks[event["uuid"]].state


def ok(name):
    print(f"ok {name}", flush=True)


def of_type(kind):
    return [e for e in events if e["type"] == kind]


def periodic_heartbeats():
    """The worker's every-2-s heartbeats. A heartbeat with freq 5 and no counters is the
    answer to a `heartbeat` broadcast, which every Celery event receiver (this one, the
    parallel test's, Flower) sends when it starts: not counted."""
    return [e for e in of_type("worker-heartbeat") if e.get("freq") == 2.0]


def task_events(uuid=None):
    return [e for e in events if e["type"].startswith("task-") and uuid in (None, e.get("uuid"))]


def wait_for(what, condition, conn):
    """Receives events until condition() holds; fails naming what did not happen."""
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            seen = [(e["type"], e.get("clock")) for e in events]
            raise AssertionError(f"{what} did not happen within {DEADLINE}s; saw {seen}")
        try:
            conn.drain_events(timeout=0.5)
        except socket.timeout:
            pass


def check_worker_event(event, kind):
    for field in ["hostname", "utcoffset", "pid", "clock", "timestamp", "freq", "active",
                  "processed", "loadavg", "sw_ident", "sw_ver", "sw_sys"]:
        assert field in event, f"{kind} lacks {field}: {event}"
    assert event["freq"] == 2.0, event
    assert isinstance(event["loadavg"], list) and len(event["loadavg"]) == 3, event
    assert event["sw_sys"] == "Linux", event
    assert isinstance(event["pid"], int) and isinstance(event["clock"], int), event
    ok(f"{kind} fields")


def main():
    with app.connection_for_read() as conn:
        receiver = app.events.Receiver(conn, handlers={"*": on_event})
        with receiver.consumer_context() as (conn, _channel, _consumers):
            print("ready", flush=True)
            wait_for("worker-online", lambda: of_type("worker-online"), conn)
            check_worker_event(of_type("worker-online")[0], "worker-online")

            add = app.send_task("interop.add", args=[2, 3])
            fail = app.send_task("interop.fail", args=["boom"])
            assert add.get(timeout=DEADLINE) == 5
            try:
                fail.get(timeout=DEADLINE)
                raise AssertionError("interop.fail succeeded")
            except ValueError:
                pass
            done_at = time.time()
            # Heartbeats sent after both tasks ended count them. Task events, when on, are
            # published within 0.1 s of happening: all are in before the second such
            # heartbeat (2 s later).
            wait_for(
                "two heartbeats counting both tasks",
                lambda: len([e for e in periodic_heartbeats()
                             if e["processed"] >= 2 and e["timestamp"] > done_at]) >= 2,
                conn,
            )
            beat = [e for e in periodic_heartbeats() if e["processed"] >= 2][-1]
            check_worker_event(beat, "worker-heartbeat")
            assert beat["active"] == 0 and beat["processed"] == 2, beat
            ok("heartbeat counts active and processed")
            beats = periodic_heartbeats()
            gaps = [b["timestamp"] - a["timestamp"] for a, b in zip(beats, beats[1:])]
            assert all(gap > 1.5 for gap in gaps), f"heartbeats closer than every 2 s: {gaps}"
            worker = state.workers[HOSTNAME]
            assert worker.alive, f"State does not take {HOSTNAME} for alive"
            ok("State shows the worker alive")

            if MODE == "on":
                check_task_events(add.id, fail.id)
                check_retried(conn)
                check_revoked(conn)
            else:
                assert task_events() == [], f"task events sent while off: {task_events()}"
                ok("no task events when they are off")

            clocks = [e["clock"] for e in events]
            assert len(set(clocks)) == len(clocks), f"a clock value used twice: {clocks}"
            ok("Lamport clock values are unique")
            # One clock for events and remote control: the clock a `clock` request reads
            # has moved past every event clock already sent.
            replies = app.control.inspect(destination=[HOSTNAME], timeout=10).clock() or {}
            assert HOSTNAME in replies, f"no clock reply from {HOSTNAME}: {replies}"
            assert replies[HOSTNAME]["clock"] >= max(clocks), (replies, max(clocks))
            ok("the clock reply is past every event clock")

            print("stop-worker", flush=True)
            wait_for("worker-offline", lambda: of_type("worker-offline"), conn)
            offline = of_type("worker-offline")[0]
            check_worker_event(offline, "worker-offline")
            assert offline["clock"] == max(clocks + [offline["clock"]]), "offline is the last event"
            assert not state.workers[HOSTNAME].alive, "State still takes the worker for alive"
            ok("worker-offline ends the worker in State")
    print("all checks passed", flush=True)


def check_task_events(add_id, fail_id):
    for uuid, last in [(add_id, "task-succeeded"), (fail_id, "task-failed")]:
        kinds = [e["type"] for e in task_events(uuid)]
        assert kinds == ["task-received", "task-started", last], f"{uuid}: {kinds}"
        clocks = [e["clock"] for e in task_events(uuid)]
        assert clocks == sorted(clocks), f"{uuid}: clocks out of order {clocks}"
    received = task_events(add_id)[0]
    assert received["name"] == "interop.add", received
    assert received["args"] == "[2, 3]" and received["kwargs"] == "{}", received
    assert received["root_id"] == add_id and received["parent_id"] is None, received
    assert received["retries"] == 0 and received["eta"] is None and received["expires"] is None
    ok("task-received fields")
    succeeded = task_events(add_id)[2]
    assert succeeded["result"] == "5", succeeded
    assert isinstance(succeeded["runtime"], float) and succeeded["runtime"] >= 0, succeeded
    ok("task-succeeded fields")
    failed = task_events(fail_id)[2]
    assert failed["exception"] == "ValueError('boom')", failed
    assert "ValueError: boom" in failed["traceback"], failed
    ok("task-failed fields")
    task = state.tasks[add_id]
    assert task.state == "SUCCESS" and task.result == "5", (task.state, task.result)
    assert task.name == "interop.add" and task.worker.hostname == HOSTNAME, task
    assert task.runtime is not None
    assert state.tasks[fail_id].state == "FAILURE", state.tasks[fail_id].state
    assert state.tasks[fail_id].exception == "ValueError('boom')"
    ok("State shows the tasks SUCCESS and FAILURE")


def kinds_of(uuid):
    return [e["type"] for e in task_events(uuid)]


def check_retried(conn):
    """interop.flaky fails once with a retryable error: task-retried, then a second
    delivery (retries 1) that succeeds."""
    flaky = app.send_task("interop.flaky", kwargs={"key": str(uuid.uuid4()), "failures": 1})
    assert flaky.get(timeout=DEADLINE) == 2
    wait_for("task-succeeded of the retried task",
             lambda: "task-succeeded" in kinds_of(flaky.id), conn)
    # The retry's own task-received may come before task-retried: the worker publishes the
    # retry first, as Celery's Task.retry does.
    kinds = kinds_of(flaky.id)
    assert kinds[:2] == ["task-received", "task-started"], kinds
    assert sorted(kinds) == sorted(["task-received", "task-started", "task-retried",
                                    "task-received", "task-started", "task-succeeded"]), kinds
    retried = of_type("task-retried")[-1]
    assert retried["uuid"] == flaky.id, retried
    assert retried["exception"].startswith("RuntimeError('flaky "), retried
    assert "RuntimeError: flaky " in retried["traceback"], retried
    assert states_at[(flaky.id, "task-retried")] == "RETRY", states_at
    assert [e["retries"] for e in task_events(flaky.id) if e["type"] == "task-received"] == [0, 1]
    task = state.tasks[flaky.id]
    assert task.succeeded and task.result == "2", (task.state, task.result)
    ok("State sees task-retried (RETRY, with its exception), then SUCCESS")


def revoked_event(uuid_):
    found = [e for e in task_events(uuid_) if e["type"] == "task-revoked"]
    return found[0] if found else None


def check_revoked(conn):
    """A countdown task revoked while the worker holds it, and a running task terminated."""
    later = app.send_task("interop.add", args=[1, 1], countdown=300)
    wait_for("task-received of the countdown task",
             lambda: "task-received" in kinds_of(later.id), conn)
    app.control.revoke(later.id, destination=[HOSTNAME])
    wait_for("task-revoked of the countdown task",
             lambda: revoked_event(later.id), conn)
    revoked = revoked_event(later.id)
    assert (revoked["terminated"], revoked["signum"], revoked["expired"]) == (False, None, False), revoked
    assert "task-started" not in kinds_of(later.id), kinds_of(later.id)
    assert state.tasks[later.id].state == "REVOKED", state.tasks[later.id].state
    ok("State shows the revoked countdown task REVOKED, never started")

    running = app.send_task("interop.sleep", args=[300])
    wait_for("task-started of the task to terminate",
             lambda: "task-started" in kinds_of(running.id), conn)
    app.control.revoke(running.id, terminate=True, destination=[HOSTNAME])
    wait_for("task-revoked of the terminated task",
             lambda: revoked_event(running.id), conn)
    revoked = revoked_event(running.id)
    assert (revoked["terminated"], revoked["signum"], revoked["expired"]) == (True, 15, False), revoked
    assert states_at[(running.id, "task-revoked")] == "REVOKED", states_at
    assert state.tasks[running.id].state == "REVOKED", state.tasks[running.id].state
    ok("State shows the terminated task REVOKED (terminated by signal 15)")


if __name__ == "__main__":
    main()
