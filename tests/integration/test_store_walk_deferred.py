"""A first start on a store the server's root never walked (issue 11):
the privileged parent (nginx's master, Apache's parent) walks it within a
time budget (AUTOTLS_PREPARE_BUDGET_MS, 0 here: no walk at all in the
parent, so the deferred path is taken whatever the machine's speed) and a
detached root process walks the rest.

The store: 320 certificate entries never walked (no `prepared` stamp) and
the server's three names, one of them with its directory and files left
by root (0700, 0600 root:root, as a restore would leave them).  The server
starts, serves the worker's certificates from the first handshake, and the
root-made one once the walker has handed it over; the walker ends having
written the stamp and its lines in the server's error log, holds none of
the server's listening sockets (nor anything else: checked whenever it is
seen running; the unit test holds it to check every time), and is gone
after the test."""
import os
import re
import socket
import time

import pytest

from apache_helpers import apache_factory  # noqa: F401
from certmaker import CertMaker
from nginxctl import Nginx, issuer_block, server_block
from storeseed import issuer_meta, seed_store, worker_owner
from util import cert_info, served_chain, wait_until

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the parent hands over as root")

NAMES = ["a.walk.test", "b.walk.test", "root.walk.test"]
ROOT_MADE = "root.walk.test"
FILLERS = [f"f{i}.walk.test" for i in range(320)]


def seed(test_root, pebble, server, ca_file):
    """The store at test_root/store, never walked; returns the seeded
    leaf's serial (every entry holds the same CA-signed leaf, so what is
    served is told from the fallback)."""
    maker = CertMaker(os.path.join(test_root, "ca"))
    leaf = maker.leaf("walk", ["*.walk.test"])
    with open(leaf.key) as f:
        key_pem = f.read()
    with open(leaf.cert) as f:
        chain_pem = f.read()
    issuer = issuer_meta(pebble.directory, ca_file, contact=["admin@example.com"])
    store = os.path.join(test_root, "store")
    seed_store(store, [{"names": [n], "issuer": issuer,
                        "certs": {"ec256": (key_pem, chain_pem)}} for n in NAMES + FILLERS],
               owner=worker_owner(server))
    make_root_owned(store)
    assert not os.path.exists(os.path.join(store, "prepared"))
    return cert_info(chain_pem)["serial"]


def make_root_owned(store):
    d = os.path.join(store, "certs", ROOT_MADE)
    for n in [d] + [os.path.join(d, x) for x in os.listdir(d)]:
        os.chown(n, 0, 0)
        os.chmod(n, 0o700 if n == d else 0o600)


def hide_from_next_walk(store):
    """A root-made certificate directory the next start's walk does not
    reach in time: ROOT_MADE root's again and a `prepared` stamp from the
    future (every directory looks unchanged since), so the server starts
    with it unreadable, as when a walker has not got there yet."""
    make_root_owned(store)
    changed = int(time.time())
    with open(os.path.join(store, "prepared"), "w") as f:
        f.write(f"{changed + 86400}\n")
    # ctimes are compared in whole seconds, so a walk that begins in the
    # second of the change looks at it again (by design), and writes its
    # own stamp: Apache's second configuration pass then walks from that
    # one and would hand ROOT_MADE over before the test looks
    wait_until(lambda: int(time.time()) > changed, timeout=5, interval=0.05,
               what="the second of the change to pass")


def walk_again(store):
    """The next start walks everything (the stamp is gone)."""
    os.unlink(os.path.join(store, "prepared"))


def walkers(store):
    """PIDs of background walkers holding store open."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() != "autotls-walk":
                    continue
            fds = os.listdir(f"/proc/{pid}/fd")
            targets = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in fds]
        except OSError:
            continue        # gone meanwhile
        if store in targets:
            found.append((int(pid), targets))
    return found


def check_walker_fds(store, error_log):
    """Whenever a walker is seen: /dev/null, the error log, the store and
    its own openings in it (the generation lock of its announcement)."""
    for pid, targets in walkers(store):
        for t in targets:
            assert t in ("/dev/null", error_log) or t == store \
                or t.startswith(store + "/"), f"walker {pid} holds {t}"


def serves_seeded(port, name, serial):
    info = cert_info(served_chain(port, name)[0])
    return not info["self_signed"] and info["serial"] == serial


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def check_deferred_walk(store, error_log, log_text, port, serial):
    """What both servers must show once started on the seeded store."""
    check_walker_fds(store, error_log)
    assert "not walked within 0 ms (AUTOTLS_PREPARE_BUDGET_MS)" in log_text(), \
        log_text()[-3000:]
    # the worker's certificates at once (no wait for the walk) ...
    for name in NAMES:
        if name != ROOT_MADE:
            assert serves_seeded(port, name, serial), name
    check_walker_fds(store, error_log)
    # ... the root-made one once the walker has handed it over
    wait_until(lambda: serves_seeded(port, ROOT_MADE, serial), timeout=90,
               what=f"{ROOT_MADE} served after the background walk")
    wait_until(lambda: os.path.exists(os.path.join(store, "prepared")), timeout=90,
               what="the prepared stamp")
    wait_until(lambda: "background walk complete" in log_text(), timeout=30,
               what="the walker's last line in the error log")
    wait_until(lambda: not walkers(store), timeout=30, what="the walker to end")
    assert os.stat(os.path.join(store, "certs", ROOT_MADE, "ec256.pem")).st_uid != 0


def check_handed_over_live(store, error_log, log_text, port, serial, restart):
    """Started with ROOT_MADE unreadable (hide_from_next_walk): its
    fallback, the others' certificates; then a restart whose walker hands
    it over while the workers run: the walker announces it through the
    store generation, and the workers serve it without another restart."""
    assert cert_info(served_chain(port, ROOT_MADE)[0])["self_signed"]
    for name in NAMES:
        if name != ROOT_MADE:
            assert serves_seeded(port, name, serial), name
    walk_again(store)
    restart()
    check_walker_fds(store, error_log)
    wait_until(lambda: serves_seeded(port, ROOT_MADE, serial), timeout=90,
               what=f"{ROOT_MADE} served once the walker handed it over")
    try:
        wait_until(lambda: re.search(r"background walk complete in \d+ ms, [1-9]\d* "
                                     r"certificate\(s\) handed over", log_text()),
                   timeout=30, what="the walker's last line")
    except AssertionError as e:
        raise AssertionError(f"{e}\n{log_text()[-4000:]}") from None
    wait_until(lambda: not walkers(store), timeout=30, what="the walker to end")


def test_nginx_first_start_walks_in_background(pebble, test_root, monkeypatch):
    monkeypatch.setenv("AUTOTLS_PREPARE_BUDGET_MS", "0")
    body = issuer_block(pebble, test_root)
    serial = seed(test_root, pebble, "nginx", os.path.join(test_root, "pebble-ca.pem"))
    body += f"    autotls_store {test_root}/store;\n    autotls_check_interval 1s;\n"
    body += server_block(NAMES, pebble.http_port, pebble.tls_port, autotls_names="per_name")
    ngx = Nginx(test_root, body)
    try:
        with ngx.start():
            master, workers = ngx.master, ngx.worker_pids()
            check_deferred_walk(ngx.store, ngx.error_log, ngx.log, pebble.tls_port, serial)
            assert (ngx.master, ngx.worker_pids()) == (master, workers), "not live"
        assert not port_open(pebble.tls_port), "a listening socket outlived nginx"
        hide_from_next_walk(ngx.store)
        with ngx.start():
            master = ngx.master
            check_handed_over_live(ngx.store, ngx.error_log, ngx.log, pebble.tls_port,
                                   serial, ngx.reload)
            assert ngx.master == master
            # the master never met a walker (no unknown child reaped)
            assert "unknown process" not in ngx.log()
        assert not port_open(pebble.tls_port), "a listening socket outlived nginx"
    finally:
        wait_until(lambda: not walkers(ngx.store), timeout=60, what="no walker left")


def test_apache_first_start_walks_in_background(pebble, apache_factory,  # noqa: F811
                                                test_root, monkeypatch):
    monkeypatch.setenv("AUTOTLS_PREPARE_BUDGET_MS", "0")
    apache = apache_factory(pebble, [[n] for n in NAMES])
    store = apache.store
    serial = seed(test_root, pebble, "apache", apache.ca_file)
    try:
        apache.start()
        parent = apache.pid
        check_deferred_walk(store, apache.error_log, apache.log_text, pebble.tls_port, serial)
        assert apache.proc.poll() is None and apache.pid == parent
        apache.stop()
        assert not port_open(pebble.tls_port), "a listening socket outlived Apache"
        hide_from_next_walk(store)
        apache.start()
        parent = apache.pid

        def graceful():
            proc = apache.graceful()
            assert proc.returncode == 0, proc.stderr
        check_handed_over_live(store, apache.error_log, apache.log_text, pebble.tls_port,
                               serial, graceful)
        assert apache.proc.poll() is None and apache.pid == parent
        # the parent never met a walker (no unknown child reaped)
        assert "long lost child" not in apache.log_text()
        apache.stop()
        assert not port_open(pebble.tls_port), "a listening socket outlived Apache"
    finally:
        wait_until(lambda: not walkers(store), timeout=60, what="no walker left")
