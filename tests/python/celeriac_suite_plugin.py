"""pytest plugin: runs Celery's own integration suite against celeriac workers.

Loaded with ``-p celeriac_suite_plugin`` (``scripts/celery-suite`` does this) before the
suite's ``t/integration/conftest.py`` is imported. It replaces
``celery.contrib.pytest.celery_session_worker``, which that conftest imports, with a fixture
that starts ``CELERIAC_SUITE_WORKERS`` (default 1) celeriac ``celery_integration`` worker
processes instead of Celery's in-process Python worker, and stops them at the end of the
session. The suite's files are run as they are; nothing of them is patched.

Environment (set by ``scripts/celery-suite``):

- ``CELERIAC_SUITE_WORKER``: the ``celery_integration`` example binary;
- ``CELERIAC_BROKER_URL``, ``CELERIAC_RESULT_BACKEND``, ``REDIS_HOST``, ``REDIS_PORT``:
  passed on to the workers (the suite itself reads ``TEST_BROKER`` / ``TEST_BACKEND``);
- ``CELERIAC_SUITE_LOG_DIR``: where each worker's output goes (``worker-N.log``);
- ``CELERIAC_SUITE_TIMEOUT``: when set, no test may run longer than this many seconds,
  whatever its own ``timeout`` mark says (the suite marks many tests with 300 s), so that a
  hang fails with pytest-timeout's message instead of stalling the run.
"""
import os
import signal
import subprocess
import time

import celery.contrib.pytest as celery_pytest
import pytest
from celery.utils.nodenames import anon_nodename

#: How long a worker gets to answer its first task, and to stop after SIGTERM.
START_DEADLINE_S = 60.0
STOP_DEADLINE_S = 30.0


class CeleriacWorkers:
    """The running celeriac worker processes (what ``celery_session_worker`` yields)."""

    def __init__(self, processes, hostname):
        #: The ``subprocess.Popen`` of each worker.
        self.processes = processes
        #: The node name Celery's tests expect (``celery@<host>``).
        self.hostname = hostname

    def check_alive(self):
        """Fails with the worker's exit status when one of them has ended."""
        for index, process in enumerate(self.processes):
            status = process.poll()
            if status is not None:
                raise RuntimeError(
                    f'celeriac worker {index} (pid {process.pid}) exited with status '
                    f'{status}; see its log in CELERIAC_SUITE_LOG_DIR'
                )


def _start_worker(binary, index, hostname, log_dir):
    env = dict(os.environ)
    env.setdefault('CELERIAC_QUEUE', 'celery')
    env['CELERIAC_HOSTNAME'] = hostname
    # The pipeline's debug lines (each task received, and how it ended) let a failed test's
    # section of the log (see pytest_runtest_setup) show what the worker did meanwhile.
    env.setdefault('RUST_LOG', 'info,celeriac::worker::pipeline=debug')
    log = open(os.path.join(log_dir, f'worker-{index}.log'), 'ab')
    try:
        return subprocess.Popen(
            [binary], env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
        )
    finally:
        log.close()


def _wait_until_serving(app, workers):
    """Sends ``identity`` until a worker answers it, within ``START_DEADLINE_S``."""
    deadline = time.monotonic() + START_DEADLINE_S
    last_error = None
    while time.monotonic() < deadline:
        workers.check_alive()
        result = app.send_task('t.integration.tasks.identity', args=['celeriac-ready'])
        try:
            if result.get(timeout=2) == 'celeriac-ready':
                return
        except Exception as error:  # noqa: BLE001 -- any failure: try again until the deadline
            last_error = error
    raise RuntimeError(
        f'no celeriac worker answered t.integration.tasks.identity within '
        f'{START_DEADLINE_S} s (last error: {last_error!r})'
    )


def _stop(processes):
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_DEADLINE_S
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope='session')
def celery_session_worker(request, celery_session_app, celery_includes, celery_class_tasks):
    """Session fixture: celeriac workers serve the suite's queue instead of Celery's."""
    for module in celery_includes:
        celery_session_app.loader.import_task_module(module)
    for class_task in celery_class_tasks:
        celery_session_app.register_task(class_task)
    binary = os.environ.get('CELERIAC_SUITE_WORKER')
    if not binary or not os.access(binary, os.X_OK):
        pytest.fail(
            'CELERIAC_SUITE_WORKER must name the celery_integration example binary '
            '(run the suite with scripts/celery-suite)'
        )
    log_dir = os.environ.get('CELERIAC_SUITE_LOG_DIR', '.')
    count = int(os.environ.get('CELERIAC_SUITE_WORKERS', '1'))
    hostname = anon_nodename()
    processes = []
    try:
        for index in range(count):
            processes.append(_start_worker(binary, index, hostname, log_dir))
        workers = CeleriacWorkers(processes, hostname)
        _wait_until_serving(celery_session_app, workers)
        yield workers
        workers.check_alive()
    finally:
        _stop(processes)


# The suite's conftest does `from celery.contrib.pytest import celery_session_worker`:
# it gets this fixture instead of Celery's. Celery's other fixtures (celery_parameters,
# use_celery_app_trap, ...) come from its plugin, which pytest-celery would register.
celery_pytest.celery_session_worker = celery_session_worker
pytest_plugins = ('celery.contrib.pytest',)


def pytest_collection_modifyitems(config, items):
    """Caps every test's timeout at ``CELERIAC_SUITE_TIMEOUT`` seconds, when set."""
    cap = os.environ.get('CELERIAC_SUITE_TIMEOUT')
    if not cap:
        return
    cap = float(cap)
    for item in items:
        marker = item.get_closest_marker('timeout')
        current = None
        if marker is not None:
            current = marker.kwargs.get('timeout', marker.args[0] if marker.args else None)
        if current is None or float(current) > cap:
            item.add_marker(pytest.mark.timeout(cap), append=False)


#: The line that opens a test's section of every worker log (the report finds it there).
TEST_MARK = '==> celeriac-suite test '


def pytest_runtest_setup(item):
    """Marks the start of each test in every worker log, so that the report can print
    what the workers logged during a test that failed."""
    log_dir = os.environ.get('CELERIAC_SUITE_LOG_DIR')
    if not log_dir or not os.path.isdir(log_dir):
        return
    stamp = time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())
    for name in sorted(os.listdir(log_dir)):
        if name.startswith('worker-') and name.endswith('.log'):
            with open(os.path.join(log_dir, name), 'a', encoding='utf-8') as log:
                log.write(f'{TEST_MARK}{item.nodeid} {stamp}\n')
