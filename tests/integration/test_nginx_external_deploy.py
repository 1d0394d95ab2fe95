"""nginx + autotls: a certificate deployed into a running nginx's store by
someone else (the CLI here; another node later) is served by the same
workers within a second, with no reload: the driver worker watches the
store's generation and bumps only the certificates that changed."""
import os
import re
import socket
import ssl
import time

from clihelp import issue, stored_chain, stored_meta, write_dns_hook
from nginxctl import Nginx, issuer_block, server_block, until_issued
from util import cert_info, run_cli, served_chain, verify_chain, wait_until

NAMES = ("ext.example.com", "www.ext.example.com")
OTHER = ("other.example.com",)


def nginx_body(pebble, root, issuer_extra="", challenge="http-01"):
    body = issuer_block(pebble, root, challenge=challenge, extra=issuer_extra)
    body += f"    autotls_store {os.path.join(root, 'store')};\n"
    body += "    autotls_check_interval 1s;\n"
    # which worker answered a connection: its handshake used that worker's cache
    pid = 'location = /pid { return 200 "$pid"; }'
    # reuseport: the kernel spreads fresh connections over the workers
    body += server_block(NAMES, pebble.http_port, pebble.tls_port, extra=pid).replace(
        f"listen 127.0.0.1:{pebble.tls_port} ssl;",
        f"listen 127.0.0.1:{pebble.tls_port} ssl reuseport;")
    body += server_block(OTHER, pebble.http_port, pebble.tls_port, extra=pid)
    return body


def dns_hook(pebble, root):
    """The hook and its log, usable by the store owner the CLI drops to."""
    log = os.path.join(root, "hook.log")
    open(log, "w").close()
    os.chmod(log, 0o666)
    return write_dns_hook(root, pebble, log)


def cli_renew(pebble, root, store, name):
    """`autotls renew` over dns-01 into the server's store, as an operator
    (root) would run it: the hook, directory and CA file given again."""
    run_cli("renew", "--store", store, "--challenge", "dns-01",
            "--dns-hook", dns_hook(pebble, root), "--directory", pebble.directory,
            "--ca-file", os.path.join(root, "pebble-ca.pem"), name)
    return cert_info(stored_chain(store, NAMES[0])[0])["serial"]


def probe(port, name):
    """(worker pid, certificate info) of one fresh TLS connection."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=name) as tls:
            pem = ssl.DER_cert_to_PEM_cert(tls.getpeercert(binary_form=True))
            tls.sendall(f"GET /pid HTTP/1.0\r\nHost: {name}\r\n\r\n".encode())
            data = b""
            while chunk := tls.recv(4096):
                data += chunk
    return int(data.split(b"\r\n\r\n", 1)[1]), cert_info(pem)


def every_worker(ngx, pebble, name, ok, timeout=5.0, what="the certificate"):
    """Seconds until each worker has served name with a certificate ok()
    accepts, over fresh connections (polled, never slept)."""
    start = time.monotonic()
    served_ok = set()

    def all_workers():
        pid, info = probe(pebble.tls_port, name)
        if ok(info):
            served_ok.add(pid)
        return set(ngx.worker_pids()) <= served_ok
    wait_until(all_workers, timeout=timeout, interval=0.02,
               what=f"every worker to serve {what} for {name}")
    return time.monotonic() - start


def only(serial):
    """An every_worker check for once a certificate must be served: any
    other serial fails at once, so the wait only bounds how long the kernel
    takes to send a probe to each worker (reuseport spreads them at random)."""
    def check(info):
        assert info["serial"] == serial, \
            f"a worker served serial {info['serial']} where only {serial} may be served"
        return True
    return check


CHANGED = 'certificate "%s" changed in the store'


def served_live(ngx, pebble, name, serial, changes_before):
    """Seconds until every worker served serial for name after a deploy.
    The promise (served within 1 s: the driver's generation watch polls
    twice a second, workers load it at their next handshake) is checked as
    its two halves, neither a race against the scheduler: the driver
    announces the change (waited for), and from then on no worker serves
    anything else, at its very next handshake."""
    start = time.monotonic()
    wait_until(lambda: ngx.log().count(CHANGED % NAMES[0]) > changes_before, timeout=90,
               what="the driver to see the deployed certificate")
    every_worker(ngx, pebble, name, only(serial), timeout=30, what="the deployed certificate")
    return time.monotonic() - start


def assert_no_reload(ngx, master, workers):
    assert ngx._read_pid() == master
    assert ngx.worker_pids() == workers
    log = ngx.log()
    assert not re.search(r"signal 1 \(SIGHUP\)|reconfiguring", log), "nginx was reloaded"


def test_cli_renewal_is_served_live(pebble, test_root):
    ngx = Nginx(test_root, nginx_body(pebble, test_root))
    with ngx.start():
        first = cert_info(until_issued(ngx, pebble, pebble.tls_port, NAMES[0])[0])["serial"]
        other = cert_info(until_issued(ngx, pebble, pebble.tls_port, OTHER[0])[0])["serial"]
        master, workers = ngx.master, ngx.worker_pids()
        deployed = ngx.log().count("issued and deployed")
        # every worker has the first certificate cached, not only the store
        every_worker(ngx, pebble, NAMES[0], lambda i: i["serial"] == first, timeout=20)

        changes = ngx.log().count(CHANGED % NAMES[0])
        new = cli_renew(pebble, test_root, ngx.store, NAMES[0])
        assert new != first

        took = served_live(ngx, pebble, NAMES[0], new, changes)
        print(f"CLI renewal served by every nginx worker after {took:.2f}s")
        every_worker(ngx, pebble, NAMES[1], only(new), timeout=30)
        chain = served_chain(pebble.tls_port, NAMES[1])
        assert verify_chain(chain, pebble.roots_pem())
        # the other certificate did not change, and nginx did not order again
        assert cert_info(served_chain(pebble.tls_port, OTHER[0])[0])["serial"] == other
        assert_no_reload(ngx, master, workers)
        log = ngx.log()
        assert log.count("issued and deployed") == deployed
        changed = re.findall(r'certificate "([^"]+)" changed in the store', log)
        assert changed == [NAMES[0]], changed


def test_certificate_the_cli_issued_first(pebble, test_root):
    # nginx cannot get this certificate itself (its dns hook always fails):
    # it serves the fallback until the CLI puts one in its store
    hook = os.path.join(test_root, "failing-hook.sh")
    with open(hook, "w") as f:
        f.write("#!/bin/sh\nexit 1\n")
    os.chmod(hook, 0o755)
    ngx = Nginx(test_root, nginx_body(pebble, test_root, challenge="dns-01",
                                      issuer_extra=f"dns_hook {hook};"))
    with ngx.start():
        master, workers = ngx.master, ngx.worker_pids()
        # ended (its store lock released with it), not retried for a minute
        wait_until(lambda: stored_meta(ngx.store, NAMES[0]).get("state") == "failed",
                   timeout=30, what="nginx's own order to fail")
        assert "dns hook setup failed" in ngx.log()
        # every worker has its fallback cached
        every_worker(ngx, pebble, NAMES[0], lambda i: i["self_signed"], timeout=20,
                     what="the fallback")

        changes = ngx.log().count(CHANGED % NAMES[0])
        new = cli_renew(pebble, test_root, ngx.store, NAMES[0])

        took = served_live(ngx, pebble, NAMES[0], new, changes)
        print(f"certificate issued by the CLI served by every nginx worker after {took:.2f}s")
        every_worker(ngx, pebble, NAMES[1], only(new), timeout=30)
        chain = served_chain(pebble.tls_port, NAMES[1])
        assert verify_chain(chain, pebble.roots_pem())
        assert 'certificate "ext.example.com" changed in the store' in ngx.log()
        assert_no_reload(ngx, master, workers)


def test_certificate_in_the_store_before_start(pebble, test_root):
    # the CLI issued it before nginx was configured for these names
    store = os.path.join(test_root, "store")
    issue(pebble, store, *NAMES)
    serial = cert_info(stored_chain(store, NAMES[0])[0])["serial"]
    ngx = Nginx(test_root, nginx_body(pebble, test_root))
    with ngx.start():
        every_worker(ngx, pebble, NAMES[0], lambda i: i["serial"] == serial, timeout=30)
        every_worker(ngx, pebble, NAMES[1], only(serial), timeout=30)
        # served as it is, not ordered again; the other name is nginx's own
        until_issued(ngx, pebble, pebble.tls_port, OTHER[0])
        assert f'ordering certificate "{NAMES[0]}"' not in ngx.log()
