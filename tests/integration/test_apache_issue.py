"""mod_autotls obtains certificates from Pebble and serves them live:
http-01, tls-alpn-01, both key types, every MPM, Redirect on port 80."""
import os

import pytest

from apache_helpers import THREE_HOSTS, apache_factory, assert_no_restart, served, wait_issued  # noqa: F401
from util import run_cli, verify_chain, wait_until


@pytest.mark.parametrize("challenge", ["http-01", "tls-alpn-01"])
def test_three_hosts_two_names_each(pebble, apache_factory, challenge):  # noqa: F811
    apache = apache_factory(pebble, THREE_HOSTS, challenge=challenge).start()
    parent = apache.pid
    serials = set()
    for names in THREE_HOSTS:
        for name in names:
            chain, info = wait_issued(apache, pebble, name)
            assert sorted(info["names"]) == sorted(names)
            assert info["key_type"] == "ec256"
            serials.add(info["serial"])
    assert len(serials) == 3, "one certificate per virtual host"
    log = apache.log_text()
    if challenge == "http-01":
        assert "answering http-01 challenge" in log
        assert "answering tls-alpn-01 challenge" not in log
    else:
        assert "answering tls-alpn-01 challenge" in log
        assert "answering http-01 challenge" not in log
    # served without a restart, and the site itself answers (no 503)
    assert_no_restart(apache, parent)
    status, _, body = apache.http_get("/index.html", host=THREE_HOSTS[0][0], tls=True)
    assert status == 200 and b"hello" in body


@pytest.mark.parametrize("mpm", ["worker", "prefork"])
def test_other_mpms(pebble, apache_factory, mpm):  # noqa: F811
    hosts = [[f"{mpm}.apache.test", f"www.{mpm}.apache.test"]]
    apache = apache_factory(pebble, hosts, mpm=mpm).start()
    for name in hosts[0]:
        wait_issued(apache, pebble, name)
    assert f"mpm_{mpm}:notice" in apache.log_text()


EC_ONLY = ("-sigalgs", "ecdsa_secp256r1_sha256")
RSA_ONLY = ("-sigalgs", "rsa_pss_rsae_sha256:rsa_pkcs1_sha256")


def test_dual_ecdsa_rsa(pebble_factory, apache_factory):  # noqa: F811
    # the CA is down at first, so that "before issuance" is not a race
    ca = pebble_factory(start=False)
    hosts = [["dual.apache.test", "www.dual.apache.test"]]
    apache = apache_factory(ca, hosts, keys="ec256 rsa2048").start()
    apache.wait_log(r"\[autotls:error\].*dual\.apache\.test")
    # before issuance every client completes a handshake: a self-signed
    # fallback of the key type it accepts, ECDSA for a default client
    for args, kt in ((RSA_ONLY, "rsa2048"), (EC_ONLY, "ec256"), ((), "ec256")):
        _, fb = served(apache, "www.dual.apache.test", args)
        assert fb["self_signed"], args
        assert fb["key_type"] == kt, args
        assert sorted(fb["names"]) == sorted(hosts[0])
    assert os.path.exists(os.path.join(apache.store, "fallback", "dual.apache.test",
                                       "rsa2048.key"))

    ca.start()
    # skip the backoff (tested in the core) by an operator request
    run_cli("renew", "--store", apache.store, "--request", "dual.apache.test")
    _, ec = wait_issued(apache, ca, "dual.apache.test", extra_args=EC_ONLY)
    _, rsa = wait_issued(apache, ca, "www.dual.apache.test", extra_args=RSA_ONLY)
    assert ec["key_type"] == "ec256"
    assert rsa["key_type"] == "rsa2048"
    assert ec["serial"] != rsa["serial"]
    assert sorted(ec["names"]) == sorted(rsa["names"]) == sorted(hosts[0])
    # a default client (both offered) gets the ECDSA one, never a fallback
    _, either = served(apache, "dual.apache.test")
    assert either["serial"] == ec["serial"]


def test_rsa_fallback_while_only_ecdsa_is_issued(pebble_factory, apache_factory):  # noqa: F811
    # the window between the two key types, held open: an operator adds
    # rsa2048 to a host that has its ECDSA certificate while the CA is down
    ca = pebble_factory()
    hosts = [["half.apache.test", "www.half.apache.test"]]
    apache = apache_factory(ca, hosts, keys="ec256").start()
    chain, ec = wait_issued(apache, ca, "half.apache.test", extra_args=EC_ONLY)
    roots = ca.roots_pem()
    ca.stop()
    apache.write_config(keys="ec256 rsa2048")
    proc = apache.graceful()
    assert proc.returncode == 0, proc.stderr

    def rsa_fallback():
        try:
            _, info = served(apache, "www.half.apache.test", RSA_ONLY)
        except AssertionError:      # the old generation has no RSA at all
            return None
        return info if info["key_type"] == "rsa2048" else None
    fb = wait_until(rsa_fallback, timeout=60, what="an RSA fallback")
    assert fb["self_signed"]
    assert sorted(fb["names"]) == sorted(hosts[0])
    # ... while ECDSA clients, and default ones, keep the real certificate
    for args in (EC_ONLY, ()):
        chain, info = served(apache, "www.half.apache.test", args)
        assert info["serial"] == ec["serial"], args
        assert verify_chain(chain, roots)


def test_redirect_on_port_80_still_passes_http01(pebble, apache_factory):  # noqa: F811
    hosts = [["redir.apache.test", "www.redir.apache.test"]]
    extra = ("    Redirect permanent / https://redir.apache.test/\n"
             "    RewriteEngine on\n"
             "    RewriteRule ^/\\.well-known/(.*)$ /nothing/$1 [R=302,L]\n")
    apache = apache_factory(pebble, hosts, http_extra=extra).start()
    for name in hosts[0]:
        wait_issued(apache, pebble, name)
    # the redirect is really active for everything else ...
    status, headers, _ = apache.http_get("/some/page", host="redir.apache.test")
    assert status == 301 and headers["Location"].startswith("https://redir.apache.test/")
    # ... and unknown or malformed tokens are 404, not redirected
    status, _, _ = apache.http_get("/.well-known/acme-challenge/unknownTOKEN123",
                                   host="redir.apache.test")
    assert status == 404
    status, _, _ = apache.http_get("/.well-known/acme-challenge/..%2f..%2fetc",
                                   host="redir.apache.test")
    assert status == 404
