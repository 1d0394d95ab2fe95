"""AutoTLSPreload: a child that starts (after a graceful restart, or to
replace a killed child) parses every managed certificate in the background,
so that its handshakes find them parsed; with AutoTLSPreload Off the cache
fills at the first handshake per name, as before."""
import os
import re
import signal

import pytest

from apache_helpers import apache_factory, served, wait_issued  # noqa: F401
from util import served_chain, verify_chain, wait_until

PRELOADED = re.compile(
    r"child (\d+) preloaded (\d+) certificate\(s\) for (\d+) of (\d+) name set\(s\) "
    r"in \d+ ms \((\d+) already loaded by handshakes; (\d+) distinct intermediate\(s\) "
    r"shared\)")
LOADED = re.compile(r"autotls: ([a-z0-9.]+): child (\d+) loaded (\d+) certificate\(s\) at "
                    r"generation (\d+) \(\d+ key type\(s\) on their fallback\)( \(preload\))?")

HOSTS = [[f"pre{i}.apache.test", f"www.pre{i}.apache.test"] for i in range(4)]


def preloads(apache, pids):
    """{pid: (certs, sets_loaded, sets_total, skipped, intermediates)} of the
    preload summaries logged by the given children."""
    out = {}
    for m in PRELOADED.finditer(apache.log_text()):
        pid = int(m.group(1))
        if pid in pids:
            out[pid] = tuple(int(x) for x in m.groups()[1:])
    return out


def new_child_preloads(apache, old):
    """Waits for a child not in `old` to log its preload summary."""
    def ready():
        fresh = set(apache.children()) - old
        got = preloads(apache, fresh)
        return got or None
    return wait_until(ready, timeout=60, what="a new child's preload summary")


def check_serving(apache, pebble, serials):
    for names in HOSTS:
        chain = served_chain(apache.tls_port, names[0])
        assert verify_chain(chain, pebble.roots_pem()), f"chain for {names[0]} does not verify"
        for name in names:
            for _ in range(3):
                assert served(apache, name)[1]["serial"] == serials[names[0]], name


def check_no_reparse(apache, pids):
    """At the generation a child preloaded, its handshakes parsed nothing
    again: every 'loaded' line of that child and generation is the preload's."""
    lines = [m.groups() for m in LOADED.finditer(apache.log_text()) if int(m.group(2)) in pids]
    pre = {(cid, pid, gen) for cid, pid, _, gen, how in lines if how}
    assert len(pre) >= len(HOSTS), lines
    again = [(cid, pid, gen) for cid, pid, _, gen, how in lines
             if not how and (cid, pid, gen) in pre]
    assert not again, f"handshakes re-parsed preloaded certificates: {again}"


@pytest.mark.parametrize("mpm", ["event", "prefork"])
def test_fresh_children_preload_every_certificate(pebble, apache_factory, mpm):  # noqa: F811
    apache = apache_factory(pebble, HOSTS, mpm=mpm, loglevel="info autotls:debug").start()
    serials = {names[0]: wait_issued(apache, pebble, names[0])[1]["serial"]
               for names in HOSTS}

    # graceful restart: only the new generation of children accepts
    # connections, and each of them preloads all four certificates before
    # any handshake reaches it
    old = set(apache.children())
    proc = apache.graceful()
    assert proc.returncode == 0, proc.stderr
    got = new_child_preloads(apache, old)
    for pid, (certs, sets, total, skipped, inter) in got.items():
        assert (certs, sets, total, skipped) == (4, 4, 4, 0), (pid, got[pid])
        # Pebble signs every leaf with one intermediate: one shared copy
        assert inter == 1, (pid, got[pid])
    check_serving(apache, pebble, serials)
    check_no_reparse(apache, set(got))

    # kill -9 of every child: the replacements preload as well
    old = set(apache.children())
    for pid in old:
        os.kill(pid, signal.SIGKILL)
    got = new_child_preloads(apache, old)
    for pid, (certs, sets, total, skipped, inter) in got.items():
        assert (certs, sets, total, skipped, inter) == (4, 4, 4, 0, 1), (pid, got[pid])
    check_serving(apache, pebble, serials)
    check_no_reparse(apache, set(got))
    assert "exit signal Segmentation" not in apache.log_text()


def test_preload_off_loads_at_first_handshake(pebble, apache_factory):  # noqa: F811
    hosts = HOSTS[:2]
    apache = apache_factory(pebble, hosts, loglevel="info autotls:debug",
                            global_extra="AutoTLSPreload Off").start()
    for names in hosts:
        _, info = wait_issued(apache, pebble, names[0])
        assert served(apache, names[1])[1]["serial"] == info["serial"]
    log = apache.log_text()
    assert "preloaded" not in log
    lines = [m.groups() for m in LOADED.finditer(log)]
    assert lines, "the cache never loaded"
    assert not [g for g in lines if g[4]], "AutoTLSPreload Off still preloaded"


@pytest.mark.parametrize("extra, where", [
    (dict(global_extra="AutoTLSPreload sometimes"), "AutoTLSPreload"),
    (dict(vhost_extra="AutoTLSPreload Off"), "AutoTLSPreload"),
])
def test_preload_directive_checked(test_root, pebble, extra, where):
    from apachectl import Apache
    a = Apache(test_root, pebble, [["cfgpre.apache.test"]], **extra)
    proc = a.configtest()
    assert proc.returncode != 0
    assert where in proc.stderr
