"""A node whose Redis refuses it (issue 12): a wrong password, a TLS server
whose certificate does not verify.  nginx and Apache start anyway, say
so clearly at start naming their directive (never echoing the password),
and serve what their mirror holds."""
import os

import pytest

from clusterctl import (ADDRESS_BASES, paused, running_cluster, seed_account,
                        start_holding)
from redisctl import Redis, store_spec, tls_pair
from util import wait_until

NAMES = ["e1.errors.cluster.test", "e2.errors.cluster.test"]
PASSWORD = "right-horse-4471"
WRONG = "wrong-secret-9313"
DIRECTIVE = {"nginx": "autotls_store", "apache": "AutoTLSStore"}


@pytest.fixture
def cluster(pebble_factory, test_root):
    with running_cluster(pebble_factory, test_root, NAMES, ADDRESS_BASES["errors"],
                         password=PASSWORD, check_logs=False, n_nginx=1, n_apache=1) as cl:
        yield cl


def check_refused_and_serving(cl, serials, words):
    """Each node logs an error naming its directive and one of words, and
    serves what it obtained before from its mirror."""
    for node in cl.nodes:
        directive = DIRECTIVE[node.kind]

        def said():
            return [line for line in node.log()[node.log_from:].splitlines()
                    if directive in line and any(w in line.lower() for w in words)]
        try:
            lines = wait_until(said, timeout=60, what=f"{node}: an error naming {directive}")
        except AssertionError as e:
            raise AssertionError(f"{e}\n{node.log()[-3000:]}") from None
        print(node, lines[0])
        assert WRONG not in node.log() and PASSWORD not in node.log()
        for name in NAMES:
            assert node.serve(name) == (serials[name], True), (node, name)


def test_wrong_password_and_untrusted_tls(cluster, test_root):
    cl = cluster
    seed_account(cl)
    with paused(cl.pebble):
        cl.map_away_from(start_holding(cl))
    serials = cl.wait_served(NAMES, timeout=120)

    # the same Redis, a wrong password
    cl.restart_with(store_spec(cl.redis, cl.key, password=WRONG))
    check_refused_and_serving(cl, serials, ("password", "auth"))

    # a TLS Redis whose certificate is from a CA the nodes were not given
    tls_dir, other_dir = (os.path.join(test_root, d) for d in ("redis-tls", "other-ca"))
    for d in (tls_dir, other_dir):
        os.makedirs(d, mode=0o755)
    tls = Redis(tls_dir, tls=tls_pair(tls_dir))
    other_ca = tls_pair(other_dir)[0]
    try:
        tls.start()
        cl.restart_with(f"{store_spec(tls, cl.key)} ca_file={other_ca}")
        check_refused_and_serving(cl, serials, ("certificate", "verify", "tls"))
    finally:
        for node in cl.nodes:
            node.stop()
        tls.stop()
