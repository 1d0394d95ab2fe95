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


# Seconds each file took (setup + call + teardown of its tests, one worker,
# measured on a loaded 2-core machine: `pytest --junitxml` summed per file).
# Only the order matters: `make test` runs files with --dist loadfile, which
# hands them to the workers in collection order, so the long ones go first
# and the short ones fill the gaps at the end instead of one long file
# starting last and running alone.  A file missing here (a new one) counts
# as FILE_SECONDS_UNKNOWN; add it once it has been measured.
FILE_SECONDS = {
    "test_debian_packages": 300, "test_apache_events": 250, "test_nginx_ocsp": 230,
    "test_nginx_lifecycle": 200, "test_nginx_events": 195, "test_apache_ondemand": 145,
    "test_nginx_ondemand": 135, "test_nginx_shm": 125, "test_sched_decision": 110,
    "test_apache_ocsp": 105, "test_nginx_dynamic": 100, "test_apache_dynamic": 85,
    "test_apache_preload": 70, "test_apache_rotation": 70, "test_nginx_monitoring": 70,
    "test_ocsp_harness": 55, "test_apache_issue": 55, "test_hostile_store": 55,
    "test_cli_redis": 50, "test_apache_config": 35, "test_cli_issue": 35,
    "test_nginx_external_deploy": 35, "test_nginx_scale": 35, "test_apache_status": 30,
    "test_apache_policy": 30, "test_cli_slowloris": 25, "test_sched_slow_hook": 25,
    "test_nginx_policy": 25, "test_cli_scan": 25, "test_cli_manage": 20,
    "test_nginx_issue": 20, "test_apache_monitoring": 20, "test_cli_parallel": 20,
    "test_nginx_config": 15, "test_cli_events": 15, "test_apache_external_deploy": 15,
    "test_store_upgrade": 10, "test_man_pages": 10, "test_cli_names": 10,
    "test_job_pebble": 5, "test_cli_usage": 5, "test_cli_ocsp": 5, "test_cli_notify": 5,
    "test_harness": 5, "test_cli_audit": 5,
}
FILE_SECONDS_UNKNOWN = 60


def pytest_collection_modifyitems(session, config, items):
    """Longest files first; the tests inside a file keep their order (the
    sort is stable and by file only), and every worker computes the same
    order, as xdist requires."""
    def seconds(item):
        name = os.path.splitext(os.path.basename(str(item.fspath)))[0]
        return FILE_SECONDS.get(name, FILE_SECONDS_UNKNOWN)
    first_seen = {}
    for i, item in enumerate(items):
        first_seen.setdefault(str(item.fspath), i)
    items.sort(key=lambda item: (-seconds(item), first_seen[str(item.fspath)]))


def pytest_sessionfinish(session, exitstatus):
    procs.stop_all()
