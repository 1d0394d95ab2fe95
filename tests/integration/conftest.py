"""pytest fixtures: a private Pebble CA per session (and per test when a
test needs its own settings).  A missing binary is a failure, never a skip:
`make test` must not pass by skipping."""
import os
import shutil
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import procs  # noqa: E402
from pebblectl import Pebble  # noqa: E402
from util import make_test_root  # noqa: E402


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Turn skips into failures: every test must really run in `make test`."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped tests are failures in autotls: {report.longrepr}"


@pytest.fixture(scope="session")
def pebble():
    p = Pebble()
    try:
        p.start()
        yield p
    finally:
        p.close()


@pytest.fixture
def pebble_factory():
    made = []

    def make(validity=None, eab=None, env=None, start=True):
        p = Pebble(validity=validity, eab=eab, env=env)
        made.append(p)
        if start:
            p.start()
        return p

    yield make
    for p in made:
        p.close()


@pytest.fixture
def test_root():
    """A fresh 0755 directory for one test's configs and stores."""
    d = make_test_root()
    yield d
    shutil.rmtree(d, ignore_errors=True)


def pytest_sessionfinish(session, exitstatus):
    procs.stop_all()
