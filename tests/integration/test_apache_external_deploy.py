"""mod_autotls: a certificate deployed into a running Apache's store by
someone else (the CLI here) is served by the same children within a
second, with no restart, whatever AutoTLSCheckInterval is: the driver's
watchdog publishes the store's generation between checks."""
import os
import time

from apache_helpers import apache_factory, assert_no_restart, served, wait_issued  # noqa: F401
from clihelp import stored_chain, write_dns_hook
from util import cert_info, run_cli, verify_chain, wait_until

HOSTS = [["ext.apache.test", "www.ext.apache.test"], ["other.apache.test"]]


def test_cli_renewal_is_served_live(pebble, apache_factory, test_root):  # noqa: F811
    # an hour between checks: only the generation watch can pick it up
    apache = apache_factory(pebble, HOSTS, check_interval="1h").start()
    parent = apache.pid
    _, first = wait_issued(apache, pebble, HOSTS[0][0])
    _, other = wait_issued(apache, pebble, HOSTS[1][0])
    children = set(apache.children())

    log = os.path.join(test_root, "hook.log")
    open(log, "w").close()
    os.chmod(log, 0o666)
    hook = write_dns_hook(test_root, pebble, log)
    run_cli("renew", "--store", apache.store, "--challenge", "dns-01", "--dns-hook", hook,
            "--directory", pebble.directory, "--ca-file", apache.ca_file, HOSTS[0][0])
    new = cert_info(stored_chain(apache.store, HOSTS[0][0])[0])["serial"]
    assert new != first["serial"]

    # until 8 fresh connections in a row get it, whichever child takes them
    # (a child that had not cached the host yet reads the store anyway)
    start = time.monotonic()
    streak = []

    def all_new():
        name = HOSTS[0][len(streak) % 2]
        asked = time.monotonic()
        if served(apache, name)[1]["serial"] == new:
            streak.append(asked)
        else:
            streak.clear()
        return len(streak) >= 8
    wait_until(all_new, timeout=5, interval=0.02, what=f"serial {new} served")
    print(f"CLI renewal served by Apache after {streak[0] - start:.2f}s")
    chain, _ = served(apache, HOSTS[0][1])
    assert verify_chain(chain, pebble.roots_pem())
    assert served(apache, HOSTS[1][0])[1]["serial"] == other["serial"]
    assert_no_restart(apache, parent)
    assert set(apache.children()) == children
