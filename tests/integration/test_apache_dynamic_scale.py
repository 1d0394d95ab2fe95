"""Apache at scale (issue 11): the watchdog keeps one scheduler across its
checks (and frees it when a graceful restart stops it); a deploy of one
certificate among many costs each child one parse (the store's change
journal), not one per certificate; a removed dynamic name's parsed
certificate is let go by the children."""
import os
import re

from apache_helpers import apache_factory, served, wait_issued  # noqa: F401
from test_apache_dynamic import dynamic_apache, HOME, wait_own
from util import run_cli, wait_until

HOSTS = [[f"s{i}.scale.test"] for i in range(12)]
LOADED = re.compile(r"autotls: ([a-z0-9.]+): child (\d+) loaded (\d+) certificate\(s\) at "
                    r"generation (\d+)")
SET_UP = re.compile(r"autotls: scheduler of pid (\d+) set up for")
PASS = re.compile(r"autotls: pass (\d+) of the scheduler of pid (\d+)")


def passes(log):
    """{watchdog pid: highest pass number}"""
    out = {}
    for m in PASS.finditer(log):
        out[int(m.group(2))] = max(out.get(int(m.group(2)), 0), int(m.group(1)))
    return out


def test_one_scheduler_kept_across_checks(pebble, apache_factory):  # noqa: F811
    apache = apache_factory(pebble, HOSTS[:2], check_interval="1s",
                            loglevel="info autotls:debug").start()
    for names in HOSTS[:2]:
        wait_issued(apache, pebble, names[0])
    # checks every second, each a pass of the same scheduler
    got = wait_until(lambda: [p for p, n in passes(apache.log_text()).items() if n >= 4]
                     or None, timeout=60, what="four passes of one scheduler")
    pid = got[0]
    set_up = [int(p) for p in SET_UP.findall(apache.log_text())]
    assert set_up.count(pid) == 1, set_up

    # a graceful restart stops the watchdog's child, and the new generation
    # of children sets up its own scheduler.  The old child's "freed" line
    # is not waited for: on a loaded machine the child may exit before
    # mod_watchdog reports STOPPING (seen once in a fresh-clone run)
    proc = apache.graceful()
    assert proc.returncode == 0, proc.stderr

    def old_child_gone():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return None
    wait_until(old_child_gone, timeout=60, what=f"the old watchdog child {pid} to exit")
    wait_until(lambda: [int(p) for p in SET_UP.findall(apache.log_text())
                        if int(p) != pid] or None, timeout=60,
               what="a scheduler set up after the graceful restart")
    served(apache, HOSTS[0][0])
    assert "exit signal" not in apache.log_text()


def loads(log, real=False):
    """[(certificate id, child pid)] of every parse logged, in order (real:
    only those that found the CA's certificate, not the fallback)."""
    return [(m.group(1), int(m.group(2))) for m in LOADED.finditer(log)
            if not real or int(m.group(3)) > 0]


def test_deploy_among_many_reloads_only_it(pebble, apache_factory):  # noqa: F811
    apache = apache_factory(pebble, HOSTS, check_interval="1s",
                            loglevel="info autotls:debug").start()
    serials = {names[0]: wait_issued(apache, pebble, names[0], timeout=180)[1]["serial"]
               for names in HOSTS}
    for _ in range(3):
        for names in HOSTS:
            served(apache, names[0])
    mark = len(apache.log_text())
    # the children that parsed a certificate as issued: current until the
    # deploy (a child that parsed only the fallback, at its preload, has a
    # reason of its own to parse it again)
    before = set(loads(apache.log_text(), real=True))

    # the running server renews one of them (a deploy: the store generation
    # moves, the change journal names that certificate)
    target = HOSTS[0][0]
    run_cli("renew", "--store", apache.store, "--request", target)
    wait_until(lambda: served(apache, target)[1]["serial"] != serials[target], timeout=120,
               what=f"the renewed certificate of {target} served")
    for _ in range(3):
        for names in HOSTS[1:]:
            assert served(apache, names[0])[1]["serial"] == serials[names[0]]

    log = apache.log_text()[mark:]
    after = loads(log)
    assert any(cid == target for cid, _ in after), "the renewed certificate was parsed"
    # a child that had parsed another certificate before the deploy did not
    # parse it again (a child parsing one for the first time is not a reload)
    reloads = [(cid, pid) for cid, pid in after if cid != target and (cid, pid) in before]
    assert not reloads, f"certificates that did not change were parsed again: {reloads}"
    assert re.search(r"certificate\(s\) changed \(change journal", log), log[-3000:]
    print(f"after the deploy: {len(after)} parse(s) for {len(HOSTS)} certificates")


def test_removed_names_are_let_go(pebble, apache_factory):  # noqa: F811
    apache = dynamic_apache(apache_factory, pebble, loglevel="info autotls:debug").start()
    _, home = wait_issued(apache, pebble, HOME, timeout=120)
    names = ["keep.dyn.test", "gone1.dyn.test", "gone2.dyn.test"]
    run_cli("add", "--store", apache.store, *names)
    for name in names:
        wait_own(apache, pebble, name)
    for _ in range(3):
        for name in names:
            served(apache, name)
    mark = len(apache.log_text())
    run_cli("remove", "--store", apache.store, *names[1:])

    def let_go():
        # handshakes reach every child in turn; each one that parsed a
        # removed name frees it when it next reads the registry (a child
        # may still be reading it when the CLI returns: polled, not asserted
        # at once), then serves the home's certificate for it
        for name in names[1:]:
            if served(apache, name)[1]["serial"] != home["serial"]:
                return None
        log = apache.log_text()[mark:]
        return all(f"let go of removed name {n}" in log for n in names[1:]) or None
    wait_until(let_go, timeout=60, what="the removed names let go")
    left = [int(n) for n in re.findall(r"\((\d+) dynamic certificate\(s\) left\)",
                                       apache.log_text()[mark:])]
    assert left and max(left) <= 2 and min(left) <= 1, left
    assert "let go of removed name keep.dyn.test" not in apache.log_text()
    assert served(apache, names[0])[1]["names"] == [names[0]]
