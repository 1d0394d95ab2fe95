"""Status output (JSON, Prometheus, server-status), key hygiene in logs
and files, and CA errors in the error log."""
import json
import os
import re
import stat

from apache_helpers import apache_factory, wait_issued  # noqa: F401
from util import served_chain, cert_info, stays


def walk(root):
    for d, dirs, files in os.walk(root):
        for name in dirs + files:
            yield os.path.join(d, name)


def test_status_json_prometheus_and_server_status(pebble, apache_factory):  # noqa: F811
    hosts = [["st.apache.test", "www.st.apache.test"], ["st2.apache.test"]]
    apache = apache_factory(pebble, hosts).start()
    _, info = wait_issued(apache, pebble, "www.st.apache.test")
    _, info2 = wait_issued(apache, pebble, "st2.apache.test")

    status, headers, body = apache.http_get("/autotls-status")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    doc = json.loads(body)
    certs = {c["id"]: c for c in doc["certificates"]}
    assert set(certs) == {"st.apache.test", "st2.apache.test"}
    c = certs["st.apache.test"]
    assert c["names"] == ["st.apache.test", "www.st.apache.test"]
    assert c["state"] == "valid" and c["failures"] == 0
    assert c["keys"][0]["type"] == "ec256"
    # compare as numbers: the status pads to whole bytes ("0f..."), Python does not
    assert int(c["keys"][0]["serial"], 16) == int(info["serial"], 16)
    assert int(certs["st2.apache.test"]["keys"][0]["serial"], 16) == int(info2["serial"], 16)
    assert b"PRIVATE KEY" not in body and b"BEGIN" not in body

    status, headers, body = apache.http_get("/autotls-status?format=prometheus")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    text = body.decode()
    assert re.search(r'^autotls_certificate_\w+\{[^}]*id="st\.apache\.test"', text, re.M)
    assert re.search(r'^autotls_certificate_\w+\{[^}]*id="st2\.apache\.test"', text, re.M)
    assert "BEGIN" not in text

    # filters and pages; a bad value is a 400 naming its parameter
    status, _, body = apache.http_get("/autotls-status?name=WWW.st.apache.test")
    doc = json.loads(body)
    assert status == 200 and doc["total"] == 1
    assert [c["id"] for c in doc["certificates"]] == ["st.apache.test"]
    doc = json.loads(apache.http_get("/autotls-status?state=valid&limit=1&offset=1")[2])
    assert doc["total"] == 2 and doc["limit"] == 1
    assert [c["id"] for c in doc["certificates"]] == ["st2.apache.test"]
    status, _, body = apache.http_get("/autotls-status?format=prometheus&state=failed")
    assert status == 200 and "\nautotls_certificates_selected 0\n" in body.decode()
    assert 'id="st.apache.test"' not in body.decode()
    for query, param in (("limit=0", "limit"), ("offset=-1", "offset"),
                         ("state=nope", "state"), ("name=a%2Fb", "name")):
        status, _, body = apache.http_get("/autotls-status?" + query)
        assert status == 400 and body.decode().startswith(param + ":"), (query, body)

    status, _, body = apache.http_get("/server-status")
    assert status == 200
    assert b"AutoTLS certificates" in body and b"st2.apache.test" in body
    status, _, body = apache.http_get("/server-status?auto")
    assert status == 200
    assert re.search(rb"AutoTLS st\.apache\.test: state=valid failures=0", body)


def test_file_permissions(pebble, apache_factory):  # noqa: F811
    hosts = [["perm.apache.test", "www.perm.apache.test"]]
    apache = apache_factory(pebble, hosts).start()
    wait_issued(apache, pebble, "perm.apache.test")
    st = os.stat(apache.store)
    assert stat.S_IMODE(st.st_mode) == 0o700
    if os.geteuid() == 0:
        import pwd
        assert pwd.getpwuid(st.st_uid).pw_name == "www-data"
    keys = []
    for path in walk(apache.store):
        mode = stat.S_IMODE(os.lstat(path).st_mode)
        if os.path.isdir(path):
            assert mode == 0o700, f"{path} is {oct(mode)}"
            continue
        with open(path, "rb") as f:
            data = f.read()
        if b"PRIVATE KEY" in data:
            keys.append(path)
            assert mode == 0o600, f"{path} holds a key but is {oct(mode)}"
        else:
            assert mode & 0o022 == 0, f"{path} is writable by others: {oct(mode)}"
    names = {os.path.relpath(k, apache.store) for k in keys}
    assert "certs/perm.apache.test/ec256.pem" in names
    assert "fallback/perm.apache.test/ec256.key" in names
    assert any(n.startswith("accounts/") for n in names)


def test_no_key_material_in_debug_log(pebble, apache_factory):  # noqa: F811
    hosts = [["dbg.apache.test", "www.dbg.apache.test"]]
    apache = apache_factory(pebble, hosts, loglevel="debug", challenge="tls-alpn-01").start()
    wait_issued(apache, pebble, "www.dbg.apache.test")
    log = apache.log_text()
    assert "acme:" in log, "debug logging from the core is missing"
    assert "PRIVATE KEY" not in log
    assert not re.search(r"MII[A-Za-z0-9+/]{60}", log), "base64 DER in the log"


def test_handshakes_reuse_parsed_certificates(pebble, apache_factory):  # noqa: F811
    hosts = [["cache.apache.test", "www.cache.apache.test"]]
    apache = apache_factory(pebble, hosts, loglevel="debug").start()
    _, info = wait_issued(apache, pebble, "cache.apache.test")
    for _ in range(20):
        assert served_chain(apache.tls_port, "www.cache.apache.test")
    loads = re.findall(r"cache\.apache\.test: child (\d+) loaded (\d+) certificate\(s\) "
                       r"at generation (\d+)", apache.log_text())
    assert loads, "the per-child cache never loaded"
    # a child parses the store once per generation, not once per handshake
    keys = [(pid, gen) for pid, _, gen in loads]
    assert len(keys) == len(set(keys)), loads
    assert len(loads) <= 2 * len(apache.children()) + 2


def test_ca_error_logged_once_per_attempt_with_problem_type(pebble_factory,  # noqa: F811
                                                            apache_factory):
    ca = pebble_factory(eab={"kid-1": "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"})
    hosts = [["eab.apache.test", "www.eab.apache.test"]]
    apache = apache_factory(ca, hosts).start()
    pattern = r"\[autotls:error\].*urn:ietf:params:acme:error:externalAccountRequired"
    apache.wait_log(pattern)
    # several check intervals later: still one line for the one attempt
    stays(lambda: apache.log_count(pattern) == 1, 4, what="one error line")
    c = apache.status_json()["certificates"][0]
    assert c["state"] == "failed" and c["failures"] == 1
    assert "externalAccountRequired" in c["last_error"]
    assert cert_info(served_chain(apache.tls_port, "eab.apache.test")[0])["self_signed"]


def test_eab_account_binding(pebble_factory, apache_factory):  # noqa: F811
    key = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"
    ca = pebble_factory(eab={"kid-1": key})
    hosts = [["eab2.apache.test"]]
    apache = apache_factory(ca, hosts, global_extra=f"AutoTLSEAB kid-1 {key}").start()
    wait_issued(apache, ca, "eab2.apache.test")
    # the HMAC key is a secret: not in the store's metadata, not in the log
    with open(os.path.join(apache.store, "certs", "eab2.apache.test", "meta.json")) as f:
        assert key not in f.read()
    assert key not in apache.log_text()
