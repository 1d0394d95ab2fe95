"""Helpers shared by the test_apache_*.py files."""
import pytest

from apachectl import Apache, stop_quietly
from util import cert_info, served_chain, verify_chain, wait_until

THREE_HOSTS = [["a.apache.test", "www.a.apache.test"],
               ["b.apache.test", "www.b.apache.test"],
               ["c.apache.test", "www.c.apache.test"]]

RESTART_MARKS = ("SIGHUP received", "Graceful restart requested", "SIGUSR1 received",
                 "SIGWINCH received")


@pytest.fixture
def apache_factory(test_root):
    made = []

    def make(pebble, hosts, **kw):
        a = Apache(test_root, pebble, hosts, **kw)
        made.append(a)
        return a

    yield make
    for a in made:
        stop_quietly(a)
    # an ASan/UBSan build (make asan) writes its reports next to the config
    reports = "".join(a.sanitizer_reports() for a in made)
    assert not reports, f"sanitizer reports from Apache:\n{reports[:4000]}"


def served(apache, name, extra_args=()):
    chain = served_chain(apache.tls_port, name, extra_args=tuple(extra_args))
    return chain, cert_info(chain[0])


def wait_issued(apache, pebble, name, timeout=90, not_serial=None, extra_args=()):
    """Waits until a Pebble-issued certificate (optionally a different one
    than not_serial) is served for name; returns (chain, info).  A failed
    handshake fails at once: every key type has a fallback."""
    def ok():
        chain, info = served(apache, name, extra_args)
        if info["self_signed"] or info["serial"] == not_serial:
            return None
        return chain, info
    chain, info = wait_until(ok, timeout=timeout, what=f"a CA certificate for {name}")
    assert verify_chain(chain, pebble.roots_pem()), f"chain for {name} does not verify"
    assert name in info["names"]
    return chain, info


def assert_no_restart(apache, parent_pid):
    assert apache.proc.poll() is None, "Apache exited"
    assert apache.pid == parent_pid
    log = apache.log_text()
    for mark in RESTART_MARKS:
        assert mark not in log, f"error log shows a restart: {mark}"
    assert "exit signal" not in log, "a child crashed"
