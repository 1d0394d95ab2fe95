"""Several autotls nodes sharing one Redis store (issue 12), for the
test_cluster_*.py files.

A cluster is one redis-server (redisctl.Redis), one Pebble (the test's own:
the tests pause it and count its orders) and N nodes, nginx and Apache, each
listening on its own loopback address with the same ports (Pebble's
http-01 and tls-alpn-01 ports, so Pebble validates on any of them), each
with its own mirror directory and node id, all with one key file (0600).
challtestsrv's add-a decides which node Pebble's validation of a name
reaches.

Addresses: each test file takes its own block of 127.0.0.<base>..<base+N-1>
(ADDRESS_BASES); no other test file listens outside 127.0.0.1, 127.0.0.3
and 127.0.0.9, so files running at once on other xdist workers never meet,
whatever ports they were given.

    cl = Cluster(test_root, pebble, redis, NAMES, base=ADDRESS_BASES["issue"])
    seed_account(cl)             # the ACME account in Redis before any node
    with paused(pebble):          # leases taken, no order can reach Pebble
        cl.start()
        holders = cl.wait_holders(NAMES)
        cl.map_away_from(holders)     # every name to a node that did not order
    cl.wait_served(NAMES)             # {name: serial}, the same on every node
"""
import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time

from cryptography import x509

import procs
from apachectl import Apache, stop_quietly
from nginxctl import Nginx, issuer_block
from redisctl import REDIS_CLI, Redis, key_file, store_spec
from util import run_cli, wait_until

# one block of addresses per test file (see the module's docstring)
ADDRESS_BASES = {"issue": 31, "failover": 41, "redis_down": 51, "errors": 61,
                 "acl": 71, "status": 76, "names": 81,
                 "ondemand": 86, "lagpeer": 91}

NODE_CONTACT = "admin@example.com"      # nginxctl.issuer_block's and Apache's
ORDERING_RE = re.compile(r'autotls: ordering certificate "([^"]+)"')


# ---- what a TLS client sees from one node ------------------------------------

def served(addr, port, sni, timeout=5):
    """(serial hex, issued by Pebble) of the leaf addr:port serves for sni.
    Python's ssl, not openssl s_client: the rotation test polls four nodes
    every few milliseconds."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection((addr, port), timeout=timeout) as s:
        with ctx.wrap_socket(s, server_hostname=sni) as t:
            der = t.getpeercert(binary_form=True)
    cert = x509.load_der_x509_certificate(der)
    issuer = cert.issuer.rfc4514_string()
    h = format(cert.serial_number, "x")
    return ("0" + h if len(h) % 2 else h), ("Pebble" in issuer and cert.issuer != cert.subject)


# ---- Pebble held still ---------------------------------------------------------

@contextlib.contextmanager
def paused(pebble):
    """Pebble stopped (SIGSTOP) for the block: its sockets still accept, so a
    node's first ACME request waits (within its 60 s limit) instead of
    failing, and every order a node starts meanwhile holds its lease, logs
    "ordering certificate" and waits.  Resumed on the way out, whatever
    happened (a stopped Pebble would not even take the SIGTERM of its
    teardown)."""
    pid = pebble._pebble.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def add_a(pebble, name, addr):
    """Pebble's resolver (challtestsrv) answers addr for name from now on."""
    host = name if name.endswith(".") else name + "."
    pebble._chall_post("/add-a", {"host": host, "addresses": [addr]})


def seed_account(cluster, name="seed.cluster.test"):
    """Puts the nodes' ACME account into Redis before any node starts: the
    CLI obtains one certificate into a directory store (the account with
    it), everything but accounts/ is dropped and the rest migrated into
    Redis.  Without it the first order of each node creates the account and
    holds every other order of that node back until it exists, so the
    orders a test wants to see started (and their leases taken) would not
    be.  One order at Pebble: count orders from after this."""
    pebble = cluster.pebble
    store = os.path.join(cluster.root, "seed-store")
    run_cli("issue", "--directory", pebble.directory, "--ca-file", pebble.ca_file,
            "--store", store, "--contact", NODE_CONTACT, "--agree-tos",
            "--listen-address", "127.0.0.1", "--http-port", pebble.http_port, name)
    for entry in os.listdir(store):
        if entry != "accounts":
            path = os.path.join(store, entry)
            if os.path.isdir(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)
    run_cli("migrate", "--from", store, "--to", cluster.spec)


def start_holding(cluster):
    """Inside `with paused(pebble)`: starts every node, waits until each is
    in the member registry and every name's order was started; returns
    {name: node holding its order}.  No validation can happen before every
    node answers challenges (a node that joins after an order published
    its challenge is not waited for, and Pebble would ask it in vain)."""
    cluster.start()
    want = sorted(n.node_id for n in cluster.nodes)
    try:
        wait_until(lambda: cluster.members() == want, timeout=60,
                   what="every node in the member registry")
    except AssertionError as e:
        raise AssertionError(f"{e}: {cluster.members()}\n{cluster.logs()}") from None
    return cluster.wait_holders(cluster.names)


# ---- nodes ------------------------------------------------------------------------

class Node:
    """What the tests ask of any node, nginx or Apache."""
    kind = None
    key_user = None     # who must own the node's key file (None: as made)

    def __init__(self, cluster, index, addr, names):
        self.cluster, self.index, self.addr, self.names = cluster, index, addr, names
        self.node_id = f"{self.kind}{index}"
        self.root = os.path.join(cluster.root, self.node_id)
        os.makedirs(self.root)
        os.chmod(self.root, 0o755)
        self.mirror = os.path.join(self.root, "mirror")
        self.killed = False
        self.key = self._own_key(cluster.key)

    def _own_key(self, key):
        """The node's copy of the cluster's key file (every node of a real
        cluster has its own copy of the same key), 0600, owned by the user
        the node's driver runs as when the server runs as root."""
        path = os.path.join(self.root, "redis.key")
        shutil.copyfile(key, path)
        os.chmod(path, 0o600)
        if self.key_user and os.geteuid() == 0:
            pw = pwd.getpwnam(self.key_user)
            os.chown(path, pw.pw_uid, pw.pw_gid)
        return path

    def store_words(self):
        spec = self.cluster.spec.replace(f"key_file={self.cluster.key}", f"key_file={self.key}")
        return f"{spec} mirror={self.mirror} node={self.node_id}"

    def serve(self, name):
        return served(self.addr, self.cluster.tls_port, name)

    def ordered(self):
        """The certificate ids this node's log says it started ordering, in order."""
        return ORDERING_RE.findall(self.log())

    def challenge_answers(self, name):
        """How many http-01 validation requests for name this node answered
        with 200 (its access log: host, request line, status)."""
        try:
            with open(os.path.join(self.root, "chal.log"), errors="replace") as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            return 0
        n = 0
        for line in lines:
            parts = line.split(" ")
            if (len(parts) >= 3 and parts[0].split(":")[0].lower() == name
                    and "/.well-known/acme-challenge/" in line and parts[-1] == "200"):
                n += 1
        return n

    def kill9(self):
        """SIGKILL to the node's whole process group (nginx's master sets up
        its own session, Apache is started in one): no clean leave from the
        registry, no lease released."""
        pgid = self.pids()[0]
        os.killpg(pgid, signal.SIGKILL)
        self.killed = True

    def secrets(self, cert_id, key_type="ec256"):
        """Pieces (48 base64 characters each) of the private key in this
        node's mirror for cert_id: none of them may appear in Redis."""
        with open(os.path.join(self.mirror, "certs", cert_id, f"{key_type}.pem")) as f:
            pem = f.read()
        m = re.search(r"-----BEGIN [A-Z ]*PRIVATE KEY-----(.+?)-----END", pem, re.S)
        assert m, f"no private key in {self.node_id}'s mirror for {cert_id}"
        body = "".join(m.group(1).split())
        return [body[i:i + 48].encode() for i in range(0, len(body) - 47, 48)]

    def __repr__(self):
        return f"<{self.kind} {self.node_id} {self.addr}>"


class NginxNode(Node):
    kind = "nginx"
    key_user = "nobody"     # nginxctl's `user nobody nogroup;`: the driving worker reads it

    def __init__(self, cluster, index, addr, names, workers=2, extra=""):
        super().__init__(cluster, index, addr, names)
        self.workers, self.extra = workers, extra
        self.ngx = Nginx(self.root, self._body(), workers=workers)

    def _body(self):
        cl, addr = self.cluster, self.addr
        body = issuer_block(cl.pebble, self.root)
        body += f"    autotls_store {self.store_words()};\n"
        body += "    autotls_check_interval 1s;\n"
        body += f"    autotls_max_parallel {max(len(self.names), 1)};\n"
        body += "    log_format autotls_chal '$host \"$request\" $status';\n"
        body += f"    access_log {self.root}/chal.log autotls_chal;\n"
        body += self.extra
        for name in self.names:
            body += f"""
    server {{
        listen {addr}:{cl.http_port};
        listen {addr}:{cl.tls_port} ssl;
        server_name {name};
        autotls pebble;
        location / {{ return 200 "{self.node_id} $server_name\\n"; }}
    }}
"""
        return body

    def rewrite(self):
        """Writes the config again from the cluster's spec (a test changed it)."""
        self.ngx.write(self._body())

    def start(self):
        self.ngx.start()
        return self

    def stop(self):
        self.ngx.stop()

    def running(self):
        return self.ngx.master is not None

    def pids(self):
        return [self.ngx.master] + self.ngx.worker_pids()

    def kill9(self):
        super().kill9()
        procs.untrack_pid(self.ngx.master)
        self.ngx.master = None

    def log(self):
        return self.ngx.log()

    def assert_clean_log(self, ignore=None):
        """nginxctl's check; ignore: a regex of [alert] lines a test knows
        of (a bug reported, not hidden: the test says which)."""
        if ignore is None:
            self.ngx.assert_clean_log()
            return
        bad = [line for line in self.log().splitlines()
               if re.search(r"\[(alert|crit|emerg)\]", line)
               and "exited on signal 9" not in line and not re.search(ignore, line)]
        assert not bad, "\n".join(bad[:20])


class _ClusterApache(Apache):
    """apachectl.Apache on its own loopback address, with AutoTLSStore
    instead of AutoTLSStoreDir."""

    def __init__(self, root, pebble, hosts, addr, store_line, **kw):
        self.addr = addr
        self.store_line = store_line
        super().__init__(root, pebble, hosts, **kw)

    def write_config(self, **kw):
        super().write_config(**kw)
        with open(self.conf_path) as f:
            text = f.read()
        text = text.replace("Listen 127.0.0.1:", f"Listen {self.addr}:")
        text = text.replace("<VirtualHost 127.0.0.1:", f"<VirtualHost {self.addr}:")
        text = re.sub(r"(?m)^AutoTLSStoreDir .*$", self.store_line, text)
        with open(self.conf_path, "w") as f:
            f.write(text)


class ApacheNode(Node):
    kind = "apache"
    key_user = "www-data"   # Apache's watchdog runs the driver as User

    def __init__(self, cluster, index, addr, names, extra=""):
        super().__init__(cluster, index, addr, names)
        self.global_extra = (f"AutoTLSMaxParallel {max(len(names), 1)}\n"
                             'LogFormat "%{Host}i \\"%r\\" %>s" autotls_chal\n'
                             f'CustomLog "{self.root}/chal.log" autotls_chal\n{extra}')
        self.apache = _ClusterApache(self.root, cluster.pebble, [[n] for n in names], addr,
                                     f"AutoTLSStore {self.store_words()}",
                                     global_extra=self.global_extra)

    def rewrite(self):
        """Writes the config again from the cluster's spec (a test changed it)."""
        self.apache.store_line = f"AutoTLSStore {self.store_words()}"
        self.apache.write_config(global_extra=self.global_extra)

    def start(self):
        self.apache.start()
        return self

    def stop(self):
        stop_quietly(self.apache)

    def running(self):
        return self.apache.proc is not None and self.apache.proc.poll() is None

    def pids(self):
        return [self.apache.pid] + sorted(self.apache.children())

    def kill9(self):
        super().kill9()
        self.apache.proc.wait(timeout=30)
        procs.stop(self.apache.proc)
        self.apache.proc = None

    def log(self):
        return self.apache.log_text()

    def assert_clean_log(self, ignore=None):
        reports = self.apache.sanitizer_reports()
        assert not reports, f"sanitizer reports from Apache:\n{reports[:4000]}"
        assert "exit signal" not in self.log(), "an Apache child crashed"


# ---- a Redis that keeps its data over a restart -------------------------------------

class DurableRedis(Redis):
    """redisctl.Redis that writes an RDB snapshot when it is stopped
    (SIGTERM, as procs.stop sends, with a save point set) and reads it back
    at start (redis-server loads dump.rdb from its --dir whatever its save
    points): stopped and started again, it comes back with what it held
    (an outage, not a loss).  forget() removes the snapshot: the next start
    is empty (a restart without persistence)."""

    def start(self, timeout=60):
        super().start(timeout)
        out = self.cli("CONFIG", "SET", "save", "3600 1").stdout.strip()
        assert out == b"OK", out

    def forget(self):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self.dir, "dump.rdb"))


@contextlib.contextmanager
def running_cluster(pebble_factory, root, names, base, redis_class=Redis, password=None,
                    check_logs=True, **kw):
    """A fresh Pebble, a Redis (redis_class) and a Cluster over them, every
    one stopped by PID on the way out (the Cluster's node logs checked
    clean unless check_logs is False)."""
    pebble = pebble_factory()
    redis = redis_class(os.path.join(root, "redis"), password=password)
    cl = None
    try:
        redis.start()
        cl = Cluster(root, pebble, redis, names, base=base, password=password, **kw)
        yield cl
    finally:
        if cl is not None:
            cl.close(check_logs=check_logs)
        redis.stop()


# ---- the cluster ------------------------------------------------------------------

class Cluster:
    """n_nginx nginx nodes then n_apache Apache nodes on 127.0.0.<base>...,
    every one configured with every name (one certificate per name)."""

    def __init__(self, root, pebble, redis, names, base, n_nginx=3, n_apache=1,
                 prefix="atls:", password=None, node_extra="", log_ignore=None):
        self.root = root
        self.pebble = pebble
        self.redis = redis
        self.names = list(names)
        self.prefix = prefix
        self.log_ignore = log_ignore
        self.http_port = pebble.http_port
        self.tls_port = pebble.tls_port
        self.key = key_file(os.path.join(root, "redis.key"))
        self.spec = store_spec(redis, self.key, password=password, prefix=prefix)
        self.nodes = []
        for i in range(n_nginx + n_apache):
            addr = f"127.0.0.{base + i}"
            kind = NginxNode if i < n_nginx else ApacheNode
            self.nodes.append(kind(self, i + 1, addr, self.names, extra=node_extra))

    # -- lifecycle ------------------------------------------------------------------

    def start(self):
        """Starts every node at once (one thread each): under a paused Pebble
        the first order's TLS handshake with Pebble gives up after 10 s
        (the ACME client's connect timeout), and every node must have
        joined by then."""
        errors = []

        def start(node):
            try:
                node.start()
            except BaseException as e:     # noqa: BLE001 - re-raised below
                errors.append(e)
        threads = [threading.Thread(target=start, args=(n,)) for n in self.nodes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        return self

    def stop(self):
        for node in self.nodes:
            if node.running():
                node.stop()

    def close(self, check_logs=True):
        self.stop()
        if check_logs:
            for node in self.nodes:
                if not node.killed:
                    node.assert_clean_log(self.log_ignore)

    def restart_with(self, spec):
        """Every node stopped, then started again on the store value spec;
        node.log_from marks where each node's new log begins."""
        for node in self.nodes:
            node.stop()
        self.spec = spec
        for node in self.nodes:
            node.log_from = len(node.log())
            node.rewrite()
            node.start()

    def node(self, node_id):
        return next(n for n in self.nodes if n.node_id == node_id)

    def live(self):
        return [n for n in self.nodes if n.running()]

    NOISE = re.compile(r"client closed connection|\[ssl:info\]|AH01964|drives issuance")

    def logs(self, chars=4000):
        """The end of every node's log without the lines every handshake
        or election writes, for failure messages."""
        out = []
        for n in self.nodes:
            text = "\n".join(l for l in n.log().splitlines() if not self.NOISE.search(l))
            out.append(f"==== {n.node_id} ({n.addr})\n{text[-chars:]}\n")
        return "".join(out)

    # -- Redis ------------------------------------------------------------------------

    def members(self):
        """The node ids in Redis's member registry whose heartbeat is live."""
        now_ms = int(time.time() * 1000)
        out = self.redis.cli("ZRANGEBYSCORE", f"{self.prefix}{{/cluster}}:members",
                             str(now_ms), "+inf").stdout.decode()
        return sorted(x for x in out.split("\n") if x)

    def redis_gen(self, cert_id):
        out = self.redis.get(f"{self.prefix}{{{cert_id}}}:gen").strip()
        return int(out) if out else 0

    def request_renewal(self, name):
        return run_cli("renew", "--store", self.spec, "--request", name)

    # -- orders -----------------------------------------------------------------------

    def holders(self):
        """{certificate id: node that last logged "ordering certificate"}."""
        out = {}
        for node in self.nodes:
            for cert_id in node.ordered():
                out.setdefault(cert_id, []).append(node)
        return out

    def wait_holders(self, names, timeout=60):
        """Waits until every name's order was started by some node; returns
        {name: node}.  A name started by two nodes fails the test: the lease
        must let one only."""
        def all_started():
            h = self.holders()
            return h if all(n in h for n in names) else None
        try:
            h = wait_until(all_started, timeout=timeout, interval=0.2,
                           what=f"orders of {names} started")
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.logs()}") from None
        twice = {n: h[n] for n in names if len(h[n]) > 1}
        assert not twice, f"orders started on several nodes at once: {twice}"
        return {n: h[n][0] for n in names}

    def map_away_from(self, holders):
        """Points each name at the next node after the one that orders it, so
        that Pebble's validation is answered by a node that did not order.
        Returns {name: node answering}."""
        answering = {}
        for name, holder in holders.items():
            other = self.nodes[(self.nodes.index(holder) + 1) % len(self.nodes)]
            add_a(self.pebble, name, other.addr)
            answering[name] = other
        return answering

    def map_round_robin(self, names):
        for i, name in enumerate(names):
            add_a(self.pebble, name, self.nodes[i % len(self.nodes)].addr)

    # -- what is served ---------------------------------------------------------------

    def serials(self, name, nodes=None):
        """{node id: (serial, issued by Pebble)} for name on every (given) node."""
        return {n.node_id: n.serve(name) for n in (nodes or self.live())}

    def wait_served(self, names, timeout=120, nodes=None, not_serials=None):
        """Waits until every (given) node serves a Pebble certificate for every
        name, the same one on every node (and not the one in not_serials);
        returns {name: serial}."""
        not_serials = not_serials or {}
        out = {}

        def same_everywhere(name):
            got = self.serials(name, nodes)
            serials = {s for s, issued in got.values() if issued}
            if len(serials) == 1 and all(issued for _, issued in got.values()):
                serial = serials.pop()
                if serial != not_serials.get(name):
                    return serial
            return None
        for name in names:
            try:
                out[name] = wait_until(lambda: same_everywhere(name), timeout=timeout,
                                       interval=0.3, what=f"one Pebble certificate for {name}"
                                       " on every node")
            except AssertionError as e:
                raise AssertionError(f"{e}\n{self.serials(name, nodes)}\n{self.logs()}") \
                    from None
        return out


# ---- announcements, as a node receives them ----------------------------------------

class Announcements:
    """A `redis-cli SUBSCRIBE <prefix>gen` of its own, every message stamped
    with time.monotonic() when it arrived: the moment of a deploy, as the
    nodes learn it."""

    def __init__(self, redis, prefix="atls:"):
        argv = [REDIS_CLI, "-h", "127.0.0.1", "-p", str(redis.port), "--raw"]
        if redis.password:
            argv += ["-a", redis.password, "--no-auth-warning"]
        self.proc = procs.spawn(argv + ["SUBSCRIBE", f"{prefix}gen"],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0)
        self.lines = []         # (monotonic, line)
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        wait_until(lambda: any(l == "subscribe" for _, l in self.got()), timeout=30,
                   what="redis-cli subscribed")

    def _read(self):
        for raw in iter(self.proc.stdout.readline, b""):
            with self._lock:
                self.lines.append((time.monotonic(), raw.decode(errors="replace").strip()))

    def got(self):
        with self._lock:
            return list(self.lines)

    def announced(self, cert_id):
        """[(monotonic, generation)] of every "<id> <gen>" message for cert_id."""
        out = []
        for t, line in self.got():
            parts = line.split(" ")
            if len(parts) == 2 and parts[0] == cert_id and parts[1].isdigit():
                out.append((t, int(parts[1])))
        return out

    def close(self):
        procs.stop(self.proc)


def first_seen(nodes, name, old_serial, timeout=60, interval=0.01):
    """Polls every node in its own thread; returns {node id: (monotonic time
    it first served a serial other than old_serial, that serial)}."""
    out, errors = {}, []
    deadline = time.monotonic() + timeout

    def poll(node):
        while time.monotonic() < deadline:
            try:
                serial, issued = node.serve(name)
            except OSError as e:
                errors.append(f"{node.node_id}: {e!r}")     # a failed handshake counts
                serial, issued = None, False
            if issued and serial != old_serial:
                out[node.node_id] = (time.monotonic(), serial)
                return
            time.sleep(interval)
    threads = [threading.Thread(target=poll, args=(n,)) for n in nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out, errors

