"""Monitoring on Apache: the certificates of SSLCertificateFile hosts that
autotls does not manage (one expired, one with a name mismatch, one
RSA-1024, one SHA-1) are discovered at start, shown with their findings on
the autotls-status page (JSON and Prometheus), logged once per finding by
the parent at each start, kept in the store's inventory, and `autotls
scan` against the same server reports the same findings with exit 2."""
import json
import os
import re

import pytest

from apache_helpers import apache_factory, RESTART_MARKS  # noqa: F401
from certmaker import CertMaker, SECLEVEL0
from util import run_cli, wait_until


def static_vhost(port, name, leaf):
    """A TLS <VirtualHost> serving leaf as an operator would configure it
    (security level 0 so that mod_ssl loads RSA-1024 and SHA-1 leaves)."""
    return "\n".join([
        f"<VirtualHost 127.0.0.1:{port}>",
        f"    ServerName {name}",
        "    SSLEngine on",
        f"    SSLCipherSuite {SECLEVEL0}",
        f'    SSLCertificateFile "{leaf.cert}"',
        f'    SSLCertificateKeyFile "{leaf.key}"',
        "</VirtualHost>",
    ])


def vhost_line(conf_path, name):
    """"FILE:LINE" of the <VirtualHost> whose ServerName is name."""
    start = None
    with open(conf_path) as f:
        for no, line in enumerate(f, 1):
            if line.strip().startswith("<VirtualHost"):
                start = no
            if line.strip() == f"ServerName {name}":
                return f"{conf_path}:{start}"
    raise AssertionError(f"no ServerName {name}")


def static_items(doc):
    """Every object of the status JSON that describes a static certificate."""
    found = []

    def walk(x):
        if isinstance(x, dict):
            if x.get("source") == "static" and "path" in x:
                found.append(x)
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
    walk(doc)
    return {i["path"]: i for i in found}


def finding_names(item):
    return {f["finding"] for f in item.get("findings", [])}


# served name -> (how certmaker makes it, the critical or warning finding)
CASES = {
    "expired.mon.apache.test": ("expired", "expired"),
    "mismatch.mon.apache.test": ("mismatch", "name-mismatch"),
    "weak.mon.apache.test": ("rsa1024", "weak-key"),
    "sha1.mon.apache.test": ("sha1", "sha1-signature"),
}


@pytest.fixture
def monitored(pebble, apache_factory, test_root):  # noqa: F811
    cm = CertMaker(os.path.join(test_root, "static"))
    leaves = {name: getattr(cm, how)(name) for name, (how, _) in CASES.items()}
    leaves["ok.mon.apache.test"] = cm.valid("ok.mon.apache.test")
    apache = apache_factory(pebble, [])
    extra = "\n".join(static_vhost(apache.tls_port, n, leaf) for n, leaf in leaves.items())
    apache.write_config(global_extra=extra)
    apache.start()
    return apache, leaves


def test_static_certificates_on_status_page_metrics_and_log(monitored):
    apache, leaves = monitored

    # the store's inventory, written by the watchdog child
    inv = os.path.join(apache.store, "inventory")
    wait_until(lambda: len(os.listdir(inv)) == len(leaves) if os.path.isdir(inv) else False,
               timeout=30, what="the inventory in the store")
    for entry in os.listdir(inv):
        with open(os.path.join(inv, entry)) as f:
            stored = json.load(f)
        assert stored["path"] in [leaf.cert for leaf in leaves.values()]
        assert stored["server"] == "apache" and stored["used_by"]

    # each finding once in the error log at start, from the parent only
    def log_lines(path, finding):
        return [ln for ln in apache.log_text().splitlines()
                if "[autotls:" in ln and f'"{path}"' in ln and f": {finding}: " in ln]
    for name, (_, finding) in CASES.items():
        assert len(log_lines(leaves[name].cert, finding)) == 1, \
            (name, log_lines(leaves[name].cert, finding))

    # every distinct file is in the status JSON with its finding
    def listed():
        items = static_items(apache.status_json())
        return items if all(leaf.cert in items for leaf in leaves.values()) else None
    items = wait_until(listed, timeout=30, what="the static certificates on the status page")
    for name, (_, finding) in CASES.items():
        item = items[leaves[name].cert]
        assert finding in finding_names(item), item
        assert name in item["used_names"]
        assert vhost_line(apache.conf_path, name) in item["used_by"]
        assert item["server"] == "apache"
    assert not finding_names(items[leaves["ok.mon.apache.test"].cert]) - {"incomplete-chain"}
    assert "weak-key" in finding_names(items[leaves["weak.mon.apache.test"].cert])
    body = json.dumps(apache.status_json())
    assert "PRIVATE KEY" not in body

    # Prometheus: each static certificate, its findings too
    status, _, text = apache.http_get("/autotls-status?format=prometheus")
    assert status == 200
    text = text.decode()
    for name, (_, finding) in CASES.items():
        cid = items[leaves[name].cert]["id"]
        lines = [ln for ln in text.splitlines() if f'id="{cid}"' in ln]
        assert any('source="static"' in ln for ln in lines), (cid, text)
        assert any(finding in ln for ln in lines), (cid, finding, lines)

    # ... and once more at each restart
    proc = apache.graceful()
    assert proc.returncode == 0, proc.stderr
    wait_until(lambda: any(m in apache.log_text() for m in RESTART_MARKS), timeout=30,
               what="the graceful restart")
    for name, (_, finding) in CASES.items():
        wait_until(lambda: len(log_lines(leaves[name].cert, finding)) == 2, timeout=30,
                   what=f"{finding} of {name} logged again at the restart")
    assert len(log_lines(leaves["expired.mon.apache.test"].cert, "expired")) == 2


def test_scan_reports_the_same_findings(monitored):
    apache, leaves = monitored
    target = f"127.0.0.1:{apache.tls_port}"
    for name, (_, finding) in CASES.items():
        proc = run_cli("scan", "--json", "--sni", name, target, check=False)
        out = proc.stdout
        assert finding in out, (name, out, proc.stderr)
        if finding == "sha1-signature":
            assert proc.returncode >= 1, out
        else:
            assert proc.returncode == 2, (name, out, proc.stderr)
    # all at once through a targets file: the worst is critical
    targets = os.path.join(apache.root, "targets")
    with open(targets, "w") as f:
        f.write("".join(f"{target} {name}\n" for name in CASES))
    proc = run_cli("scan", "--targets", targets, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    for _, finding in CASES.values():
        assert finding in proc.stdout, proc.stdout


def test_apache_t_still_passes_with_bad_static_certificates(monitored):
    apache, _ = monitored
    proc = apache.configtest()
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"Syntax OK", proc.stderr)
