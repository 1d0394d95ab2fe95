"""OCSP stapling and revocation in mod_autotls, live: a real Pebble writing
an OCSP URL into what it issues, a real `openssl ocsp` responder signing
with Pebble's intermediate key (ocspctl.py), a real CRL server and test CA
(crlctl.py), real Apache with the module checking every 2 s.

What a client sees is checked with `openssl s_client -status` and one
libssl handshake whose staple `openssl ocsp` verifies (stapleprobe.py);
what the server knows, with meta.json and its error log.

Servers are shared by related checks (module fixtures) to keep the file
short; each test waits for the state it needs instead of assuming the one
the test before it left."""
import json
import os
import re
import shutil

import pytest

from apachectl import Apache, stop_quietly
from apache_helpers import assert_no_restart, served, wait_issued
from crlctl import CrlServer, TestCA
from ocspctl import OcspResponder, ocsp_url_for
from pebblectl import Pebble
from stapleprobe import check_staple, staple_of
from storeseed import issuer_meta, seed_store, worker_owner
from util import free_port, make_test_root, stays, wait_until, replace_file

ECDSA = "ecdsa_secp256r1_sha256"
RSA = "rsa_pss_rsae_sha256:rsa_pkcs1_sha256"
SOCACHE = "LoadModule socache_shmcb_module /usr/lib/apache2/modules/mod_socache_shmcb.so"

# mod_ssl's own stapling callback says this (debug) each time it runs
MOD_SSL_STAPLING_CB = "AH01951"


# ---- shared set-ups ------------------------------------------------------------

class _Stack:
    """Things a module fixture started, stopped in reverse order by PID."""

    def __init__(self):
        self.root = make_test_root()
        self.things = []

    def add(self, thing):
        self.things.append(thing)
        return thing

    def close(self):
        for thing in reversed(self.things):
            if isinstance(thing, Apache):
                stop_quietly(thing)
            elif isinstance(thing, CrlServer):
                thing.stop()
            else:
                thing.close()
        reports = "".join(t.sanitizer_reports() for t in self.things if isinstance(t, Apache))
        shutil.rmtree(self.root, ignore_errors=True)
        assert not reports, f"sanitizer reports from Apache:\n{reports[:4000]}"


def _ocsp_ca(stack):
    """A Pebble that writes a responder's URL into every certificate, and
    that responder (nextUpdate = thisUpdate + 1 min), both started."""
    port = free_port()
    pebble = stack.add(Pebble(ocsp_url=ocsp_url_for(port)))
    pebble.start()
    return stack.add(OcspResponder(pebble, stack.root, nmin=1, port=port)).start()


def _apache(stack, pebble, hosts, **kw):
    root = os.path.join(stack.root, f"apache-{len(stack.things)}")
    os.makedirs(root)
    os.chmod(root, 0o755)
    kw.setdefault("check_interval", "2s")
    return stack.add(Apache(root, pebble, hosts, **kw))


@pytest.fixture(scope="module")
def stapling_server():
    """One Apache, ECDSA and RSA certificates for two hosts; the second
    also has mod_ssl's SSLUseStapling On."""
    stack = _Stack()
    try:
        responder = _ocsp_ca(stack)
        apache = _apache(
            stack, responder.pebble, [["ocsp.apache.test"], ["msl.apache.test"]],
            keys="ec256 rsa2048", loglevel="info autotls:debug ssl:debug",
            global_extra=f'{SOCACHE}\nSSLStaplingCache "shmcb:{stack.root}/stapling(32768)"',
            host_extra={"msl.apache.test": "    SSLUseStapling On"}).start()
        yield apache, responder
    finally:
        stack.close()


# ---- helpers -------------------------------------------------------------------

def meta_kt(apache, cert_id, kt="ec256"):
    """meta.json's facts for one key type of cert_id ({} before any)."""
    try:
        with open(os.path.join(apache.store, "certs", cert_id, "meta.json")) as f:
            return (json.load(f).get("certs") or {}).get(kt) or {}
    except FileNotFoundError:
        return {}


def status_key(apache, cert_id, kt="ec256"):
    """The status page's entry for one key type of cert_id ({} before any)."""
    for cert in apache.status_json()["certificates"]:
        if cert["id"] == cert_id:
            return {k["type"]: k for k in cert.get("keys") or []}.get(kt) or {}
    return {}


def stapled(apache, responder, name, sigalgs=ECDSA):
    return check_staple("127.0.0.1", apache.tls_port, name, responder.issuer_pem,
                        sigalgs=sigalgs)


def good_staple(apache, responder, name, sigalgs=ECDSA, not_serial=None, timeout=60):
    """Waits until name is served with a Pebble certificate (other than
    not_serial) stapled with a "good" response for it that verifies against
    Pebble's intermediate; returns check_staple's facts."""
    def ok():
        facts = stapled(apache, responder, name, sigalgs)
        if facts["leaf_serial"] == not_serial or not facts["sent"]:
            return None
        return facts if facts["verified"] and facts["leaf_status"] == "good" else None
    try:
        return wait_until(ok, timeout=timeout, interval=0.5,
                          what=f"a verified good staple for {name}")
    except AssertionError as e:
        raise AssertionError(f"{e}\nerror.log tail:\n{apache.log_text()[-4000:]}") from None


def autotls_lines(apache, levels="warn|error|crit|alert|emerg"):
    return re.findall(rf"^.*\[autotls:(?:{levels})\].*$", apache.log_text(), re.M)


# ---- (a) a good, verifiable staple for each key type ---------------------------

def test_staples_good_response_for_ecdsa_and_rsa(stapling_server):
    apache, responder = stapling_server
    name = "ocsp.apache.test"
    ec = good_staple(apache, responder, name, ECDSA)
    rsa = good_staple(apache, responder, name, RSA)
    assert ec["leaf_serial"] != rsa["leaf_serial"]
    # each staple answers for the leaf it came with
    assert ec["serial"] == ec["leaf_serial"] and rsa["serial"] == rsa["leaf_serial"]
    assert ec["next_update"] > ec["this_update"]
    for sigalgs, kt in ((ECDSA, "ec256"), (RSA, "rsa2048")):
        chain, info = served(apache, name, ("-sigalgs", sigalgs))
        assert info["key_type"] == kt and not info["self_signed"]
        ocsp = status_key(apache, name, kt)["ocsp"]
        assert ocsp["status"] == "good" and ocsp["url"] == responder.url, ocsp
        assert ocsp["next_update"] and not ocsp["error"]

    # what openssl s_client -status prints
    text = staple_of("127.0.0.1", apache.tls_port, name)
    assert text["response_status"] == "successful", text["text"]
    assert text["cert_status"] == "good", text["text"]
    # a stored response that verifies is never reported as refused
    assert not [line for line in autotls_lines(apache) if "OCSP" in line]


# ---- (f) SSLUseStapling On on an AutoTLS host ------------------------------------

def test_sslusestapling_on_autotls_host_is_autotls_stapling(stapling_server):
    """Documented: autotls's status callback replaces mod_ssl's on AutoTLS
    hosts; mod_ssl complains at start-up about the self-signed fallback,
    autotls says why; clients get autotls's staple and mod_ssl's stapling
    callback never runs."""
    apache, responder = stapling_server
    name = "msl.apache.test"
    ec = good_staple(apache, responder, name, ECDSA)
    rsa = good_staple(apache, responder, name, RSA)
    assert ec["leaf_serial"] != rsa["leaf_serial"]
    log = apache.log_text()
    start = apache.stdout_text() + log
    assert "SSLUseStapling On has no effect in an AutoTLS host" in start
    assert "AH02217" in log or "AH02604" in log, "mod_ssl's start-up complaint changed"
    # with ssl:debug, mod_ssl logs AH01951 whenever its callback runs: it
    # never did, though clients asked for status on that host many times
    assert MOD_SSL_STAPLING_CB not in log
    # the other host has no SSLUseStapling: no warning naming it
    assert not re.search(r"AutoTLS On for ocsp\.apache\.test.*SSLUseStapling", start)


# ---- (b) revoked at the responder: replaced live, the new one stapled -----------

def test_revoked_certificate_replaced_live_and_stapled(stapling_server):
    apache, responder = stapling_server
    name = "ocsp.apache.test"
    parent = apache.pid
    old = good_staple(apache, responder, name, ECDSA)
    rsa_before = good_staple(apache, responder, name, RSA)["leaf_serial"]

    responder.revoke(old["leaf_serial"], reason="keyCompromise")
    # the scheduler asks again halfway through the 1 min validity, learns
    # "revoked" and orders at once; every child then serves the new one
    new = good_staple(apache, responder, name, ECDSA, not_serial=old["leaf_serial"],
                      timeout=90)
    assert new["leaf_serial"] != old["leaf_serial"]
    _, info = served(apache, name, ("-sigalgs", ECDSA))
    assert info["serial"] == new["leaf_serial"] and not info["self_signed"]
    assert_no_restart(apache, parent)
    # only the revoked key type was replaced
    assert stapled(apache, responder, name, RSA)["leaf_serial"] == rsa_before
    assert re.search(rf"{re.escape(name)}.*ec256.*{old['leaf_serial']}.*revoked",
                     apache.log_text(), re.I), apache.log_text()[-3000:]
    assert meta_kt(apache, name, "ec256").get("serial") == new["leaf_serial"]


# ---- (c) responder down: kept while valid, dropped after nextUpdate -------------

def test_responder_down_keeps_staple_while_valid(stapling_server):
    apache, responder = stapling_server
    name = "msl.apache.test"
    parent = apache.pid
    held = good_staple(apache, responder, name, ECDSA)
    responder.stop()
    try:
        # the refresh halfway fails: the held response is still stapled
        wait_until(lambda: meta_kt(apache, name).get("ocsp_failures", 0) >= 1, timeout=60,
                   what="a failed OCSP refresh")
        now = stapled(apache, responder, name, ECDSA)
        assert now["sent"] and now["verified"] and now["leaf_status"] == "good", now
        assert now["leaf_serial"] == held["leaf_serial"]

        # past its nextUpdate (1 min after thisUpdate) it is never stapled;
        # the certificate is still served
        wait_until(lambda: not stapled(apache, responder, name, ECDSA)["sent"], timeout=90,
                   what="the staple to be dropped after nextUpdate")
        text = staple_of("127.0.0.1", apache.tls_port, name)
        assert not text["sent"], text["text"]
        assert text["leaf_serial"] == held["leaf_serial"]
        assert meta_kt(apache, name).get("ocsp_error")
        assert_no_restart(apache, parent)
    finally:
        responder.start()


# ---- (d) a response signed by the wrong key -------------------------------------

def test_wrong_key_response_is_never_stapled():
    """(d), and a host with AutoTLSStapling Off beside it: its responder is
    never asked and nobody staples there, not even mod_ssl with
    SSLUseStapling On."""
    stack = _Stack()
    try:
        responder = _ocsp_ca(stack)
        responder.set_wrong_key(True)
        name, off = "wrongkey.apache.test", "off.apache.test"
        apache = _apache(
            stack, responder.pebble, [[name], [off]], loglevel="info ssl:debug",
            global_extra=f'{SOCACHE}\nSSLStaplingCache "shmcb:{stack.root}/stapling(32768)"',
            host_extra={off: "    AutoTLSStapling Off\n    SSLUseStapling On"}).start()
        wait_issued(apache, responder.pebble, name)
        _, off_info = wait_issued(apache, responder.pebble, off)
        # the scheduler asked and refused the answer: the status page says so
        ocsp = wait_until(lambda: (lambda o: o if o and o["status"] == "error" else None)(
            status_key(apache, name).get("ocsp")), timeout=60,
            what="the OCSP error on the status page")
        assert ocsp["error"], ocsp
        assert responder.request_count() >= 1
        stays(lambda: not staple_of("127.0.0.1", apache.tls_port, name)["sent"]
              and not staple_of("127.0.0.1", apache.tls_port, off)["sent"], 3,
              what="no staple")
        assert responder.request_count(off_info["serial"]) == 0
        assert status_key(apache, off)["ocsp"]["status"] == "none"
        assert MOD_SSL_STAPLING_CB not in apache.log_text()
        ocsp_file = os.path.join(apache.store, "certs", name, "ec256.ocsp")
        assert not os.path.exists(ocsp_file)

        # the same wrong-key answer put in the store behind the scheduler's
        # back: each child verifies it when it loads the certificate, says
        # why once, and staples nothing
        serial = served(apache, name)[1]["serial"]
        assert responder.query(serial, respout=ocsp_file)["status"] == "good"
        _bump_generation(apache)
        refused = (r"\[autotls:warn\].*wrongkey\.apache\.test: the stored OCSP response "
                   r"for the ec256 certificate is not stapled: ")
        # a child loads at its next handshake for the name
        wait_until(lambda: served(apache, name) and apache.log_count(refused), timeout=30,
                   what="the refused stored response in the error log")
        stays(lambda: not staple_of("127.0.0.1", apache.tls_port, name)["sent"], 2,
              what="no staple from the store either")
        assert served(apache, name)[1]["serial"] == serial
    finally:
        stack.close()


def _bump_generation(apache):
    """What a deploy by someone else does: children load every certificate
    again (the store's files stay the worker user's)."""
    path = os.path.join(apache.store, "generation")
    with open(path) as f:
        gen = int(f.read().strip() or 0)
    replace_file(path, f"{gen + 1}\n")
    owner = worker_owner("apache")
    if owner:
        os.chown(os.path.join(apache.store, "certs", "wrongkey.apache.test", "ec256.ocsp"),
                 *owner)


# ---- (e) no OCSP URL, (g) CRLs: Pebble without a responder, a test CA -----------

def test_no_responder_and_crl_revocation(pebble):
    """(e) Pebble's certificates name no responder: no staple, and no
    OCSP line in the log.  (g) Two certificates seeded from a test CA whose
    CRL lists one of them: that one is replaced live through Pebble, the
    other is kept."""
    stack = _Stack()
    try:
        crl = stack.add(CrlServer().start())
        ca = TestCA(stack.root, crl_url=crl.url("ca.crl"))
        listed = ca.issue(["listed.crl.test"], days=30)
        kept = ca.issue(["kept.crl.test"], days=30)
        ca.revoke(listed, reason="keyCompromise")
        crl.publish("ca.crl", ca.gencrl(hours=24))

        hosts = [["plain.noresp.apache.test"], ["listed.crl.test"], ["kept.crl.test"]]
        apache = _apache(stack, pebble, hosts)
        issuer = issuer_meta(pebble.directory, ca_file=apache.ca_file,
                             contact=["mailto:admin@example.com"])
        seed_store(apache.store, [
            {"names": leaf.names, "issuer": issuer,
             "certs": {"ec256": (leaf.key_pem, leaf.chain_pem)}}
            for leaf in (listed, kept)], owner=worker_owner("apache"))
        apache.start()
        parent = apache.pid

        # (g) the listed one is replaced by a Pebble certificate, live
        wait_issued(apache, pebble, "listed.crl.test", not_serial=listed.serial)
        assert crl.count("ca.crl") >= 1
        facts = meta_kt(apache, "listed.crl.test")
        assert facts.get("serial") != listed.serial
        assert served(apache, "kept.crl.test")[1]["serial"] == kept.serial
        # the kept certificate's CRL check may still be under way
        kept_status = wait_until(
            lambda: (lambda k: k if (k.get("crl") or {}).get("url") == crl.url("ca.crl")
                     and k["crl"].get("fetched") else None)(
                status_key(apache, "kept.crl.test")),
            timeout=30, what="the kept certificate's CRL URL and fetch on the status page")
        assert kept_status["revoked"] is None and kept_status["crl"]["url"] == crl.url("ca.crl")
        assert_no_restart(apache, parent)

        # (e) a Pebble certificate without an OCSP URL: no staple
        plain = "plain.noresp.apache.test"
        wait_issued(apache, pebble, plain)
        stays(lambda: not staple_of("127.0.0.1", apache.tls_port, plain)["sent"], 3,
              what="no staple without a responder")
        ocsp = status_key(apache, plain)["ocsp"]
        assert ocsp["status"] == "none" and ocsp["url"] is None and not ocsp["error"], ocsp
        assert not [line for line in autotls_lines(apache) if re.search(r"ocsp|stapl", line, re.I)]
        assert not re.search(rf"^.*\[autotls:.*{re.escape(plain)}.*(OCSP|stapl).*$",
                             apache.log_text(), re.M | re.I)
        # the kept certificate was still served all along, unchanged
        assert served(apache, "kept.crl.test")[1]["serial"] == kept.serial
    finally:
        stack.close()

