"""A validation that failed because a node of the cluster lagged (issue 12)
is retried on the short backoff, not after the 6 hours of a permanent
error.

One node orders (nginx, then Apache); a second member of the cluster ("lagger") is in
Redis's member registry with a live heartbeat but never loads the
challenge, and the name points at its address, where an HTTP server
answers 404 (a node that has not loaded the token yet).  The ordering node
waits for lagger's ack (ATLS_MIRROR_ACK_WAIT_MS, 10 s), goes on, and
Pebble fails the validation with `unauthorized`.  The node must say so
("validation failed while nodes lagger had not confirmed the challenge:
retrying in S s") and, once lagger has left the registry and the name
points at the node itself, obtain the certificate on the retry that comes
after the 60 s backoff, not in 6 hours."""
import http.server
import re
import threading
import time

import pytest

from clusterctl import ADDRESS_BASES, add_a, running_cluster, seed_account
from util import wait_until

# the ordering node at the block's first address, the node that lags at the
# next: a block no other test file listens on (clusterctl.ADDRESS_BASES)
BASE = ADDRESS_BASES["lagpeer"]
LAGGER_ADDR = f"127.0.0.{BASE + 1}"
LAGGER = "lagger"
NAME = "lag.lagpeer.cluster.test"
LAG_RE = re.compile(r"validation failed while nodes lagger had not confirmed the "
                    r"challenge: retrying in (\d+) s")
# the job's one line for the failure: transient from the start
FAILED_RE = re.compile(r"order failed: urn:ietf:params:acme:error:unauthorized: "
                       r"validation failed while nodes lagger ")
# the retry-later backoff's first step: 60 s +-20% (common/schedule.c)
RETRY_MAX_S = 72
SLACK_S = 45            # a loaded 2-core machine: the order itself, the pass


class _NotLoaded(http.server.BaseHTTPRequestHandler):
    """What a node that has not loaded the token answers."""

    def do_GET(self):       # noqa: N802 - http.server's name
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


class _Server(http.server.ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True


@pytest.fixture(params=["nginx", "apache"])
def cluster(request, pebble_factory, test_root):
    nginx = request.param == "nginx"
    with running_cluster(pebble_factory, test_root, [NAME], BASE, n_nginx=int(nginx),
                         n_apache=int(not nginx)) as cl:
        yield cl


@pytest.fixture
def lagger_http(cluster):
    srv = _Server((LAGGER_ADDR, int(cluster.http_port)), _NotLoaded)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(timeout=10)


def members_key(cl):
    return f"{cl.prefix}{{/cluster}}:members"


def test_validation_failed_by_a_lagging_node_is_retried_soon(cluster, lagger_http):
    cl, pebble = cluster, cluster.pebble
    node = cl.nodes[0]
    seed_account(cl)
    # lagger is live for 5 minutes (its expiry in ms, as the nodes write it)
    # and never acks anything
    expiry = int(time.time() * 1000) + 300_000
    cl.redis.cli("ZADD", members_key(cl), str(expiry), LAGGER)
    add_a(pebble, NAME, LAGGER_ADDR)
    cl.start()

    def lag_logged():
        return LAG_RE.search(node.log())
    try:
        m = wait_until(lag_logged, timeout=120, interval=0.5,
                       what="the failed validation naming the lagging node")
    except AssertionError as e:
        raise AssertionError(f"{e}\n{cl.logs()}") from None
    failed_at = time.monotonic()
    assert int(m.group(1)) <= RETRY_MAX_S, m.group(0)
    # recorded once: one "order failed" line saying why, never a permanent
    # error corrected by a second line (the retry is a minute away yet)
    log = node.log()
    assert len(FAILED_RE.findall(log)) == 1, log
    assert "permanent error" not in log, log
    assert "logged above" not in log, log

    # lagger catches up by leaving; the CA now reaches the ordering node
    cl.redis.cli("ZREM", members_key(cl), LAGGER)
    pebble._chall_post("/clear-a", {"host": NAME + "."})
    add_a(pebble, NAME, node.addr)
    serial = cl.wait_served([NAME], timeout=RETRY_MAX_S + SLACK_S)[NAME]
    assert serial
    print(f"obtained {time.monotonic() - failed_at:.1f} s after the lagged failure")
