"""Python Celery 5.7's side of the Redis result backend interop tests.

    python redis_results.py URL read ID...       AsyncResult(ID).get() for each id; prints one
                                                 JSON line per id: {"value": ...} or
                                                 {"exc_type", "exc_module", "exc_args"}
    python redis_results.py URL send AMQP_URL QUEUE
                                                 a Python producer with the Redis backend sends
                                                 to a celeriac worker: add(2, 3), fail('boom'),
                                                 an expired add, wait_for_file(path) seen
                                                 STARTED before the file is created; prints
                                                 "all checks passed" or raises
    python redis_results.py URL extended AMQP_URL QUEUE
                                                 the same to a celeriac worker with
                                                 result_extended: add(2, y=3) and fail('boom')
                                                 read back with AsyncResult.name, .args,
                                                 .kwargs, .worker, .retries, .queue, and
                                                 wait_for_file(path) seen STARTED with its name
                                                 and arguments before the file is created; prints
                                                 "all checks passed" or raises
    python redis_results.py URL store OK_ID FAIL_ID
                                                 app.backend.store_result: OK_ID SUCCESS 42,
                                                 FAIL_ID FAILURE ValueError('boom from python')
"""
import datetime
import json
import os
import shutil
import sys
import tempfile
import time

from celery import Celery
from celery.result import AsyncResult


def main():
    url, command, *ids = sys.argv[1:]
    app = Celery("redis_interop", broker="memory://", backend=url)
    if command == "read":
        for task_id in ids:
            try:
                value = AsyncResult(task_id, app=app).get(timeout=30)
                print(json.dumps({"value": value}), flush=True)
            except Exception as exc:  # the task's exception, as Celery rebuilt it
                print(json.dumps({
                    "exc_type": type(exc).__name__,
                    "exc_module": type(exc).__module__,
                    "exc_args": list(exc.args),
                }), flush=True)
    elif command == "send":
        send_checks(url, *ids)
    elif command == "extended":
        extended_checks(url, *ids)
    elif command == "store":
        ok_id, fail_id = ids
        app.backend.store_result(ok_id, 42, "SUCCESS")
        try:
            raise ValueError("boom from python")
        except ValueError as exc:
            app.backend.store_result(fail_id, exc, "FAILURE", traceback="Traceback: boom")
        print("stored", flush=True)
    else:
        sys.exit(f"unknown command {command}")


# How long the gated task waits for its file before it fails (it should never need to).
GATE_SECONDS = 120


def run_gated(app, queue):
    """Sends interop.wait_for_file, which runs until a file exists; waits until the backend
    says STARTED (PENDING before; the task cannot finish before the file is created, so
    STARTED cannot be missed), then creates the file and checks that the task returns its
    path. Answers the STARTED document, with "path" added."""
    gate_dir = tempfile.mkdtemp(prefix="celeriac-gate-")
    path = os.path.join(gate_dir, "open")
    gated = app.send_task("interop.wait_for_file", args=[path, GATE_SECONDS], queue=queue)
    deadline = time.monotonic() + 30
    while True:
        meta = gated.backend.get_task_meta(gated.id)  # read once: one GET
        if meta["status"] == "STARTED":
            break
        assert meta["status"] == "PENDING", f"state {meta['status']} before STARTED: {meta}"
        assert time.monotonic() < deadline, "no STARTED state within 30 s"
        time.sleep(0.05)
    open(path, "w").close()
    assert gated.get(timeout=30) == path
    shutil.rmtree(gate_dir)
    return dict(meta, path=path)


def send_checks(url, amqp_url, queue):
    from celery.exceptions import TaskRevokedError

    app = Celery("redis_producer", broker=amqp_url, backend=url)
    assert app.send_task("interop.add", args=[2, 3], queue=queue).get(timeout=30) == 5
    print("ok value", flush=True)
    try:
        app.send_task("interop.fail", args=["boom"], queue=queue).get(timeout=30)
        raise AssertionError("interop.fail did not raise")
    except ValueError as exc:
        assert exc.args == ("boom",), exc.args
    print("ok exception", flush=True)
    past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=1)
    expired = app.send_task("interop.add", args=[1, 1], queue=queue, expires=past)
    try:
        expired.get(timeout=30)
        raise AssertionError("an expired task returned a value")
    except TaskRevokedError:
        pass
    assert expired.state == "REVOKED", expired.state
    print("ok revoked", flush=True)
    run_gated(app, queue)
    print("ok started", flush=True)
    print("all checks passed", flush=True)


def extended_checks(url, amqp_url, queue):
    app = Celery("redis_producer", broker=amqp_url, backend=url)
    added = app.send_task("interop.add", args=[2], kwargs={"y": 3}, queue=queue)
    assert added.get(timeout=30) == 5
    meta = (added.name, added.args, added.kwargs, added.retries, added.queue)
    assert meta == ("interop.add", [2], {"y": 3}, 0, queue), meta
    # The worker's node name (the test gives it one of its own: name@host).
    assert "@" in (added.worker or ""), added.worker
    print(f"ok success worker={added.worker}", flush=True)
    failed = app.send_task("interop.fail", args=["boom"], queue=queue)
    try:
        failed.get(timeout=30)
        raise AssertionError("interop.fail did not raise")
    except ValueError:
        pass
    meta = (failed.name, failed.args, failed.kwargs, failed.queue)
    assert meta == ("interop.fail", ["boom"], {}, queue), meta
    print("ok failure", flush=True)
    meta = run_gated(app, queue)
    started = (meta.get("name"), meta.get("args"), meta.get("kwargs"), meta.get("queue"))
    expected = ("interop.wait_for_file", [meta["path"], GATE_SECONDS], {}, queue)
    assert started == expected, meta
    print("ok started", flush=True)
    print("all checks passed", flush=True)


if __name__ == "__main__":
    main()
