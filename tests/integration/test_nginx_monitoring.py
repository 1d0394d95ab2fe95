"""Monitoring of the certificates nginx serves that autotls does not manage:
static ssl_certificate files (expired, name mismatch, RSA-1024, SHA-1) are
discovered at start, each finding is logged once, shown on the status page
(JSON, source "static") and in the Prometheus metrics, listed by
`autotls list --all`, and `autotls scan` finds the same on the wire."""
import json
import os
import re
import shutil
import urllib.request

import pytest

from certmaker import SECLEVEL0, CertMaker
from nginxctl import Nginx, issuer_block, server_block, status_server, until_issued
from util import free_port, make_test_root, run_cli, wait_until

# served name -> (how the certificate is made, the finding it must carry)
STATIC = {
    "expired.mon.test": ("expired", "expired"),
    "mismatch.mon.test": ("mismatch", "name-mismatch"),
    "weak.mon.test": ("rsa1024", "weak-key"),
    "sha1.mon.test": ("sha1", "sha1-signature"),
}


def static_server(name, leaf, port):
    return f"""
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name {name};
        ssl_certificate     {leaf.cert};
        ssl_certificate_key {leaf.key};
        ssl_ciphers         {SECLEVEL0};
        location / {{ return 200 "static $server_name\\n"; }}
    }}
"""


def _monitored(pebble, root):
    """nginx with one managed certificate (so that the driver runs) and the
    four static ones on another ssl port; yields (ngx, leaves, ports)."""
    cm = CertMaker(os.path.join(root, "static"))
    leaves = {name: getattr(cm, how)(name) for name, (how, _) in STATIC.items()}
    static_port, status_port = free_port(), free_port()
    store = os.path.join(root, "store")
    body = issuer_block(pebble, root)
    body += f"    autotls_store {store};\n    autotls_check_interval 1s;\n"
    body += server_block(["managed.mon.test"], pebble.http_port, pebble.tls_port)
    for name, leaf in leaves.items():
        body += static_server(name, leaf, static_port)
    body += status_server(status_port)
    ngx = Nginx(root, body)
    with ngx.start():
        until_issued(ngx, pebble, pebble.tls_port, "managed.mon.test")
        yield ngx, leaves, {"static": static_port, "status": status_port}


@pytest.fixture(scope="module")
def monitored(pebble):
    """One such nginx for the tests that only look at it (its log, status
    page, metrics, store and endpoints): none of them reloads or changes it."""
    root = make_test_root()
    try:
        yield from _monitored(pebble, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def monitored_own(pebble_factory, test_root):
    """A nginx of the test's own, for a test that reloads it; with a Pebble
    of its own too, since the shared nginx above holds the session Pebble's
    challenge ports until the module ends."""
    yield from _monitored(pebble_factory(), test_root)


def fetch(port, query=""):
    url = f"http://127.0.0.1:{port}/autotls-status{query}"
    return urllib.request.urlopen(url, timeout=10).read().decode()


def static_items(doc):
    """Every object of the status JSON that says source "static"."""
    found = []

    def walk(o):
        if isinstance(o, dict):
            if o.get("source") == "static" and "path" in o:
                found.append(o)
            for v in o.values():
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)
    walk(doc)
    return found


def test_findings_logged_once_at_start(monitored):
    ngx, leaves, _ = monitored
    log = ngx.log()
    for name, (_, finding) in STATIC.items():
        path = leaves[name].cert
        lines = [l for l in log.splitlines()
                 if f'certificate "{path}"' in l and f": {finding}:" in l]
        # the master logs it; workers (and the driver) never repeat it
        assert len(lines) == 1, f"{finding} of {path}: {lines}\n{log[-3000:]}"
        assert f"{ngx.conf}:" in lines[0], lines[0]


def test_status_page_shows_each_static_certificate(monitored):
    ngx, leaves, ports = monitored

    def items():
        got = {i["path"]: i for i in static_items(json.loads(fetch(ports["status"])))}
        return got if all(l.cert in got for l in leaves.values()) else None
    got = wait_until(items, timeout=30, what="static certificates on the status page")
    for name, (_, finding) in STATIC.items():
        item = got[leaves[name].cert]
        assert item["server"] == "nginx"
        assert name in item["used_names"]
        assert any(u.startswith(ngx.conf + ":") for u in item["used_by"]), item
        assert finding in [f["finding"] for f in item["findings"]], item


def test_metrics_show_static_certificates(monitored):
    ngx, leaves, ports = monitored

    def metrics():
        text = fetch(ports["status"], "?format=prometheus")
        lines = [l for l in text.splitlines()
                 if l.startswith("autotls_certificate_not_after_seconds{")
                 and 'source="static"' in l]
        managed = [l for l in text.splitlines()
                   if l.startswith("autotls_certificate_not_after_seconds{")
                   and 'id="managed.mon.test"' in l]
        return text if len(lines) >= len(STATIC) and managed else None
    text = wait_until(metrics, timeout=30,
                      what="static and managed certificates in the metrics")
    doc = json.loads(fetch(ports["status"]))
    for item in static_items(doc):
        assert re.search(r'autotls_certificate_not_after_seconds\{[^}]*id="%s"'
                         % re.escape(item["id"]), text), item["id"]
    # the managed one is there too, as managed
    assert re.search(r'autotls_certificate_not_after_seconds\{[^}]*'
                     r'id="managed.mon.test"[^}]*source="managed"', text) \
        or re.search(r'autotls_certificate_not_after_seconds\{[^}]*'
                     r'source="managed"[^}]*id="managed.mon.test"', text), text


def test_scan_finds_the_same_and_exits_2(monitored, test_root):
    """One scan of the four endpoints (each with its SNI): exit 2 (critical
    findings among them), and per endpoint the findings of the status page."""
    ngx, leaves, ports = monitored
    def all_listed():
        got = {i["path"]: i for i in static_items(json.loads(fetch(ports["status"])))}
        return got if all(l.cert in got for l in leaves.values()) else None
    # all of them: the first one listed is not enough to compare each
    by_path = wait_until(all_listed, timeout=30,
                         what="static certificates on the status page")
    targets = os.path.join(test_root, "targets")
    with open(targets, "w") as f:
        for name in STATIC:
            f.write(f"127.0.0.1:{ports['static']} {name}\n")
    proc = run_cli("scan", "--json", "--targets", targets, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    scanned = {t["sni"]: t for t in json.loads(proc.stdout)["targets"]}
    for name, (_, finding) in STATIC.items():
        on_wire = {f["finding"] for f in scanned[name]["findings"]}
        assert finding in on_wire, scanned[name]
        from_page = {f["finding"] for f in by_path[leaves[name].cert]["findings"]}
        assert on_wire == from_page, (name, on_wire, from_page)


def test_list_all_shows_static_certificates(monitored):
    ngx, leaves, _ = monitored
    store = ngx.store if os.path.isdir(ngx.store) else None
    assert store, "the store is missing"

    def listed():
        out = run_cli("list", "--store", store, "--all").stdout
        return out if all(l.cert in out for l in leaves.values()) else None
    out = wait_until(listed, timeout=30, what="autotls list --all to show static certificates")
    assert "managed.mon.test" in out
    # without --all only the managed certificates
    plain = run_cli("list", "--store", store).stdout
    assert leaves["expired.mon.test"].cert not in plain


def test_reload_does_not_log_findings_twice_per_start(monitored_own):
    ngx, leaves, _ = monitored_own
    path = leaves["expired.mon.test"].cert

    def count():
        return sum(1 for l in ngx.log().splitlines()
                   if f'certificate "{path}"' in l and ": expired:" in l)
    assert count() == 1
    ngx.reload()
    # one more for the reload (the master reads the configuration again), not
    # one per worker
    wait_until(lambda: count() == 2, timeout=20, what="the finding logged at reload")
    ngx.reload()
    wait_until(lambda: count() == 3, timeout=20, what="the finding logged at reload")


def test_static_certificates_alone_are_monitored_in_the_named_store(test_root):
    """No autotls server: with autotls_store the static certificates are
    still inventoried and shown; without it the module stays idle (a
    distribution loads it into every nginx)."""
    cm = CertMaker(os.path.join(test_root, "static"))
    leaf = cm.expired("alone.mon.test")
    static_port, status_port = free_port(), free_port()
    store = os.path.join(test_root, "store")
    body = f"    autotls_store {store};\n" + static_server("alone.mon.test", leaf, static_port)
    body += status_server(status_port)
    ngx = Nginx(test_root, body)
    with ngx.start():
        items = wait_until(lambda: static_items(json.loads(fetch(status_port))) or None,
                           timeout=30, what="the static certificate on the status page")
        assert [i["path"] for i in items] == [leaf.cert]
        assert "expired" in [f["finding"] for f in items[0]["findings"]]

    os.rename(store, store + ".old")
    idle = Nginx(test_root, static_server("alone.mon.test", leaf, static_port))
    seen = len(idle.log())
    with idle.start():
        wait_until(lambda: f'certificate "{leaf.cert}"' in idle.log()[seen:], timeout=10,
                   what="the finding logged without a store")
        assert "drives issuance" not in idle.log()[seen:]
    assert not os.path.exists(store)
