"""Python Celery 5.7 as the producer, a celeriac worker (examples/interop.rs) as the worker.

    python rust_worker_checks.py SCENARIO

Env: CELERIAC_TEST_AMQP_URL (the broker), CELERIAC_QUEUE (the queue the Rust worker
consumes), CELERIAC_TOUCH_DIR (a directory for interop.touch). Each check prints
"ok <name>"; the first failing check raises, so the exit status is non-zero and the
traceback says what did not happen. Scenarios: arguments, scheduling, encoding, errors, semantics.
"""

import datetime
import decimal
import os
import sys
import time
import uuid

from celery import Celery
from celery.exceptions import (
    NotRegistered,
    SoftTimeLimitExceeded,
    TaskRevokedError,
    TimeLimitExceeded,
)

URL = os.environ["CELERIAC_TEST_AMQP_URL"]
QUEUE = os.environ["CELERIAC_QUEUE"]
TIMEOUT = 30
UTC = datetime.timezone.utc


def make_app(protocol=2):
    """A client app whose task stubs carry the Rust worker's task names."""
    app = Celery("checks", broker=URL, backend="rpc://")
    app.conf.task_default_queue = QUEUE
    app.conf.task_protocol = protocol
    stubs = {}
    for name in ["add", "echo", "typed_echo", "fail", "sleep", "touch", "request", "panic", "flaky", "block"]:

        def stub(*args, **kwargs):
            raise NotImplementedError("runs on the Rust worker")

        stubs[name] = app.task(name=f"interop.{name}")(stub)
    return app, stubs


def ok(name):
    print(f"ok {name}", flush=True)


def expect(name, actual, expected):
    assert actual == expected, f"{name}: expected {expected!r}, got {actual!r}"
    ok(name)


def expect_raises(name, result, exc_class, *needles):
    try:
        value = result.get(timeout=TIMEOUT)
    except exc_class as exc:
        text = str(exc)
        for needle in needles:
            assert needle in text, f"{name}: {needle!r} not in {text!r}"
        ok(name)
        return exc
    except Exception as exc:  # noqa: BLE001 - report what was raised instead
        raise AssertionError(f"{name}: expected {exc_class.__name__}, got {type(exc).__module__}.{type(exc).__name__}({exc})") from exc
    raise AssertionError(f"{name}: expected {exc_class.__name__}, got the value {value!r}")


def parse_iso(text):
    value = datetime.datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def scenario_arguments():
    app, t = make_app()
    pending = {
        "positional args": (t["add"].apply_async((2, 3)), 5),
        "args and kwargs": (t["add"].apply_async((2,), {"y": 3}), 5),
        "kwargs only": (t["add"].apply_async(kwargs={"x": 2, "y": 3}), 5),
        "delay": (t["add"].delay(40, 2), 42),
        "send_task with floats": (app.send_task("interop.add", args=[1.5, 2]), 3.5),
        "echo *args **kwargs": (t["echo"].delay(1, "two", [3], k="v"), [[1, "two", [3]], {"k": "v"}]),
        "echo nothing": (t["echo"].delay(), [[], {}]),
    }
    for name, (result, expected) in pending.items():
        expect(name, result.get(timeout=TIMEOUT), expected)
    path = os.path.join(os.environ["CELERIAC_TOUCH_DIR"], "touched.txt")
    expect("touch returns the token", t["touch"].delay(path, "tok-1").get(timeout=TIMEOUT), "tok-1")
    expect("touch by kwargs", t["touch"].apply_async(kwargs={"path": path, "token": "tok-2"}).get(timeout=TIMEOUT), "tok-2")
    with open(path) as file:
        expect("touch appends lines", file.read(), "tok-1\ntok-2\n")


def scenario_scheduling():
    app, t = make_app()
    start = time.monotonic()
    aware_eta = datetime.datetime.now(UTC) + datetime.timedelta(seconds=2)
    naive_eta = datetime.datetime.now(UTC).replace(tzinfo=None) + datetime.timedelta(seconds=2)
    root_id, parent_id = str(uuid.uuid4()), str(uuid.uuid4())
    countdown = t["add"].apply_async((1, 1), countdown=2)
    aware = t["request"].apply_async(eta=aware_eta)
    naive = t["request"].apply_async(eta=naive_eta)
    expired = t["add"].apply_async((1, 2), countdown=3, expires=1.5)
    retried = t["request"].apply_async(retries=3)
    prioritised = t["request"].apply_async(priority=7)
    headed = t["request"].apply_async(headers={"x-trace": "abc", "n": 5})
    linked = app.send_task("interop.request", root_id=root_id, parent_id=parent_id)
    hard = t["sleep"].apply_async((10,), time_limit=1)
    soft = t["sleep"].apply_async((10,), soft_time_limit=1)
    in_time = t["sleep"].apply_async((0.1,), time_limit=5, soft_time_limit=4)

    expect("countdown result", countdown.get(timeout=TIMEOUT), 2)
    assert time.monotonic() - start >= 1.5, "countdown=2 ran too early"
    ok("countdown waits")
    request = aware.get(timeout=TIMEOUT)
    delta = abs((parse_iso(request["eta"]) - aware_eta).total_seconds())
    assert delta < 0.001, f"aware eta arrived as {request['eta']}, sent {aware_eta.isoformat()}"
    ok("aware eta")
    request = naive.get(timeout=TIMEOUT)
    delta = abs((parse_iso(request["eta"]) - naive_eta.replace(tzinfo=UTC)).total_seconds())
    assert delta < 0.001, f"naive eta arrived as {request['eta']}, sent {naive_eta.isoformat()} (UTC)"
    ok("naive eta read as UTC")
    expect_raises("expired task is revoked", expired, TaskRevokedError, "expired")
    expect("expired task state", expired.state, "REVOKED")
    expect("retries header", retried.get(timeout=TIMEOUT)["retries"], 3)
    expect("priority", prioritised.get(timeout=TIMEOUT)["priority"], 7)
    headers = headed.get(timeout=TIMEOUT)["headers"]
    expect("custom headers", (headers.get("x-trace"), headers.get("n")), ("abc", 5))
    request = linked.get(timeout=TIMEOUT)
    expect("root and parent ids", (request["root_id"], request["parent_id"]), (root_id, parent_id))
    # 10-second sleeps that end with the limits' exceptions were stopped by the limits
    # before their own end (which would be a result): no wall-clock bound needed.
    expect_raises("hard time limit", hard, TimeLimitExceeded)
    expect_raises("soft time limit", soft, SoftTimeLimitExceeded)
    expect("within the time limit", in_time.get(timeout=TIMEOUT), 0.1)


def scenario_encoding():
    app, t = make_app()
    expect("gzip compression", t["add"].apply_async((2, 3), compression="gzip").get(timeout=TIMEOUT), 5)
    when = datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    ident = uuid.UUID("12345678-1234-5678-1234-567812345678")
    sent = [when, datetime.date(2024, 1, 2), datetime.time(3, 4, 5, 6), decimal.Decimal("1.50"), ident, b"raw", b"\x00\xff"]
    echoed = t["echo"].delay(*sent, at=when).get(timeout=TIMEOUT)
    expect("a Value echoes kombu typed values as sent", echoed, [sent, {"at": when}])
    expect("... of the same Python types", [type(v) for v in echoed[0]], [type(v) for v in sent])
    typed_sent = {
        "when": datetime.datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC),
        "local": datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone(datetime.timedelta(hours=-5, minutes=-30))),
        "naive": datetime.datetime(2030, 1, 1, 12, 0),
        "day": datetime.date(2024, 1, 2),
        "at": datetime.time(23, 59, 59, 10),
        "amount": decimal.Decimal("-1.2345678901234567890123456789E+40"),
        "id": ident,
        "text": "héllo".encode(),
        "raw": bytes([0, 255, 16, 128]),
        "plain": when,
    }
    typed = t["typed_echo"].apply_async(kwargs=typed_sent).get(timeout=TIMEOUT)
    expected = dict(typed_sent, plain=when.isoformat())
    expect("typed Rust arguments echo kombu typed values", typed, expected)
    expect("... of the same Python types", {k: type(v) for k, v in typed.items()}, {k: type(v) for k, v in expected.items()})
    expect("... with the same offsets", (typed["local"].utcoffset(), typed["naive"].tzinfo), (typed_sent["local"].utcoffset(), None))
    positional = t["typed_echo"].delay(*typed_sent.values()).get(timeout=TIMEOUT)
    expect("typed Rust arguments by position", positional, expected)
    app_v1, t_v1 = make_app(protocol=1)
    expect("protocol v1", t_v1["add"].delay(2, 3).get(timeout=TIMEOUT), 5)
    expect("protocol v1 kwargs", t_v1["add"].apply_async((2,), {"y": 5}).get(timeout=TIMEOUT), 7)


def scenario_errors():
    app, t = make_app()
    exc = expect_raises("a Rust error is a ValueError", t["fail"].delay("boom"), ValueError, "boom")
    expect("the ValueError is the builtin", (type(exc).__module__, exc.args), ("builtins", ("boom",)))
    exc = expect_raises("a panic is a failure", t["panic"].delay("kaboom"), Exception, "kaboom")
    expect("the panic's class", type(exc).__name__, "TaskPanicked")
    expect_raises("unknown task", app.send_task("interop.nope", args=[1]), NotRegistered, "interop.nope")
    expect_raises(
        "wrong argument type",
        app.send_task("interop.add", args=["a", 2]),
        TypeError,
        "interop.add",
        '"x"',
        "a number",
    )
    expect_raises("missing argument", app.send_task("interop.add", args=[1]), TypeError, "interop.add", "y")
    expect("the worker goes on", t["add"].delay(1, 1).get(timeout=TIMEOUT), 2)


def scenario_semantics():
    app, t = make_app()
    key = str(uuid.uuid4())
    start = time.monotonic()
    flaky = t["flaky"].delay(key, 2)
    expect("a retried task succeeds on its third attempt", flaky.get(timeout=TIMEOUT), 3)
    assert time.monotonic() - start >= 0.2, "two retries with a >= 0.1 s backoff came too fast"
    ok("retries wait for their backoff")
    exc = expect_raises("past max_retries the last error is the failure", t["flaky"].delay(str(uuid.uuid4()), 10), RuntimeError, "attempt 4 of 10")
    expect("the failure is the builtin RuntimeError", type(exc).__module__, "builtins")
    expect_raises("a blocking task past its hard limit", t["block"].apply_async((5,), time_limit=0.5), TimeLimitExceeded)
    expect("a blocking task within its limit", t["block"].apply_async((0.1,), time_limit=5).get(timeout=TIMEOUT), 0.1)
    expect("the slot of the abandoned task is free again", t["add"].delay(2, 2).get(timeout=TIMEOUT), 4)


if __name__ == "__main__":
    scenarios = {name[len("scenario_"):]: f for name, f in globals().items() if name.startswith("scenario_")}
    if len(sys.argv) != 2 or sys.argv[1] not in scenarios:
        sys.exit(f"usage: {sys.argv[0]} {'|'.join(scenarios)}")
    scenarios[sys.argv[1]]()
    print("all checks passed", flush=True)
