"""Live rotation in mod_autotls: operator-forced and scheduled renewals are
served by every child without a restart; the server starts and serves a
fallback while the CA is down; graceful restarts and killed children do
not lose or break anything."""
import datetime
import glob
import json
import os
import re
import signal

from apache_helpers import apache_factory, assert_no_restart, served, wait_issued  # noqa: F401
from util import run_cli, stays, wait_until


def test_forced_renewal_via_cli_is_served_live(pebble, apache_factory):  # noqa: F811
    hosts = [["force.apache.test", "www.force.apache.test"]]
    apache = apache_factory(pebble, hosts).start()
    parent = apache.pid
    _, first = wait_issued(apache, pebble, "force.apache.test")
    children_before = set(apache.children())

    run_cli("renew", "--store", apache.store, "--request", "www.force.apache.test")
    _, second = wait_issued(apache, pebble, "force.apache.test", not_serial=first["serial"])
    # every name of the set, on fresh connections, gets the new one
    for name in hosts[0]:
        for _ in range(4):
            assert served(apache, name)[1]["serial"] == second["serial"]
    assert_no_restart(apache, parent)
    assert "renewal requested by an operator" in apache.log_text()
    # the same children serve it: no child was replaced to rotate
    assert set(apache.children()) == children_before
    assert not os.path.exists(os.path.join(apache.store, "requests", "force.apache.test"))


def test_short_validity_renews_by_itself(pebble_factory, apache_factory):  # noqa: F811
    ca = pebble_factory(validity=30)
    hosts = [["short.apache.test", "www.short.apache.test"]]
    apache = apache_factory(ca, hosts).start()
    parent = apache.pid
    _, first = wait_issued(apache, ca, "short.apache.test")
    _, second = wait_issued(apache, ca, "short.apache.test", not_serial=first["serial"],
                            timeout=90)
    assert second["not_before"] >= first["not_before"]
    assert_no_restart(apache, parent)
    assert "operator" not in apache.log_text()


def test_ca_down_at_start_serves_fallback_then_real(pebble_factory, apache_factory):  # noqa: F811
    ca = pebble_factory(start=False)
    hosts = [["down.apache.test", "www.down.apache.test"]]
    apache = apache_factory(ca, hosts).start()
    parent = apache.pid
    apache.wait_log(r"\[autotls:error\].*down\.apache\.test")
    _, fb = served(apache, "www.down.apache.test")
    assert fb["self_signed"]
    assert sorted(fb["names"]) == sorted(hosts[0])
    # the fallback serves the site, not a 503
    status, _, body = apache.http_get("/index.html", host="down.apache.test", tls=True)
    assert status == 200 and b"hello" in body
    state = apache.status_json()["certificates"][0]
    assert state["failures"] >= 1 and state["last_error"]

    ca.start()
    # skip the backoff (tested in the core) by an operator request
    run_cli("renew", "--store", apache.store, "--request", "down.apache.test")
    wait_issued(apache, ca, "www.down.apache.test")
    assert_no_restart(apache, parent)


def test_graceful_restart_during_order(pebble_factory, apache_factory):  # noqa: F811
    # validation delays make the order last long enough to restart inside it
    ca = pebble_factory(env={"PEBBLE_VA_NOSLEEP": "0", "PEBBLE_AUTHZREUSE": "0"})
    hosts = [["grace.apache.test", "www.grace.apache.test"],
             ["grace2.apache.test", "www.grace2.apache.test"]]
    apache = apache_factory(ca, hosts).start()
    parent = apache.pid
    apache.wait_log(r"ordering certificate")
    proc = apache.graceful()
    assert proc.returncode == 0, proc.stderr
    apache.wait_log(r"Graceful restart requested|SIGUSR1 received")
    for names in hosts:
        for name in names:
            wait_issued(apache, ca, name, timeout=120)
    assert apache.pid == parent and apache.proc.poll() is None
    log = apache.log_text()
    assert "exit signal" not in log
    # the restarted generation found the state in the store: each set
    # was obtained once (a second order would log a second deployment)
    for names in hosts:
        assert len(re.findall(rf"{re.escape(names[0])}: new certificate deployed", log)) == 1


def test_kill9_of_children_including_the_driver(pebble, apache_factory):  # noqa: F811
    hosts = [["kill.apache.test", "www.kill.apache.test"]]
    apache = apache_factory(pebble, hosts).start()
    parent = apache.pid
    _, first = wait_issued(apache, pebble, "kill.apache.test")
    driver = int(re.findall(r"renewal driver starting in pid (\d+)", apache.log_text())[-1])
    assert driver in apache.children()
    os.kill(driver, signal.SIGKILL)
    wait_until(lambda: driver not in apache.children(), timeout=30, what="the child to go")
    # the other/new children still serve the real certificate from the store
    for _ in range(5):
        assert served(apache, "www.kill.apache.test")[1]["serial"] == first["serial"]
    # and the driver moved: a renewal request is still carried out
    run_cli("renew", "--store", apache.store, "--request", "kill.apache.test")
    wait_issued(apache, pebble, "kill.apache.test", not_serial=first["serial"], timeout=90)
    assert apache.pid == parent and apache.proc.poll() is None
    drivers = re.findall(r"renewal driver starting in pid (\d+)", apache.log_text())
    assert int(drivers[-1]) != driver


def _meta(apache, cert_id):
    with open(os.path.join(apache.store, "certs", cert_id, "meta.json")) as f:
        return json.load(f)


def _rfc3339(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))


def test_ari_absent_at_ca_is_asked_once(pebble, apache_factory):  # noqa: F811
    # Pebble 2.4 has no renewalInfo: the first check of the valid
    # certificate asks and records "no ARI" once for the directory
    # (accounts/<ca-id>/ari.json, next check in a day; the certificate's
    # meta.json is not rewritten for it), and the following checks (every
    # second here, each with a scheduler of its own) read that record and
    # do not ask again
    hosts = [["ari.apache.test", "www.ari.apache.test"]]
    apache = apache_factory(pebble, hosts, loglevel="info autotls:debug").start()
    wait_issued(apache, pebble, "ari.apache.test")

    def ari_record():
        found = glob.glob(os.path.join(apache.store, "accounts", "*", "ari.json"))
        if len(found) != 1:
            return None
        with open(found[0]) as f:
            return json.load(f)
    record = wait_until(ari_record, timeout=30, what="accounts/<ca-id>/ari.json")
    meta = _meta(apache, "ari.apache.test")
    assert "ari_next_check" not in meta
    assert "ari_window_start" not in meta and "ari_window_end" not in meta
    asked = _rfc3339(record["no_ari_until"])
    issued = _rfc3339(meta["last_success"])
    assert datetime.timedelta(hours=23) < asked - issued < datetime.timedelta(hours=25)
    assert meta["state"] == "valid" and _rfc3339(meta["renew_at"]) > issued

    # a few more checks (AutoTLSCheckInterval 1s) do not ask again
    stays(lambda: ari_record() == record
          and len(re.findall(r"ari\.apache\.test\"?: renewal information \(ARI\): none at "
                             r"this CA", apache.log_text())) == 1,
          4, what="one ARI request")
    log = apache.log_text()
    assert len(re.findall(r"ari\.apache\.test\"?: renewal information \(ARI\): none at this CA",
                          log)) == 1
    assert len(re.findall(r"acme: the CA offers no renewal information", log)) == 1
    assert not re.search(r"\[autotls:(warn|error)\].*(ARI|renewal information)", log)
