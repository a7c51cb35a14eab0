"""Python Celery 5.7's side of the Redis result backend interop tests.

    python redis_results.py URL read ID...       AsyncResult(ID).get() for each id; prints one
                                                 JSON line per id: {"value": ...} or
                                                 {"exc_type", "exc_module", "exc_args"}
    python redis_results.py URL store OK_ID FAIL_ID
                                                 app.backend.store_result: OK_ID SUCCESS 42,
                                                 FAIL_ID FAILURE ValueError('boom from python')
"""
import json
import sys

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


if __name__ == "__main__":
    main()
