"""Python Celery 5.7 with no result backend sends N `interop.touch` tasks, as a web app
that never reads results does: every message still carries a `reply_to` (the app's
thread oid), a queue that does not exist.

    python send_many.py N PATH

Env: CELERIAC_TEST_AMQP_URL (the broker), CELERIAC_QUEUE (the queue). Prints
"sent N" and the reply_to of the messages.
"""

import os
import sys

from celery import Celery

URL = os.environ["CELERIAC_TEST_AMQP_URL"]
QUEUE = os.environ["CELERIAC_QUEUE"]

count = int(sys.argv[1])
path = sys.argv[2]
app = Celery("send_many", broker=URL)
for index in range(count):
    app.send_task("interop.touch", args=[path, f"t{index}"], queue=QUEUE)
print(f"sent {count} (reply_to {app.thread_oid})")
