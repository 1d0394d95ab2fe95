"""A node whose Redis refuses it (issue 12): a wrong password, a TLS server
whose certificate does not verify.  nginx and Apache start anyway, say
so clearly at start naming their directive (never echoing the password),
and serve what their mirror holds."""
import os
import subprocess

import pytest

import procs
from clusterctl import (ADDRESS_BASES, paused, running_cluster, seed_account,
                        start_holding)
from pebblectl import _write_listener_pki
from redisctl import REDIS_CLI, REDIS_SERVER, store_spec
from util import free_port, wait_until

NAMES = ["e1.errors.cluster.test", "e2.errors.cluster.test"]
PASSWORD = "right-horse-4471"
WRONG = "wrong-secret-9313"
DIRECTIVE = {"nginx": "autotls_store", "apache": "AutoTLSStore"}


@pytest.fixture
def cluster(pebble_factory, test_root):
    with running_cluster(pebble_factory, test_root, NAMES, ADDRESS_BASES["errors"],
                         password=PASSWORD, check_logs=False, n_nginx=1, n_apache=1) as cl:
        yield cl


class TlsRedis:
    """A redis-server that speaks TLS only, with a certificate for
    127.0.0.1 from a CA of its own."""

    def __init__(self, workdir):
        self.dir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.pki = _write_listener_pki(workdir)
        self.port = free_port()
        self.proc = None

    def start(self):
        self.proc = procs.spawn(
            [REDIS_SERVER, "--bind", "127.0.0.1", "--port", "0", "--tls-port", str(self.port),
             "--tls-cert-file", self.pki["cert"], "--tls-key-file", self.pki["key"],
             "--tls-ca-cert-file", self.pki["ca"], "--tls-auth-clients", "no",
             "--save", "", "--appendonly", "no", "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def answers():
            assert self.proc.poll() is None, "redis-server with TLS exited"
            out = subprocess.run([REDIS_CLI, "-h", "127.0.0.1", "-p", str(self.port), "--tls",
                                  "--cacert", self.pki["ca"], "PING"],
                                 capture_output=True, timeout=30).stdout
            return out.strip() == b"PONG"
        wait_until(answers, timeout=60, what="redis-server answering PING over TLS")
        return self

    def stop(self):
        if self.proc is not None:
            procs.stop(self.proc)
            self.proc = None


def restart_with(cl, spec):
    for node in cl.nodes:
        node.stop()
    cl.spec = spec
    for node in cl.nodes:
        node.log_from = len(node.log())
        node.rewrite()
        node.start()


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
    restart_with(cl, store_spec(cl.redis, cl.key, password=WRONG))
    check_refused_and_serving(cl, serials, ("password", "auth"))

    # a TLS Redis whose certificate is from a CA the nodes were not given
    tls = TlsRedis(os.path.join(test_root, "redis-tls"))
    os.makedirs(os.path.join(test_root, "other-ca"), mode=0o755)
    other_ca = _write_listener_pki(os.path.join(test_root, "other-ca"))["ca"]
    try:
        tls.start()
        restart_with(cl, f"rediss://127.0.0.1:{tls.port}/0 ca_file={other_ca} "
                         f"key_file={cl.key} prefix=atls:")
        check_refused_and_serving(cl, serials, ("certificate", "verify", "tls"))
    finally:
        for node in cl.nodes:
            node.stop()
        tls.stop()
