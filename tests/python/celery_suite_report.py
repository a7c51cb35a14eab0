"""Reports a run of Celery's integration suite (scripts/celery-suite) from pytest's JUnit XML.

    celery_suite_report.py JUNIT_XML [--expected FILE] [--worker-logs DIR]

Prints passed / failed / skipped per file against the file's total, then every failure
with its reason (the first line of pytest's message). With ``--expected``, every test id
listed in FILE must have run and passed; the exit status is 1 if one did not. Without it,
the exit status is 1 if any test failed. With ``--worker-logs``, each expected test that
failed is followed by what the workers logged while it ran (the section of each
``worker-N.log`` in DIR that the suite plugin opened for it).
"""
import argparse
import collections
import os
import sys
import xml.etree.ElementTree as ET

#: How much of a failure's message is shown.
REASON_CHARS = 200
#: The line that opens a test's section of a worker log (celeriac_suite_plugin.TEST_MARK).
TEST_MARK = '==> celeriac-suite test '
#: At most this many lines of a worker log are shown for one test (its last ones).
LOG_LINES = 80


def test_id(case):
    """The pytest node id of a JUnit test case (``t/integration/test_x.py::class::name``)."""
    parts = case.get('classname', '').split('.')
    module_end = next(
        (i for i, part in enumerate(parts) if part.startswith('test_')), len(parts) - 1
    )
    path = '/'.join(parts[: module_end + 1]) + '.py'
    return '::'.join([path, *parts[module_end + 1:], case.get('name', '')])


def outcome(case):
    """``(outcome, reason)`` of a JUnit test case: passed, failed, error or skipped."""
    for tag in ('failure', 'error', 'skipped'):
        element = case.find(tag)
        if element is not None:
            message = element.get('message') or (element.text or '').strip()
            reason = message.strip().splitlines()[0] if message.strip() else tag
            kind = 'failed' if tag in ('failure', 'error') else 'skipped'
            return kind, reason[:REASON_CHARS]
    return 'passed', ''


def read_expected(path):
    """The test ids of the expected-pass list (one a line, ``#`` comments)."""
    with open(path) as file:
        lines = (line.split('#', 1)[0].strip() for line in file)
        return [line for line in lines if line]


def worker_log_sections(log_dir, identifier):
    """``(log name, lines)`` of each worker log in ``log_dir``: the lines logged during the
    test ``identifier`` (from its mark to the next), at most the last ``LOG_LINES``."""
    sections = []
    for name in sorted(os.listdir(log_dir)):
        if not (name.startswith('worker-') and name.endswith('.log')):
            continue
        lines, inside = [], False
        with open(os.path.join(log_dir, name), encoding='utf-8', errors='replace') as log:
            for line in log:
                if line.startswith(TEST_MARK):
                    if inside:
                        break
                    inside = line[len(TEST_MARK):].rsplit(' ', 1)[0] == identifier
                elif inside:
                    lines.append(line.rstrip('\n'))
        sections.append((name, lines[-LOG_LINES:]))
    return sections


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('junit')
    parser.add_argument('--expected')
    parser.add_argument('--worker-logs')
    options = parser.parse_args()

    results = {}
    for case in ET.parse(options.junit).getroot().iter('testcase'):
        kind, reason = outcome(case)
        identifier = test_id(case)
        # A test that passed but failed in teardown appears twice: keep the failure.
        if results.get(identifier, ('passed', ''))[0] != 'failed':
            results[identifier] = (kind, reason)

    per_file = collections.defaultdict(collections.Counter)
    for identifier, (kind, _) in results.items():
        per_file[identifier.split('::', 1)[0]][kind] += 1
    print(f"\n{'file':<40} {'passed':>7} {'failed':>7} {'skipped':>8} {'total':>6}")
    totals = collections.Counter()
    for path in sorted(per_file):
        counts = per_file[path]
        total = sum(counts.values())
        totals.update(counts)
        print(f"{path.rsplit('/', 1)[-1]:<40} {counts['passed']:>7} {counts['failed']:>7} "
              f"{counts['skipped']:>8} {total:>6}")
    print(f"{'all':<40} {totals['passed']:>7} {totals['failed']:>7} "
          f"{totals['skipped']:>8} {sum(totals.values()):>6}")

    failures = sorted((i, r) for i, (k, r) in results.items() if k == 'failed')
    if failures:
        print('\nfailures:')
        for identifier, reason in failures:
            print(f'  {identifier}\n      {reason}')

    if options.expected:
        broken = []
        for identifier in read_expected(options.expected):
            kind, reason = results.get(identifier, ('not run', 'not collected'))
            if kind != 'passed':
                broken.append((identifier, kind, reason))
        if broken:
            print(f'\nexpected to pass ({options.expected}) but did not:')
            for identifier, kind, reason in broken:
                print(f'  {identifier}: {kind}: {reason}')
            if options.worker_logs:
                for identifier, _, _ in broken:
                    for name, lines in worker_log_sections(options.worker_logs, identifier):
                        print(f'\n{name} during {identifier}:')
                        for line in lines or ['(nothing logged)']:
                            print(f'    {line}')
            return 1
        print(f'\nall {len(read_expected(options.expected))} tests of '
              f'{options.expected} passed')
        return 0
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
