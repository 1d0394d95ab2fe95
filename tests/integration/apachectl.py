"""A private Apache httpd with mod_autotls for the integration tests:
writes httpd.conf (absolute paths) into a 0755 test root, starts
`apache2 -f CONF -DFOREGROUND`, and stops it by PID at teardown."""
import os
import re
import shutil
import signal
import socket
import subprocess

import procs
from util import build_dir, sanitizer_env, sanitizer_reports, wait_until

APACHE2 = shutil.which("apache2") or "/usr/sbin/apache2"
MODULES = "/usr/lib/apache2/modules"
BASE_MODULES = ["authz_core", "authz_host", "alias", "rewrite", "status", "ssl"]


def module_path():
    path = os.path.join(build_dir(), "apache", "mod_autotls.so")
    if not os.path.exists(path):
        raise RuntimeError(f"{path} is missing: run 'make apache' first")
    return path


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class Apache:
    """hosts: list of name lists, one <VirtualHost> with AutoTLS On each.
    global_extra / vhost_extra / http_extra: config text added at the top
    level, in every TLS host, and in the port-80 host; host_extra: {first
    name: text} added in that TLS host only."""

    addr = "127.0.0.1"      # where start() waits for the listeners


    def __init__(self, root, pebble, hosts, mpm="event", challenge=None, keys=None,
                 check_interval="1s", loglevel="info", global_extra="", vhost_extra="",
                 http_extra="", autotls=True, ca=True, accept_terms=True, ssl_engine=True,
                 http_port=None, tls_port=None, host_extra=None):
        self.root = root
        self.pebble = pebble
        self.hosts = hosts
        self.mpm = mpm
        self.conf_path = os.path.join(root, "httpd.conf")
        self.pid_path = os.path.join(root, "run", "httpd.pid")
        self.error_log = os.path.join(root, "error.log")
        self.store = os.path.join(root, "store")
        self.http_port = http_port or pebble.http_port
        self.tls_port = tls_port or pebble.tls_port
        self.proc = None
        self.host_extra = dict(host_extra or {})
        os.makedirs(os.path.join(root, "run"), exist_ok=True)
        os.makedirs(os.path.join(root, "htdocs"), exist_ok=True)
        with open(os.path.join(root, "htdocs", "index.html"), "w") as f:
            f.write("hello from autotls test\n")
        # Pebble's workdir is 0700: children (www-data) need their own copy
        self.ca_file = os.path.join(root, "pebble-ca.pem")
        shutil.copyfile(pebble.ca_file, self.ca_file)
        os.chmod(self.ca_file, 0o644)
        self.write_config(challenge=challenge, keys=keys, check_interval=check_interval,
                          loglevel=loglevel, global_extra=global_extra,
                          vhost_extra=vhost_extra, http_extra=http_extra, autotls=autotls,
                          ca=ca, accept_terms=accept_terms, ssl_engine=ssl_engine)

    def write_config(self, challenge=None, keys=None, check_interval="1s", loglevel="info",
                     global_extra="", vhost_extra="", http_extra="", autotls=True, ca=True,
                     accept_terms=True, ssl_engine=True):
        r = self.root
        lines = [
            f'ServerRoot "{r}"',
            f'DefaultRuntimeDir "{r}/run"',
            f'PidFile "{self.pid_path}"',
            f'ErrorLog "{self.error_log}"',
            f"LogLevel {loglevel}",
            f"LoadModule mpm_{self.mpm}_module {MODULES}/mod_mpm_{self.mpm}.so",
        ]
        lines += [f"LoadModule {m}_module {MODULES}/mod_{m}.so" for m in BASE_MODULES]
        lines += [f"LoadModule autotls_module {module_path()}"]
        if os.geteuid() == 0:
            lines += ["User www-data", "Group www-data"]
        lines += [
            "ServerName localhost",
            f'DocumentRoot "{r}/htdocs"',
            f"Listen 127.0.0.1:{self.http_port}",
            f"Listen 127.0.0.1:{self.tls_port}",
            # a steady number of children, so that tests can tell "same children"
            "StartServers 2",
            "<IfModule mpm_event_module>",
            "    ThreadsPerChild 25", "    MinSpareThreads 25", "    MaxSpareThreads 75",
            "</IfModule>",
            "<IfModule mpm_worker_module>",
            "    ThreadsPerChild 25", "    MinSpareThreads 25", "    MaxSpareThreads 75",
            "</IfModule>",
            "<IfModule mpm_prefork_module>",
            "    MinSpareServers 1", "    MaxSpareServers 4",
            "</IfModule>",
            "ExtendedStatus On",
        ]
        if ca:
            lines.append(f"AutoTLSCA {self.pebble.directory}")
        lines += [
            f'AutoTLSCACertificateFile "{self.ca_file}"',
            "AutoTLSContact admin@example.com",
            f"AutoTLSAcceptTerms {'On' if accept_terms else 'Off'}",
            f'AutoTLSStoreDir "{self.store}"',
            f"AutoTLSCheckInterval {check_interval}",
        ]
        if challenge:
            lines.append(f"AutoTLSChallenges {challenge}")
        if keys:
            lines.append(f"AutoTLSKeys {keys}")
        lines.append(global_extra)
        all_names = [n for names in self.hosts for n in names]
        lines += [
            f"<VirtualHost 127.0.0.1:{self.http_port}>",
            "    ServerName plain.test",
            f"    ServerAlias {' '.join(all_names)}" if all_names else "",
            f'    DocumentRoot "{r}/htdocs"',
            '    <Location "/autotls-status">',
            "        SetHandler autotls-status",
            "        Require ip 127.0.0.1",
            "    </Location>",
            '    <Location "/server-status">',
            "        SetHandler server-status",
            "        Require ip 127.0.0.1",
            "    </Location>",
            http_extra,
            "</VirtualHost>",
        ]
        for names in self.hosts:
            lines += [
                f"<VirtualHost 127.0.0.1:{self.tls_port}>",
                f"    ServerName {names[0]}",
                f"    ServerAlias {' '.join(names[1:])}" if len(names) > 1 else "",
                f'    DocumentRoot "{r}/htdocs"',
                f"    SSLEngine {'on' if ssl_engine else 'off'}",
                f"    AutoTLS {'On' if autotls else 'Off'}",
                vhost_extra,
                self.host_extra.get(names[0], ""),
                "</VirtualHost>",
            ]
        with open(self.conf_path, "w") as f:
            f.write("\n".join(lines) + "\n")

    # -- lifecycle ---------------------------------------------------------

    def configtest(self):
        return subprocess.run([APACHE2, "-f", self.conf_path, "-t"], capture_output=True,
                              text=True, timeout=60, env=self._env())

    def start(self, wait_tls=True):
        log = open(os.path.join(self.root, "stdout.log"), "ab")
        # own session: prefork signals its whole process group at shutdown
        self.proc = procs.spawn([APACHE2, "-f", self.conf_path, "-DFOREGROUND"],
                                stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, env=self._env())

        def up():
            if self.proc.poll() is not None:
                raise RuntimeError(f"apache2 exited with {self.proc.returncode}:\n"
                                   + self.log_text()[-3000:] + self.stdout_text()[-2000:])
            return (port_open(self.http_port, self.addr)
                    and (not wait_tls or port_open(self.tls_port, self.addr)))
        # it listens within tens of ms: poll from 20 ms up to the usual 0.2 s
        wait_until(up, timeout=60, what=f"Apache to listen on {self.addr}",
                   first_interval=0.02)
        return self

    @property
    def pid(self):
        return self.proc.pid

    def _env(self):
        return sanitizer_env(module_path(), self.root)

    def sanitizer_reports(self):
        return sanitizer_reports(self.root)

    def graceful(self):
        return subprocess.run([APACHE2, "-f", self.conf_path, "-k", "graceful"], env=self._env(),
                              capture_output=True, text=True, timeout=60)

    def stop(self):
        if self.proc is not None:
            procs.stop(self.proc, timeout=20)
            self.proc = None

    def children(self):
        """PIDs of the parent's child processes."""
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.pid)],
                             capture_output=True, text=True).stdout
        return [int(x) for x in out.split()]

    # -- logs --------------------------------------------------------------

    def log_text(self):
        try:
            with open(self.error_log, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def stdout_text(self):
        try:
            with open(os.path.join(self.root, "stdout.log"), errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def log_count(self, pattern):
        return len(re.findall(pattern, self.log_text()))

    def wait_log(self, pattern, timeout=60, count=1):
        try:
            return wait_until(lambda: self.log_count(pattern) >= count, timeout=timeout,
                              what=f"{pattern!r} in the error log")
        except AssertionError as e:
            raise AssertionError(f"{e}\nerror log tail:\n{self.log_text()[-4000:]}") from None

    def http_get(self, path, host="plain.test", tls=False, timeout=10):
        """(status, headers, body) over plain HTTP or HTTPS (no verification)."""
        import http.client
        import ssl
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            conn = http.client.HTTPSConnection("127.0.0.1", self.tls_port, context=ctx,
                                               timeout=timeout)
        else:
            conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=timeout)
        try:
            conn.request("GET", path, headers={"Host": host})
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read()
        finally:
            conn.close()

    def status_json(self):
        import json
        status, _, body = self.http_get("/autotls-status")
        assert status == 200, body
        return json.loads(body)


def stop_quietly(apache):
    try:
        apache.stop()
    except Exception:   # noqa: BLE001 - teardown must go on
        pid = getattr(apache.proc, "pid", None)
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
