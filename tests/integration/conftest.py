"""pytest fixtures: a private Pebble CA per session (and per test when a
test needs its own settings).  A missing binary is a failure, never a skip:
`make test` must not pass by skipping."""
import os
import shutil
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import procs  # noqa: E402
from ocspctl import OcspResponder, ocsp_url_for  # noqa: E402
from pebblectl import Pebble  # noqa: E402
from util import free_port  # noqa: E402
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

    def make(validity=None, eab=None, env=None, start=True, ocsp_url=None):
        p = Pebble(validity=validity, eab=eab, env=env, ocsp_url=ocsp_url)
        made.append(p)
        if start:
            p.start()
        return p

    yield make
    for p in made:
        p.close()


@pytest.fixture
def ocsp_factory(tmp_path):
    """make(nmin=1, validity=None) -> an OcspResponder already answering, for
    a fresh Pebble (responder.pebble) that writes the responder's URL into
    every certificate it issues.  Both are stopped by PID at teardown."""
    made = []

    def make(nmin=1, validity=None, env=None):
        port = free_port()
        p = Pebble(validity=validity, env=env, ocsp_url=ocsp_url_for(port))
        made.append(p)
        p.start()
        r = OcspResponder(p, str(tmp_path), nmin=nmin, port=port)
        made.append(r)
        return r.start()

    yield make
    for thing in reversed(made):
        thing.close()


@pytest.fixture
def ocsp_pebble(ocsp_factory):
    """An OcspResponder (nmin 1) and its Pebble (ocsp_pebble.pebble)."""
    return ocsp_factory()


@pytest.fixture
def test_root():
    """A fresh 0755 directory for one test's configs and stores."""
    d = make_test_root()
    yield d
    shutil.rmtree(d, ignore_errors=True)


def pytest_sessionfinish(session, exitstatus):
    procs.stop_all()
