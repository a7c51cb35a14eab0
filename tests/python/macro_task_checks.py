"""Python Celery 5.7 calls `#[task]` functions on a celeriac worker (tests/macro_tasks.rs).

    python macro_task_checks.py

Env: CELERIAC_TEST_AMQP_URL (the broker), CELERIAC_QUEUE (the queue the worker consumes).
Each check prints "ok <name>"; the first failing check raises (non-zero exit, and the
traceback says what did not happen).
"""

import os

from celery import Celery

URL = os.environ["CELERIAC_TEST_AMQP_URL"]
QUEUE = os.environ["CELERIAC_QUEUE"]
TIMEOUT = 30

app = Celery("macro_checks", broker=URL, backend="rpc://")
app.conf.task_default_queue = QUEUE


@app.task(name="macro.add")
def add(x, y):
    raise NotImplementedError("runs on the Rust worker")


@app.task(name="macro.greet")
def greet(name, greeting="Hello", punctuation=None):
    raise NotImplementedError("runs on the Rust worker")


def expect(name, result, expected):
    actual = result.get(timeout=TIMEOUT)
    assert actual == expected, f"{name}: expected {expected!r}, got {actual!r}"
    print(f"ok {name}", flush=True)


def expect_type_error(name, result, needle):
    try:
        value = result.get(timeout=TIMEOUT)
    except Exception as exc:  # the worker's TypeError, rebuilt by the rpc backend
        assert type(exc).__name__ == "TypeError", f"{name}: expected TypeError, got {exc!r}"
        assert needle in str(exc), f"{name}: {needle!r} not in {exc}"
        print(f"ok {name}", flush=True)
        return
    raise AssertionError(f"{name}: expected a TypeError, got the value {value!r}")


expect("positional", add.delay(2, 3), 5)
expect("keyword", add.delay(x=2, y=3), 5)
expect("mixed", add.apply_async((2,), {"y": 3}), 5)
expect("send_task", app.send_task("macro.add", args=[40], kwargs={"y": 2}), 42)
expect("defaults", greet.delay("Ada"), "Hello, Ada (macro.greet)")
expect("default given by keyword", greet.delay("Ada", punctuation="!"), "Hello, Ada! (macro.greet)")
expect("all positional", greet.delay("Ada", "Hi", "?"), "Hi, Ada? (macro.greet)")
expect("blocking", app.send_task("macro.count", args=["one two three"]), 3)
# Celery checks a stub's arguments before sending; send_task does not, so the worker does.
send = app.send_task
expect_type_error("missing", send("macro.add", args=[2]), "missing argument")
expect_type_error(
    "twice", send("macro.add", args=[2], kwargs={"x": 3}), "given both positionally and as a keyword"
)
expect_type_error(
    "unknown keyword", send("macro.add", args=[2, 3], kwargs={"z": 1}), "unexpected keyword argument"
)
print("all checks passed", flush=True)
