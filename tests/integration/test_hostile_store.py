"""The store is a privilege boundary: the worker user owns it and may plant
anything in it while root runs the CLI, starts and reloads the nginx master
or starts and restarts the Apache parent.

Each test plays the hostile worker with `runuser -u WORKER --`: links to a
root-owned sentinel tree in place of store directories and files (and a
loop exchanging a directory with such a link while root walks the store),
FIFOs where files should be, set-id bits, and a hook and CA settings
planted in meta.json.  Afterwards nothing outside the store changed (owner,
mode, content), nothing ran as root (a planted hook records `id -u`), and
the server still completes a TLS handshake with its Pebble certificate."""
import json
import os
import pwd
import shutil
import subprocess
import sys

import pytest

from apache_helpers import apache_factory, wait_issued  # noqa: F401
from clihelp import cert_file, issue, stored_meta, write_dns_hook
from nginxctl import Nginx, issuer_block, server_block, until_issued
from util import run_cli, wait_until

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="plays root against a worker")

NGINX_WORKER = "nobody"
APACHE_WORKER = "www-data"


# ---- the hostile worker -----------------------------------------------------------

def as_worker(user, script, check=True):
    """Runs a shell script as the worker user."""
    proc = subprocess.run(["runuser", "-u", user, "--", "sh", "-ec", script],
                          capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise AssertionError(f"as {user}: {script}\n{proc.stderr}")
    return proc


def hand_to(path, user):
    """chown -R path to user, as the nginx master or Apache parent would."""
    pw = pwd.getpwnam(user)
    for top, dirs, files in os.walk(path):
        for n in [top] + [os.path.join(top, x) for x in dirs + files]:
            os.lchown(n, pw.pw_uid, pw.pw_gid)


def make_sentinel(root):
    """A root-owned tree outside the store that must never change."""
    top = os.path.join(root, "sentinel")
    os.makedirs(os.path.join(top, "sites-enabled"))
    for rel, mode in (("file", 0o644), ("secret", 0o600), ("sites-enabled/site", 0o644)):
        with open(os.path.join(top, rel), "w") as f:
            f.write(f"sentinel {rel}\n")
        os.chmod(os.path.join(top, rel), mode)
    os.chmod(top, 0o755)
    return top


def snapshot(top):
    """{path: (mode, uid, gid, content)} below top, links not followed."""
    out = {}
    for dirpath, dirs, files in os.walk(top):
        for p in [dirpath] + [os.path.join(dirpath, n) for n in dirs + files]:
            st = os.lstat(p)
            content = None
            if os.path.isfile(p) and not os.path.islink(p):
                with open(p, "rb") as f:
                    content = f.read()
            out[p] = (st.st_mode, st.st_uid, st.st_gid, content)
    return out


def plant_hook(root, user, real_hook=None):
    """A hook the worker writes: records the uid it runs as, then (when
    given) runs the real dns-01 hook.  Returns (hook path, uid dir)."""
    out = os.path.join(root, "hook-out")
    os.makedirs(out, exist_ok=True)
    os.chmod(out, 0o777)
    home = os.path.join(root, "worker-files")
    os.makedirs(home, exist_ok=True)
    hand_to(home, user)
    hook = os.path.join(home, "hook.sh")
    then = f'exec {real_hook} "$@"' if real_hook else "exit 0"
    as_worker(user, f"""cat > {hook} <<'EOF'
#!/bin/sh
id -u > {out}/uid.$$
{then}
EOF
chmod 755 {hook}""")
    return hook, out


def hook_uids(out):
    uids = []
    for n in os.listdir(out):
        if n.startswith("uid."):
            with open(os.path.join(out, n)) as f:
                uids.append(int(f.read().strip()))
    return uids


def assert_never_root(out, user):
    uids = hook_uids(out)
    assert 0 not in uids, "a planted hook ran as root"
    assert all(u == pwd.getpwnam(user).pw_uid for u in uids), uids


SWAPPER = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
certs, sentinel, stop, pairs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
swap = []
for i in range(pairs):
    d, l = (os.path.join(certs, f"swap{i}").encode(), os.path.join(certs, f"swaplink{i}").encode())
    os.mkdir(d)
    with open(os.path.join(d, b"file"), "w") as f:
        f.write("x")
    os.symlink(sentinel, l)
    swap.append((os.open(d, os.O_RDONLY), d, l))
n = 0
while not os.path.exists(stop):
    for fd, d, l in swap:
        os.fchmod(fd, 0o777)    # too open: prepare wants to fix it
        libc.renameat2(-100, d, -100, l, 2)    # RENAME_EXCHANGE
    n += 1
print(n)
"""


class Swapper:
    """The worker exchanges store/certs/swapN (directories it keeps 0777)
    with store/certs/swaplinkN (links to the sentinel) in a loop: many
    pairs, so that each walk of the store meets many of them."""

    def __init__(self, root, store, sentinel, user, pairs=64):
        self.stop_file = os.path.join(root, "swapper.stop")
        script = os.path.join(root, "swapper.py")
        with open(script, "w") as f:
            f.write(SWAPPER)
        # the worker's identity set in the child itself (not through runuser),
        # so that kill() reaches the loop and not a parent waiting for it
        pw = pwd.getpwnam(user)
        self.proc = subprocess.Popen([sys.executable, script, os.path.join(store, "certs"),
                                      sentinel, self.stop_file, str(pairs)],
                                     user=pw.pw_uid, group=pw.pw_gid, extra_groups=[],
                                     stdout=subprocess.PIPE, text=True)
        # running once every pair exists
        wait_until(lambda: os.path.islink(os.path.join(store, "certs", f"swaplink{pairs - 1}"))
                   or os.path.islink(os.path.join(store, "certs", f"swap{pairs - 1}")),
                   timeout=20, what="the swap loop to start")

    def stop(self):
        with open(self.stop_file, "w"):
            pass
        try:
            out, _ = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        assert self.proc.returncode == 0
        return int(out.strip() or 0)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def swappers():
    made = []
    yield made
    for s in made:
        s.kill()


def plant_common(store, sentinel, cert_id, user):
    """Links to the sentinel for a store directory and a file, FIFOs where
    root reads and locks, a set-id file."""
    cdir = os.path.join(store, "certs", cert_id)
    as_worker(user, f"""
rm -rf {store}/requests; ln -s {sentinel}/sites-enabled {store}/requests
ln -s {sentinel}/file {cdir}/linked.pem
ln -s {sentinel} {cdir}/linkdir
rm -f {store}/generation; mkfifo {store}/generation
mkfifo {store}/locks/planted.lock
echo x > {cdir}/suid; chmod 6777 {cdir}/suid
""")
    return os.path.join(cdir, "suid")


def rewrite_meta(store, cert_id, user, **changes):
    """The worker rewrites a certificate's meta.json (issuer fields, job state)."""
    path = os.path.join(store, "certs", cert_id, "meta.json")
    meta = stored_meta(store, cert_id)
    for k, v in changes.items():
        if k in ("renew_at", "next_attempt"):
            meta[k] = v
        else:
            meta["issuer"][k] = v
    as_worker(user, f"cat > {path}.new <<'EOF'\n{json.dumps(meta)}\nEOF\n"
                    f"mv {path}.new {path}")


def setid_bits(path):
    return os.lstat(path).st_mode & 0o7000


# ---- the CLI as root on a worker's store -------------------------------------------

def cli_store(pebble, root, name, user=NGINX_WORKER):
    """A store holding a certificate for name, handed to user; the CA file
    copied where that user can read it."""
    store = os.path.join(root, "store")
    ca = os.path.join(root, "pebble-ca.pem")
    shutil.copyfile(pebble.ca_file, ca)
    os.chmod(ca, 0o644)
    issue(pebble, store, name)
    hand_to(store, user)
    return store, ca


def renew_args(pebble, store, ca, name, *extra):
    return ["renew", "--store", store, "--directory", pebble.directory, "--ca-file", ca,
            "--http-port", pebble.http_port, "--listen-address", "127.0.0.1", *extra, name]


def test_cli_links_fifos_setid(pebble, test_root):
    name = "links.hostile.test"
    store, ca = cli_store(pebble, test_root, name)
    sentinel = make_sentinel(test_root)
    before = snapshot(sentinel)
    plant_common(store, sentinel, name, NGINX_WORKER)
    meta_path = os.path.join(store, "certs", name, "meta.json")
    as_worker(NGINX_WORKER, f"chmod 6644 {meta_path}")

    # a request through requests -> sentinel/sites-enabled: refused, named
    proc = run_cli("renew", "--store", store, "--request", name, check=False, timeout=30)
    assert proc.returncode == 1
    assert "symbolic link" in proc.stderr and "requests" in proc.stderr

    # the store is otherwise usable; FIFOs do not hang anyone (timeouts)
    as_worker(NGINX_WORKER, f"rm {store}/requests; mkdir {store}/requests")
    listing = run_cli("list", "--store", store, timeout=30)
    assert name in listing.stdout
    proc = run_cli(*renew_args(pebble, store, ca, name), timeout=120)
    assert "serial" in proc.stdout

    # what root wrote belongs to the worker; set-id bits do not survive a read
    assert setid_bits(meta_path) == 0
    uid = pwd.getpwnam(NGINX_WORKER).pw_uid
    assert os.stat(cert_file(store, name)).st_uid == uid
    assert os.stat(os.path.join(store, "certs", name, "meta.json")).st_uid == uid
    assert not any(os.stat(os.path.join(store, n)).st_uid == 0
                   for n in ("accounts", "certs", "locks", "requests"))
    assert snapshot(sentinel) == before


def test_cli_planted_hook_and_ca_need_the_option_again(pebble_factory, test_root):
    # no authorization reuse: the renewal must ask for a challenge again
    pebble = pebble_factory(env={"PEBBLE_AUTHZREUSE": "0"})
    name = "hook.hostile.test"
    store, ca = cli_store(pebble, test_root, name)
    os.makedirs(os.path.join(test_root, "hook-out"), mode=0o777)
    os.chmod(os.path.join(test_root, "hook-out"), 0o777)
    real = write_dns_hook(test_root, pebble, os.path.join(test_root, "hook-out", "calls.log"))
    hook, out = plant_hook(test_root, NGINX_WORKER, real_hook=real)

    # the worker rewrites meta.json: dns-01 through its hook, another CA file
    rewrite_meta(store, name, NGINX_WORKER, challenge="dns-01", dns_hook=hook,
                 ca_file="/etc/shadow", renew_at=0, next_attempt=0)

    for args in (["renew", "--store", store, name], ["renew", "--store", store, "--all"]):
        proc = run_cli(*args, check=False, timeout=60)
        assert proc.returncode == 1, proc.stdout
        err = proc.stderr
        assert (f"renew {name}: the store is owned by {NGINX_WORKER}; "
                "pass --dns-hook again to run it") in err
        assert "pass --ca-file again" in err
        assert "pass --directory again" in err
        assert hook_uids(out) == []
    proc = run_cli("revoke", "--store", store, name, check=False, timeout=60)
    assert proc.returncode == 1
    assert "pass --directory again" in proc.stderr and "pass --ca-file again" in proc.stderr

    # given again, the hook runs, as the store's owner, and the renewal works
    proc = run_cli("renew", "--store", store, "--directory", pebble.directory,
                   "--ca-file", ca, "--dns-hook", hook, name, timeout=120)
    assert "serial" in proc.stdout
    assert hook_uids(out), "the hook given on the command line did not run"
    assert_never_root(out, NGINX_WORKER)


def test_cli_ca_file_must_be_readable_by_the_owner(pebble, test_root):
    name = "ca.hostile.test"
    store, _ = cli_store(pebble, test_root, name)
    private = os.path.join(test_root, "root-only")
    os.mkdir(private, 0o700)
    ca = shutil.copy(pebble.ca_file, private)
    proc = run_cli(*renew_args(pebble, store, ca, name), check=False, timeout=30)
    assert proc.returncode == 1
    assert f"not readable by {NGINX_WORKER}" in proc.stderr


# ---- the nginx master ----------------------------------------------------------------

def test_nginx_master_start_reload_hostile_store(pebble, test_root, swappers):
    name = "ngx.hostile.test"
    body = issuer_block(pebble, test_root)
    body += f"    autotls_store {test_root}/store;\n    autotls_check_interval 1s;\n"
    body += server_block([name], pebble.http_port, pebble.tls_port)
    sentinel = make_sentinel(test_root)
    before = snapshot(sentinel)
    ngx = Nginx(test_root, body)
    with ngx.start():
        until_issued(ngx, pebble, pebble.tls_port, name)
        store = ngx.store
        suid = plant_common(store, sentinel, name, NGINX_WORKER)
        hook, out = plant_hook(test_root, NGINX_WORKER)
        rewrite_meta(store, name, NGINX_WORKER, challenge="dns-01", dns_hook=hook)

        # reloads (the master prepares the store each time) during the swap loop
        swap = Swapper(test_root, store, sentinel, NGINX_WORKER)
        swappers.append(swap)
        for _ in range(8):
            ngx.reload()
        assert swap.stop() > 0
        assert snapshot(sentinel) == before, "the master changed the sentinel"
        assert setid_bits(suid) == 0
        assert os.path.islink(os.path.join(store, "certs", name, "linkdir"))
        until_issued(ngx, pebble, pebble.tls_port, name)
    # a cold start on the hostile store
    with ngx.start():
        until_issued(ngx, pebble, pebble.tls_port, name)
    assert snapshot(sentinel) == before
    assert_never_root(out, NGINX_WORKER)


# ---- the Apache parent -------------------------------------------------------------

def test_apache_parent_start_restart_hostile_store(pebble, apache_factory,  # noqa: F811
                                                   test_root, swappers):
    name = "apache.hostile.test"
    sentinel = make_sentinel(test_root)
    before = snapshot(sentinel)
    apache = apache_factory(pebble, [[name]]).start()
    wait_issued(apache, pebble, name)
    store = apache.store
    suid = plant_common(store, sentinel, name, APACHE_WORKER)
    hook, out = plant_hook(test_root, APACHE_WORKER)
    rewrite_meta(store, name, APACHE_WORKER, challenge="dns-01", dns_hook=hook)
    # mod_ssl loads the fallback by path as root: it must get a copy, never this
    as_worker(APACHE_WORKER, f"ln -sf {sentinel}/secret {store}/fallback/{name}/ec256.key")

    # graceful restart: the parent prepares the store and reads its
    # generation (a FIFO now) while the worker swaps a directory and a link
    swap = Swapper(test_root, store, sentinel, APACHE_WORKER)
    swappers.append(swap)
    marks = apache.log_count(r"resuming normal operations")
    proc = apache.graceful()
    assert proc.returncode == 0, proc.stderr
    apache.wait_log(r"resuming normal operations", count=marks + 1, timeout=60)
    assert swap.stop() > 0
    assert snapshot(sentinel) == before
    wait_issued(apache, pebble, name)
    assert setid_bits(suid) == 0

    # a cold start on the hostile store
    apache.stop()
    as_worker(APACHE_WORKER, f"rm -f {store}/generation; mkfifo {store}/generation")
    apache.start()
    wait_until(lambda: apache.log_count(r"resuming normal operations") >= marks + 2,
               timeout=60, what="Apache to start")
    wait_issued(apache, pebble, name)
    assert snapshot(sentinel) == before
    assert_never_root(out, APACHE_WORKER)
