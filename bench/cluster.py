#!/usr/bin/python3
"""The cluster benchmarks of issue 12: nginx nodes sharing one Redis store
(`autotls_store redis://... key_file=F prefix=P mirror=DIR node=ID;`).

  handshakes  one node on the Redis store against the same certificates on
              the filesystem store (fs, and fs_b: the A/A control), full TLS
              1.3 handshakes, random SNI over BENCH_CLUSTER_NAMES names,
              interleaved slices (benchmarking.md).  Target redis/fs >= 0.99.
  rotation    BENCH_CLUSTER_NODES (4) nodes, the last one Apache (mod_autotls
              built and BENCH_CLUSTER_APACHE not 0), under handshake load on the
              rotated name (one hsclient per node); `autotls renew` against
              Pebble deploys a new certificate into Redis (a forced renewal):
              the latency from the deploy (the certificate's generation
              bumped in Redis, polled every 2 ms) to the new serial on every
              node, and the handshakes that failed meanwhile (target 0).
              BENCH_ROTATIONS rotations.  Runs after "handshakes" (it
              serves the certificates that part put into Redis).
  cold        BENCH_CLUSTER_CERTS (10,000) certificates seeded into a fs
              store (names_seed), copied into Redis with `autotls migrate`:
              Redis memory per certificate (INFO used_memory delta / count),
              then a node with an empty mirror (every name in one server
              block, one certificate each): time to
              its first handshake, to every sampled name served with the
              seeded certificate, and to its mirror holding all of them.

usage: cluster.py BUILD_DIR NAMES_SEED KEY.pem CHAIN.pem CA_CN (cluster.sh
builds the seeder and the chain).  Knobs: BENCH_CLUSTER_PARTS ("handshakes
rotation cold"), BENCH_CLUSTER_NAMES (100), BENCH_CLUSTER_NODES (4),
BENCH_ROTATIONS (3), BENCH_CLUSTER_CERTS (10000), BENCH_CLUSTER_SAMPLE (50),
BENCH_ROTATION_CONC (2 connections per node), BENCH_COLD_TIMEOUT (2400 s: the
mirror fills at 5-10 certificates/s on a loaded 2-core machine),
BENCH_CLUSTER_APACHE_LOG (warn; debug: the Apache node's module lines),
BENCH_CYCLES, BENCH_SLICE,
BENCH_CONC, BENCH_KEEP=1.
"""
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time

import benchlib as B
from names_scale import seed
from apache_handshake import autotls_body
from nginx_handshake import conf_autotls
from redisctl import Redis, key_file, store_spec
from storeseed import worker_owner

ROTATED = B.NAME_FMT % 0


def load_line():
    """How busy the machine was: load averages and the cores."""
    la = os.getloadavg()
    return f"load average {la[0]:.1f} {la[1]:.1f} {la[2]:.1f} on {os.cpu_count()} cores"


class Ctx:
    """What every part shares: the build, the work dir, Redis, Pebble."""

    def __init__(self, build, root, redis, pebble, ca_file, owner):
        self.build, self.root, self.redis = build, root, redis
        self.pebble, self.ca_file, self.owner = pebble, ca_file, owner
        self.cli = os.path.join(build, "autotls")
        self.module = os.path.join(build, "nginx", "ngx_http_autotls_module.so")
        # the same key twice: the CLI wants its own or root's file, the
        # nginx driver reads it as the workers' user
        self.cli_key = key_file(os.path.join(root, "redis.key"))
        self.node_key = key_file(os.path.join(root, "redis-node.key"))
        self.apache_key = key_file(os.path.join(root, "redis-apache.key"))
        if owner:
            os.chown(self.node_key, *owner)
        apache_owner = worker_owner("apache")
        if apache_owner:
            os.chown(self.apache_key, *apache_owner)
        self.apache_module = os.path.join(build, "apache", "mod_autotls.so")
        self.exe = B.build_client(build)

    def spec(self, prefix, node=None, key=None):
        """autotls_store's value; with node, the node's own (empty) mirror."""
        if not node:
            return store_spec(self.redis, self.cli_key, prefix=prefix)
        return (store_spec(self.redis, key or self.node_key, prefix=prefix)
                + f" mirror={os.path.join(self.root, 'mirror-' + node)} node={node}")

    def run_cli(self, *args, timeout=900):
        p = subprocess.run([self.cli, *args], capture_output=True, text=True, timeout=timeout)
        if p.returncode != 0:
            raise RuntimeError(f"autotls {args[0]} exited {p.returncode}: "
                               f"{(p.stderr or p.stdout).strip()[-800:]}")
        return p.stdout

    def migrate(self, store, prefix):
        t0 = time.monotonic()
        out = self.run_cli("migrate", "--from", store, "--to", self.spec(prefix))
        if " 0 failed" not in out:
            raise RuntimeError(f"migrate {store}: {out.strip()[-400:]}")
        return time.monotonic() - t0

    def node(self, key, prefix, names):
        """An nginx node on the Redis store (the bench issuer, one server
        holding every name, one certificate each: a Redis store takes no
        dynamic home)."""
        port = B.free_port()
        body = conf_autotls(names, port, self.spec(prefix, node=key), self.pebble, self.ca_file)
        return B.nginx_server(self.root, key, body, port, names[0], self.module)


    def apache_node(self, key, prefix, names):
        """The same on Apache (event MPM, one child): one VirtualHost a name."""
        port = B.free_port()
        body = autotls_body(names, port, self.spec(prefix, node=key, key=self.apache_key),
                            self.pebble, self.ca_file)
        # BENCH_CLUSTER_APACHE_LOG: "debug" keeps the module's lines (when the
        # watchdog pulled, when the child loaded) for a rotation outlier
        level = os.environ.get("BENCH_CLUSTER_APACHE_LOG", "warn")
        conf = B.apache_conf(self.root, key, [port], body,
                             modules=(f"autotls_module={self.apache_module}",),
                             extra=f"LogLevel warn autotls:{level}")
        return B.ApacheServer(key, conf, port, self.root, names[0])


def redis_info(redis, field, section="memory"):
    for line in redis.cli("INFO", section).stdout.decode().splitlines():
        if line.startswith(field + ":"):
            return int(line.split(":", 1)[1])
    raise RuntimeError(f"redis INFO {section}: no {field}")


# ---- handshakes: Redis store vs fs store ---------------------------------------

def bench_handshakes(ctx, problems):
    k = int(os.environ.get("BENCH_CLUSTER_NAMES", "100"))
    cycles, secs, conc = B.knobs()
    ca = B.LocalCA()
    certs = B.write_certs(ca, os.path.join(ctx.root, "certs"), k)
    all_names = B.names(k)
    B.seed_stores(ctx.root, certs, [(k, all_names, "store_fs"), (k, all_names, "store_fs_b")],
                  ctx.pebble.directory, ctx.ca_file, ctx.owner)
    # migrated from a copy of its own: the CLI becomes the owner of a fs
    # store (the workers' user), who may not read the Redis key file
    B.seed_stores(ctx.root, certs, [(k, all_names, "store_src")], ctx.pebble.directory,
                  ctx.ca_file)
    took = ctx.migrate(os.path.join(ctx.root, "store_src"), "hs:")
    print(f"  {k} certificates: migrated into Redis in {took:.1f}s", flush=True)
    specs = []
    for key in ("fs", "fs_b"):
        p = B.free_port()
        body = conf_autotls(all_names, p, os.path.join(ctx.root, "store_" + key), ctx.pebble,
                            ctx.ca_file)
        specs.append((key, k, B.nginx_server(ctx.root, key, body, p, all_names[0], ctx.module)))
    specs.append(("redis", k, ctx.node("redis", "hs:", all_names)))

    def after_start(key, kk, srv):
        # a node starting on an empty mirror serves a name once it pulled it
        sample = random.sample(all_names, min(20, k))
        try:
            B.wait_for(lambda: all(B.handshake_serial(srv.port, n) == certs[n][4].serial_number
                                   for n in sample), 120, "every sampled name", interval=0.1)
        finally:
            B.check_serves(srv, certs, sample)
        return f"serving after {srv.start_s:.2f}s"
    started = B.start_each(specs, problems, after_start)
    try:
        if len(started) < 3:
            raise RuntimeError("not every configuration started")
        for _, _, srv in started:
            B.settle(srv, limit=60)
        print(f"  {load_line()} before measuring", flush=True)
        res = B.measure(started, ctx.exe, conc, cycles, secs)
        print(f"\nhandshakes: one nginx node, Redis store vs fs store, {k} names, random SNI, "
              f"full TLS 1.3 ECDSA P-256 (medians over {cycles} cycles of {secs}s slices; "
              f"ratios are per-cycle medians [min..max]); {load_line()}")
        rows = B.summarize(res, [("fs", ["fs", "fs_b", "redis"])])
        r = next(x for x in rows if x["key"] == "redis")
        aa = next(x for x in rows if x["key"] == "fs_b")
        print(f"  redis/fs rate ratio {r['ratio']:.3f} (target >= 0.99): "
              f"{'MET' if r['ratio'] >= 0.99 else 'NOT MET'}; CPU/handshake fs/redis "
              f"{r['cpu_ratio']:.3f}; A/A fs_b/fs {aa['ratio']:.3f}")
        B.note_unsaturated(rows)
    finally:
        for _, _, srv in started:
            srv.stop()


# ---- rotation across the nodes under load --------------------------------------

class RedisPoll:
    """GET of one key over one connection (RESP by hand: polled every 2 ms,
    too often for a redis-cli process per read)."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.f = self.s.makefile("rb")

    def get(self, key):
        k = key.encode()
        self.s.sendall(b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(k), k))
        head = self.f.readline()
        if head.startswith(b"$-1"):
            return None
        if not head.startswith(b"$"):
            raise RuntimeError(f"redis GET {key}: {head!r}")
        data = self.f.read(int(head[1:]) + 2)
        return data[:-2]

    def close(self):
        self.s.close()


class Load:
    """hsclient on one node in slices until stopped: handshakes and errors."""

    def __init__(self, ctx, srv, conc):
        self.client = B.Client(ctx.exe, 1, conc)   # SNI: the rotated name only
        self.srv, self.ok, self.err = srv, 0.0, 0.0
        self.stop_ev = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while not self.stop_ev.is_set():
            r = self.client.slice(self.srv.port, 0.25)
            self.ok += r["ok"]
            self.err += r["err"]

    def stop(self):
        self.stop_ev.set()
        self.t.join(timeout=10)
        self.client.close()


def watch(fn, until, out, key, interval):
    """Records in out[key] the monotonic time at which fn() first differs
    from None, polling until the deadline."""
    def run():
        while time.monotonic() < until:
            if fn():
                out[key] = time.monotonic()
                return
            time.sleep(interval)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def one_serial(nodes):
    """The serial every node serves for ROTATED, or None (they differ, or
    one does not answer)."""
    got = {B.handshake_serial(n.port, ROTATED) for n in nodes}
    return got.pop() if len(got) == 1 and None not in got else None


def rotate_once(ctx, nodes, prefix, timeout=120):
    """One forced renewal of ROTATED: (deploy to each node's new serial in
    ms {node: ms}, CLI seconds, new serial)."""
    old_serial = one_serial(nodes)
    if old_serial is None:
        raise RuntimeError("the nodes do not serve one serial before the renewal")
    gen_key = f"{prefix}{{{ROTATED}}}:gen"
    poll = RedisPoll(ctx.redis.port)
    gen0 = poll.get(gen_key)
    seen, new = {}, {}
    until = time.monotonic() + timeout

    def node_changed(n):
        def changed():
            s = B.handshake_serial(n.port, ROTATED, timeout=1.0)
            if s is not None and s != old_serial:
                new[n.key] = s
                return True
            return False
        return changed
    threads = [watch(lambda: poll.get(gen_key) != gen0, until, seen, "deploy", 0.002)]
    threads += [watch(node_changed(n), until, seen, n.key, 0.005) for n in nodes]
    t0 = time.monotonic()
    try:
        ctx.run_cli("renew", "--store", ctx.spec(prefix), "--http-port",
                    str(ctx.pebble.http_port), "--listen-address", "127.0.0.1", ROTATED,
                    timeout=timeout)
        cli_s = time.monotonic() - t0
        for t in threads:
            t.join(timeout=max(0.0, until - time.monotonic()) + 1)
    finally:
        poll.close()
    missing = [k for k in ["deploy"] + [n.key for n in nodes] if k not in seen]
    if missing:
        raise RuntimeError(f"rotation: no change seen within {timeout}s at {missing}")
    if len(set(new.values())) != 1:
        raise RuntimeError(f"rotation: the nodes serve different new serials: {new}")
    lat = {n.key: (seen[n.key] - seen["deploy"]) * 1000.0 for n in nodes}
    return lat, cli_s, next(iter(new.values()))


def bench_rotation(ctx, problems):
    n_nodes = int(os.environ.get("BENCH_CLUSTER_NODES", "4"))
    rotations = int(os.environ.get("BENCH_ROTATIONS", "3"))
    conc = int(os.environ.get("BENCH_ROTATION_CONC", "2"))
    k = int(os.environ.get("BENCH_CLUSTER_NAMES", "100"))
    names = B.names(k)
    nodes = [ctx.node(f"rot{i + 1}", "hs:", names) for i in range(n_nodes)]
    # the last node on Apache when the module is built (BENCH_CLUSTER_APACHE=0: all nginx)
    with_apache = (os.environ.get("BENCH_CLUSTER_APACHE", "1") == "1"
                   and os.path.exists(ctx.apache_module))
    if with_apache:
        nodes[-1] = ctx.apache_node(f"rot{n_nodes}_apache", "hs:", names)
    kinds = (f"{n_nodes - 1} nginx + 1 Apache" if with_apache else f"{n_nodes} nginx")
    started = B.start_each([(n.key, k, n) for n in nodes], problems,
                           lambda key, kk, srv: f"serving after {srv.start_s:.2f}s")
    loads = []
    try:
        if len(started) < n_nodes:
            raise RuntimeError("not every node started")
        print(f"  {kinds} nodes, {conc} connections of "
              f"handshake load on {ROTATED} per node; {load_line()}", flush=True)
        # every node pulled the certificate (a node's fallback has a serial of its own)
        B.wait_for(lambda: one_serial(nodes), 120,
                   f"every node serving one certificate for {ROTATED}", interval=0.2)
        loads = [Load(ctx, n, conc) for n in nodes]
        time.sleep(1.0)    # the load is running before the first renewal
        results = []
        for r in range(rotations):
            lat, cli_s, serial = rotate_once(ctx, nodes, "hs:")
            results.append(lat)
            print(f"    rotation {r + 1}: renew took {cli_s:.1f}s; deploy -> new serial "
                  f"{serial:x}: " + ", ".join(f"{k_}={v:.0f}" for k_, v in lat.items())
                  + f" ms (all: {max(lat.values()):.0f} ms)", flush=True)
        for ld in loads:
            ld.stop()
        ok, err = sum(ld.ok for ld in loads), sum(ld.err for ld in loads)
        loads = []
        worst = [max(lat.values()) for lat in results]
        print(f"\nrotation: {kinds} nodes, {rotations} forced renewals under load; "
              f"{load_line()}")
        print(f"  deploy -> new serial on every node: median {statistics.median(worst):.0f} ms, "
              f"max {max(worst):.0f} ms; per node median: " + ", ".join(
                  f"{n.key} {statistics.median(lat[n.key] for lat in results):.0f} ms"
                  for n in nodes))
        print(f"  handshakes during the rotations: {ok:.0f} completed, {err:.0f} failed "
              f"(target 0): {'MET' if err == 0 else 'NOT MET'}")
    finally:
        for ld in loads:
            ld.stop()
        for _, _, srv in started:
            srv.stop()


# ---- 10,000 certificates: Redis memory, cold start of a node ---------------------

def mirror_count(ctx, node):
    try:
        return len(os.listdir(os.path.join(ctx.root, "mirror-" + node, "certs")))
    except OSError:
        return 0


class Progress:
    """The cold node's mirror count, said once a minute with the fill rate
    and the load (the fill is I/O-bound: the machine's other work shows)."""

    def __init__(self, ctx, t0, every=60.0):
        self.ctx, self.t0, self.every = ctx, t0, every
        self.said_at, self.said_n = t0, 0

    def look(self):
        got = mirror_count(self.ctx, "cold")
        now = time.monotonic()
        if now - self.said_at >= self.every:
            rate = (got - self.said_n) / (now - self.said_at)
            print(f"    {now - self.t0:.0f}s: {got} certificates in the mirror "
                  f"({rate:.1f}/s over the last minute); {load_line()}", flush=True)
            self.said_at, self.said_n = now, got
        return got


def bench_cold(ctx, problems, seeder, key, chain, ca_cn):
    n = int(os.environ.get("BENCH_CLUSTER_CERTS", "10000"))
    n_sample = int(os.environ.get("BENCH_CLUSTER_SAMPLE", "50"))
    store = os.path.join(ctx.root, "store_cold")
    # root's (see bench_handshakes): only the CLI reads it
    took = seed(seeder, store, n, key, chain, ctx.pebble.directory, ctx.ca_file, None)
    print(f"  seeded {n} certificates into a fs store in {took:.1f}s", flush=True)
    mem0, keys0 = redis_info(ctx.redis, "used_memory"), ctx.redis.keys("cold:*")
    took = ctx.migrate(store, "cold:")
    mem1, keys1 = redis_info(ctx.redis, "used_memory"), ctx.redis.keys("cold:*")
    per = (mem1 - mem0) / n
    print(f"  migrated into Redis in {took:.1f}s: used_memory +{(mem1 - mem0) / 1048576:.1f} MB, "
          f"{(len(keys1) - len(keys0)) / n:.1f} keys per certificate", flush=True)

    names = B.names(n)
    sample = random.sample(names, min(n_sample, n))
    srv = ctx.node("cold", "cold:", names)
    port = srv.port
    limit = float(os.environ.get("BENCH_COLD_TIMEOUT", "2400"))
    print(f"  cold start of a node with an empty mirror; {load_line()}", flush=True)
    try:
        srv.start(timeout=limit)
        t0 = time.monotonic() - srv.start_s
        progress = Progress(ctx, t0)
        try:
            B.wait_for(lambda: progress.look() >= n, limit - srv.start_s,
                       f"the mirror to hold {n} certificates", interval=0.2)
            mirrored = f"{time.monotonic() - t0:.1f}s"
        except RuntimeError:
            got = mirror_count(ctx, "cold")
            mirrored = f"not reached: {got} after {time.monotonic() - t0:.0f}s"
            problems.append(f"cold: the mirror held {got} of {n} certificates after {limit:.0f}s")
        try:
            B.wait_issuer(port, sample, ca_cn, timeout=max(1.0, limit - (time.monotonic() - t0)))
            sampled = f"{time.monotonic() - t0:.1f}s"
        except RuntimeError:
            took = time.monotonic() - t0
            bad = [x for x in sample if B.served_issuer(port, x) != ca_cn]
            sampled = f"not reached: {len(bad)} not served after {took:.0f}s"
            problems.append(f"cold: {len(bad)} of {len(sample)} sampled names not served with "
                            f"their certificate after {took:.0f}s, e.g. {bad[:3]}")
        print(f"\ncold start: {n} certificates in Redis, one nginx node with an empty mirror; "
              f"{load_line()}")
        print(f"  after the spawn: first handshake {srv.start_s:.2f}s; mirror holding all {n}: "
              f"{mirrored}; {len(sample)} sampled names served with the seeded certificate: "
              f"{sampled}; worker RSS {srv.workers_rss_kb() / 1024:.1f} MB")
        print("  (the node lists every name in one server block, `autotls bench per_name;`: "
              "a Redis store takes no dynamic home)")
        print(f"  Redis memory per certificate {per:.0f} bytes (used_memory delta / {n}; "
              f"includes each name's registry entry)")
    finally:
        srv.stop()


PARTS = {"handshakes": bench_handshakes, "rotation": bench_rotation}


def main():
    build = os.path.abspath(sys.argv[1])
    seeder, key, chain, ca_cn = sys.argv[2:6]
    parts = os.environ.get("BENCH_CLUSTER_PARTS", "handshakes rotation cold").split()
    problems = []
    ctx = None
    root = B.workroot("/tmp/autotls-bench-cluster-")
    redis = Redis(os.path.join(root, "redis"))
    pebble = None
    print(f"cluster bench ({' '.join(parts)}): server core {B.SERVER_CORE}, client core "
          f"{B.CLIENT_CORE}; work dir {root}; {load_line()}", flush=True)
    if not os.path.exists(os.path.join(build, "nginx", "ngx_http_autotls_module.so")):
        return B.finish([f"{build}/nginx/ngx_http_autotls_module.so is missing (make nginx)"])
    try:
        redis.start()
        pebble, ca_file, owner = B.issuer_pebble(root, "nginx")
        ctx = Ctx(build, root, redis, pebble, ca_file, owner)
        for part in parts:
            print(f"\n== {part}", flush=True)
            try:
                if part == "cold":
                    bench_cold(ctx, problems, seeder, key, chain, ca_cn)
                else:
                    PARTS[part](ctx, problems)
            except Exception as e:   # noqa: BLE001 - say why, go on with the next part
                problems.append(f"{part}: {e}")
                print(f"  {part}: FAILED: {e}", flush=True)
    finally:
        redis.stop()
        B.cleanup([], pebble, root, keep=bool(problems))
    return B.finish(problems)


if __name__ == "__main__":
    sys.exit(main())
