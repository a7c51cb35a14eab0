"""Python Celery 5.7 clients of workflows that run on celeriac workers (tests/canvas_python.rs).

    python canvas_checks.py REDIS_URL AMQP_URL RUST_QUEUE PY_QUEUE

RUST_QUEUE is served by a celeriac `interop` worker (interop.* tasks), PY_QUEUE by a Python
worker (py_worker_app: pyinterop.* tasks); both store results in REDIS_URL. Each check prints
"ok <name>"; the last line is "all checks passed", or the script raises.
"""
import sys
import uuid

from celery import Celery, chain, chord, group
from celery.exceptions import ChordError

TIMEOUT = 60


def main():
    redis_url, amqp_url, rust_queue, py_queue = sys.argv[1:]
    app = Celery("canvas_checks", broker=amqp_url, backend=redis_url)
    app.conf.broker_connection_retry_on_startup = True

    def rust(name, *args, **options):
        return app.signature(f"interop.{name}", args=args, queue=rust_queue, **options)

    def py(name, *args, **options):
        return app.signature(f"pyinterop.{name}", args=args, queue=py_queue, **options)

    def check(name, got, expected):
        assert got == expected, f"{name}: got {got!r}, expected {expected!r}"
        print(f"ok {name}", flush=True)

    check("chain of 3 on celeriac",
          chain(rust("add", 1, 1), rust("add", 2), rust("add", 3)).apply_async().get(timeout=TIMEOUT), 7)

    check("chain across Python and celeriac workers",
          chain(rust("add", 1, 1), py("add", 10), rust("add", 100), py("add", 1000))
          .apply_async().get(timeout=TIMEOUT), 1112)

    failing = chain(rust("add", 1, 1), rust("fail", "middle", immutable=True), rust("add", 3))
    # The last step's own result: a handle without parents (Python's `get` on the chain's
    # handle would raise the middle step's error first, whatever celeriac stored for the
    # last one).
    last = app.AsyncResult(failing.apply_async().id)
    try:
        last.get(timeout=TIMEOUT)
        raise AssertionError("a chain with a failing middle step did not raise")
    except ValueError as exc:
        check("a failing middle step stores its failure for the last one", exc.args, ("middle",))

    callback_id = str(uuid.uuid4())
    result = rust("add", 1, 2).apply_async(link=rust("add", 10).set(task_id=callback_id))
    check("link on celeriac", (result.get(timeout=TIMEOUT), app.AsyncResult(callback_id).get(timeout=TIMEOUT)), (3, 13))

    errback_id = str(uuid.uuid4())
    failed = rust("fail", "linked").apply_async(link_error=rust("echo").set(task_id=errback_id))
    echoed = app.AsyncResult(errback_id).get(timeout=TIMEOUT)
    check("old-style link_error on celeriac gets the failed task's id", echoed, [[failed.id], {}])

    check("group of 100 on celeriac",
          group(rust("add", i, i) for i in range(100)).apply_async().get(timeout=TIMEOUT),
          [2 * i for i in range(100)])

    check("chord: header on celeriac, body on Python",
          chord([rust("add", i, i) for i in range(10)], py("tsum")).apply_async().get(timeout=TIMEOUT), 90)

    check("chord: header on Python, body on celeriac",
          chord([py("add", i, i) for i in range(10)], rust("tsum")).apply_async().get(timeout=TIMEOUT), 90)

    check("chord: header on both, body on celeriac",
          chord([rust("add", 1, 1), py("add", 2, 2), rust("add", 3, 3)], rust("tsum"))
          .apply_async().get(timeout=TIMEOUT), 12)

    check("chain of a task then a group then a task (a chord) on celeriac",
          chain(rust("add", 1, 1), group(rust("add", 1), rust("add", 2)), rust("tsum"))
          .apply_async().get(timeout=TIMEOUT), 7)

    failing_chord = chord([rust("add", 1, 1), rust("fail", "in the header")], rust("tsum"))
    # The body's own result (a handle without the header as parent, which `get` would
    # re-raise first).
    body = app.AsyncResult(failing_chord.apply_async().id)
    try:
        body.get(timeout=TIMEOUT)
        raise AssertionError("a chord whose header fails did not raise")
    except ChordError as exc:
        check("a failing header fails the body with ChordError", "in the header" in str(exc), True)

    # A chain in a chord's header whose first step fails: its last step never runs, and is
    # counted, failed, in the chord (Celery's _fail_chain), so the body fails instead of
    # waiting for it.
    chained_header = chord([chain(rust("fail", "first of the chain"), rust("add", 1)), rust("add", 1, 1)],
                           rust("tsum"))
    body = app.AsyncResult(chained_header.apply_async().id)
    try:
        body.get(timeout=TIMEOUT)
        raise AssertionError("a chord whose header chain fails did not raise")
    except ChordError as exc:
        check("a failing chain in a header fails the body with ChordError",
              "first of the chain" in str(exc), True)

    print("all checks passed", flush=True)


if __name__ == "__main__":
    main()
