"""nginx + autotls: live rotation without reload, renewal by itself and on
an operator's request, dual ECDSA/RSA certificates, a CA that is down at
start, reloads and crashes in the middle of an order, http-01 behind
"return 301", and no key material in a debug log."""
import os
import re
import signal

from nginxctl import Nginx, issuer_block, server_block, until_issued
from util import cert_info, run_cli, served_chain, stays, verify_chain, wait_until

NAMES = ("one.example.com", "www.one.example.com")


def one_server(pebble, root, challenge="http-01", issuer_extra="", server_extra=""):
    body = issuer_block(pebble, root, challenge=challenge, extra=issuer_extra)
    body += f"    autotls_store {os.path.join(root, 'store')};\n"
    body += "    autotls_check_interval 1s;\n"
    body += server_block(NAMES, pebble.http_port, pebble.tls_port, extra=server_extra)
    return body


def serial_of(pebble, name):
    return cert_info(served_chain(pebble.tls_port, name)[0])["serial"]


def test_cli_renew_request_rotates_live(pebble, test_root):
    ngx = Nginx(test_root, one_server(pebble, test_root))
    with ngx.start():
        first = cert_info(until_issued(ngx, pebble, pebble.tls_port, NAMES[0])[0])["serial"]
        master, workers = ngx.master, ngx.worker_pids()

        run_cli("renew", "--store", ngx.store, "--request", NAMES[0])

        chain = until_issued(ngx, pebble, pebble.tls_port, NAMES[0], not_serial=first)
        second = cert_info(chain[0])["serial"]
        assert second != first
        assert verify_chain(chain, pebble.roots_pem())
        # the other name of the certificate rotated with it
        assert serial_of(pebble, NAMES[1]) == second
        # no reload, no restart, no worker replaced
        assert ngx.master == master and ngx._read_pid() == master
        assert ngx.worker_pids() == workers
        assert "renewal requested by an operator" in ngx.log()


def test_short_lived_certificates_renew_by_themselves(pebble_factory, test_root):
    p = pebble_factory(validity=40)
    ngx = Nginx(test_root, one_server(p, test_root, issuer_extra="renew_before 50%;"))
    with ngx.start():
        workers = ngx.worker_pids()
        seen = [cert_info(until_issued(ngx, p, p.tls_port, NAMES[0])[0])["serial"]]
        for _ in range(2):
            chain = until_issued(ngx, p, p.tls_port, NAMES[0], not_serial=seen[-1], timeout=60)
            seen.append(cert_info(chain[0])["serial"])
            assert verify_chain(chain, p.roots_pem())
        assert len(set(seen)) == 3
        assert ngx.worker_pids() == workers


def test_dual_ecdsa_and_rsa(pebble, test_root):
    ngx = Nginx(test_root, one_server(pebble, test_root, issuer_extra="key ec256 rsa2048;"))
    with ngx.start():
        roots = pebble.roots_pem()

        def both():
            try:
                ec = cert_info(served_chain(pebble.tls_port, NAMES[0])[0])
                # until the RSA certificate exists an RSA-only client fails
                rsa = cert_info(served_chain(pebble.tls_port, NAMES[0], extra_args=(
                    "-sigalgs", "RSA-PSS+SHA256:RSA+SHA256"))[0])
            except AssertionError:
                return None
            ok = (ec["key_type"] == "ec256" and rsa["key_type"] == "rsa2048"
                  and not ec["self_signed"] and not rsa["self_signed"])
            return (ec, rsa) if ok else None
        ec, rsa = wait_until(both, timeout=120, interval=0.5, what="both key types served")
        assert ec["serial"] != rsa["serial"]
        assert sorted(ec["names"]) == sorted(rsa["names"]) == sorted(NAMES)

        # TLS 1.2 with RSA-only suites gets the RSA certificate too
        chain = served_chain(pebble.tls_port, NAMES[0], extra_args=(
            "-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"))
        assert cert_info(chain[0])["key_type"] == "rsa2048"
        assert verify_chain(chain, roots)
        chain = served_chain(pebble.tls_port, NAMES[0], extra_args=(
            "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"))
        assert cert_info(chain[0])["key_type"] == "ec256"


def test_ca_down_at_start_serves_fallback_then_real(pebble_factory, test_root):
    p = pebble_factory(start=False)
    ngx = Nginx(test_root, one_server(p, test_root))
    with ngx.start():
        info = cert_info(served_chain(p.tls_port, NAMES[0])[0])
        assert info["self_signed"]
        assert NAMES[0] in info["names"]
        wait_until(lambda: "order failed" in ngx.log(), timeout=30,
                   what="the failed attempt in the error log")
        # the failure is logged once per attempt, not once per handshake
        for _ in range(5):
            served_chain(p.tls_port, NAMES[0])
        assert ngx.log().count("order failed") == 1
        p.start()
        # first retry comes after the core's backoff (about a minute)
        chain = until_issued(ngx, p, p.tls_port, NAMES[0], timeout=150)
        assert verify_chain(chain, p.roots_pem())


def _wait_mid_order(ngx):
    wait_until(lambda: "challenge for" in ngx.log() and "published" in ngx.log(),
               timeout=60, interval=0.05, what="a challenge to be published")
    assert "issued and deployed" not in ngx.log()


def test_reload_in_the_middle_of_an_order(pebble_factory, test_root):
    # Pebble's validation sleeps 0-15 s: time to reload while the order runs
    p = pebble_factory(env={"PEBBLE_VA_NOSLEEP": "0"})
    ngx = Nginx(test_root, one_server(p, test_root))
    with ngx.start():
        _wait_mid_order(ngx)
        old = set(ngx.worker_pids())
        ngx.reload()
        new = set(ngx.worker_pids())
        assert not (old & new)
        chain = until_issued(ngx, p, p.tls_port, NAMES[0], timeout=120)
        assert verify_chain(chain, p.roots_pem())
        drivers = set(int(x) for x in re.findall(r"worker (\d+) drives", ngx.log()))
        assert drivers & new, "no worker of the new generation took over the driver"


def test_kill_driver_in_the_middle_of_an_order(pebble_factory, test_root):
    p = pebble_factory(env={"PEBBLE_VA_NOSLEEP": "0"})
    ngx = Nginx(test_root, one_server(p, test_root))
    with ngx.start():
        _wait_mid_order(ngx)
        driver = wait_until(ngx.driver_pid, timeout=10, what="the driver worker")
        master = ngx.master
        os.kill(driver, signal.SIGKILL)
        wait_until(lambda: driver not in ngx.worker_pids()
                   and len(ngx.worker_pids()) == 2, timeout=20, what="a replacement worker")
        chain = until_issued(ngx, p, p.tls_port, NAMES[0], timeout=120)
        assert verify_chain(chain, p.roots_pem())
        new_driver = ngx.driver_pid()
        assert new_driver and new_driver != driver
        assert ngx.master == master


def test_http01_behind_return_301(pebble, test_root):
    names = ("redirect.example.com", "www.redirect.example.com")
    body = issuer_block(pebble, test_root)
    body += f"    autotls_store {os.path.join(test_root, 'store')};\n"
    body += "    autotls_check_interval 1s;\n"
    body += f"""
    server {{
        listen 127.0.0.1:{pebble.http_port};
        server_name {' '.join(names)};
        return 301 https://$host$request_uri;
    }}
    server {{
        listen 127.0.0.1:{pebble.tls_port} ssl;
        server_name {' '.join(names)};
        autotls pebble;
    }}
"""
    ngx = Nginx(test_root, body)
    with ngx.start():
        import urllib.error
        import urllib.request
        # the redirect is still there for everything else, unknown tokens 404
        req = urllib.request.Request(f"http://127.0.0.1:{pebble.http_port}/x",
                                     headers={"Host": names[0]})

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *a, **kw):
                return None
        opener = urllib.request.build_opener(NoRedirect)
        try:
            opener.open(req, timeout=5)
            raise AssertionError("no redirect")
        except urllib.error.HTTPError as e:
            assert e.code == 301
        for token in ("unknownToken_-123", "bad.token", "a%20b"):
            req = urllib.request.Request(
                f"http://127.0.0.1:{pebble.http_port}/.well-known/acme-challenge/{token}",
                headers={"Host": names[0]})
            try:
                opener.open(req, timeout=5)
                raise AssertionError("unknown token answered")
            except urllib.error.HTTPError as e:
                assert e.code == 404, (token, e.code)
        chain = until_issued(ngx, pebble, pebble.tls_port, names[0])
        assert verify_chain(chain, pebble.roots_pem())
        assert "answered http-01 challenge" in ngx.log()


def test_debug_log_has_no_key_material(pebble, test_root):
    names = ("debug.example.com",)
    body = issuer_block(pebble, test_root, challenge="tls-alpn-01")
    body += f"    autotls_store {os.path.join(test_root, 'store')};\n"
    body += "    autotls_check_interval 1s;\n"
    body += server_block(names, pebble.http_port, pebble.tls_port)
    ngx = Nginx(test_root, body, level="debug")
    with ngx.start():
        until_issued(ngx, pebble, pebble.tls_port, names[0])
        run_cli("renew", "--store", ngx.store, "--request", names[0])
        wait_until(lambda: ngx.log().count("issued and deployed") >= 2, timeout=60,
                   what="the renewal")
    log = ngx.log()
    assert "[debug]" in log            # the level really was debug
    assert "PRIVATE KEY" not in log
    assert "BEGIN" not in log


HOOK = """#!/usr/bin/python3
# autotls dns_hook for the tests: publishes TXT records in challtestsrv
import json, sys, urllib.request
action, name, value = sys.argv[1:4]
path = "/set-txt" if action == "setup" else "/clear-txt"
body = {"host": name.rstrip(".") + "."}
if action == "setup":
    body["value"] = value
req = urllib.request.Request("%s" + path, data=json.dumps(body).encode(), method="POST")
urllib.request.urlopen(req, timeout=10).read()
with open("%s", "a") as f:
    f.write(action + " " + name + "\\n")
"""


def test_dns01_wildcard_through_a_hook(pebble, test_root):
    hook = os.path.join(test_root, "hook.py")
    hook_log = os.path.join(test_root, "hook.log")
    with open(hook, "w") as f:
        f.write(HOOK % (pebble.chall_url, hook_log))
    os.chmod(hook, 0o755)
    open(hook_log, "w").close()
    os.chmod(hook_log, 0o666)
    names = ("wild.example.com", "*.wild.example.com")
    body = issuer_block(pebble, test_root, challenge="dns-01", extra=f"dns_hook {hook};")
    body += f"    autotls_store {os.path.join(test_root, 'store')};\n"
    body += "    autotls_check_interval 1s;\n"
    body += server_block(names, pebble.http_port, pebble.tls_port)
    ngx = Nginx(test_root, body)
    with ngx.start():
        chain = until_issued(ngx, pebble, pebble.tls_port, "anything.wild.example.com")
        info = cert_info(chain[0])
        assert sorted(info["names"]) == sorted(names)
        assert verify_chain(chain, pebble.roots_pem())
    with open(hook_log) as f:
        calls = f.read()
    assert "setup _acme-challenge.wild.example.com" in calls
    assert "teardown _acme-challenge.wild.example.com" in calls


EAB_KID = "kid-autotls"
EAB_KEY = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"


def test_ca_problem_logged_once_per_attempt(pebble_factory, test_root):
    # the CA requires external account binding and the issuer has none
    p = pebble_factory(eab={EAB_KID: EAB_KEY})
    ngx = Nginx(test_root, one_server(p, test_root))
    with ngx.start():
        wait_until(lambda: "order failed" in ngx.log(), timeout=30,
                   what="the CA's error in the log")
        for _ in range(5):
            assert cert_info(served_chain(p.tls_port, NAMES[0])[0])["self_signed"]
        # several check intervals (1 s): backoff, no re-logging
        stays(lambda: ngx.log().count("order failed") == 1, 3,
              what="one 'order failed' line")
        lines = [l for l in ngx.log().splitlines() if "order failed" in l]
        assert len(lines) == 1, lines
        assert "urn:ietf:params:acme:error:" in lines[0], lines[0]
        assert NAMES[0] in lines[0]


def test_eab_account_binding(pebble_factory, test_root):
    p = pebble_factory(eab={EAB_KID: EAB_KEY})
    ngx = Nginx(test_root, one_server(p, test_root, issuer_extra=f"eab {EAB_KID} {EAB_KEY};"))
    with ngx.start():
        chain = until_issued(ngx, p, p.tls_port, NAMES[0])
        assert verify_chain(chain, p.roots_pem())
    assert EAB_KEY not in ngx.log()
