"""OCSP stapling and revocation on nginx, live: a real Pebble writing an OCSP
URL into what it issues, a real `openssl ocsp` responder signing with
Pebble's intermediate key, a real CRL server, real nginx with the module.

What a client sees is checked with `openssl s_client -status`; what the
server knows, with its status page."""
import datetime
import json
import os
import re
import urllib.request

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from crlctl import CrlServer, TestCA
from nginxctl import Nginx, issuer_block, server_block, status_server, until_issued
from stapleprobe import check_staple, fetch_staple, staple_of
from storeseed import issuer_meta, seed_store, worker_owner
from util import cert_info, free_port, served_chain, stays, wait_until, replace_file

# ---- configuration (nginx -t) ----------------------------------------------

ISSUER = """
    autotls_issuer pebble {{
        directory    https://127.0.0.1:14000/dir;
        contact      admin@example.com;
        accept_terms on;
        {extra}
    }}
"""


def tls_server(names, extra, port=18443, default=""):
    return f"""
    server {{
        listen 127.0.0.1:{port} ssl {default};
        server_name {names};
        {extra}
    }}
"""


CONF_REJECTS = [
    ("ssl_stapling on an autotls server",
     ISSUER.format(extra="") + tls_server("a.example.com", "autotls pebble;\n        ssl_stapling on;"),
     "autotls pebble;",
     "autotls staples its certificates itself; remove ssl_stapling from this server "
     "or set stapling off in autotls_issuer pebble"),
    ("ssl_stapling inherited from http{}",
     "    ssl_stapling on;\n" + ISSUER.format(extra="")
     + tls_server("a.example.com", "autotls pebble;"),
     "autotls pebble;",
     "autotls staples its certificates itself"),
    ("must_staple without stapling",
     ISSUER.format(extra="stapling off;\n        must_staple on;")
     + tls_server("a.example.com", "autotls pebble;"),
     "autotls_issuer pebble {", "autotls_issuer \"pebble\": must_staple needs stapling"),
    ("stapling neither on nor off",
     ISSUER.format(extra="stapling yes;") + tls_server("a.example.com", "autotls pebble;"),
     "stapling yes;", 'invalid value "yes" in "stapling"'),
    ("must_staple neither on nor off",
     ISSUER.format(extra="must_staple 1;") + tls_server("a.example.com", "autotls pebble;"),
     "must_staple 1;", 'invalid value "1" in "must_staple"'),
]


@pytest.mark.parametrize("case,body,needle,message", CONF_REJECTS,
                         ids=[c[0] for c in CONF_REJECTS])
def test_nginx_t_rejects(test_root, case, body, needle, message):
    ngx = Nginx(test_root, body)
    proc = ngx.test_config()
    out = proc.stderr + ngx.log()
    assert proc.returncode != 0, out
    assert message in out, out
    assert f"in {ngx.conf}:{ngx.conf_line(needle)}" in out, out


CONF_ACCEPTS = [
    ("stapling off with ssl_stapling on",
     ISSUER.format(extra="stapling off;")
     + tls_server("a.example.com", "autotls pebble;\n        ssl_stapling on;")),
    ("must_staple with stapling",
     ISSUER.format(extra="stapling on;\n        must_staple on;")
     + tls_server("a.example.com", "autotls pebble;")),
    ("ssl_stapling on http{}, off in the autotls server",
     "    ssl_stapling on;\n" + ISSUER.format(extra="")
     + tls_server("a.example.com", "autotls pebble;\n        ssl_stapling off;")),
]


@pytest.mark.parametrize("case,body", CONF_ACCEPTS, ids=[c[0] for c in CONF_ACCEPTS])
def test_nginx_t_accepts(test_root, case, body):
    ngx = Nginx(test_root, body)
    proc = ngx.test_config()
    assert proc.returncode == 0, proc.stderr + ngx.log()
    assert "test is successful" in proc.stderr


# ---- live: Pebble + a real responder + nginx ---------------------------------

ECDSA = "ecdsa_secp256r1_sha256"
RSA = "rsa_pss_rsae_sha256:rsa_pkcs1_sha256"


def ocsp_nginx(root, pebble, names_list, key="ec256", issuer_extra="", extra_http="",
               extra_after="", status_port=None, workers=2):
    """nginx with one autotls server per names tuple, on Pebble's ports,
    checking every 2 s, its store in root/store; extra_http before those
    servers, extra_after after them."""
    body = issuer_block(pebble, root, extra=f"key {key};\n        {issuer_extra}")
    body += f"    autotls_store {os.path.join(root, 'store')};\n"
    body += "    autotls_check_interval 2s;\n"
    body += extra_http
    for names in names_list:
        body += server_block(names, pebble.http_port, pebble.tls_port)
    body += extra_after
    if status_port:
        body += status_server(status_port)
    return Nginx(root, body, workers=workers)


def status_doc(port):
    url = f"http://127.0.0.1:{port}/autotls-status"
    return json.loads(urllib.request.urlopen(url, timeout=10).read().decode())


def cert_status(port, cert_id):
    """cert_id's entry on the status page (JSON)."""
    return {c["id"]: c for c in status_doc(port)["certificates"]}[cert_id]


def meta_kt(ngx, cert_id, kt="ec256"):
    """The per key type facts the store keeps for cert_id (meta.json)."""
    with open(os.path.join(ngx.store, "certs", cert_id, "meta.json")) as f:
        meta = json.load(f)
    certs = meta.get("certs") or {}
    if isinstance(certs, list):
        certs = {c.get("key_type") or c.get("type"): c for c in certs}
    return certs.get(kt) or {}


def good_staple(ngx, responder, name, sigalgs=ECDSA, not_serial=None, timeout=60):
    """Waits until name is served with a Pebble certificate stapled with a
    "good" response that verifies against Pebble's intermediate; returns
    check_staple's facts."""
    def stapled():
        facts = check_staple("127.0.0.1", responder.pebble.tls_port, name,
                             responder.issuer_pem, sigalgs=sigalgs)
        if not_serial and facts["leaf_serial"] == not_serial:
            return None
        if facts["sent"] and facts["verified"] and facts["leaf_status"] == "good":
            return facts
        return None
    try:
        return wait_until(stapled, timeout=timeout, interval=0.5,
                          what=f"a verified good staple for {name}")
    except AssertionError as e:
        raise AssertionError(f"{e}\nerror.log tail:\n{ngx.log()[-4000:]}")


def test_staples_ecdsa_and_rsa_with_status(ocsp_pebble, test_root):
    """(a) s_client -status: a good staple that verifies against Pebble's
    intermediate, for the ECDSA and the RSA certificate; (h) the status page
    shows it."""
    r = ocsp_pebble
    status_port = free_port()
    name = "both.ocsp.test"
    ngx = ocsp_nginx(test_root, r.pebble, [(name,)], key="ec256 rsa2048",
                     status_port=status_port)
    with ngx.start():
        ec = good_staple(ngx, r, name, sigalgs=ECDSA)
        rsa = good_staple(ngx, r, name, sigalgs=RSA)
        leaves = {}
        for facts, sigalgs in ((ec, ECDSA), (rsa, RSA)):
            chain = fetch_staple("127.0.0.1", r.pebble.tls_port, name, sigalgs=sigalgs)["chain"]
            leaves[sigalgs] = cert_info(chain[0])
        assert leaves[ECDSA]["key_type"] == "ec256"
        assert leaves[RSA]["key_type"] == "rsa2048"
        # each staple answers for the leaf it came with
        assert ec["serial"] == leaves[ECDSA]["serial"] == ec["leaf_serial"]
        assert rsa["serial"] == leaves[RSA]["serial"] == rsa["leaf_serial"]
        assert ec["next_update"] > ec["this_update"]

        # what openssl s_client prints too
        text = staple_of("127.0.0.1", r.pebble.tls_port, name)
        assert text["response_status"] == "successful", text["text"]
        assert text["cert_status"] == "good", text["text"]

        doc = status_doc(status_port)
        cert = {c["id"]: c for c in doc["certificates"]}[name]
        keys = {k["type"]: k for k in cert["keys"]}
        for kt, facts in (("ec256", ec), ("rsa2048", rsa)):
            ocsp = keys[kt]["ocsp"]
            assert ocsp["status"] == "good", keys[kt]
            assert ocsp["url"] == r.url, keys[kt]
            # the response stapled, or a fresher one fetched since
            shown = datetime.datetime.fromisoformat(ocsp["next_update"].replace("Z", "+00:00"))
            assert shown >= facts["next_update"], (keys[kt], facts["next_update"])

        # new workers after a reload staple the stored response at once
        ngx.reload()
        facts = check_staple("127.0.0.1", r.pebble.tls_port, name, r.issuer_pem, sigalgs=RSA)
        assert facts["sent"] and facts["verified"], facts
        assert facts["leaf_status"] == "good" and facts["leaf_serial"] == rsa["leaf_serial"]


def test_revoked_replaced_live_and_stapled(ocsp_pebble, test_root):
    """(b) the responder says revoked: a new certificate is served by the
    same processes, stapled with a good response of its own."""
    r = ocsp_pebble
    name = "revoked.ocsp.test"
    ngx = ocsp_nginx(test_root, r.pebble, [(name,)])
    with ngx.start():
        first = good_staple(ngx, r, name)
        old = first["leaf_serial"]
        master, workers = ngx.master, ngx.worker_pids()

        r.revoke(old, reason="keyCompromise")

        # the new certificate is good at the responder from its first
        # request (auto mode: what Pebble issued)
        second = good_staple(ngx, r, name, not_serial=old, timeout=90)
        new = second["leaf_serial"]
        assert new != old
        assert "Pebble" in cert_info(served_chain(r.pebble.tls_port, name)[0])["issuer"]
        assert (ngx.master, ngx.worker_pids()) == (master, workers), "not live"
        assert r.request_count(new) >= 1

        log = ngx.log()
        assert old in log.lower() and "revoked" in log, log[-3000:]


def test_responder_down_staple_kept_until_next_update(ocsp_pebble, test_root):
    """(c) the responder goes down: the certificate is still served, the
    staple it has is kept while valid and dropped after its nextUpdate
    (the responder signs for one minute: -nmin 1)."""
    r = ocsp_pebble
    name = "down.ocsp.test"
    ngx = ocsp_nginx(test_root, r.pebble, [(name,)])
    with ngx.start():
        first = good_staple(ngx, r, name)
        serial, next_update = first["leaf_serial"], first["next_update"]
        r.stop()

        # the refresh that fails (it comes before nextUpdate) keeps it
        wait_until(lambda: meta_kt(ngx, name).get("ocsp_failures", 0) >= 1, timeout=60,
                   what="a failed OCSP refresh")

        def dropped():
            facts = check_staple("127.0.0.1", r.pebble.tls_port, name, r.issuer_pem,
                                 sigalgs=ECDSA)
            assert facts["leaf_serial"] == serial, "the certificate is no longer served"
            if not facts["sent"]:
                return datetime.datetime.now(datetime.timezone.utc)
            # while it is stapled it is the good response, still valid
            assert facts["verified"] and facts["leaf_status"] == "good", facts["text"]
            assert facts["times_valid"], facts["text"]
            return None
        gone_at = wait_until(dropped, timeout=120, interval=0.5,
                             what="the staple to be dropped after its nextUpdate")
        assert gone_at >= next_update - datetime.timedelta(seconds=1)
        # and the certificate itself is still served, without a staple
        assert staple_of("127.0.0.1", r.pebble.tls_port, name)["leaf_serial"] == serial


def test_wrong_key_never_stapled(ocsp_pebble, test_root):
    """(d) responses signed by a key that is not the issuer's: never
    stapled, and the status page says ocsp error."""
    r = ocsp_pebble
    r.set_wrong_key(True)
    status_port = free_port()
    name = "wrongkey.ocsp.test"
    ngx = ocsp_nginx(test_root, r.pebble, [(name,)], status_port=status_port)
    with ngx.start():
        until_issued(ngx, r.pebble, r.pebble.tls_port, name)

        def ocsp_error():
            keys = {k["type"]: k for k in cert_status(status_port, name)["keys"]}
            ocsp = keys["ec256"].get("ocsp") or {}
            return ocsp if ocsp.get("status") == "error" else None
        ocsp = wait_until(ocsp_error, timeout=60, what="ocsp error on the status page")
        assert ocsp.get("error"), ocsp
        assert r.request_count() >= 1

        def unstapled():
            return not check_staple("127.0.0.1", r.pebble.tls_port, name, r.issuer_pem)["sent"]
        stays(unstapled, 3, what="no staple")


def test_no_ocsp_url_no_staple_no_warning(pebble, test_root):
    """(e) Pebble without ocspResponderURL (like Let's Encrypt since 2025):
    no staple, and nothing about OCSP in the error log."""
    name = "nourl.ocsp.test"
    ngx = ocsp_nginx(test_root, pebble, [(name,)])
    with ngx.start():
        chain = until_issued(ngx, pebble, pebble.tls_port, name)
        serial = cert_info(chain[0])["serial"]
        # the driver has looked at the new certificate (its ARI check comes
        # after the deploy) and several check intervals passed
        wait_until(lambda: "renewal information" in ngx.log(), timeout=30,
                   what="the driver's first check after the deploy")
        def unstapled():
            facts = staple_of("127.0.0.1", pebble.tls_port, name)
            assert facts["leaf_serial"] == serial
            assert not facts["sent"], facts["text"]
            return True
        # longer than the driver's check interval (2 s)
        stays(unstapled, 5, interval=0.5, what="the leaf served without a staple")
        assert meta_kt(ngx, name).get("ocsp_url") is None
        bad = [l for l in ngx.log().splitlines()
               if "ocsp" in l.lower() and re.search(r"\[(warn|error|crit|alert|emerg)\]", l)]
        assert not bad, "\n".join(bad)


def static_stapled(root, ca, name):
    """A certificate of the test CA for name with a good OCSP response for
    it in a file, as nginx's own ssl_stapling_file takes it: (cert file,
    key file, response file, response DER)."""
    leaf = ca.issue([name], cdp=False)
    with open(ca.key, "rb") as f:
        ca_key = serialization.load_pem_private_key(f.read(), None)
    issuer = x509.load_pem_x509_certificate(ca.inter_pem.encode())
    now = datetime.datetime.now(datetime.timezone.utc)
    der = (ocsp.OCSPResponseBuilder()
           .add_response(cert=leaf.cert, issuer=issuer, algorithm=hashes.SHA1(),
                         cert_status=ocsp.OCSPCertStatus.GOOD,
                         this_update=now - datetime.timedelta(minutes=1),
                         next_update=now + datetime.timedelta(days=1),
                         revocation_time=None, revocation_reason=None)
           .responder_id(ocsp.OCSPResponderEncoding.HASH, issuer)
           .sign(ca_key, hashes.SHA256())
           .public_bytes(serialization.Encoding.DER))
    paths = [os.path.join(root, f"static.{ext}") for ext in ("pem", "key", "ocsp")]
    for path, data in zip(paths, (leaf.chain_pem.encode(), leaf.key_pem.encode(), der)):
        with open(path, "wb") as f:
            f.write(data)
    return paths + [der]


@pytest.mark.parametrize("static_default", [True, False], ids=["static-default", "autotls-default"])
def test_static_ssl_stapling_on_the_same_listener(ocsp_pebble, test_root, static_default):
    """(f) nginx's own ssl_stapling_file on a static server of the same
    listener keeps stapling its response next to autotls's staples, whether
    the static server is the listener's default server (autotls's server
    is then served through its context) or not."""
    r = ocsp_pebble
    name, static = "auto.coop.test", "static.coop.test"
    cert, key, resp, der = static_stapled(test_root, TestCA(test_root), static)
    static_server = f"""
    server {{
        listen 127.0.0.1:{r.pebble.tls_port} ssl{' default_server' if static_default else ''};
        server_name {static};
        ssl_certificate     {cert};
        ssl_certificate_key {key};
        ssl_stapling        on;
        ssl_stapling_file   {resp};
        location / {{ return 200 "static\\n"; }}
    }}
"""
    ngx = ocsp_nginx(test_root, r.pebble, [(name,)],
                     extra_http=static_server if static_default else "",
                     extra_after="" if static_default else static_server)
    proc = ngx.test_config()
    assert proc.returncode == 0, proc.stderr
    with ngx.start():
        good_staple(ngx, r, name)
        got = fetch_staple("127.0.0.1", r.pebble.tls_port, static)
        assert cert_info(got["chain"][0])["subject"] == f"CN={static}"
        assert got["der"] == der
        # and autotls's certificate still gets its own response
        assert good_staple(ngx, r, name)["leaf_serial"] != cert_info(got["chain"][0])["serial"]


def test_crl_listed_certificate_replaced_live(pebble, test_root):
    """(g) certificates seeded from a test CA whose leaves name a CRL and
    no responder: the one the CRL lists is replaced through Pebble, live;
    the other is kept; the CRL server is asked once for their one URL."""
    srv = CrlServer().start()
    try:
        ca = TestCA(test_root, crl_url=srv.url("ca.crl"))
        listed = ca.issue(["listed.crl.test"])
        kept = ca.issue(["kept.crl.test"])
        ca.revoke(listed, reason="keyCompromise")
        srv.publish("ca.crl", ca.gencrl(hours=24))

        ngx = ocsp_nginx(test_root, pebble, [("listed.crl.test",), ("kept.crl.test",)])
        issuer = issuer_meta(pebble.directory, os.path.join(test_root, "pebble-ca.pem"),
                             contact=["admin@example.com"])
        seed_store(ngx.store, [
            {"names": [leaf.names[0]], "issuer": issuer,
             "certs": {"ec256": (leaf.key_pem, leaf.chain_pem)}} for leaf in (listed, kept)],
            owner=worker_owner("nginx"))
        with ngx.start():
            master, workers = ngx.master, ngx.worker_pids()
            # The driver may replace the listed certificate before the first
            # handshake here, so the seeded serial is not asserted as served;
            # the log line below proves it was the one the CRL listed.
            until_issued(ngx, pebble, pebble.tls_port, "listed.crl.test",
                         not_serial=listed.serial)
            assert (ngx.master, ngx.worker_pids()) == (master, workers), "not live"
            log = ngx.log()
            assert not re.search(r"signal 1 \(SIGHUP\)|reconfiguring", log), "nginx was reloaded"
            assert re.search(r"serial %s was revoked at .*listed in its CRL\): replacing it now"
                             % re.escape(listed.serial), log, re.IGNORECASE), log[-3000:]
            kt = wait_until(lambda: meta_kt(ngx, "kept.crl.test").get("crl_url"), timeout=30,
                            what="the kept certificate's CRL URL recorded")
            assert kt == srv.url("ca.crl")

            def kept_served():
                return cert_info(served_chain(pebble.tls_port, "kept.crl.test")[0])["serial"] \
                    == kept.serial
            stays(lambda: kept_served() and srv.count("ca.crl") == 1, 4,
                  what="the unlisted certificate kept, the CRL fetched once")
            assert "keyCompromise" in ngx.log()
    finally:
        srv.stop()


def test_refused_stored_response_logged_once(pebble, test_root):
    """A stored response that does not verify for the certificate (here:
    one for another certificate) is never stapled, and the worker says so
    once, not at every reload of the certificate."""
    ca = TestCA(test_root)
    leaf = ca.issue(["refused.ocsp.test"], cdp=False)
    _, _, _, other_der = static_stapled(test_root, ca, "other.ocsp.test")
    # one worker: every handshake, and so every reload, is in it
    ngx = ocsp_nginx(test_root, pebble, [("refused.ocsp.test",)], workers=1)
    issuer = issuer_meta(pebble.directory, os.path.join(test_root, "pebble-ca.pem"),
                         contact=["admin@example.com"])
    seed_store(ngx.store, [{"names": ["refused.ocsp.test"], "issuer": issuer,
                            "certs": {"ec256": (leaf.key_pem, leaf.chain_pem)}}],
               owner=worker_owner("nginx"))
    cert_dir = os.path.join(ngx.store, "certs", "refused.ocsp.test")
    with open(os.path.join(cert_dir, "ec256.ocsp"), "wb") as f:
        f.write(other_der)
    if worker_owner("nginx"):
        os.chown(os.path.join(cert_dir, "ec256.ocsp"), *worker_owner("nginx"))
    line = 'not stapling the stored OCSP response of "refused.ocsp.test"'
    with ngx.start():
        facts = staple_of("127.0.0.1", pebble.tls_port, "refused.ocsp.test")
        assert facts["leaf_serial"] == leaf.serial
        assert not facts["sent"], facts["text"]
        wait_until(lambda: line in ngx.log(), timeout=30, what="the refusal logged")

        # a new generation makes every worker load the certificate again
        with open(os.path.join(cert_dir, "meta.json")) as f:
            meta = json.load(f)
        meta["generation"] += 1
        replace_file(os.path.join(cert_dir, "meta.json"), json.dumps(meta))
        with open(os.path.join(ngx.store, "generation")) as f:
            gen = int(f.read().strip())
        replace_file(os.path.join(ngx.store, "generation"), f"{gen + 1}\n")
        wait_until(lambda: "changed in the store (generation 2)" in ngx.log(), timeout=30,
                   what="the new generation seen")
        for _ in range(2):
            assert not staple_of("127.0.0.1", pebble.tls_port, "refused.ocsp.test")["sent"]
        assert ngx.log().count(line) == 1, ngx.log()[-3000:]
