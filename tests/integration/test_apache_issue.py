"""mod_autotls obtains certificates from Pebble and serves them live:
http-01, tls-alpn-01, both key types, every MPM, Redirect on port 80."""
import pytest

from apache_helpers import THREE_HOSTS, apache_factory, assert_no_restart, served, wait_issued  # noqa: F401


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


def test_dual_ecdsa_rsa(pebble, apache_factory):  # noqa: F811
    hosts = [["dual.apache.test", "www.dual.apache.test"]]
    apache = apache_factory(pebble, hosts, keys="ec256 rsa2048").start()
    ec_args = ("-sigalgs", "ecdsa_secp256r1_sha256")
    rsa_args = ("-sigalgs", "rsa_pss_rsae_sha256:rsa_pkcs1_sha256")
    _, ec = wait_issued(apache, pebble, "dual.apache.test", extra_args=ec_args)
    # the key types of one certificate are ordered one after the other: the
    # RSA one may land a moment after the ECDSA one is served
    _, rsa = wait_issued(apache, pebble, "www.dual.apache.test", extra_args=rsa_args,
                         retry_handshake=True)
    assert ec["key_type"] == "ec256"
    assert rsa["key_type"] == "rsa2048"
    assert ec["serial"] != rsa["serial"]
    assert sorted(ec["names"]) == sorted(rsa["names"]) == sorted(hosts[0])
    # a client accepting both gets one of them, never the fallback
    _, either = served(apache, "dual.apache.test")
    assert either["serial"] in (ec["serial"], rsa["serial"])


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
