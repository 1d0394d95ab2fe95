"""A real redis-server for the cluster tests (issue 12): started on a free
loopback port with no persistence, stopped by PID, restartable on the same
port (an outage, a restart that lost everything), and read whole to check
that no private key is kept in clear.

    r = Redis(tmp_path / "redis", password="pw")
    r.start(); ...; r.stop(); r.start()    # same port, empty again
    spec = store_spec(r, key_file(tmp_path / "redis.key"), prefix="n:")
"""
import os
import signal
import subprocess

import procs
from util import free_port, wait_until

REDIS_SERVER = "/usr/bin/redis-server"
REDIS_CLI = "/usr/bin/redis-cli"


class Redis:
    """A redis-server on a free loopback port, no persistence, in a temp dir."""

    def __init__(self, workdir, password=None, port=None, tls=None):
        """tls: (certificate, key) files: TLS only, on self.port."""
        self.dir = str(workdir)
        os.makedirs(self.dir, exist_ok=True)
        self.port = port or free_port()
        self.password = password
        self.tls = tls
        self.proc = None

    def start(self, timeout=60):
        argv = [REDIS_SERVER, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", self.dir, "--logfile", os.path.join(self.dir, "redis.log")]
        if self.tls:
            argv += ["--port", "0", "--tls-port", str(self.port),
                     "--tls-cert-file", self.tls[0], "--tls-key-file", self.tls[1],
                     "--tls-auth-clients", "no"]
        else:
            argv += ["--port", str(self.port)]
        if self.password:
            argv += ["--requirepass", self.password]
        self.proc = procs.spawn(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def answers():
            assert self.proc.poll() is None, f"redis-server exited: {self.log()[-2000:]}"
            return self.cli("PING").stdout.strip() == b"PONG"
        wait_until(answers, timeout=timeout, what="redis-server answering PING")

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def log(self):
        try:
            with open(os.path.join(self.dir, "redis.log"), errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def stop(self):
        if self.proc is not None:
            # a test may have left it stopped (SIGSTOP: a hung Redis)
            try:
                os.kill(self.proc.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
            procs.stop(self.proc)
            self.proc = None

    def cli(self, *args):
        argv = [REDIS_CLI, "-h", "127.0.0.1", "-p", str(self.port), "--raw"]
        if self.tls:
            argv += ["--tls", "--cacert", self.tls[0]]
        if self.password:
            argv += ["-a", self.password, "--no-auth-warning"]
        words = [a if isinstance(a, (bytes, str)) else str(a) for a in args]
        return subprocess.run(argv + words, capture_output=True, timeout=30)

    def get(self, key):
        """A string value (bytes, without the newline redis-cli adds)."""
        out = self.cli("GET", key).stdout
        return out[:-1] if out.endswith(b"\n") else out

    def get_members(self, prefix="atls:"):
        """The cluster's member registry (node ids and expiries)."""
        return self.cli("ZRANGE", f"{prefix}{{/cluster}}:members", "0", "-1",
                        "WITHSCORES").stdout

    def keys(self, pattern="*"):
        return [k for k in self.cli("--scan", "--pattern", pattern).stdout.split(b"\n") if k]

    def values(self):
        """Every key and every value it holds (bytes), whatever its type."""
        out = {}
        for key in self.keys():
            kind = self.cli("TYPE", key).stdout.strip()
            if kind == b"string":
                out[key] = self.cli("GET", key).stdout
            elif kind == b"list":
                out[key] = self.cli("LRANGE", key, "0", "-1").stdout
            elif kind == b"set":
                out[key] = self.cli("SMEMBERS", key).stdout
            elif kind == b"zset":
                out[key] = self.cli("ZRANGE", key, "0", "-1", "WITHSCORES").stdout
            elif kind == b"hash":
                out[key] = self.cli("HGETALL", key).stdout
            else:
                out[key] = self.cli("DUMP", key).stdout
        return out

    def clear_text_keys(self):
        """The keys whose value holds a PEM private key in clear."""
        return [k for k, v in self.values().items() if b"PRIVATE KEY" in v]


def key_file(path, hexbyte="5a"):
    """The 256-bit key every node holds (64 hex digits), 0600."""
    fd = os.open(str(path), os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(hexbyte * 32 + "\n")
    return str(path)


def store_url(redis, password=None, db=0):
    auth = f":{password}@" if password else ""
    scheme = "rediss" if redis.tls else "redis"
    return f"{scheme}://{auth}127.0.0.1:{redis.port}/{db}"


def tls_pair(directory, name="redis"):
    """A self-signed certificate for 127.0.0.1 and its key, readable by
    unprivileged workers (the certificate is also the CA file)."""
    cert = os.path.join(directory, f"{name}.crt")
    key = os.path.join(directory, f"{name}.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert],
                   check=True, capture_output=True, timeout=60)
    os.chmod(cert, 0o644)
    return cert, key


def store_spec(redis, key, password=None, prefix="atls:", db=0):
    """The value of --store / autotls_store / AutoTLSStore for this Redis."""
    return f"{store_url(redis, password, db)} key_file={key} prefix={prefix}"
