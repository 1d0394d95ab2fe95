"""A private nginx with the autotls module, for the integration tests.

Writes nginx.conf from the test's http{} body into a 0755 test root, runs
`nginx -p ROOT -c conf -e error.log` with the built module, and stops it by
the PID from its pid file (also at interpreter exit, through procs)."""
import os
import re
import shutil
import signal
import subprocess
import time

import procs
from util import build_dir, wait_until

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
# first poll of a start, reload or stop: they are over in tens of ms
FAST = 0.02

TEMPLATE = """\
load_module {module};
{user}
worker_processes {workers};
pid {root}/nginx.pid;
error_log {root}/error.log {level};
events {{ worker_connections 512; }}
http {{
    access_log {root}/access.log;
    client_body_temp_path {root}/tmp/body;
    proxy_temp_path {root}/tmp/proxy;
    fastcgi_temp_path {root}/tmp/fastcgi;
    uwsgi_temp_path {root}/tmp/uwsgi;
    scgi_temp_path {root}/tmp/scgi;
    default_type text/plain;
{body}
}}
"""


def module_path():
    path = os.path.join(build_dir(), "nginx", "ngx_http_autotls_module.so")
    if not os.path.exists(path):
        raise RuntimeError(f"{path} is missing: run 'make nginx' first")
    return path


def issuer_block(pebble, root, name="pebble", challenge="http-01", extra=""):
    """An autotls_issuer for a Pebble; its CA file is copied where the
    unprivileged workers can read it (Pebble's own workdir is 0700)."""
    ca = os.path.join(root, f"{name}-ca.pem")
    shutil.copyfile(pebble.ca_file, ca)
    os.chmod(ca, 0o644)
    return f"""
    autotls_issuer {name} {{
        directory      {pebble.directory};
        contact        admin@example.com;
        accept_terms   on;
        ca_certificate {ca};
        challenge      {challenge};
        {extra}
    }}
"""


class Nginx:
    def __init__(self, root, body, workers=2, level="info"):
        if not os.path.exists(NGINX):
            raise RuntimeError("nginx is not installed")
        self.root = root
        self.workers = workers
        self.level = level
        self.conf = os.path.join(root, "nginx.conf")
        self.pidfile = os.path.join(root, "nginx.pid")
        self.error_log = os.path.join(root, "error.log")
        self.store = os.path.join(root, "store")
        os.makedirs(os.path.join(root, "tmp"), exist_ok=True)
        os.chmod(os.path.join(root, "tmp"), 0o755)
        self.write(body)
        self.master = None

    def write(self, body):
        user = "user nobody nogroup;" if os.geteuid() == 0 else ""
        text = TEMPLATE.format(module=module_path(), user=user, workers=self.workers,
                               root=self.root, level=self.level, body=body)
        with open(self.conf, "w") as f:
            f.write(text)
        return text

    def conf_line(self, needle):
        """1-based line number of the first line of nginx.conf containing needle."""
        with open(self.conf) as f:
            for i, line in enumerate(f, 1):
                if needle in line:
                    return i
        raise AssertionError(f"{needle!r} not in {self.conf}")

    def _env(self):
        """A module built with sanitizers (make asan) needs their runtimes
        loaded first into the uninstrumented nginx; reports go to files
        that assert_clean_log() checks."""
        env = dict(os.environ)
        ldd = subprocess.run(["ldd", module_path()], capture_output=True, text=True).stdout
        libs = re.findall(r"(\S*lib(?:asan|ubsan)\.so\S*) => (\S+)", ldd)
        if libs:
            env["LD_PRELOAD"] = " ".join(path for _, path in libs)
            env["ASAN_OPTIONS"] = f"detect_leaks=0:log_path={self.root}/asan"
            env["UBSAN_OPTIONS"] = f"print_stacktrace=1:log_path={self.root}/ubsan"
        return env

    def _run(self, *args):
        return subprocess.run([NGINX, "-p", self.root + "/", "-c", self.conf,
                               "-e", self.error_log, *args],
                              capture_output=True, text=True, timeout=60, env=self._env())

    def test_config(self):
        return self._run("-t")

    def start(self):
        proc = self._run()
        if proc.returncode != 0:
            raise AssertionError(f"nginx failed to start: {proc.stderr}\n{self.log()[-3000:]}")
        self.master = wait_until(self._read_pid, timeout=60, what="nginx pid file",
                                 first_interval=FAST)
        procs.track_pid(self.master)
        try:
            wait_until(lambda: len(self.worker_pids()) == self.workers, timeout=60,
                       what="nginx workers", first_interval=FAST)
        except AssertionError as e:
            self.stop()     # never leave it holding the test's ports
            raise AssertionError(f"{e}\n{self.log()[-3000:]}")
        return self

    def _read_pid(self):
        try:
            with open(self.pidfile) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def signal(self, sig):
        os.kill(self.master, sig)

    def reload(self):
        """SIGHUP, then wait until the reload is over: a full set of new
        workers AND every old worker exited (old ones linger ~0.1 s after the
        new ones appear, still titled "worker process" at first)."""
        old = set(pid for pid, args in self.children() if "worker process" in args)
        self.signal(signal.SIGHUP)

        def done():
            children = self.children()
            pids = set(pid for pid, _ in children)
            new = set(self.worker_pids()) - old
            return len(new) == self.workers and not (old & pids)
        wait_until(done, timeout=30, what="new nginx workers and the old ones gone after reload",
                   first_interval=FAST)

    def stop(self):
        if self.master is None:
            return
        try:
            os.kill(self.master, signal.SIGTERM)
        except ProcessLookupError:
            pass

        def gone():
            try:
                os.kill(self.master, 0)
                return False
            except ProcessLookupError:
                return True
        try:
            wait_until(gone, timeout=20, what="nginx to stop", first_interval=FAST)
        except AssertionError:
            os.kill(self.master, signal.SIGKILL)
        procs.untrack_pid(self.master)
        self.master = None

    def children(self):
        out = subprocess.run(["ps", "-o", "pid=,args=", "--ppid", str(self.master)],
                             capture_output=True, text=True).stdout
        return [(int(l.split()[0]), l) for l in out.splitlines() if l.strip()]

    def worker_pids(self):
        """Live workers that are not shutting down."""
        return sorted(pid for pid, args in self.children()
                      if "worker process" in args and "is shutting down" not in args)

    def log(self):
        try:
            with open(self.error_log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def cache_manager_pids(self):
        """Live cache manager processes (a cluster node's driver runs there)."""
        return sorted(pid for pid, args in self.children()
                      if "cache manager process" in args)

    def driver_pid(self):
        """The process that last announced it drives issuance and is alive:
        a worker, or on a cluster node the cache manager process."""
        pids = re.findall(r"autotls: (?:worker|cache manager process) (\d+) drives issuance",
                          self.log())
        live = set(self.worker_pids()) | set(self.cache_manager_pids())
        for pid in reversed(pids):
            if int(pid) in live:
                return int(pid)
        return None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.stop()
        keep = os.environ.get("ATLS_KEEP_LOGS")
        if keep:
            os.makedirs(keep, exist_ok=True)
            name = os.environ.get("PYTEST_CURRENT_TEST", "nginx").split(" ")[0]
            shutil.copyfile(self.error_log, os.path.join(keep, re.sub(r"\W+", "_", name) + ".log"))
        if exc_type is None:
            self.assert_clean_log()

    def assert_clean_log(self):
        """No crash, no leaked socket, no critical error: the module must
        leave nginx's log as clean as nginx's own modules do."""
        bad = [l for l in self.log().splitlines()
               if re.search(r"\[(alert|crit|emerg)\]", l)
               and "exited on signal 9" not in l]
        assert not bad, "\n".join(bad[:20])
        reports = [f for f in os.listdir(self.root) if f.startswith(("asan.", "ubsan."))]
        for f in reports:
            with open(os.path.join(self.root, f), errors="replace") as fh:
                raise AssertionError(f"sanitizer report {f}:\n{fh.read()[:4000]}")


def server_block(names, http_port, tls_port, issuer="pebble", extra="", autotls_names=""):
    listen = f"listen 127.0.0.1:{http_port};\n        listen 127.0.0.1:{tls_port} ssl;"
    return f"""
    server {{
        {listen}
        server_name {' '.join(names)};
        autotls {issuer}{(' ' + autotls_names) if autotls_names else ''};
        {extra}
        location / {{ return 200 "hello $server_name\\n"; }}
    }}
"""


def status_server(port):
    return f"""
    server {{
        listen 127.0.0.1:{port};
        location = /autotls-status {{ autotls_status; allow 127.0.0.1; deny all; }}
    }}
"""


def until_issued(ngx, pebble, port, name, timeout=90, not_serial=None, extra_args=()):
    """Waits until name is served with a certificate from Pebble (not the
    fallback), optionally a different one than not_serial; returns the chain."""
    from util import served_chain, cert_info

    def issued():
        chain = served_chain(port, name, extra_args=extra_args)
        info = cert_info(chain[0])
        if info["self_signed"] or "Pebble" not in info["issuer"]:
            return None
        if not_serial and info["serial"] == not_serial:
            return None
        return chain
    try:
        return wait_until(issued, timeout=timeout, interval=0.5,
                          what=f"a Pebble certificate for {name}")
    except AssertionError as e:
        raise AssertionError(f"{e}\nerror.log tail:\n{ngx.log()[-4000:]}")
