"""nginx on a Redis that hangs (issue 12): Redis accepts connections but
does not answer (SIGSTOP of redis-server: what a hung host or a network
black hole looks like to a client).  The driver's Redis calls are
blocking calls on its event loop (the cache manager process's on a
cluster node: no serving worker makes them, test_nginx_cluster_driver.py);
behind the health gate the first one that times out (or the subscriber's
unanswered PING) marks Redis unresponsive, once, and no blocking call goes
out until Redis answers again, so the driver goes on (its renewals resume)
and the single worker's handshakes keep completing throughout."""
import contextlib
import os
import re
import select
import signal
import socket
import subprocess
import time

from nginxctl import Nginx, issuer_block, until_issued
from redisctl import Redis, key_file, store_spec, store_url
from test_nginx_redis import chown_nobody
from util import cert_info, run_cli, served_chain, wait_until

NAME = "hang.redis.test"
UNRESPONSIVE = "Redis not answering"
# a handshake's whole budget while Redis is stopped: well under the 5 s
# each blocking call waited before, and above the one call that meets the
# hang (1 s by default on nginx)
HANDSHAKE_TIMEOUT = 3
# how long handshakes go on with Redis stopped, once it was marked
# unresponsive: several generation checks, heartbeats and subscriber
# retries, each of which used to wait 5 s on the event loop
STOPPED_FOR = 8


def node_conf(pebble, root, redis, key, mirror):
    body = issuer_block(pebble, root, name="web", challenge="http-01")
    body += (f"    autotls_store {store_url(redis)} key_file={key} prefix=h: "
             f"mirror={mirror} node=node-1;\n")
    body += "    autotls_check_interval 1s;\n"
    body += f"""
    server {{
        listen 127.0.0.1:{pebble.http_port};
        listen 127.0.0.1:{pebble.tls_port} ssl;
        server_name {NAME};
        autotls web;
        location / {{ return 200 "hello $server_name\\n"; }}
    }}
"""
    return body


def serial(port):
    chain = served_chain(port, NAME, timeout=HANDSHAKE_TIMEOUT)
    info = cert_info(chain[0])
    return None if info["self_signed"] else info["serial"]


def handshakes_while_stopped(ngx, port, mark, want):
    """Handshakes one after another, each within HANDSHAKE_TIMEOUT, until
    Redis was marked unresponsive and STOPPED_FOR seconds of them passed
    since; each serves the certificate want.  The count after the mark."""
    start = time.monotonic()
    marked_at = None
    after = 0
    while marked_at is None or time.monotonic() - marked_at < STOPPED_FOR:
        try:
            assert serial(port) == want
        except subprocess.TimeoutExpired as e:
            raise AssertionError(f"a handshake stalled {e.timeout} s, "
                                 f"{time.monotonic() - start:.1f} s after SIGSTOP:\n"
                                 + ngx.log()[mark:][-3000:]) from None
        if marked_at is None:
            if UNRESPONSIVE in ngx.log()[mark:]:
                marked_at = time.monotonic()
            assert time.monotonic() - start < 60, (
                "Redis never marked unresponsive:\n" + ngx.log()[mark:][-3000:])
        else:
            after += 1
    return after


@contextlib.contextmanager
def running_node(pebble, test_root, conf):
    """Redis, and a one-worker nginx node on it configured by conf; Redis
    is stopped at the end even if the test left it hung."""
    redis = Redis(os.path.join(test_root, "redis"))
    redis.start()
    try:
        key = key_file(os.path.join(test_root, "redis.key"))
        chown_nobody(key)
        mirror = os.path.join(test_root, "mirror")
        ngx = Nginx(test_root, conf(pebble, test_root, redis, key, mirror), workers=1)
        with ngx.start():
            yield redis, ngx
    finally:
        redis.stop()     # continued first if stopped


def test_handshakes_go_on_while_redis_hangs(pebble, test_root):
    with running_node(pebble, test_root, node_conf) as (redis, ngx):
        until_issued(ngx, pebble, pebble.tls_port, NAME)
        first = serial(pebble.tls_port)
        wait_until(lambda: b"node-1" in redis.get_members("h:"), timeout=30,
                   what="the node in the member registry")

        mark = len(ngx.log())
        os.kill(redis.proc.pid, signal.SIGSTOP)
        after = handshakes_while_stopped(ngx, pebble.tls_port, mark, first)
        assert after >= 5, after

        # said once, naming the directive, however many calls met it
        log = ngx.log()[mark:]
        said = [line for line in log.splitlines() if UNRESPONSIVE in line]
        assert len(said) == 1, log[-3000:]
        assert re.search(r"autotls_store \"redis://127\.0\.0\.1:\d+/0\": " + UNRESPONSIVE
                         + r" \(.+\); serving from the mirror", said[0]), said[0]

        os.kill(redis.proc.pid, signal.SIGCONT)
        wait_until(lambda: "Redis reachable again" in ngx.log()[mark:], timeout=60,
                   what="the node back on Redis")

        # the scheduler runs again: a renewal asked through the CLI is
        # ordered by this node and served
        own = key_file(os.path.join(test_root, "operator.key"))
        run_cli("renew", "--store", store_spec(redis, own, prefix="h:"),
                "--request", NAME)
        until_issued(ngx, pebble, pebble.tls_port, NAME, not_serial=first)
        assert ngx.log()[mark:].count(UNRESPONSIVE) == 1


def api_conf(pebble, root, redis, key, mirror):
    """One worker, the admin API, and a Redis timeout far longer than the
    test waits for anything else: a request that met the hang in the
    worker would hold every other request of that worker that long."""
    body = issuer_block(pebble, root, name="web", challenge="http-01")
    body += (f"    autotls_store {store_url(redis)} key_file={key} prefix=h: "
             f"mirror={mirror} node=node-1 timeout=60000;\n")
    body += f"""
    server {{
        listen 127.0.0.1:{pebble.http_port};
        listen 127.0.0.1:{pebble.tls_port} ssl;
        server_name {NAME};
        autotls web dynamic;
        location /autotls/ {{ allow 127.0.0.1; deny all; autotls_api; }}
        location / {{ return 200 "hello $server_name\\n"; }}
    }}
"""
    return body


def http_request(port, text):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(text.encode())
    return s


def read_response(s):
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return data.decode(errors="replace")
        data += chunk


def test_api_waits_on_redis_in_a_thread(pebble, test_root):
    """A cluster node's admin API writes the registry to Redis from nginx's
    thread pool: with Redis hung, a PUT waits (up to the store's timeout)
    while the same, single, worker answers other requests; once Redis
    answers, the PUT completes and the name is in Redis's registry."""
    put = None
    try:
        with running_node(pebble, test_root, api_conf) as (redis, ngx):
            wait_until(lambda: b"node-1" in redis.get_members("h:"), timeout=30,
                       what="the node in the member registry")
            port = pebble.http_port
            os.kill(redis.proc.pid, signal.SIGSTOP)
            put = http_request(port, f"PUT /autotls/names/late.hang.test HTTP/1.1\r\n"
                                     f"Host: {NAME}\r\nContent-Length: 0\r\n"
                                     f"Connection: close\r\n\r\n")
            # the worker has the PUT (its Redis call is waiting) once another
            # request sent after it on a new connection is answered: nginx
            # reads both on one event loop, in order
            for _ in range(5):
                get = http_request(port, f"GET / HTTP/1.1\r\nHost: {NAME}\r\n"
                                         f"Connection: close\r\n\r\n")
                answer = read_response(get)
                get.close()
                assert f"hello {NAME}" in answer, answer
                # answered while the PUT is still waiting on Redis: the
                # worker did not wait with it
                readable, _, _ = select.select([put], [], [], 0)
                assert not readable, "the PUT was answered while Redis was stopped"
            os.kill(redis.proc.pid, signal.SIGCONT)
            answer = read_response(put)
            assert re.match(r"HTTP/1\.1 20[01] ", answer), answer
            assert b"late.hang.test.json" in redis.cli(
                "SMEMBERS", "h:{/names}:d:names").stdout
    finally:
        if put is not None:
            put.close()
