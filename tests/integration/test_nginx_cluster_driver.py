"""nginx on a Redis store drives from its cache manager process (issue 12:
a Redis client that never blocks a worker).  On a cluster node the driver
(mirror, subscriber, scheduler) runs in nginx's cache manager process, a
helper that serves no connection: no serving worker holds a connection to
Redis, handshakes on every worker go on while Redis hangs, the master
respawns a killed cache manager which drives again, and a reload hands the
driver to the new cache manager without a second order."""
import contextlib
import os
import re
import signal
import socket
import ssl
import time

from nginxctl import Nginx, issuer_block, until_issued
from redisctl import Redis, key_file, store_spec, store_url
from test_nginx_redis import chown_nobody
from util import cert_info, run_cli, stays, wait_until

NAME = "drv.redis.test"
PREFIX = "d:"
UNRESPONSIVE = "Redis not answering"
# a handshake's whole budget while Redis is stopped: with the driver in the
# cache manager no worker ever waits on Redis, not even for the one call
# that meets the hang
HANDSHAKE_TIMEOUT = 3
# how long handshakes go on with Redis stopped, once it was marked
# unresponsive (the driver retries its calls meanwhile)
STOPPED_FOR = 6
DRIVES = "cache manager process {} drives issuance"


def node_conf(pebble, root, redis, key, mirror):
    body = issuer_block(pebble, root, name="web", challenge="http-01")
    body += (f"    autotls_store {store_url(redis)} key_file={key} prefix={PREFIX} "
             f"mirror={mirror} node=node-1;\n")
    body += "    autotls_check_interval 1s;\n"
    # reuseport: the kernel spreads connections over both workers
    body += f"""
    server {{
        listen 127.0.0.1:{pebble.http_port};
        listen 127.0.0.1:{pebble.tls_port} ssl reuseport;
        server_name {NAME};
        autotls web;
        location / {{ return 200 "pid=$pid\\n"; }}
    }}
"""
    return body


def fetch(port, timeout=HANDSHAKE_TIMEOUT):
    """One HTTPS request over a new connection: (serial of the served
    leaf, pid of the worker that answered)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
        with ctx.wrap_socket(raw, server_hostname=NAME) as tls:
            der = tls.getpeercert(binary_form=True)
            tls.sendall(f"GET / HTTP/1.0\r\nHost: {NAME}\r\n\r\n".encode())
            reply = b""
            while True:
                chunk = tls.recv(4096)
                if not chunk:
                    break
                reply += chunk
    body = reply.split(b"\r\n\r\n", 1)[1].decode()
    assert body.startswith("pid="), reply
    return cert_info(ssl.DER_cert_to_PEM_cert(der))["serial"], int(body[4:])


def sockets_to(port):
    """Inodes of the established TCP connections to 127.0.0.1:port."""
    inodes = set()
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            remote, state, inode = fields[2], fields[3], fields[9]
            if state == "01" and int(remote.split(":")[1], 16) == port:
                inodes.add(inode)
    return inodes


def holders(ngx, port):
    """{pid: number of connections to port} over nginx's master and its
    children; a process that holds none is there with 0."""
    inodes = sockets_to(port)
    held = {}
    for pid in [ngx.master] + [p for p, _ in ngx.children()]:
        fds = os.path.join("/proc", str(pid), "fd")
        try:
            links = [os.readlink(os.path.join(fds, fd)) for fd in os.listdir(fds)]
        except FileNotFoundError:
            continue        # exited meanwhile
        held[pid] = sum(1 for link in links
                        if link.startswith("socket:[") and link[8:-1] in inodes)
    return held


def only_cache_manager_on_redis(ngx, redis):
    """The cache manager holds the node's Redis connections, nobody else."""
    cms = ngx.cache_manager_pids()
    if len(cms) != 1:
        return False
    held = holders(ngx, redis.port)
    others = {pid: n for pid, n in held.items() if pid != cms[0] and n}
    assert not others, f"processes other than the cache manager {cms[0]} on Redis: {others}"
    return held.get(cms[0], 0) > 0


def new_driver(ngx, mark, old=None):
    """The cache manager (not old) that announced after mark that it drives."""
    def announced():
        cms = ngx.cache_manager_pids()
        if len(cms) != 1 or cms[0] == old:
            return None
        return cms[0] if DRIVES.format(cms[0]) in ngx.log()[mark:] else None
    return wait_until(announced, timeout=30, what="a cache manager driving")


def handshakes_while_stopped(ngx, port, mark, want):
    """Requests one after another, each within HANDSHAKE_TIMEOUT, until
    Redis was marked unresponsive, STOPPED_FOR seconds passed since and
    every worker answered some; each serves the certificate want.  The
    workers that answered after the mark."""
    workers = set(ngx.worker_pids())
    start = time.monotonic()
    marked_at = None
    seen = set()
    while marked_at is None or time.monotonic() - marked_at < STOPPED_FOR or seen != workers:
        try:
            serial, pid = fetch(port)
        except OSError as e:
            raise AssertionError(f"a request failed {time.monotonic() - start:.1f} s after "
                                 f"SIGSTOP ({e}):\n" + ngx.log()[mark:][-3000:]) from None
        assert serial == want
        if marked_at is None:
            if UNRESPONSIVE in ngx.log()[mark:]:
                marked_at = time.monotonic()
        else:
            seen.add(pid)
        assert time.monotonic() - start < 90, (
            f"Redis marked unresponsive: {marked_at is not None}, workers seen {seen} "
            f"of {workers}:\n" + ngx.log()[mark:][-3000:])
    return seen


def serves(port, want):
    serial, pid = fetch(port)
    assert serial == want, f"worker {pid} serves {serial}, not {want}"
    return True


def renew(redis, root, ngx, pebble, first):
    """A renewal asked through the CLI is ordered by the node and served."""
    own = key_file(os.path.join(root, "operator.key"))
    run_cli("renew", "--store", store_spec(redis, own, prefix=PREFIX), "--request", NAME)
    chain = until_issued(ngx, pebble, pebble.tls_port, NAME, not_serial=first)
    return cert_info(chain[0])["serial"]


@contextlib.contextmanager
def redis_node(pebble, root, workers, master=True):
    """A started nginx node on a Redis store of its own; both are stopped
    on the way out (Redis continued first, were it stopped)."""
    redis = Redis(os.path.join(root, "redis"))
    redis.start()
    try:
        key = key_file(os.path.join(root, "redis.key"))
        chown_nobody(key)
        mirror = os.path.join(root, "mirror")
        ngx = Nginx(root, node_conf(pebble, root, redis, key, mirror), workers=workers)
        if not master:
            with open(ngx.conf) as f:
                text = f.read()
            with open(ngx.conf, "w") as f:
                f.write("master_process off;\n" + text)
        with ngx.start():
            yield redis, ngx
    finally:
        redis.stop()     # continued first if stopped


def test_cluster_node_drives_from_cache_manager(pebble, test_root):
    with redis_node(pebble, test_root, workers=2) as (redis, ngx):
        # (a) obtained, by the cache manager
        until_issued(ngx, pebble, pebble.tls_port, NAME)
        first, _ = fetch(pebble.tls_port)
        driver = new_driver(ngx, 0)
        assert not re.search(r"autotls: worker \d+ drives", ngx.log())
        assert ngx.driver_pid() == driver

        # (b) only the cache manager talks to Redis
        wait_until(lambda: only_cache_manager_on_redis(ngx, redis), timeout=30,
                   what="the cache manager on Redis")
        stays(lambda: only_cache_manager_on_redis(ngx, redis), 2,
              what="no worker on Redis")

        # (c) Redis hangs: the driver is stuck on it, every worker serves
        mark = len(ngx.log())
        os.kill(redis.proc.pid, signal.SIGSTOP)
        try:
            assert handshakes_while_stopped(ngx, pebble.tls_port, mark, first) \
                == set(ngx.worker_pids())
        finally:
            os.kill(redis.proc.pid, signal.SIGCONT)
        wait_until(lambda: "Redis reachable again" in ngx.log()[mark:], timeout=60,
                   what="the node back on Redis")

        # (d) a killed cache manager is respawned and drives again
        mark = len(ngx.log())
        os.kill(driver, signal.SIGKILL)
        driver = new_driver(ngx, mark, old=driver)
        second = renew(redis, test_root, ngx, pebble, first)
        wait_until(lambda: only_cache_manager_on_redis(ngx, redis), timeout=30,
                   what="the new cache manager on Redis")

        # (e) a reload: the new cache manager drives, the old one is gone,
        # nothing is ordered again
        orders = pebble.orders()
        mark = len(ngx.log())
        ngx.reload()
        driver = new_driver(ngx, mark, old=driver)
        wait_until(lambda: only_cache_manager_on_redis(ngx, redis), timeout=30,
                   what="the reload's cache manager on Redis")
        stays(lambda: serves(pebble.tls_port, second), 3,
              what="the same certificate after the reload")
        assert pebble.orders() == orders
        renew(redis, test_root, ngx, pebble, second)


def test_single_process_drives_itself(pebble, test_root):
    """master_process off: there is no cache manager process, the single
    process drives (and serves) as before."""
    with redis_node(pebble, test_root, workers=0, master=False) as (redis, ngx):
        until_issued(ngx, pebble, pebble.tls_port, NAME)
        assert f"autotls: worker {ngx.master} drives issuance" in ngx.log()
        assert ngx.children() == []
        assert fetch(pebble.tls_port)[1] == ngx.master
        wait_until(lambda: holders(ngx, redis.port).get(ngx.master), timeout=30,
                   what="the single process on Redis")
