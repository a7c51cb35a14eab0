"""A Python Celery 5.7 worker app for the Rust-producer interop tests.

    python -m celery -A py_worker_app worker -Q $CELERIAC_QUEUE --pool=solo -c 1

Env: CELERIAC_TEST_AMQP_URL, CELERIAC_QUEUE. Results go back over rpc://, or to the
backend in CELERIAC_PY_RESULT_BACKEND (e.g. redis://127.0.0.1:PORT/0) when set.
"""

import os

from celery import Celery

app = Celery("pyinterop", broker=os.environ["CELERIAC_TEST_AMQP_URL"], backend=os.environ.get("CELERIAC_PY_RESULT_BACKEND") or "rpc://")
app.conf.task_default_queue = os.environ["CELERIAC_QUEUE"]
app.conf.worker_hijack_root_logger = False
app.conf.broker_connection_retry_on_startup = True


@app.task(name="pyinterop.add")
def add(x, y):
    return x + y


@app.task(name="pyinterop.fail")
def fail(message):
    raise ValueError(message)


def type_name(value):
    return type(value).__name__


@app.task(name="pyinterop.request", bind=True)
def request(self, *args, **kwargs):
    """What the Python worker made of the message a Rust producer sent."""
    r = self.request
    fields = {
        "id": r.id,
        "task": r.task,
        "lang": getattr(r, "lang", None),
        "retries": r.retries,
        "eta": None if r.eta is None else str(r.eta),
        "expires": None if r.expires is None else str(r.expires),
        "timelimit": None if r.timelimit is None else list(r.timelimit),
        "root_id": r.root_id,
        "parent_id": r.parent_id,
        "origin": r.origin,
        "argsrepr": getattr(r, "argsrepr", None),
        "ignore_result": r.ignore_result,
        "correlation_id": r.correlation_id,
        "reply_to": r.reply_to,
        "priority": (r.delivery_info or {}).get("priority"),
        "args": list(args),
        "kwargs": kwargs,
    }
    fields["types"] = {name: type_name(value) for name, value in fields.items()}
    return fields


@app.task(name="pyinterop.typed")
def typed(*args):
    """`[type name, value]` of each argument: what kombu made of celeriac's typed values."""
    return [[type_name(value), value] for value in args]


@app.task(name="pyinterop.tsum")
def tsum(numbers):
    return sum(numbers)
