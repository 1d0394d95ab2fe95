"""The OCSP and CRL harness itself (ocspctl, stapleprobe, crlctl,
storeseed): Pebble writes the responder's URL, the responder answers good,
revoked, unknown as the index says and signs with Pebble's key (or, on
purpose, with a wrong one), the staple probes read what a server staples,
the test CA's leaves name their CRL, the CRL server answers conditional
requests, and a seeded store is served as is."""
import base64
import datetime
import json
import os
import socket
import subprocess
import urllib.error
import urllib.parse
import urllib.request

import procs
from clihelp import issue, stored_chain
from crlctl import CrlServer, TestCA
from ocspctl import TRY_LATER
from nginxctl import Nginx, issuer_block, server_block
from stapleprobe import check_staple, staple_of
from storeseed import issuer_meta, seed_store, worker_owner
from util import cert_info, free_port, run_cli, served_chain, stays, wait_until


def _x509(pem, *args):
    return subprocess.run(["openssl", "x509", "-noout", *args], input=pem, capture_output=True,
                          text=True, check=True).stdout.strip()


def test_responder_answers_from_its_index(ocsp_pebble, tmp_path):
    r = ocsp_pebble
    store = str(tmp_path / "store")
    issue(r.pebble, store, "one.ocsp.test", "two.ocsp.test")
    leaf = stored_chain(store, "one.ocsp.test")[0]
    assert _x509(leaf, "-ocsp_uri") == r.url
    serial = cert_info(leaf)["serial"]

    # not registered: unknown, but still signed by Pebble's intermediate
    # (issue, on the scheduler, asked once after its deploy: auto learnt it)
    r.auto = False
    r.forget(serial)
    asked = r.request_count(serial)
    q = r.query(serial)
    assert (q["status"], q["verified"]) == ("unknown", True), q["text"]

    r.add_good(leaf)
    q = r.query(serial)
    assert (q["status"], q["verified"]) == ("good", True), q["text"]
    assert "Next Update:" in q["text"]          # -nmin: responses expire

    r.revoke(serial, reason="keyCompromise")
    q = r.query(serial)
    assert (q["status"], q["verified"]) == ("revoked", True), q["text"]
    assert "Reason: keyCompromise" in q["text"]

    # the relay saw every request, by serial; a GET (RFC 5019) works too
    assert r.request_count(serial) == asked + 3
    der_path = str(tmp_path / "req.der")
    subprocess.run(["openssl", "ocsp", "-issuer", r.inter_path, "-serial", "0x" + serial,
                    "-no_nonce", "-reqout", der_path], check=True, capture_output=True)
    with open(der_path, "rb") as f:
        b64 = urllib.parse.quote(base64.b64encode(f.read()).decode(), safe="")
    with urllib.request.urlopen(r.url + b64, timeout=10) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "application/ocsp-response"
    assert r.requests[-1] == ("GET", serial)

    # a response signed by anything but the intermediate (or a responder
    # it certified) does not verify
    r.set_wrong_key(True)
    q = r.query(serial)
    assert q["status"] == "revoked" and not q["verified"], q["text"]
    r.set_wrong_key(False)
    r.set_delegated(True)
    q = r.query(serial)
    assert (q["status"], q["verified"]) == ("revoked", True), q["text"]
    r.set_delegated(False)

    # canned answers and delays, in place of openssl's
    r.serve_raw(TRY_LATER)
    q = r.query(serial)
    assert q["status"] is None and "trylater" in q["text"].lower(), q["text"]
    r.serve_raw(None)
    r.set_delay(6)
    q = r.query(serial, timeout=1)      # a client that gives up first
    assert q["status"] is None, q["text"]
    r.set_delay(0)
    assert r.query(serial)["status"] == "revoked"

    # down means connections refused; up again answers as before
    r.stop()
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", r.port)) != 0
    r.start()
    assert r.query(serial)["status"] == "revoked"


def test_staple_probes_read_a_real_staple(ocsp_pebble, tmp_path):
    """stapleprobe against `openssl s_server -status_file`: sent or not,
    good or revoked, verifiable or not."""
    r = ocsp_pebble
    store = str(tmp_path / "store")
    issue(r.pebble, store, "staple.ocsp.test")
    with open(os.path.join(store, "certs", "staple.ocsp.test", "ec256.pem")) as f:
        text = f.read()
    key_pem = text[:text.index("-----BEGIN CERTIFICATE-----")]
    chain = stored_chain(store, "staple.ocsp.test")
    serial = cert_info(chain[0])["serial"]
    paths = {n: str(tmp_path / n) for n in ("key.pem", "leaf.pem", "inter.pem")}
    for n, data in (("key.pem", key_pem), ("leaf.pem", chain[0]), ("inter.pem", chain[1])):
        with open(paths[n], "w") as f:
            f.write(data)
    r.add_good(chain[0])
    good, wrong = str(tmp_path / "good.der"), str(tmp_path / "wrong.der")
    assert r.query(serial, respout=good)["status"] == "good"
    r.set_wrong_key(True)
    assert r.query(serial, respout=wrong)["status"] == "good"

    def s_server(status_file):
        port = free_port()
        argv = ["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert", paths["leaf.pem"],
                "-key", paths["key.pem"], "-cert_chain", paths["inter.pem"], "-naccept", "100",
                "-quiet"]
        if status_file:
            argv += ["-status_file", status_file]
        proc = procs.spawn(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def up():
            if proc.poll() is not None:
                raise RuntimeError(f"s_server exited {proc.returncode}")
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        try:
            wait_until(up, timeout=10, what="s_server")
        except BaseException:
            procs.stop(proc)
            raise
        return proc, port

    for status_file, sent, verified in ((good, True, True), (wrong, True, False),
                                        (None, False, False)):
        proc = None
        try:
            proc, port = s_server(status_file)
            facts = staple_of("127.0.0.1", port, "staple.ocsp.test")
            assert facts["sent"] is sent, facts["text"]
            assert facts["leaf_serial"] == serial
            if sent:
                assert facts["response_status"] == "successful"
                assert facts["cert_status"] == "good"
                assert facts["serial"] == serial
                assert facts["next_update"] > facts["this_update"]
            checked = check_staple("127.0.0.1", port, "staple.ocsp.test", r.issuer_pem)
            assert checked["sent"] is sent
            assert checked["verified"] is verified, checked.get("text")
            if verified:
                assert checked["leaf_status"] == "good" and checked["for_leaf"]
                assert checked["times_valid"]
        finally:
            if proc:
                procs.stop(proc)


def _get(url, headers=None):
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_crl_ca_and_server(tmp_path):
    srv = CrlServer().start()
    try:
        url = srv.url("test-ca.crl")
        ca = TestCA(str(tmp_path), crl_url=url)
        leaf = ca.issue(["crl.test", "www.crl.test"], days=10)
        other = ca.issue(["other.crl.test"], valid_for=datetime.timedelta(hours=2))
        text = _x509(leaf.cert_pem, "-text")
        assert f"URI:{url}" in text
        assert "Authority Information Access" not in text and not _x509(leaf.cert_pem,
                                                                        "-ocsp_uri")
        assert cert_info(leaf.chain_pem)["names"] == ["crl.test", "www.crl.test"]
        verify = subprocess.run(["openssl", "verify", "-CAfile", ca.root_cert, "-untrusted",
                                 ca.cert], input=leaf.cert_pem, capture_output=True, text=True)
        assert verify.stdout.strip().endswith("OK"), verify.stderr

        srv.publish("test-ca.crl", ca.gencrl())
        status, h, body = _get(url)
        assert status == 200 and h["ETag"] and h["Last-Modified"] and body
        assert h["Content-Type"] == "application/pkix-crl"
        assert _get(url, {"If-None-Match": h["ETag"]})[0] == 304
        assert _get(url, {"If-Modified-Since": h["Last-Modified"]})[0] == 304
        assert _get(srv.url("nothing.crl"))[0] == 404
        assert srv.count("test-ca.crl") == 3

        def crl_text(der):
            return subprocess.run(["openssl", "crl", "-inform", "DER", "-noout", "-text",
                                   "-CAfile", ca.cert], input=der, capture_output=True,
                                  check=True).stdout.decode()

        assert "No Revoked Certificates" in crl_text(body)
        ca.revoke(leaf, reason="keyCompromise")
        srv.publish("test-ca.crl", ca.gencrl(hours=1))
        status, h2, body2 = _get(url, {"If-None-Match": h["ETag"]})
        assert status == 200 and h2["ETag"] != h["ETag"]
        listed = crl_text(body2)
        assert f"Serial Number: {leaf.serial.upper()}" in listed
        assert "Key Compromise" in listed
        assert other.serial.upper() not in listed
        verified = subprocess.run(["openssl", "crl", "-inform", "DER", "-noout", "-CAfile",
                                   ca.cert], input=body2, capture_output=True)
        assert b"verify OK" in verified.stdout + verified.stderr
        assert srv.count() == 5
    finally:
        srv.stop()


def test_seeded_store_is_served_as_is(pebble, test_root):
    """A test-CA certificate seeded with the server's names and directory is
    served from the first handshake and kept (the server learns its facts
    from the files and orders nothing)."""
    srv = CrlServer().start()
    try:
        ca = TestCA(test_root, crl_url=srv.url("seed.crl"))
        leaf = ca.issue(["seed.crl.test"], days=30)
        store = os.path.join(test_root, "store")
        body = issuer_block(pebble, test_root)
        http_port, tls_port = free_port(), free_port()
        seed_store(store, [{
            "names": ["seed.crl.test"],
            "issuer": issuer_meta(pebble.directory, os.path.join(test_root, "pebble-ca.pem"),
                                  contact=["admin@example.com"]),
            "certs": {"ec256": (leaf.key_pem, leaf.chain_pem)}}], owner=worker_owner("nginx"))
        body += f"    autotls_store {store};\n"
        body += server_block(["seed.crl.test"], http_port, tls_port)
        with Nginx(test_root, body, workers=1) as ngx:
            ngx.start()
            served = lambda: cert_info(served_chain(tls_port, "seed.crl.test")[0])["serial"]
            assert served() == leaf.serial

            def learned():
                with open(os.path.join(store, "certs", "seed.crl.test", "meta.json")) as f:
                    m = json.load(f)
                return m.get("certs", {}).get("ec256", {}).get("serial") == leaf.serial
            wait_until(learned, timeout=30, what="the server to record the seeded certificate")
            stays(lambda: served() == leaf.serial, 1, what="the seeded certificate served")
    finally:
        srv.stop()


def test_responder_learns_from_pebble(ocsp_pebble, tmp_path):
    """auto: what Pebble issued is good without registration, what Pebble
    revoked (`autotls revoke`) becomes revoked, a serial Pebble never issued
    stays unknown, and an explicit forget() wins."""
    r = ocsp_pebble
    store = str(tmp_path / "store")
    issue(r.pebble, store, "auto.ocsp.test")
    serial = cert_info(stored_chain(store, "auto.ocsp.test")[0])["serial"]
    assert r.query(serial)["status"] == "good"
    assert r.query("7e57ab1e")["status"] == "unknown"
    run_cli("revoke", "--store", store, "--reason", "keyCompromise", "auto.ocsp.test")
    q = r.query(serial)
    assert (q["status"], q["verified"]) == ("revoked", True), q["text"]
    assert "Reason: keyCompromise" in q["text"], q["text"]
    assert r.add_good_from_store(store, "auto.ocsp.test") == serial
    assert r.query(serial)["status"] == "good"
    r.forget(serial)
    assert r.query(serial)["status"] == "unknown"
