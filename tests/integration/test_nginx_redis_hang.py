"""nginx on a Redis that hangs (issue 12): Redis accepts connections but
does not answer (SIGSTOP of redis-server: what a hung host or a network
black hole looks like to a client).  The driver's Redis calls are
blocking calls on its event loop (the cache manager process's on a
cluster node: no serving worker makes them, test_nginx_cluster_driver.py);
behind the health gate the first one that times out (or the subscriber's
unanswered PING) marks Redis unresponsive, once, and no blocking call goes
out until Redis answers again, so the driver goes on (its renewals resume)
and the single worker's handshakes keep completing throughout."""
import os
import re
import signal
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


def test_handshakes_go_on_while_redis_hangs(pebble, test_root):
    redis = Redis(os.path.join(test_root, "redis"))
    redis.start()
    try:
        key = key_file(os.path.join(test_root, "redis.key"))
        chown_nobody(key)
        mirror = os.path.join(test_root, "mirror")
        ngx = Nginx(test_root, node_conf(pebble, test_root, redis, key, mirror), workers=1)
        with ngx.start():
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
    finally:
        if redis.proc is not None:
            try:
                os.kill(redis.proc.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        redis.stop()
