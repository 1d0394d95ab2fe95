"""The Debian packages (make deb) installed with dpkg on this machine: the
distribution's own nginx and Apache load the module through the packaged
layout (modules-enabled link, a2enmod autotls), obtain a Pebble certificate
into the default stores under /var/lib and serve it; `dpkg -r` keeps the
stores, `dpkg --purge` leaves nothing behind.  The machine's previous state
is restored in a finally, even when the test fails.

Runs as root only (dpkg -i); the nginx and Apache it starts run from
temporary configurations on free loopback ports, never as the services."""
import glob
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess

import pytest

import procs
from apachectl import port_open
from nginxctl import issuer_block, server_block, until_issued
from util import build_dir, cert_info, verify_chain, wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGES = ["libnginx-mod-http-autotls", "libapache2-mod-autotls", "autotls"]
NGINX_LINK = "/etc/nginx/modules-enabled/50-mod-http-autotls.conf"
NGINX_SNIPPET = "/usr/share/nginx/modules-available/mod-http-autotls.conf"
NGINX_STORE = "/var/lib/nginx/autotls"
APACHE_STORE = "/var/lib/apache2/autotls"
MODS_ENABLED = "/etc/apache2/mods-enabled"
# what make deb's output depends on
SOURCES = ["common", "nginx-module", "apache-module", "tools", "debian", "docs",
           "scripts/deb.sh", "Makefile"]

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="installs packages with dpkg: run as root")


def run(*argv, check=True, timeout=300):
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


def atls_version():
    with open(os.path.join(ROOT, "common", "atls.h")) as f:
        return re.search(r'#define ATLS_VERSION\s+"([^"]+)"', f.read()).group(1)


def newest_source_mtime():
    newest = 0.0
    for top in SOURCES:
        path = os.path.join(ROOT, top)
        for dirpath, _, files in os.walk(path) if os.path.isdir(path) else [("", [], [path])]:
            for name in files:
                newest = max(newest, os.stat(os.path.join(dirpath, name)).st_mtime)
    return newest


@pytest.fixture(scope="session")
def debs():
    """The three packages of make deb, built once (again only when a source
    changed since the last build)."""
    out = os.path.join(build_dir(), "deb")
    version = atls_version()
    paths = [os.path.join(out, f"{p}_{version}_amd64.deb") for p in PACKAGES]
    fresh = all(os.path.exists(p) for p in paths) and \
        min(os.stat(p).st_mtime for p in paths) > newest_source_mtime()
    if not fresh:
        # a whole build of the tree (dpkg-buildpackage): over 300 s on a
        # 2-core machine shared with other builds and the other test worker
        run("make", "-C", ROOT, f"BUILD={build_dir()}", "deb", timeout=1200)
    return paths


def installed(package):
    proc = run("dpkg-query", "-W", "-f=${db:Status-Abbrev}", package, check=False)
    return proc.returncode == 0 and proc.stdout.strip() not in ("", "un")


def listing(directory):
    return sorted(os.listdir(directory)) if os.path.isdir(directory) else None


def state():
    return {
        "packages": {p: installed(p) for p in PACKAGES},
        "modules-enabled": listing("/etc/nginx/modules-enabled"),
        "mods-enabled": listing(MODS_ENABLED),
        NGINX_STORE: os.path.exists(NGINX_STORE),
        APACHE_STORE: os.path.exists(APACHE_STORE),
    }


def deb_paths(deb):
    """Every path a .deb installs (files, links and directories)."""
    out = run("dpkg-deb", "--contents", deb).stdout
    # "drwxr-xr-x root/root 0 2026-11-29 16:55 ./usr/bin/" (links: "... -> target")
    paths = [line.split()[5] for line in out.splitlines()]
    return [os.path.normpath("/" + p) for p in paths if p.strip("./")]


def assert_store_dir(path):
    st = os.stat(path)
    assert stat.S_IMODE(st.st_mode) == 0o700, f"{path} mode {oct(st.st_mode)}"
    assert pwd.getpwuid(st.st_uid).pw_name == "www-data", f"{path} owner"


def serves(server, pebble, name, store):
    """server obtains a Pebble certificate for name into store and serves it."""
    try:
        server.start()
        chain = until_issued(server, pebble, pebble.tls_port, name)
    finally:
        server.stop()
    assert verify_chain(chain, pebble.roots_pem()), f"chain for {name} does not verify"
    assert name in cert_info(chain[0])["names"]
    assert os.path.exists(os.path.join(store, "certs", name, "ec256.pem"))


class DistNginx:
    """/usr/sbin/nginx with its compiled-in prefix (so load_module's
    relative path is the package's), a private nginx.conf that includes the
    real /etc/nginx/modules-enabled, and a test site in its sites-enabled."""

    def __init__(self, root, site):
        self.root = root
        self.conf = os.path.join(root, "nginx.conf")
        self.error_log = os.path.join(root, "error.log")
        self.pidfile = os.path.join(root, "nginx.pid")
        self.master = None
        os.makedirs(os.path.join(root, "sites-enabled"))
        os.makedirs(os.path.join(root, "tmp"))
        with open(os.path.join(root, "sites-enabled", "autotls-test"), "w") as f:
            f.write(site)
        with open(self.conf, "w") as f:
            f.write(f"""user www-data;
worker_processes 1;
pid {self.pidfile};
error_log {self.error_log} info;
include /etc/nginx/modules-enabled/*.conf;
events {{ worker_connections 64; }}
http {{
    access_log {root}/access.log;
    client_body_temp_path {root}/tmp/body;
    proxy_temp_path {root}/tmp/proxy;
    fastcgi_temp_path {root}/tmp/fastcgi;
    uwsgi_temp_path {root}/tmp/uwsgi;
    scgi_temp_path {root}/tmp/scgi;
    include {root}/sites-enabled/*;
}}
""")

    def start(self):
        def pid():
            try:
                with open(self.pidfile) as f:
                    return int(f.read())
            except (OSError, ValueError):
                return None
        try:
            run("/usr/sbin/nginx", "-c", self.conf, "-e", self.error_log)
            self.master = wait_until(pid, timeout=20, what="nginx pid file")
            procs.track_pid(self.master)
        finally:
            # no pid file: the masters this configuration started are still
            # tracked, so that stop() and the teardown end them
            for master in self._masters():
                procs.track_pid(master)

    def _masters(self):
        """Live nginx masters running this configuration (their title names it)."""
        found = []
        for d in glob.glob("/proc/[0-9]*"):
            try:
                with open(os.path.join(d, "cmdline"), "rb") as f:
                    args = f.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if args.startswith("nginx: master process") and f" -c {self.conf} " in args + " ":
                found.append(int(os.path.basename(d)))
        return found

    @staticmethod
    def _alive(pid):
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] != "Z"
        except (OSError, IndexError):
            return False

    def stop(self):
        """SIGTERM to the master (and any other master of this configuration);
        SIGKILL to them and their workers when they do not stop in 20 s."""
        masters = set(self._masters())
        if self.master is not None:
            masters.add(self.master)
        for pid in masters:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        try:
            wait_until(lambda: not any(self._alive(p) for p in masters), timeout=20,
                       what="nginx to stop")
        except AssertionError:
            for pid in masters:
                out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)],
                                     capture_output=True, text=True).stdout
                for victim in [int(c) for c in out.split()] + [pid]:
                    try:
                        os.kill(victim, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        for pid in masters:
            procs.untrack_pid(pid)
        self.master = None

    def log(self):
        try:
            with open(self.error_log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""


class DistApache:
    """/usr/sbin/apache2 -f a private httpd.conf that includes the real
    /etc/apache2/mods-enabled (what a2enmod made), with Debian's envvars
    pointed at the test root."""

    def __init__(self, root, pebble, name):
        self.root = root
        self.conf = os.path.join(root, "apache2.conf")
        self.error_log = os.path.join(root, "error.log")
        self.proc = None
        self.tls_port = pebble.tls_port
        os.makedirs(os.path.join(root, "run"))
        ca = os.path.join(root, "pebble-ca.pem")
        shutil.copyfile(pebble.ca_file, ca)
        os.chmod(ca, 0o644)
        self.env = dict(os.environ, APACHE_RUN_USER="www-data", APACHE_RUN_GROUP="www-data",
                        APACHE_RUN_DIR=f"{root}/run", APACHE_PID_FILE=f"{root}/run/apache2.pid",
                        APACHE_LOCK_DIR=f"{root}/run", APACHE_LOG_DIR=root)
        with open(self.conf, "w") as f:
            f.write(f"""ServerRoot "{root}"
DefaultRuntimeDir "{root}/run"
PidFile "{root}/run/apache2.pid"
ErrorLog "{self.error_log}"
LogLevel info
User www-data
Group www-data
IncludeOptional /etc/apache2/mods-enabled/*.load
IncludeOptional /etc/apache2/mods-enabled/*.conf
ServerName localhost
Listen 127.0.0.1:{pebble.http_port}
Listen 127.0.0.1:{pebble.tls_port}
AutoTLSCA {pebble.directory}
AutoTLSCACertificateFile "{ca}"
AutoTLSContact admin@example.com
AutoTLSAcceptTerms On
AutoTLSCheckInterval 1s
<VirtualHost 127.0.0.1:{pebble.http_port}>
    ServerName {name}
</VirtualHost>
<VirtualHost 127.0.0.1:{pebble.tls_port}>
    ServerName {name}
    SSLEngine on
    AutoTLS On
</VirtualHost>
""")

    def start(self):
        run("/usr/sbin/apache2", "-f", self.conf, "-t")
        log = open(os.path.join(self.root, "stdout.log"), "ab")
        self.proc = procs.spawn(["/usr/sbin/apache2", "-f", self.conf, "-DFOREGROUND"],
                                stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, env=self.env)

        def up():
            assert self.proc.poll() is None, f"apache2 exited:\n{self.log()}"
            return port_open(self.tls_port)
        wait_until(up, timeout=30, what="apache2 to listen")

    def stop(self):
        if self.proc is not None:
            procs.stop(self.proc, timeout=20)
            self.proc = None

    def log(self):
        text = ""
        for path in (os.path.join(self.root, "stdout.log"), self.error_log):
            try:
                with open(path, errors="replace") as f:
                    text += f.read()
            except OSError:
                pass
        return text


def restore(before):
    """Back to the state recorded before the test: our packages purged, the
    modules a2enmod enabled disabled again, links the test made removed."""
    run("dpkg", "--purge", *PACKAGES, check=False)
    now = listing(MODS_ENABLED) or []
    added = {os.path.splitext(f)[0] for f in set(now) - set(before["mods-enabled"] or [])}
    for module in sorted(added):
        run("a2dismod", "-q", "-f", "-p", module, check=False)
    for path in glob.glob("/etc/nginx/modules-enabled/*mod-http-autotls.conf*"):
        os.unlink(path)
    for store, existed in ((NGINX_STORE, before[NGINX_STORE]),
                           (APACHE_STORE, before[APACHE_STORE])):
        if not existed:
            shutil.rmtree(store, ignore_errors=True)


def test_install_serve_remove_purge(debs, pebble, test_root):
    before = state()
    if any(before["packages"].values()) or before[NGINX_STORE] or before[APACHE_STORE]:
        pytest.fail(f"this machine already has autotls packages or stores ({before}); "
                    "the test would destroy them: purge them first")
    # what the packages would add, and which of it the machine already has
    new_paths = {p for deb in debs for p in deb_paths(deb) if not os.path.lexists(p)}
    assert "/usr/bin/autotls" in new_paths
    # one version, from common/atls.h; the module needs the running nginx's ABI
    for deb in debs:
        assert run("dpkg-deb", "-f", deb, "Version").stdout.strip() == atls_version()
    abi = re.search(r"nginx-abi-[^,\s]+",
                    run("dpkg-query", "-W", "-f=${Provides}", "nginx").stdout).group(0)
    assert abi in run("dpkg-deb", "-f", debs[0], "Depends").stdout.split(", ")
    try:
        run("dpkg", "-i", *debs)
        listed = {p for package in PACKAGES for p in run("dpkg", "-L", package).stdout.split()}
        assert new_paths <= listed, f"not registered with dpkg: {new_paths - listed}"

        # the packaged layout: module snippet linked, stores for www-data
        assert os.path.islink(NGINX_LINK)
        assert os.readlink(NGINX_LINK) == NGINX_SNIPPET
        with open(NGINX_SNIPPET) as f:
            assert "load_module modules/ngx_http_autotls_module.so;" in f.read()
        assert_store_dir(NGINX_STORE)
        assert_store_dir(APACHE_STORE)
        version = run("/usr/bin/autotls", "--version").stdout
        assert version.startswith(f"autotls {atls_version()} ")
        for page in ("autotls", "autotls-nginx", "autotls-apache"):
            assert run("man", "-w", page).stdout.strip().startswith("/usr/share/man/")

        # a2enmod autotls pulls in mod_ssl (and what ssl depends on)
        run("a2enmod", "-q", "autotls")
        enabled = listing(MODS_ENABLED)
        for link in ("autotls.load", "autotls.conf", "ssl.load", "ssl.conf"):
            assert link in enabled, f"{link} not enabled by a2enmod autotls: {enabled}"

        # nginx, through /etc/nginx/modules-enabled, default store
        name = "deb-nginx.example.com"
        site = issuer_block(pebble, test_root) + \
            server_block([name], pebble.http_port, pebble.tls_port)
        serves(DistNginx(os.path.join(test_root, "nginx"), site), pebble, name, NGINX_STORE)

        # Apache, through mods-enabled, default store
        name = "deb-apache.example.com"
        serves(DistApache(os.path.join(test_root, "apache"), pebble, name), pebble, name,
               APACHE_STORE)

        # the CLI reads what the servers wrote
        listed = run("/usr/bin/autotls", "list", "--store", APACHE_STORE).stdout
        assert name in listed

        # remove: programs gone, stores (data) kept, module no longer enabled
        run("dpkg", "-r", *PACKAGES)
        assert not os.path.exists("/usr/bin/autotls")
        assert not os.path.exists("/usr/lib/nginx/modules/ngx_http_autotls_module.so")
        assert not os.path.exists("/usr/lib/apache2/modules/mod_autotls.so")
        assert not os.path.exists(NGINX_LINK)
        # Debian's way: kept aside, so that a reinstall enables it again
        assert os.path.islink(NGINX_LINK + ".removed")
        assert "autotls.load" not in listing(MODS_ENABLED)
        assert os.path.exists(os.path.join(NGINX_STORE, "certs", "deb-nginx.example.com"))
        assert os.path.exists(os.path.join(APACHE_STORE, "certs", name))

        # purge: nothing of ours is left
        run("dpkg", "--purge", *PACKAGES)
        for package in PACKAGES:
            assert not installed(package)
        left = sorted(p for p in new_paths if os.path.lexists(p))
        assert not left, f"left after purge: {left}"
        assert not os.path.exists(NGINX_STORE)
        assert not os.path.exists(APACHE_STORE)
        assert listing("/etc/nginx/modules-enabled") == before["modules-enabled"]
        assert not [f for f in listing(MODS_ENABLED) if f.startswith("autotls.")]
    finally:
        restore(before)
    after = state()
    assert after == before, f"machine state not restored: {before} -> {after}"
