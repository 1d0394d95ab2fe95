"""nginx + autotls: a certificate deployed into a running nginx's store by
someone else (the CLI here; another node later) is served by the same
workers within a second, with no reload: the driver worker watches the
store's generation and bumps only the certificates that changed."""
import os
import re
import time

from clihelp import stored_chain, write_dns_hook
from nginxctl import Nginx, issuer_block, server_block, until_issued
from util import cert_info, run_cli, served_chain, verify_chain, wait_until

NAMES = ("ext.example.com", "www.ext.example.com")
OTHER = ("other.example.com",)


def nginx_body(pebble, root, issuer_extra="", challenge="http-01"):
    body = issuer_block(pebble, root, challenge=challenge, extra=issuer_extra)
    body += f"    autotls_store {os.path.join(root, 'store')};\n"
    body += "    autotls_check_interval 1s;\n"
    body += server_block(NAMES, pebble.http_port, pebble.tls_port)
    body += server_block(OTHER, pebble.http_port, pebble.tls_port)
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


def wait_served(pebble, name, serial, timeout=5.0):
    """Seconds until name is served with serial (polled, never slept)."""
    start = time.monotonic()
    wait_until(lambda: cert_info(served_chain(pebble.tls_port, name)[0])["serial"] == serial,
               timeout=timeout, interval=0.05, what=f"serial {serial} served for {name}")
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

        new = cli_renew(pebble, test_root, ngx.store, NAMES[0])
        assert new != first

        took = wait_served(pebble, NAMES[0], new)
        print(f"CLI renewal served by nginx after {took:.2f}s")
        # every worker: fresh connections land on either of them
        for _ in range(6):
            for name in NAMES:
                chain = served_chain(pebble.tls_port, name)
                assert cert_info(chain[0])["serial"] == new
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
        wait_until(lambda: "dns hook setup failed" in ngx.log(), timeout=30,
                   what="nginx's own order to fail")
        assert cert_info(served_chain(pebble.tls_port, NAMES[0])[0])["self_signed"]

        new = cli_renew(pebble, test_root, ngx.store, NAMES[0])

        took = wait_served(pebble, NAMES[0], new)
        print(f"certificate issued by the CLI served by nginx after {took:.2f}s")
        chain = served_chain(pebble.tls_port, NAMES[1])
        assert cert_info(chain[0])["serial"] == new
        assert verify_chain(chain, pebble.roots_pem())
        assert_no_reload(ngx, master, workers)
