"""Shared pieces of the autotls benchmarks: process tracking, test PKI,
a pre-seeded autotls store, CPU accounting from /proc, the hsclient driver
and the interleaved-slice method of /work/shared/reference/benchmarking.md.

Debian's python3 only (cryptography); every server started here is stopped
by PID at exit, on SIGTERM and on SIGINT."""
import atexit
import datetime
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

SERVER_CORE = int(os.environ.get("BENCH_SERVER_CORE", "0"))
CLIENT_CORE = int(os.environ.get("BENCH_CLIENT_CORE", "1"))
NAME_FMT = "n%d.bench.test"

# ---- processes ---------------------------------------------------------------

_procs = []      # Popen objects
_pids = set()    # daemons that fork (nginx masters)


def spawn(argv, **kw):
    kw.setdefault("stdin", subprocess.DEVNULL)
    p = subprocess.Popen(argv, **kw)
    _procs.append(p)
    return p


def track_pid(pid):
    _pids.add(pid)


def stop_pid(pid, timeout=20):
    """SIGTERM, wait, SIGKILL: only the PID we were given."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        _pids.discard(pid)
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            break
        time.sleep(0.05)
    else:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _pids.discard(pid)


def stop_proc(p, timeout=20):
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=timeout)
    if p in _procs:
        _procs.remove(p)


def pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def stop_all():
    for pid in list(_pids):
        stop_pid(pid)
    for p in list(_procs):
        try:
            stop_proc(p)
        except Exception:   # noqa: BLE001 - keep stopping the others
            pass


atexit.register(stop_all)


def _on_signal(signum, frame):
    stop_all()
    raise SystemExit(128 + signum)


signal.signal(signal.SIGTERM, _on_signal)
signal.signal(signal.SIGINT, _on_signal)

_given = set()


def free_port():
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _given:
            _given.add(port)
            return port
    raise RuntimeError("no free port")


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for(fn, timeout, what, interval=0.01):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(interval)
    raise RuntimeError(f"timed out after {timeout}s waiting for {what}")


def workroot(prefix):
    """A 0755 directory: nginx workers (nobody) and Apache children
    (www-data) must traverse it."""
    d = tempfile.mkdtemp(prefix=prefix)
    os.chmod(d, 0o755)
    return d


def children(pid):
    out = subprocess.run(["ps", "-o", "pid=,args=", "--ppid", str(pid)],
                         capture_output=True, text=True).stdout
    return [(int(l.split()[0]), l.strip()) for l in out.splitlines() if l.strip()]


# ---- /proc accounting --------------------------------------------------------

def cpu_ns(pid):
    """CPU time of every thread of pid, in ns (schedstat: ns resolution,
    unlike the 10 ms ticks of /proc/PID/stat)."""
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError):
                pass
    except OSError:
        pass
    return total


def core_times(core):
    """(busy, total) jiffies of one core from /proc/stat."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{core} "):
                v = [int(x) for x in line.split()[1:]]
                idle = v[3] + v[4]
                return sum(v) - idle, sum(v)
    raise RuntimeError(f"no cpu{core} in /proc/stat")


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def pin(pid, core, all_threads=True):
    args = ["taskset", "-p"] + (["-a"] if all_threads else []) + ["-c", str(core), str(pid)]
    subprocess.run(args, check=True, capture_output=True)


# ---- test PKI ----------------------------------------------------------------

class LocalCA:
    """A P-256 root + intermediate; leaves for bench names.  Both the static
    servers and the autotls store serve these same files, so the chains are
    identical and only the serving path differs."""

    def __init__(self):
        now = datetime.datetime.now(datetime.timezone.utc)
        self.now = now
        self.root_key = ec.generate_private_key(ec.SECP256R1())
        rname = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "autotls bench root")])
        self.root = self._ca_cert(rname, rname, self.root_key.public_key(), self.root_key)
        self.int_key = ec.generate_private_key(ec.SECP256R1())
        iname = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "autotls bench intermediate")])
        self.inter = self._ca_cert(iname, rname, self.int_key.public_key(), self.root_key)
        self.inter_pem = self.inter.public_bytes(serialization.Encoding.PEM).decode()

    def _ca_cert(self, subject, issuer, pub, signer):
        return (x509.CertificateBuilder()
                .subject_name(subject).issuer_name(issuer).public_key(pub)
                .serial_number(x509.random_serial_number())
                .not_valid_before(self.now - datetime.timedelta(hours=1))
                .not_valid_after(self.now + datetime.timedelta(days=30))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(signer, hashes.SHA256()))

    def leaf(self, name, ocsp_url=None):
        """(chain_pem leaf+intermediate, key_pem PKCS#8, cert object);
        ocsp_url: an OCSP responder in the Authority Information Access."""
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                   .issuer_name(self.inter.subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(self.now - datetime.timedelta(hours=1))
                   .not_valid_after(self.now + datetime.timedelta(days=30))
                   .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]),
                                  critical=False))
        if ocsp_url:
            builder = builder.add_extension(x509.AuthorityInformationAccess([
                x509.AccessDescription(x509.oid.AuthorityInformationAccessOID.OCSP,
                                       x509.UniformResourceIdentifier(ocsp_url))]),
                critical=False)
        cert = builder.sign(self.int_key, hashes.SHA256())
        chain = cert.public_bytes(serialization.Encoding.PEM).decode() + self.inter_pem
        kpem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption()).decode()
        return chain, kpem, cert


def names(k):
    return [NAME_FMT % i for i in range(k)]


def write_certs(ca, dirpath, k):
    """Writes NAME.crt / NAME.key for n0..n{k-1}; returns {name: (crt, key, chain_pem, key_pem, cert)}."""
    os.makedirs(dirpath, exist_ok=True)
    os.chmod(dirpath, 0o755)
    out = {}
    for n in names(k):
        chain, kpem, cert = ca.leaf(n)
        crt, key = os.path.join(dirpath, n + ".crt"), os.path.join(dirpath, n + ".key")
        with open(crt, "w") as f:
            f.write(chain)
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(kpem)
        out[n] = (crt, key, chain, kpem, cert)
    return out


def seed_store(store, certs, directory, ca_file, owner=None):
    """An autotls store (docs/store.md layout) holding every cert as a valid,
    not-yet-due ec256 certificate, so the server serves them without any
    issuance.  owner: (uid, gid) for the files (the server's worker user).
    The writing is tests/integration/storeseed.py's, shared with the tests."""
    import storeseed
    now = datetime.datetime.now(datetime.timezone.utc)
    issuer = storeseed.issuer_meta(directory, ca_file)
    storeseed.seed_store(store, [
        {"names": [name], "issuer": issuer, "certs": {"ec256": (kpem, chain)},
         "renew_at": now + datetime.timedelta(days=20)}
        for name, (_, _, chain, kpem, _) in certs.items()], owner=owner)


def seed_stores(root, certs, stores, directory, ca_file, owner=None):
    """seed_store() for each (k, names, store dir under root) of stores."""
    for _, nm, sd in stores:
        seed_store(os.path.join(root, sd), {n: certs[n] for n in nm}, directory, ca_file, owner)


def issuer_pebble(root, server):
    """A Pebble started only so that the autotls issuer exists (the seeded
    certificates are never ordered again): (pebble, its CA file copied
    where the workers can read it, the worker (uid, gid) for the store or
    None when not root).  server: "nginx" or "apache"."""
    import storeseed
    from pebblectl import Pebble
    pebble = Pebble().start()
    ca_file = os.path.join(root, "pebble-ca.pem")
    shutil.copyfile(pebble.ca_file, ca_file)
    os.chmod(ca_file, 0o644)
    return pebble, ca_file, storeseed.worker_owner(server)


def note_unsaturated(rows):
    """Says which configurations ran with the server < 95% busy: there the
    client or the machine was the limit, and CPU per handshake is the
    figure to compare."""
    sat = [r for r in rows if r["srv_busy"] < 95]
    if sat:
        print("  note: server < 95% busy in " + ", ".join(r["key"] for r in sat)
              + ": client- or machine-limited there; compare 'srv us/hs' "
              "(CPU per handshake) rather than rates")


def finish(problems):
    """The exit status of a bench part: 0, or 1 after listing problems."""
    if problems:
        print("\nproblems:\n  " + "\n  ".join(problems))
        return 1
    return 0


# ---- the client ----------------------------------------------------------------

def build_client(build):
    """bench/run.sh builds it; build here too when a part runs on its own."""
    exe = os.path.join(build, "hsclient")
    src = os.path.join(HERE, "hsclient.c")
    if not os.path.exists(exe) or os.path.getmtime(exe) < os.path.getmtime(src):
        subprocess.run(["cc", "-std=gnu11", "-O2", "-Wall", "-Wextra", "-o", exe, src,
                        "-lssl", "-lcrypto"], check=True)
    return exe


class Client:
    """One `hsclient -i` pinned to the client core; slice(port, secs)."""

    def __init__(self, exe, k, conc, extra=()):
        self.k = k
        self.p = spawn(["taskset", "-c", str(CLIENT_CORE), exe, "-i", "-k", str(k),
                        "-c", str(conc), "-f", NAME_FMT, *extra],
                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

    def slice(self, port, secs):
        self.p.stdin.write(f"{port} {secs}\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline()
        if not line:
            raise RuntimeError("hsclient exited")
        kv = dict(x.split("=", 1) for x in line.split())
        return {k: float(v) for k, v in kv.items()}

    def close(self):
        try:
            self.p.stdin.close()
        except OSError:
            pass
        stop_proc(self.p)


# ---- the interleaved method ----------------------------------------------------

def measure_slice(client, port, server_pids, secs):
    """One slice: handshakes/s, server CPU us per handshake, server core busy %,
    client core busy %."""
    c0 = sum(cpu_ns(p) for p in server_pids)
    b0, t0 = core_times(SERVER_CORE)
    cb0, ct0 = core_times(CLIENT_CORE)
    r = client.slice(port, secs)
    c1 = sum(cpu_ns(p) for p in server_pids)
    b1, t1 = core_times(SERVER_CORE)
    cb1, ct1 = core_times(CLIENT_CORE)
    ok = r["ok"]
    return {
        "rate": r["rate"],
        "ok": ok,
        "err": r["err"],
        "srv_us": (c1 - c0) / 1000.0 / ok if ok else float("nan"),
        "srv_busy": 100.0 * (c1 - c0) / 1e9 / r["secs"],
        "core_busy": 100.0 * (b1 - b0) / max(1, t1 - t0),
        "cli_busy": 100.0 * r["client_cpu_us"] / 1e6 / r["secs"],
        "cli_core_busy": 100.0 * (cb1 - cb0) / max(1, ct1 - ct0),
        "stapled": r.get("stapled", float("nan")),
    }


def interleave(targets, cycles, secs, warmup=True, log=print):
    """targets: list of dicts {key, client, port, pids}.  Each cycle visits
    every target once in random order.  Returns {key: [slice results]}, and
    per cycle index so per-cycle ratios can be formed."""
    res = {t["key"]: [] for t in targets}
    if warmup:
        for t in targets:
            measure_slice(t["client"], t["port"], t["pids"], min(secs, 0.5))
    for cyc in range(cycles):
        order = list(targets)
        random.shuffle(order)
        for t in order:
            r = measure_slice(t["client"], t["port"], t["pids"], secs)
            r["cycle"] = cyc
            res[t["key"]].append(r)
        log(f"  cycle {cyc + 1}/{cycles}: " + "  ".join(
            f"{t['key']}={res[t['key']][-1]['rate']:.0f}/s" for t in targets), flush=True)
    return res


def med(xs):
    xs = [x for x in xs if x == x]
    return statistics.median(xs) if xs else float("nan")


def ratio_stats(res, key, base, field="rate"):
    """Median, min and max of per-cycle ratios key/base for field."""
    a = {r["cycle"]: r[field] for r in res[base]}
    rs = [r[field] / a[r["cycle"]] for r in res[key] if a.get(r["cycle"])]
    rs = [x for x in rs if x == x]
    if not rs:
        return float("nan"), float("nan"), float("nan")
    return statistics.median(rs), min(rs), max(rs)


def summarize(res, groups, log=print):
    """groups: list of (base_key, [keys]) -> prints a table; returns rows."""
    rows = []
    hdr = (f"{'config':<22}{'hs/s':>8}{'srv us/hs':>11}{'srv busy%':>10}{'cli busy%':>10}"
           f"{'other%':>7}{'err':>6}  {'rate/base med [min..max]':<28}{'us/hs base/cfg med':>20}")
    log(hdr)
    for base, keys in groups:
        for k in keys:
            rr = res[k]
            rate = med([r["rate"] for r in rr])
            us = med([r["srv_us"] for r in rr])
            busy = med([r["srv_busy"] for r in rr])
            cli = med([r["cli_busy"] for r in rr])
            err = sum(r["err"] for r in rr)
            # load on the server core that is not this server: other processes
            other = med([max(0.0, r["core_busy"] - r["srv_busy"]) for r in rr])
            m, lo, hi = ratio_stats(res, k, base)
            # CPU efficiency ratio: base us/hs over this config's (>1 = cheaper)
            cm, _, _ = ratio_stats(res, base, k, "srv_us")
            row = dict(key=k, base=base, rate=rate, srv_us=us, srv_busy=busy, cli_busy=cli,
                       err=err, other=other, ratio=m, ratio_min=lo, ratio_max=hi, cpu_ratio=cm)
            rows.append(row)
            log(f"{k:<22}{rate:>8.0f}{us:>11.0f}{busy:>10.1f}{cli:>10.1f}{other:>7.1f}{err:>6.0f}  "
                f"{m:>6.3f} [{lo:.3f}..{hi:.3f}]{'':<9}{cm:>12.3f}")
    return rows


# ---- servers ---------------------------------------------------------------------

def peer_cert(port, sni, timeout=2.0, host="127.0.0.1"):
    """The leaf (x509 object) a client gets for sni, or None."""
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            with ctx.wrap_socket(s, server_hostname=sni) as t:
                der = t.getpeercert(binary_form=True)
    except OSError:
        return None
    return x509.load_der_x509_certificate(der)


def handshake_serial(port, sni, timeout=2.0, host="127.0.0.1"):
    """Serial (int) of the leaf a client gets for sni, or None."""
    cert = peer_cert(port, sni, timeout, host)
    return cert.serial_number if cert is not None else None


def served_issuer(port, sni, timeout=3.0, host="127.0.0.1"):
    """Issuer CN of the leaf served for sni, or None."""
    cert = peer_cert(port, sni, timeout, host)
    if cert is None:
        return None
    cns = cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
    return cns[0].value if cns else cert.issuer.rfc4514_string()


class Server:
    """A server process started in the foreground (nginx `daemon off`,
    `apache2 -DFOREGROUND`), pinned to the server core, so its PID is ours."""

    def __init__(self, key, argv, port, root, probe_sni):
        self.key, self.argv, self.port, self.root = key, argv, port, root
        self.probe_sni = probe_sni
        self.p = None
        self.start_s = None

    def start(self, timeout=180):
        log = open(os.path.join(self.root, f"{self.key}.out"), "ab")
        t0 = time.monotonic()
        self.p = spawn(["taskset", "-c", str(SERVER_CORE), *self.argv], stdout=log,
                       stderr=subprocess.STDOUT, start_new_session=True)

        def ready():
            if self.p.poll() is not None:
                raise RuntimeError(f"{self.key}: exited with {self.p.returncode}; "
                                   f"see {self.root}/{self.key}.out")
            return handshake_serial(self.port, self.probe_sni, timeout=1.0) is not None
        wait_for(ready, timeout, f"{self.key} to complete a handshake", interval=0.02)
        self.start_s = time.monotonic() - t0
        return self

    @property
    def pid(self):
        return self.p.pid

    def workers(self):
        return [pid for pid, _ in children(self.pid)]

    def workers_rss_kb(self):
        return sum(rss_kb(w) for w in self.workers())

    def log_tail(self, n=5):
        """The last n lines of the server's error log ("" when it has none)."""
        try:
            with open(os.path.join(self.root, f"{self.key}.error.log"),
                      errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def stop(self):
        if self.p is not None:
            stop_proc(self.p, timeout=30)
            self.p = None


def check_serves(srv, certs, sample):
    """Every name in sample gets exactly the leaf from certs (not a fallback)."""
    bad = []
    for n in sample:
        got = handshake_serial(srv.port, n)
        if got != certs[n][4].serial_number:
            bad.append(n)
    if bad:
        raise RuntimeError(f"{srv.key}: wrong or fallback certificate for {bad[:3]} "
                           f"({len(bad)}/{len(sample)} names)")


def wait_issuer(port, names, ca_cn, timeout=300, host="127.0.0.1"):
    """Seconds from now until every one of names is served with a leaf
    issued by ca_cn (not a fallback); raises at timeout."""
    t0 = time.monotonic()
    left = list(names)
    while left:
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"{host}:{port}: {len(left)} names still not served with the "
                               f"seeded certificate after {timeout}s")
        if served_issuer(port, left[0], host=host) == ca_cn:
            left.pop(0)
        else:
            time.sleep(0.02)
    return time.monotonic() - t0


def start_each(specs, problems, after_start, timeout=180):
    """Starts the (key, k, server) specs one at a time; after_start(key, k,
    srv) checks what it serves and returns the line to print.  A server
    that fails is reported in problems (with its error log's tail) and
    stopped; returns the specs that started."""
    started = []
    for key, k, srv in specs:
        print(f"  starting {key} ...", flush=True)
        try:
            srv.start(timeout=timeout)
            line = after_start(key, k, srv)
            started.append((key, k, srv))
            print(f"    {key}: {line}", flush=True)
        except Exception as e:   # noqa: BLE001 - report and go on without it
            problems.append(f"{key}: {e}")
            print(f"    {key}: FAILED: {e}", flush=True)
            tail = srv.log_tail()
            if tail:
                print("      " + tail.replace("\n", "\n      ").rstrip(), flush=True)
            srv.stop()
    return started


def warm_pass(exe, srv, k, conc, slice_s=1.0, limit=600.0, pids=None, must_finish=True):
    """Handshakes with SNI names in turn (each of the k names once) in
    slices of slice_s: the cold first pass.  At limit seconds it raises
    (must_finish) or stops there.  Returns rate (handshakes/s), secs, err,
    seen (names visited) and us (server CPU per handshake, of pids: the
    workers by default)."""
    cl = Client(exe, k, conc, extra=("-r",))
    pids = pids if pids is not None else srv.workers()
    ok = err = secs = 0.0
    c0 = sum(cpu_ns(p) for p in pids)
    try:
        while ok + err < k + conc:
            if secs >= limit:
                if must_finish:
                    raise RuntimeError(f"{srv.key}: warm-up pass did not finish in {limit:.0f} s")
                break
            r = cl.slice(srv.port, slice_s)
            ok += r["ok"]
            err += r["err"]
            secs += r["secs"]
    finally:
        cl.close()
    us = (sum(cpu_ns(p) for p in pids) - c0) / 1000.0 / ok if ok else float("nan")
    return dict(rate=ok / secs if secs else float("nan"), secs=secs, err=err,
                seen=min(k, int(ok + err)), us=us)


def measure(started, exe, conc, cycles, secs, pids=lambda srv: srv.workers()):
    """The interleaved cycles over every started (key, k, server), one
    client per name count k (random SNI over its k names)."""
    clients = {k: Client(exe, k, conc) for _, k, _ in started}
    targets = [dict(key=key, client=clients[k], port=srv.port, pids=pids(srv))
               for key, k, srv in started]
    print(f"  measuring {len(targets)} configurations ...", flush=True)
    try:
        return interleave(targets, cycles, secs)
    finally:
        for c in clients.values():
            c.close()


def groups_by_count(started, base_fmt="static_{k}"):
    """summarize()'s groups: one per name count k, base_fmt's key first (a
    group without its base is left out)."""
    out = []
    for k in sorted({k for _, k, _ in started}):
        base = base_fmt.format(k=k)
        ks = [key for key, kk, _ in started if kk == k]
        if base in ks:
            out.append((base, [base] + [x for x in ks if x != base]))
    return out


def knobs():
    """(cycles, slice seconds, concurrency) from BENCH_CYCLES, BENCH_SLICE,
    BENCH_CONC."""
    return (int(os.environ.get("BENCH_CYCLES", "8")), float(os.environ.get("BENCH_SLICE", "1.0")),
            int(os.environ.get("BENCH_CONC", "32")))


def cleanup(servers, pebble, root, keep=False):
    """Stops the servers and Pebble; removes the work dir unless BENCH_KEEP=1
    or keep."""
    for s in servers:
        s.stop()
    if pebble is not None:
        pebble.close()
    if os.environ.get("BENCH_KEEP") != "1" and not keep:
        shutil.rmtree(root, ignore_errors=True)


# ---- nginx -------------------------------------------------------------------------

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

NGINX_HEAD = """\
{load}
{user}
daemon off;
master_process on;
worker_processes 1;
worker_cpu_affinity {mask};
pid {root}/{key}.pid;
error_log {root}/{key}.error.log {level};
events {{ worker_connections 4096; }}
http {{
    access_log off;
    ssl_session_cache off;
    ssl_session_tickets off;
    ssl_protocols TLSv1.3;
    client_body_temp_path {root}/tmp/{key};
    proxy_temp_path {root}/tmp/{key};
    fastcgi_temp_path {root}/tmp/{key};
    uwsgi_temp_path {root}/tmp/{key};
    scgi_temp_path {root}/tmp/{key};
    server_names_hash_max_size 65536;
    server_names_hash_bucket_size 128;
    map_hash_max_size 65536;
    map_hash_bucket_size 128;
"""


def nginx_server(root, key, body, port, probe, module=None, level="warn"):
    """A private nginx (one worker on the server core, full handshakes
    only) serving body inside http {}; probe: the SNI start() waits on."""
    os.makedirs(os.path.join(root, "tmp", key), exist_ok=True)
    user = "user nobody nogroup;" if os.geteuid() == 0 else ""
    load = f"load_module {module};" if module else ""
    text = NGINX_HEAD.format(load=load, user=user, mask="1".rjust(SERVER_CORE + 1, "0"),
                             root=root, key=key, level=level) + body + "}\n"
    conf = os.path.join(root, f"{key}.conf")
    with open(conf, "w") as f:
        f.write(text)
    return Server(key, [NGINX, "-p", root + "/", "-c", conf, "-e",
                        os.path.join(root, f"{key}.error.log")], port, root, probe)


def settle(srv, limit=600.0):
    """Seconds until the server's workers stay idle (< 3% of a core over
    1 s): autotls's first driver scan and background cache fill are done."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        c0 = sum(cpu_ns(w) for w in srv.workers())
        time.sleep(1.0)
        if sum(cpu_ns(w) for w in srv.workers()) - c0 < 0.03e9:
            return time.monotonic() - t0
    return float("nan")


# ---- Apache ------------------------------------------------------------------------

APACHE2 = shutil.which("apache2") or "/usr/sbin/apache2"
APACHE_MODULES = "/usr/lib/apache2/modules"


def apache_conf(root, key, listen_ports, body, modules=(), mpm="event", threads=32,
                extra=""):
    """httpd.conf text for a private instance: one child process (event MPM,
    ServerLimit 1) so that one process does all the TLS work."""
    run = os.path.join(root, f"run_{key}")
    os.makedirs(run, exist_ok=True)
    os.chmod(run, 0o755)
    lines = [
        f'ServerRoot "{root}"',
        f'DefaultRuntimeDir "{run}"',
        f'PidFile "{run}/httpd.pid"',
        f'ErrorLog "{root}/{key}.error.log"',
        "LogLevel warn",
        f"LoadModule mpm_{mpm}_module {APACHE_MODULES}/mod_mpm_{mpm}.so",
    ]
    for m in ("authz_core", "authz_host", "ssl", "socache_shmcb", *modules):
        if m.startswith("/") or "=" in m:
            name, path = m.split("=", 1)
            lines.append(f"LoadModule {name} {path}")
        else:
            lines.append(f"LoadModule {m}_module {APACHE_MODULES}/mod_{m}.so")
    if os.geteuid() == 0:
        lines += ["User www-data", "Group www-data"]
    lines += ["ServerName localhost", f'DocumentRoot "{root}"']
    lines += [f"Listen 127.0.0.1:{p}" for p in listen_ports]
    if mpm == "event":
        lines += ["StartServers 1", "ServerLimit 1", f"ThreadsPerChild {threads}",
                  f"MaxRequestWorkers {threads}", "MinSpareThreads 1",
                  f"MaxSpareThreads {threads}", "MaxConnectionsPerChild 0"]
    else:
        lines += ["StartServers 1", "MinSpareServers 1", "MaxSpareServers 1", "ServerLimit 1",
                  "MaxRequestWorkers 1", "MaxConnectionsPerChild 0"]
    lines += ["SSLProtocol -all +TLSv1.3", "SSLSessionTickets off", "SSLSessionCache none",
              extra, body]
    path = os.path.join(root, f"{key}.conf")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


class ApacheServer(Server):
    def __init__(self, key, conf, port, root, probe_sni):
        super().__init__(key, [APACHE2, "-f", conf, "-DFOREGROUND"], port, root, probe_sni)
        self.conf = conf

    def cpu_pids(self):
        """The parent and its children (all threads are summed)."""
        return [self.pid] + self.workers()

    def graceful(self):
        return subprocess.run([APACHE2, "-f", self.conf, "-k", "graceful"],
                              capture_output=True, text=True, timeout=60)
